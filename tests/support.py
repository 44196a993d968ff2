"""What the tests share besides fixtures: the CLI runner's types and the seeded template.

`tests/` is on `sys.path` (pytest's `pythonpath` setting in pyproject.toml; mypy finds it as
the base of these files), so test modules `from support import Run`. The fixtures themselves
live in conftest.py.

Seeding a catalog (migrations plus some 2,000 bundled rows) costs about 1.7 s; copying a
seeded file costs a few milliseconds. So one session-scoped fixture seeds a template and each
test gets its own copy: a fresh database per test, seeded once per run.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from advisor.workload import Method, Optimizer, Precision, Stage, Workload
from catalog.session import Catalog, OpenReport, make_engine, open_catalog

# Rich renders tables to this many columns under the test runner, whatever the terminal.
TEST_COLUMNS = 120


@dataclass(frozen=True)
class Result:
    """One CLI run: its exit code and what it wrote to each stream."""

    exit_code: int
    stdout: str
    stderr: str


class Run(Protocol):
    """The `run` fixture: run('catalog', 'gpus', '--json') -> Result."""

    def __call__(self, *args: str, input: str | None = None) -> Result: ...


def invoke(args: Sequence[str], *, input: str | None = None, columns: int) -> Result:
    """Run the CLI in this process at `columns` wide, without colour; exceptions propagate."""
    from typer.testing import CliRunner

    from advisor.cli import app

    result = CliRunner().invoke(
        app,
        list(args),
        input=input,
        catch_exceptions=False,
        env={"COLUMNS": str(columns), "NO_COLOR": "1"},
    )
    return Result(result.exit_code, result.stdout, result.stderr)


@dataclass(frozen=True)
class Template:
    """A catalog file created, migrated and seeded once, and what opening it reported."""

    path: Path
    report: OpenReport

    @classmethod
    def create(cls, path: Path) -> Template:
        opened = open_catalog(str(path))
        report = opened.report
        opened.close()
        # Closing the last connection checkpoints the WAL into the file and deletes it, so
        # the file alone is the whole database; a leftover WAL would make copies stale.
        wal = path.with_name(f"{path.name}-wal")
        assert not wal.exists(), f"{wal} survived closing the template"
        assert report.created and report.seeded > 0, report
        return cls(path=path, report=report)

    def copy_to(self, target: Path) -> Path:
        """A file of its own at `target`, as the first `open_catalog` there would leave it."""
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, target)
        return target

    def in_memory(self) -> Catalog:
        """A private in-memory catalog (`sqlite://`, one shared connection) holding the
        template's rows, reporting what `open_catalog("sqlite://")` reports."""
        engine = make_engine("sqlite://")
        source = sqlite3.connect(self.path)
        connection = engine.raw_connection()
        try:
            destination = connection.driver_connection
            assert isinstance(destination, sqlite3.Connection)
            source.backup(destination)
        finally:
            connection.close()  # back to the pool: StaticPool keeps the one connection open
            source.close()
        return Catalog(url="sqlite://", engine=engine, report=self.report)


def workload_from_flags(flags: list[str]) -> Workload:
    """The `advisor estimate` flags of a calibration case (`advisor_estimate_flags`, without
    `--model`) as a Workload."""
    converters: dict[str, Any] = {
        "stage": Stage,
        "method": Method,
        "precision": Precision,
        "optimizer": Optimizer,
        "batch": int,
        "seq": int,
        "lora_rank": int,
        "lora_targets": lambda v: tuple(v.split(",")),
    }
    kwargs: dict[str, Any] = {}
    items = iter(flags)
    for flag in items:
        key = flag.removeprefix("--").replace("-", "_")
        kwargs[key] = True if key == "grad_checkpointing" else converters[key](next(items))
    return Workload(**kwargs)
