"""Sizes are parsed with explicit units and shown with labels."""

from __future__ import annotations

import pytest

from advisor.errors import InvalidValueError
from advisor.units import Units, format_bandwidth, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GiB", 24 * 2**30),
        ("24 GiB", 24 * 2**30),
        ("24gib", 24 * 2**30),
        ("24GB", 24_000_000_000),
        ("1008GB/s", 1_008_000_000_000),
        ("1.5TB", 1_500_000_000_000),
        ("24.5GiB", 24 * 2**30 + 2**29),
        ("512MiB", 512 * 2**20),
        ("3 TiB", 3 * 2**40),
        ("7B", 7),
    ],
)
def test_parse_size_exact_bytes(text: str, expected: int) -> None:
    """Decimal and binary units give exact integer bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("80G", "ambiguous unit in size '80G': write GB (powers of 1000) or GiB (powers of 1024)"),
        ("24", "missing unit in size '24': write e.g. 24GiB or 24GB"),
        (
            "24 parsecs",
            "unknown unit 'parsecs' in size '24 parsecs': use B, kB, MB, GB, TB, "
            "KiB, MiB, GiB or TiB",
        ),
        ("-5GB", "invalid size '-5GB': write a number and a unit, e.g. 24GiB or 24GB"),
        ("0GiB", "invalid size '0GiB': must be greater than zero"),
        ("", "invalid size '': write a number and a unit, e.g. 24GiB or 24GB"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    """Ambiguous, missing and unknown units, negatives and zero are rejected with the reason."""
    with pytest.raises(InvalidValueError) as error:
        parse_size(text)
    assert str(error.value) == message


def test_format_labels_units() -> None:
    """Display says which unit it shows."""
    assert format_size(24 * 2**30) == "24.0 GiB"
    assert format_size(24 * 2**30, Units.gb) == "25.8 GB"
    assert format_bandwidth(1_008_000_000_000) == "1,008 GB/s"
