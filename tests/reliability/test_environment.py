"""The environment: a damaged catalog file, a folder that cannot be created, a prompt with
nobody to answer it. Each gives one line and an exit code, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.reliability
Fixture = Callable[..., Any]
PAGE = 4096


def test_damaged_pages(catalog_file: Path, cli: Fixture) -> None:
    """Issue 17: "database disk image is malformed" was a traceback. Now one line says the
    file is damaged and how to recover, for reads and writes, and the file is left as is."""
    pages = catalog_file.stat().st_size // PAGE
    with catalog_file.open("r+b") as handle:  # every page but the first (the schema)
        handle.seek(PAGE)
        handle.write(b"\xff" * PAGE * (pages - 1))
    damaged = catalog_file.read_bytes()
    expected = (
        f"error: {catalog_file} is damaged (database disk image is malformed); copy a backup "
        f"over it (catalog.db.*.bak beside it, if an upgrade made one), or move it aside and "
        "import a file made by 'advisor catalog export'\n"
    )
    for args in (
        ("catalog", "gpus"),
        ("catalog", "update", "gpu", "h100-sxm5-80gb", "--notes", "x"),
    ):
        result = cli("--db", str(catalog_file), *args)
        assert (result.exit_code, result.stderr, result.traceback) == (1, expected, None), args
    assert catalog_file.read_bytes() == damaged


def test_catalog_folder_that_cannot_be_created(cli: Fixture, tmp_path: Path) -> None:
    """A --db path whose folder cannot be made (here: under a plain file) is one line."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    result = cli("--db", str(blocker / "sub" / "catalog.db"), "catalog", "gpus")
    assert (result.exit_code, result.traceback) == (1, None)
    assert result.stderr == (
        f"error: cannot create the catalog folder {blocker / 'sub'}: Not a directory\n"
    )


@pytest.mark.parametrize("stdin", ["at its end", "closed"])
def test_remove_prompt_with_nobody_to_answer(catalog_file: Path, stdin: str) -> None:
    """Issue 17: stdin closed at the remove prompt was a traceback. Now: one line, exit 2,
    nothing removed (--yes is how scripts remove)."""
    before = catalog_file.read_bytes()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "advisor",
            "--db",
            str(catalog_file),
            "catalog",
            "remove",
            "gpu",
            "h100-sxm5-80gb",
        ],
        stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: os.close(0)) if stdin == "closed" else None,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "error: no answer on stdin; nothing changed (pass --yes to go ahead without asking)"
    )
    assert "Traceback" not in result.stderr
    assert catalog_file.read_bytes() == before
