"""The bundled data files and their fingerprint, without the validation machinery.

Standard library only, so that the stdlib read path (catalog/reader.py) can tell whether a
catalog was synced with this advisor's data exactly as catalog/bundled.py judges it: one
`digest()` for both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

# The catalog_meta key under which `catalog sync` stores the digest it synced.
DIGEST_KEY = "bundled_digest"


# The package's data folder. Wheels install packages as plain files, so a path beside this
# module is the package resource (importlib.resources would cost an import for the same path).
DATA_DIR = Path(__file__).resolve().parent / "data"


def data_files() -> Iterator[Path]:
    """Every bundled data file, in the fixed order that `digest` and the loader use."""
    root = DATA_DIR
    for folder in ("gpus", "models"):
        yield from sorted(
            (f for f in (root / folder).iterdir() if f.name.endswith(".json")),
            key=lambda f: f.name,
        )
    yield root / "quants.json"
    yield root / "recipes.json"


@cache
def digest() -> str:
    """A fingerprint of the bundled data: it changes whenever a shipped row changes. Computed
    once per process: the installed data files do not change under a running command."""
    sha = hashlib.sha256()
    for file in data_files():
        sha.update(file.name.encode())
        sha.update(file.read_bytes())
    return sha.hexdigest()
