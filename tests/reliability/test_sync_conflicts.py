"""Sync that cannot be blocked: a bundled row whose name a user's row already holds is
skipped and reported with how to resolve it; everything else syncs; commands stop asking."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from catalog import bundled, queries
from catalog.session import open_catalog
from catalog.tables import GPUCreate

pytestmark = pytest.mark.reliability
Fixture = Callable[..., Any]

README_CARD = (
    "catalog", "add", "gpu", "--slug", "rtx-6090", "--name", "RTX 6090 48GB", "--vendor",
    "nvidia", "--architecture", "Rubin", "--market", "consumer", "--memory", "48GiB",
    "--bandwidth", "2000GB/s", "--source", "vendor announcement, 2026-11",
)  # fmt: skip
ASK = (
    "advisor: this advisor ships newer catalog rows: run 'advisor catalog sync' to bring them in\n"
)


def _forget_last_sync(path: Path) -> None:
    """Make the catalog look synced with an older bundle (as after upgrading advisor)."""
    connection = sqlite3.connect(path)
    connection.execute("UPDATE catalog_meta SET value = 'older' WHERE key = 'bundled_digest'")
    connection.commit()
    connection.close()


def test_renamed_bundled_card_does_not_block_sync(
    catalog_file: Path, cli: Fixture, query: Fixture
) -> None:
    """Issue 17: after `catalog update gpu rtx4090 --slug my4090` sync failed forever and every
    command asked for it. Now sync skips bundled rtx4090 (its name is my4090's), says how to
    resolve it, brings in the rest, and commands stop asking."""
    db = str(catalog_file)
    renamed = cli("--db", db, "catalog", "update", "gpu", "rtx4090", "--slug", "my4090")
    assert renamed.exit_code == 0, renamed.stderr
    query_gpus = "SELECT count(*) FROM gpu"
    gpus = query(catalog_file, query_gpus)[0][0]
    _forget_last_sync(catalog_file)
    # a bundled row the catalog lacks, which sync must still bring in
    assert cli("--db", db, "catalog", "remove", "gpu", "h100-nvl", "--yes").exit_code == 0
    connection = sqlite3.connect(catalog_file)
    connection.execute("DELETE FROM removed_bundled_row")
    connection.commit()
    connection.close()
    asked = cli("--db", db, "catalog", "quants", "--json")
    assert (asked.exit_code, asked.stderr) == (0, ASK)
    synced = cli("--db", db, "catalog", "sync", "--json")
    assert (synced.exit_code, synced.stderr) == (0, "")
    report = json.loads(synced.stdout)
    assert report["added"] == 1
    assert report["conflicts"] == [
        {
            "row": "gpu rtx4090",
            "problem": "the name 'NVIDIA GeForce RTX 4090' already refers to your GPU 'my4090'",
            "resolve": "to bring the bundled GPU in, remove or rename yours ('advisor catalog "
            "remove gpu my4090', or 'advisor catalog update gpu my4090' with --slug, --name "
            "or --remove-alias) and run 'advisor catalog sync' again; to keep yours, do nothing",
        }
    ]
    assert query(catalog_file, query_gpus)[0][0] == gpus
    quiet = cli("--db", db, "catalog", "quants", "--json")
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    text = cli("--db", db, "catalog", "sync")
    assert text.stdout.splitlines()[0].endswith("you removed not restored, 1 skipped")
    assert text.stdout.splitlines()[-1].startswith(
        "  skipped: gpu rtx4090: the name 'NVIDIA GeForce RTX 4090' already refers to your "
        "GPU 'my4090'; "
    )


def test_newer_bundle_bringing_a_users_name(
    catalog_file: Path, cli: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: after the README's `catalog add gpu --slug rtx-6090`, a newer bundle with
    `rtx6090` blocked every sync. Now that row is skipped and a changed bundled row still
    syncs. (The newer bundle is the real one plus those two rows.)"""
    added = cli("--db", str(catalog_file), *README_CARD)
    assert added.exit_code == 0, added.stderr
    real = bundled.load()
    h100 = next(g for g in real.gpus if g.slug == "h100-sxm5-80gb")
    newer_gpu = GPUCreate.model_validate(
        {**h100.model_dump(), "slug": "rtx6090", "name": "GeForce RTX 6090", "aliases": []}
    )
    changed_h100 = GPUCreate.model_validate({**h100.model_dump(), "notes": "newer notes"})
    gpus = tuple(changed_h100 if g.slug == h100.slug else g for g in real.gpus)
    monkeypatch.setattr(bundled, "load", lambda: replace(real, gpus=(*gpus, newer_gpu)))
    monkeypatch.setattr(bundled, "digest", lambda: "newer")
    catalog = open_catalog(str(catalog_file))
    try:
        assert catalog.report.bundled_newer
        with catalog.session() as session:
            result = bundled.sync(session)
        assert [(c.row, c.problem) for c in result.conflicts] == [
            ("gpu rtx6090", "the name 'rtx6090' already refers to your GPU 'rtx-6090'")
        ]
        assert (result.added, result.updated) == (0, 1)
        with catalog.reading() as session:
            assert queries.get_gpu(session, name="h100-sxm5-80gb").notes == "newer notes"
            assert queries.get_gpu(session, name="rtx6090").slug == "rtx-6090"
            assert not bundled.has_unsynced_changes(session)
    finally:
        catalog.close()
