"""The local accelerators, as their vendor libraries report them, matched to known cards.

Pure: what the probes read (NVML, sysctl, amdsmi; `advisor/cli/probe.py` makes those calls)
comes in as `Accelerator` values; catalog rows come in as `KnownCard` values. Out come the
groups of identical devices, each matched to a card or described as an ad-hoc one, with the
memory the GPU may use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from advisor.enums import Vendor

MIB = 2**20
# The total a vendor library reports is a little below the card's nominal memory: the driver
# keeps some back (nvidia-smi shows 81,559 MiB on an H100 80GB, 143,771 MiB on an H200 whose
# catalog row has 144,384 MiB). A catalog card matches when the reported total is within this
# share of its memory.
MEMORY_MATCH_TOLERANCE = 0.06
# macOS's default GPU working set (Metal recommendedMaxWorkingSetSize, the iogpu wired limit)
# is two thirds of RAM up to 32 GiB and three quarters above; the catalog's Apple rows carry
# the sources (catalog/data/gpus/apple.json, `usable_memory_fraction`).
APPLE_SMALL_MEMORY_BYTES = 32 * 2**30
APPLE_SMALL_SHARE = 2 / 3
APPLE_LARGE_SHARE = 3 / 4
# Words vendor libraries put before the product name (NVML: "NVIDIA GeForce RTX 4090";
# sysctl: "Apple M2 Max"; amdsmi: "AMD Instinct MI300X").
_VENDOR_WORDS = re.compile(r"^(nvidia|apple|amd|geforce|radeon|instinct|tesla|quadro)+")


def name_key(name: str) -> str:
    """How names compare: case, spaces and punctuation ignored, dots kept (the catalog's rule)."""
    return "".join(ch for ch in name.casefold() if ch.isalnum() or ch == ".")


@dataclass(frozen=True, kw_only=True)
class Accelerator:
    """One device as its vendor library reports it."""

    vendor: Vendor
    name: str
    memory_bytes: int
    free_bytes: int | None = None
    # Apple: the GPU working-set limit when `iogpu.wired_limit_mb` sets one (0 means default).
    gpu_limit_bytes: int | None = None
    nvlink_links: int = 0


@dataclass(frozen=True, kw_only=True)
class Detection:
    """What the probes found: devices, system RAM, and what they could not look at and why."""

    accelerators: tuple[Accelerator, ...]
    system_memory_bytes: int | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class KnownCard:
    """A catalog GPU as matching needs it."""

    slug: str
    name: str
    vendor: Vendor
    memory_bytes: int
    usable_fraction: float
    keys: frozenset[str]  # name keys of its slug, name and aliases


@dataclass(frozen=True, kw_only=True)
class LocalCard:
    """A group of identical local devices, matched to a catalog card or ad hoc."""

    accelerator: Accelerator
    count: int
    match: KnownCard | None

    @property
    def slug(self) -> str:
        if self.match is not None:
            return self.match.slug
        return "local-" + (_product_key(self.accelerator.name) or self.accelerator.vendor.value)

    @property
    def name(self) -> str:
        return self.match.name if self.match is not None else self.accelerator.name

    @property
    def usable_fraction(self) -> float:
        """Share of the device's memory the GPU may use (1 on a discrete card)."""
        acc = self.accelerator
        if acc.gpu_limit_bytes:
            return min(1.0, acc.gpu_limit_bytes / acc.memory_bytes)
        if self.match is not None:
            return self.match.usable_fraction
        if acc.vendor is Vendor.apple:
            small = acc.memory_bytes <= APPLE_SMALL_MEMORY_BYTES
            return APPLE_SMALL_SHARE if small else APPLE_LARGE_SHARE
        return 1.0

    @property
    def capacity_bytes(self) -> int:
        """What the GPU may allocate: the device's reported memory times the usable share."""
        return int(self.accelerator.memory_bytes * self.usable_fraction)


def _product_key(name: str) -> str:
    return _VENDOR_WORDS.sub("", name_key(name))


def _name_match(product: str, keys: frozenset[str]) -> tuple[int, int]:
    """How well a card's names fit the reported product: (2, n) one name is the product,
    (1, n) the product starts with a name of n characters, (0, n) a name starts with the
    product; (-1, 0) none does."""
    best = (-1, 0)
    for key in keys:
        k = _VENDOR_WORDS.sub("", key)
        if not k:
            continue
        if k == product:
            kind = 2
        elif product.startswith(k):
            kind = 1
        elif k.startswith(product):
            kind = 0
        else:
            continue
        best = max(best, (kind, len(k) if kind else -len(k)))
    return best


def match_card(acc: Accelerator, cards: Sequence[KnownCard]) -> KnownCard | None:
    """The catalog card this device is: same vendor, memory within MEMORY_MATCH_TOLERANCE, and
    the best name fit (the product's own name, else the longest name it starts with, else the
    shortest name that starts with it); nearer memory, then the slug, break ties."""
    product = _product_key(acc.name)
    if not product:
        return None
    best: tuple[tuple[int, int], float, str] | None = None
    found: KnownCard | None = None
    for card in cards:
        if card.vendor != acc.vendor:
            continue
        fit = _name_match(product, card.keys)
        gap = abs(acc.memory_bytes - card.memory_bytes) / card.memory_bytes
        if fit[0] < 0 or gap > MEMORY_MATCH_TOLERANCE:
            continue
        rank = ((-fit[0], -fit[1]), gap, card.slug)
        if best is None or rank < best:
            best, found = rank, card
    return found


def local_cards(detection: Detection, cards: Sequence[KnownCard]) -> list[LocalCard]:
    """Identical devices grouped (same vendor, name and memory), each matched to a card."""
    groups: dict[tuple[Vendor, str, int], list[Accelerator]] = {}
    for acc in detection.accelerators:
        groups.setdefault((acc.vendor, acc.name, acc.memory_bytes), []).append(acc)
    return [
        LocalCard(accelerator=members[0], count=len(members), match=match_card(members[0], cards))
        for members in groups.values()
    ]
