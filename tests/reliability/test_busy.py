"""Busy catalogs, with real processes on one file: concurrent writers, concurrent first uses,
a writer that keeps the lock, a remove answered after another process wrote, kill -9 in the
middle of an import. About 10 s in all on two shared cores (most of it process start-up)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from advisor.errors import CatalogBusyError
from catalog import session as catalog_session
from catalog.session import BUSY_MESSAGE, open_catalog

pytestmark = pytest.mark.reliability

Fixture = Callable[..., Any]
WRITERS = 8
ROUNDS = 3


def _card(slug: str) -> list[str]:
    return [
        "catalog", "add", "gpu", "--slug", slug, "--name", f"Card {slug}", "--vendor",
        "nvidia", "--architecture", "Test", "--market", "workstation", "--memory", "48GiB",
        "--bandwidth", "960GB/s", "--source", "a test",
    ]  # fmt: skip


def test_concurrent_updates_of_different_rows_all_land(
    catalog_file: Path, children: Fixture, query: Fixture, tmp_path: Path
) -> None:
    """Issue 17: 5 of 20 concurrent `catalog update`s died with "database is locked". Now
    8 processes updating 8 cards at once all succeed, and every new value is stored."""
    slugs = [str(s) for (s,) in query(catalog_file, "SELECT slug FROM gpu ORDER BY slug")]
    slugs = slugs[:WRITERS]
    jobs = [
        ["--db", str(catalog_file), "catalog", "update", "gpu", slug, "--notes", f"round {i}"]
        for i, slug in enumerate(slugs)
    ]
    results = children(jobs, tmp_path / "logs")
    assert [(r.exit_code, r.stderr) for r in results] == [
        (0, f"advisor: updated GPU {slug!r}\n") for slug in slugs
    ]
    stored = dict(query(catalog_file, "SELECT slug, notes FROM gpu WHERE notes LIKE 'round %'"))
    assert stored == {slug: f"round {i}" for i, slug in enumerate(slugs)}


def test_many_writers_many_rounds_lose_nothing(
    catalog_file: Path, children: Fixture, query: Fixture, tmp_path: Path
) -> None:
    """Issue 17: 16 processes x 6 rounds lost 44 of 78 writes to errors. Now 8 processes
    adding rows at once, 3 rounds, all succeed and all 24 rows are there."""
    before = query(catalog_file, "SELECT count(*) FROM gpu")[0][0]
    for round_ in range(ROUNDS):
        jobs = [
            ["--db", str(catalog_file), *_card(f"w{writer}-r{round_}")] for writer in range(WRITERS)
        ]
        results = children(jobs, tmp_path / f"logs{round_}")
        assert [r.exit_code for r in results] == [0] * WRITERS, [r.stderr for r in results]
    added = query(catalog_file, "SELECT count(*) FROM gpu WHERE slug LIKE 'w%-r%'")[0][0]
    assert added == WRITERS * ROUNDS
    assert query(catalog_file, "SELECT count(*) FROM gpu")[0][0] == before + WRITERS * ROUNDS


def test_many_first_uses_of_a_new_file(children: Fixture, query: Fixture, tmp_path: Path) -> None:
    """Issue 17: 8 first uses of a new catalog file at once: 7 crashed. Now the catalog is
    built under a temporary name and linked into place: all succeed, one creates it, the
    file holds one seeded catalog and no temporary file is left."""
    path = tmp_path / "new" / "catalog.db"
    jobs = [["--db", str(path), "catalog", "quants", "--json"] for _ in range(WRITERS)]
    results = children(jobs, tmp_path / "logs")
    assert [r.exit_code for r in results] == [0] * WRITERS, [r.stderr for r in results]
    created = [r.stderr for r in results if "created the catalog" in r.stderr]
    assert len(created) == 1
    assert all(r.stderr == "" for r in results if r.stderr not in created)
    assert query(path, "PRAGMA integrity_check") == [("ok",)]
    from catalog import bundled

    assert query(path, "SELECT count(*) FROM gpu")[0][0] == len(bundled.load().gpus)
    assert sorted(p.name for p in path.parent.iterdir() if ".tmp" in p.name) == []


def test_a_writer_that_keeps_the_lock(
    catalog_file: Path, cli: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the write lock past the bounded wait, a write says the
    catalog is busy in one line (exit 1) and changes nothing; reads still work."""
    monkeypatch.setattr(catalog_session, "SQLITE_BUSY_TIMEOUT_MS", 100)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
            str(catalog_file),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        started = time.monotonic()
        result = cli(
            "--db", str(catalog_file), "catalog", "update", "gpu", "h100-sxm5-80gb", "--notes", "x"
        )
        waited = time.monotonic() - started
        assert (result.exit_code, result.stderr, result.traceback) == (
            1,
            f"error: {BUSY_MESSAGE}\n",
            None,
        )
        assert waited < 5  # bounded: two busy timeouts of 0.1 s, plus start-up
        shown = cli("--db", str(catalog_file), "catalog", "show", "gpu", "h100-sxm5-80gb", "--json")
        assert shown.exit_code == 0, shown.stderr
        assert json.loads(shown.stdout)["notes"] != "x"
        with pytest.raises(CatalogBusyError) as error:
            catalog = open_catalog(str(catalog_file), busy_timeout_ms=100)
            try:
                with catalog.session() as session:
                    session.connection()
            finally:
                catalog.close()
        assert str(error.value) == BUSY_MESSAGE
    finally:
        holder.communicate("")


