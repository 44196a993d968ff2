"""The bundled data files and their fingerprint, without the validation machinery.

Standard library only, so that the stdlib read path (catalog/reader.py) can tell whether a
catalog was synced with this advisor's data exactly as catalog/bundled.py judges it: one
`digest()` for both.
"""

from __future__ import annotations

import zlib
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
    once per process: the installed data files do not change under a running command.

    zlib's CRC-32 and Adler-32 of the files' names and bytes, with their total length: 64
    bits of checksum that change with any edit (both colliding by accident: about one in
    10^19), from a module every command has loaded already; a cryptographic hash would cost
    its import (about 2.5 ms of issue 10's cold start) and guards against nothing here: the
    files are the installed package's own."""
    crc, adler, length = zlib.crc32(b""), zlib.adler32(b""), 0
    for file in data_files():
        for chunk in (file.name.encode(), file.read_bytes()):
            crc = zlib.crc32(chunk, crc)
            adler = zlib.adler32(chunk, adler)
            length += len(chunk)
    return f"{length:x}-{crc:08x}-{adler:08x}"
