"""Fixtures of the fault suite: a seeded catalog file copied per test, the CLI run in process
(tracebacks caught and reported, not raised) and in real child processes."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.session import open_catalog


@pytest.fixture(scope="session")
def template_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded catalog built per test run (closed, so its WAL is folded into the file)."""
    path = tmp_path_factory.mktemp("template") / "catalog.db"
    open_catalog(str(path)).close()
    return path


@pytest.fixture
def catalog_file(template_catalog: Path, tmp_path: Path) -> Path:
    """This test's own copy of the seeded catalog."""
    path = tmp_path / "catalog.db"
    shutil.copyfile(template_catalog, path)
    return path


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    traceback: BaseException | None  # an exception that escaped the CLI (always a defect)


Cli = Callable[..., Outcome]


@pytest.fixture
def cli() -> Cli:
    """cli('--db', path, 'catalog', 'gpus', input=None) -> Outcome, run in this process."""
    from advisor.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Outcome:
        result = runner.invoke(
            app, list(args), input=input, env={"COLUMNS": "120", "NO_COLOR": "1"}
        )
        escaped = result.exception if not isinstance(result.exception, SystemExit) else None
        return Outcome(result.exit_code, result.stdout, result.stderr, escaped)

    return invoke


def _child(argv: Sequence[str], log: str) -> None:
    """Body of a child process: run the CLI, keep its stderr, exit with its code."""
    from advisor.cli import main

    err = io.StringIO()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            code = main(list(argv))
    except BaseException as error:  # an escaped exception: recorded, and exit 99
        Path(log).write_text(f"{type(error).__name__}: {error}\n", encoding="utf-8")
        os._exit(99)
    Path(log).write_text(err.getvalue(), encoding="utf-8")
    os._exit(code)


@dataclass(frozen=True)
class ChildResult:
    exit_code: int
    stderr: str


def _run_children(jobs: Sequence[Sequence[str]], logs: Path) -> list[ChildResult]:
    """Run each argv in its own forked process, all at once; their exit codes and stderr."""
    context = multiprocessing.get_context("fork")
    logs.mkdir(exist_ok=True)
    processes = []
    for index, argv in enumerate(jobs):
        log = logs / f"{index}.log"
        process = context.Process(target=_child, args=(list(argv), str(log)))
        processes.append((process, log))
    for process, _log in processes:
        process.start()
    results = []
    for process, log in processes:
        process.join(timeout=120)
        stderr = log.read_text(encoding="utf-8") if log.exists() else ""
        results.append(
            ChildResult(process.exitcode if process.exitcode is not None else -1, stderr)
        )
    return results


def _query(path: Path, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    """Rows of one read-only query on a catalog file (stdlib sqlite3, no advisor code)."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return connection.execute(sql, parameters).fetchall()
    finally:
        connection.close()


def _snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a SQLite file, for comparing before and after."""
    names = _query(path, "SELECT name FROM sqlite_master WHERE type='table'")
    return {str(t): sorted(_query(path, f'SELECT * FROM "{t}"'), key=repr) for (t,) in names}


Children = Callable[[Sequence[Sequence[str]], Path], list[ChildResult]]
Query = Callable[..., list[tuple[object, ...]]]
Snapshot = Callable[[Path], dict[str, list[tuple[object, ...]]]]


@pytest.fixture
def children() -> Children:
    """children(jobs, logs): run each argv of the CLI in its own process, all at once."""
    return _run_children


@pytest.fixture
def query() -> Query:
    """query(path, sql, *parameters): rows of a read-only stdlib-sqlite3 query."""
    return _query


@pytest.fixture
def snapshot() -> Snapshot:
    """snapshot(path): every row of every table, to compare a file before and after."""
    return _snapshot
