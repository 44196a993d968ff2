"""The environment: a damaged catalog file, a folder that cannot be created, a prompt with
nobody to answer it. Each gives one line and an exit code, and changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog import bundled

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


def _unprivileged() -> list[str]:
    """A command prefix that runs without the power to ignore file permissions: none for a
    normal user; as root, setpriv to the 'nobody' user (skipped where that is missing)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be tested")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _advisor(prefix: list[str], *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "advisor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder other users can enter (pytest's own are private to their owner)."""
    folder = Path(tempfile.mkdtemp(prefix="advisor-reliability-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


def test_catalog_in_a_read_only_folder(template_catalog: Path, open_folder: Path) -> None:
    """Issue 17: a catalog in a read-only folder could not even be read (WAL mode needs a
    -shm file beside it). Reads work; a write is one line, exit 1; nothing appears."""
    prefix = _unprivileged()
    catalog = open_folder / "catalog.db"
    shutil.copyfile(template_catalog, catalog)
    catalog.chmod(0o444)
    open_folder.chmod(0o555)
    before = catalog.read_bytes()
    read = _advisor(prefix, "--db", str(catalog), "catalog", "quants", "--json")
    assert (read.returncode, read.stderr) == (0, "")
    assert len(json.loads(read.stdout)) == len(bundled.load().quants)
    write = _advisor(
        prefix, "--db", str(catalog), "catalog", "update", "gpu", "h100-sxm5-80gb", "--notes", "x"
    )
    assert (write.returncode, write.stderr) == (
        1,
        f"error: cannot write to the catalog at sqlite:///{catalog}: the file or its folder "
        "is read-only\n",
    )
    assert catalog.read_bytes() == before
    assert sorted(p.name for p in open_folder.iterdir()) == ["catalog.db"]


def test_read_only_catalog_file_on_update(template_catalog: Path, open_folder: Path) -> None:
    """Issue 17: `catalog update` on a read-only catalog file was a traceback: now one line."""
    prefix = _unprivileged()
    catalog = open_folder / "catalog.db"
    shutil.copyfile(template_catalog, catalog)
    catalog.chmod(0o444)
    open_folder.chmod(0o777)
    write = _advisor(
        prefix, "--db", str(catalog), "catalog", "update", "gpu", "h100-sxm5-80gb", "--notes", "x"
    )
    assert (write.returncode, write.stderr) == (
        1,
        f"error: cannot write to the catalog at sqlite:///{catalog}: the file or its folder "
        "is read-only\n",
    )


def test_unwritable_data_folder(open_folder: Path) -> None:
    """Issue 17: an unwritable XDG_DATA_HOME (where the default catalog goes) was a
    PermissionError traceback: now one line naming the folder, exit 1."""
    prefix = _unprivileged()
    open_folder.chmod(0o555)
    env = {"XDG_DATA_HOME": str(open_folder), "ADVISOR_DB": ""}
    result = _advisor(prefix, "catalog", "quants", env=env)
    assert (result.returncode, result.stderr) == (
        1,
        f"error: cannot create the catalog folder {open_folder / 'advisor'}: Permission denied\n",
    )