def test_remove_answered_after_another_process_wrote(
    catalog_file: Path, query: Fixture, tmp_path: Path
) -> None:
    """Issue 17: `catalog remove` answered "y" after another process wrote failed. The
    question is asked outside any transaction, so the removal and the other write land."""
    env = {**os.environ, "NO_COLOR": "1"}
    remover = subprocess.Popen(
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
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert remover.stderr is not None and remover.stdin is not None
    watchdog = threading.Timer(60, remover.kill)  # a hung prompt fails the test, not the run
    watchdog.start()
    prompt = ""
    while not prompt.endswith("[y/N]:"):
        char = remover.stderr.read(1)
        assert char, prompt
        prompt += char
    other = open_catalog(str(catalog_file))
    try:
        from catalog import queries

        with other.session() as session:
            queries.update_gpu(session, name="a100-sxm4-80gb", changes={"notes": "meanwhile"})
    finally:
        other.close()
    _out, err = remover.communicate("y\n", timeout=60)
    watchdog.cancel()
    assert (remover.returncode, err) == (0, "advisor: removed GPU 'h100-sxm5-80gb'\n")
    assert query(catalog_file, "SELECT slug FROM gpu WHERE slug = 'h100-sxm5-80gb'") == []
    assert query(catalog_file, "SELECT notes FROM gpu WHERE slug = 'a100-sxm4-80gb'") == [
        ("meanwhile",)
    ]


IMPORT_ROWS = 1_000


def test_kill_9_in_the_middle_of_an_import(
    catalog_file: Path, query: Fixture, snapshot: Fixture, tmp_path: Path
) -> None:
    """kill -9 while an import holds the write lock (so it is inside its transaction) leaves
    the catalog intact: integrity ok, not one of the rows imported, and usable after."""
    rows = [
        {
            "slug": f"bulk-{i}", "name": f"Bulk Card {i}", "vendor": "nvidia",
            "architecture": "Test", "market": "workstation", "memory_bytes": 2**34,
            "bandwidth_bytes_per_s": 10**12, "source": "a test",
        }
        for i in range(IMPORT_ROWS)
    ]  # fmt: skip
    data = {"format": "gpu-fit-advisor-catalog", "version": 1, "gpus": rows}
    path = tmp_path / "bulk.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    before = snapshot(catalog_file)
    importer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "advisor",
            "--db",
            str(catalog_file),
            "catalog",
            "import",
            str(path),
        ],
        stderr=subprocess.DEVNULL,
    )
    probe = sqlite3.connect(catalog_file, isolation_level=None, timeout=0)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and importer.poll() is None:
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            except sqlite3.OperationalError:
                break  # the importer holds the write lock: it is inside its transaction
            time.sleep(0.005)
        assert importer.poll() is None, "the import ended before it could be killed"
        os.kill(importer.pid, signal.SIGKILL)
        importer.wait()
    finally:
        probe.close()
    assert importer.returncode == -signal.SIGKILL
    assert query(catalog_file, "PRAGMA integrity_check") == [("ok",)]
    assert snapshot(catalog_file) == before
    after = subprocess.run(
        [sys.executable, "-m", "advisor", "--db", str(catalog_file), "catalog", "quants"],
        capture_output=True,
        text=True,
    )
    assert (after.returncode, after.stderr) == (0, "")
