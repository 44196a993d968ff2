"""Byte sizes: parsed once from text with an explicit unit, shown once with a labelled unit.

Inside the project every size is an `int` of bytes. Decimal units (kB, MB, GB, TB) are powers
of 1000 (SI, as vendors state bandwidth and disk sizes); binary units (KiB, MiB, GiB, TiB) are
powers of 1024 (IEC 80000-13). A bare `G` or `80G` is ambiguous between the two and rejected.
"""

from __future__ import annotations

import re
from enum import StrEnum

from advisor.errors import InvalidValueError

KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4
KB = 1000
MB = 1000**2
GB = 1000**3
TB = 1000**4

_UNITS: dict[str, int] = {
    "b": 1,
    "kb": KB,
    "mb": MB,
    "gb": GB,
    "tb": TB,
    "kib": KIB,
    "mib": MIB,
    "gib": GIB,
    "tib": TIB,
}
_AMBIGUOUS = {"k", "m", "g", "t"}
# The longest size text read: "1024.5 GiB/s" is 12 characters; anything past 64 is not a size,
# and refusing it first keeps the digits' conversion and the message short.
MAX_SIZE_TEXT_CHARS = 64
# The largest size in bytes: SQLite's and every 64-bit counter's signed maximum (8 EiB).
MAX_SIZE_BYTES = 2**63 - 1
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[a-zA-Z]*)\s*(?:/\s*s)?\s*$")


class Units(StrEnum):
    """How sizes are shown: binary GiB (the default, what allocators count) or decimal GB."""

    gib = "gib"
    gb = "gb"


def parse_size(text: str, *, what: str = "size") -> int:
    """Return the bytes in `text` such as '24GiB', '24 GB', '1008GB/s' or '512MiB'.

    Rejects a missing or ambiguous unit, negative numbers and zero.
    """
    if len(text) > MAX_SIZE_TEXT_CHARS:
        raise InvalidValueError(
            f"invalid {what}: {len(text):,} characters; a size is at most "
            f"{MAX_SIZE_TEXT_CHARS}, e.g. 24GiB"
        )
    match = _SIZE.match(text)
    if match is None:
        raise InvalidValueError(
            f"invalid {what} {text!r}: write a number and a unit, e.g. 24GiB or 24GB"
        )
    unit = match["unit"].lower()
    if unit in _AMBIGUOUS:
        raise InvalidValueError(
            f"ambiguous unit in {what} {text!r}: write {match['unit']}B (powers of 1000) "
            f"or {match['unit']}iB (powers of 1024)"
        )
    if unit == "":
        raise InvalidValueError(
            f"missing unit in {what} {text!r}: write e.g. {match['number']}GiB or "
            f"{match['number']}GB"
        )
    if unit not in _UNITS:
        raise InvalidValueError(
            f"unknown unit {match['unit']!r} in {what} {text!r}: use B, kB, MB, GB, TB, "
            "KiB, MiB, GiB or TiB"
        )
    # Exact arithmetic: '24.5GiB' is 24.5 * 2**30 bytes without float rounding.
    whole, _, frac = str(match["number"]).partition(".")
    scale = 10 ** len(frac)
    numerator = int(whole or "0") * scale + int(frac or "0")
    value: int = numerator * _UNITS[unit] // scale
    if value <= 0:
        raise InvalidValueError(f"invalid {what} {text!r}: must be greater than zero")
    if value > MAX_SIZE_BYTES:
        raise InvalidValueError(f"invalid {what} {text!r}: must be at most 8 EiB (2^63 - 1 bytes)")
    return value


def unit_label(units: Units) -> str:
    return "GiB" if units is Units.gib else "GB"


def to_unit(value: int, units: Units) -> float:
    """Bytes as a float in the display unit; the only place sizes become floats."""
    return value / (GIB if units is Units.gib else GB)


def format_size(value: int, units: Units = Units.gib, *, digits: int = 1) -> str:
    """'24.0 GiB' or '25.8 GB': a size with its unit label."""
    return f"{to_unit(value, units):,.{digits}f} {unit_label(units)}"


def format_bandwidth(bytes_per_s: int) -> str:
    """Bandwidth in decimal GB/s, the unit vendors state it in."""
    return f"{bytes_per_s / GB:,.0f} GB/s"
