"""Shared fixtures: every test gets its own catalog database; CLI output has a fixed width.

The catalog is seeded once per session (`seeded_template`) and copied per test, so each test
still starts from a fresh, complete catalog of its own (see support.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from catalog.session import Catalog
from support import TEST_COLUMNS, Result, Run, Template, invoke


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
def ready_catalog(isolated_database: Path, seeded_template: Template) -> Path:
    """The test's catalog file, already created and seeded (so commands print no notice)."""
    return seeded_template.copy_to(isolated_database)


@pytest.fixture
def new_catalog(seeded_template: Template) -> Iterator[Callable[[], Catalog]]:
    """Make fresh, seeded in-memory catalogs, each private; all are closed after the test."""
    made: list[Catalog] = []

    def make() -> Catalog:
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
