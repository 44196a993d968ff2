"""Shared fixtures: every test gets its own catalog database; CLI output has a fixed width."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from catalog.session import Catalog, open_catalog

# Rich renders tables to this many columns under the test runner, whatever the terminal.
TEST_COLUMNS = 120


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
def ready_catalog(isolated_database: Path) -> Path:
    """The test's catalog file, already created and seeded (so commands print no notice)."""
    open_catalog(None).close()
    return isolated_database


@pytest.fixture
def catalog() -> Iterator[Catalog]:
    """A fresh, seeded catalog in memory."""
    opened = open_catalog("sqlite://")
    yield opened
    opened.close()


@pytest.fixture
def session(catalog: Catalog) -> Iterator[Session]:
    with catalog.session() as s:
        yield s


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def run() -> Iterator[object]:
    """Run the CLI in process: run('catalog', 'gpus') -> Result."""
    from advisor.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        result = runner.invoke(
            app,
            list(args),
            input=input,
            catch_exceptions=False,
            env={"COLUMNS": str(TEST_COLUMNS), "NO_COLOR": "1"},
        )
        return Result(result.exit_code, result.stdout, result.stderr)

    yield invoke
