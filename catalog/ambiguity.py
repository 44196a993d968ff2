"""Card names that name several cards: 'A100' is a 40 GB and an 80 GB card, 'M2 Max' comes with
32, 64 or 96 GB, '4060 Ti' with 8 or 16 GB. Pure (standard library only), shared by both
look-up paths so that they refuse alike.

A name is ambiguous when it, or it followed by nothing but a memory size, is a name (slug,
name or alias key) of more than one card. Other suffixes make a different product ('RTX 4090'
is not 'RTX 4090 Laptop'), so they do not count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# What may follow a name and still be the same product in another memory size: digits, an
# optional decimal part, and GB/GiB/G (in name-key form: lower case, no spaces).
SIZE_SUFFIX = re.compile(r"\d+(\.\d+)?(gb|gib|g)")


def size_variants(key: str, pairs: Iterable[tuple[str, str]]) -> list[str]:
    """Slugs (sorted) that `key` names by itself or followed by a memory size only.

    `pairs` are (name key, slug) for the cards' names; those not starting with `key` are
    skipped, so a caller may pass only the pairs whose key starts with it.
    """
    found: set[str] = set()
    for name, slug in pairs:
        if name == key or (name.startswith(key) and SIZE_SUFFIX.fullmatch(name[len(key) :])):
            found.add(slug)
    return sorted(found)
