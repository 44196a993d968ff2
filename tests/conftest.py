"""Shared fixtures: every test gets its own catalog database; CLI output has a fixed width.

The catalog is seeded once per session (`seeded_template`) and copied per test, so each test
still starts from a fresh, complete catalog of its own (see support.py).

Back ends: the tests of the modules in BOTH_BACKENDS that use a catalog (`ready_catalog`,
`new_catalog` and the fixtures built on it, `blank_database`) run twice, on SQLite and on a real
PostgreSQL server (tests/postgres_server.py), each time on a fresh database of their own. A
test of behaviour only SQLite files have (first use creates the file, backups, file damage) is
marked `sqlite_only` and runs once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from catalog.session import Catalog, OpenReport, open_catalog
from postgres_server import Server, server_or_skip
from support import TEST_COLUMNS, Result, Run, Template, invoke

# The test modules whose catalog tests run on both back ends (file names without `.py`).
BOTH_BACKENDS = frozenset({"test_catalog", "test_cli", "test_migrations"})
SQLITE = "sqlite"
POSTGRESQL = "postgresql"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each catalog test of the BOTH_BACKENDS modules on both back ends."""
    if "backend" not in metafunc.fixturenames:
        return
    module = Path(str(metafunc.module.__file__)).stem
    both = module in BOTH_BACKENDS and metafunc.definition.get_closest_marker("sqlite_only") is None
    metafunc.parametrize("backend", [SQLITE, POSTGRESQL] if both else [SQLITE], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database the test's catalog lives on: "sqlite" or "postgresql"."""
    return str(getattr(request, "param", SQLITE))


@pytest.fixture(scope="session")
def pg_server() -> Server:
    """The PostgreSQL test server; skips (fails under CI=true) when none is configured."""
    return server_or_skip()


@pytest.fixture(scope="session")
def pg_template(pg_server: Server) -> Iterator[tuple[str, OpenReport]]:
    """A PostgreSQL database migrated and seeded once per test process, only ever copied, and
    what creating it reported."""
    name = pg_server.create_database()
    try:
        opened = open_catalog(pg_server.url(name), server_upgrade=True)
        report = opened.report
        assert report.created and report.seeded > 0, report
        opened.close()  # CREATE DATABASE … TEMPLATE needs the template free of sessions
        yield name, report
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def pg_databases(request: pytest.FixtureRequest) -> Iterator[Callable[[bool], str]]:
    """Make PostgreSQL databases for this test (seeded copies of the template, or blank) and
    return their URLs; all are dropped after the test."""
    server: Server = request.getfixturevalue("pg_server")
    made: list[str] = []

    def make(seeded: bool = True) -> str:
        template = request.getfixturevalue("pg_template")[0] if seeded else None
        made.append(server.create_database(template=template))
        return server.url(made[-1])

    yield make
    for name in made:
        server.drop_database(name)


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """One catalog file, created and seeded for the whole run; tests only ever copy it."""
    return Template.create(tmp_path_factory.mktemp("template") / "catalog.db")


@pytest.fixture(autouse=True)
def isolated_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ADVISOR_DB at a file of this test's own; nothing touches the user's catalog."""
    path = tmp_path / "catalog.db"
    monkeypatch.setenv("ADVISOR_DB", str(path))
    monkeypatch.setenv("COLUMNS", str(TEST_COLUMNS))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    return path


@pytest.fixture
def ready_catalog(
    isolated_database: Path,
    seeded_template: Template,
    backend: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """The test's catalog, already created and seeded (so commands print no notice): a file,
    returned; on PostgreSQL a fresh database that ADVISOR_DB names (the returned path then
    names no file: tests that open it as a file are `sqlite_only`)."""
    if backend == POSTGRESQL:
        make: Callable[[], str] = request.getfixturevalue("pg_databases")
        monkeypatch.setenv("ADVISOR_DB", make())
        return isolated_database
    return seeded_template.copy_to(isolated_database)


@pytest.fixture
def blank_database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of an empty database of the test's own: a new SQLite file, or a new
    PostgreSQL database."""
    if backend == POSTGRESQL:
        make: Callable[[bool], str] = request.getfixturevalue("pg_databases")
        return make(False)
    return f"sqlite:///{tmp_path / 'blank.db'}"


@pytest.fixture
def new_catalog(
    seeded_template: Template, backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Catalog]]:
    """Make fresh, seeded catalogs, each private (in memory, or a PostgreSQL database of its
    own); all are closed after the test."""
    made: list[Catalog] = []

    def make() -> Catalog:
        if backend == POSTGRESQL:
            databases: Callable[[], str] = request.getfixturevalue("pg_databases")
            made.append(open_catalog(databases()))
            # as a first open reports it (in_memory does the same for SQLite)
            made[-1].report = request.getfixturevalue("pg_template")[1]
        else:
            made.append(seeded_template.in_memory())
        return made[-1]

    yield make
    for opened in made:
        opened.close()


@pytest.fixture
def catalog(new_catalog: Callable[[], Catalog]) -> Catalog:
    """A fresh, seeded catalog in memory."""
    return new_catalog()


@pytest.fixture
def session(catalog: Catalog) -> Iterator[Session]:
    """A session on the test's in-memory catalog, committed at the end of the test."""
    with catalog.session() as s:
        yield s


@pytest.fixture
def run() -> Run:
    """Run the CLI in process at TEST_COLUMNS wide: run('catalog', 'gpus') -> Result."""

    def run_cli(*args: str, input: str | None = None) -> Result:
        return invoke(args, input=input, columns=TEST_COLUMNS)

    return run_cli
