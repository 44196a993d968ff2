"""Data loss: a replacing import mirrors only the kinds its file holds and asks first; an
export never writes onto a database; a foreign SQLite file is refused untouched."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.reliability
Fixture = Callable[..., Any]

CARD = (
    "catalog", "add", "gpu", "--slug", "test-card", "--name", "Testing Card 9000",
    "--vendor", "nvidia", "--architecture", "Test", "--market", "workstation",
    "--memory", "48GiB", "--bandwidth", "960GB/s", "--source", "a test",
)  # fmt: skip


def _counts(query: Fixture, path: Path) -> dict[str, int]:
    tables = ("gpu", "model", "model_family", "quant_format")
    return {t: int(query(path, f"SELECT count(*) FROM {t}")[0][0]) for t in tables}


def test_replace_with_a_gpu_export_keeps_every_other_kind(
    catalog_file: Path, cli: Fixture, query: Fixture, tmp_path: Path
) -> None:
    """Issue 17: `export --kind gpus` then `import --replace --yes` removed every model,
    family and quant; now it mirrors GPUs only, and the rest stays row for row."""
    db = str(catalog_file)
    exported = cli(
        "--db", db, "catalog", "export", "--kind", "gpus", "-o", str(tmp_path / "g.json")
    )
    assert exported.exit_code == 0, exported.stderr
    assert cli("--db", db, *CARD).exit_code == 0
    before = _counts(query, catalog_file)
    result = cli("--db", db, "catalog", "import", "--replace", "--yes", str(tmp_path / "g.json"))
    assert (result.exit_code, result.traceback) == (0, None), result.stderr
    gpus = before["gpu"] - 1
    assert result.stderr == (
        f"advisor: imported g.json: 0 added, 0 updated, {gpus} unchanged, 1 removed\n"
    )
    assert _counts(query, catalog_file) == {**before, "gpu": gpus}
    assert query(catalog_file, "SELECT slug FROM gpu WHERE slug = 'test-card'") == []


def test_replace_that_removes_asks_first(
    catalog_file: Path, cli: Fixture, query: Fixture, snapshot: Fixture, tmp_path: Path
) -> None:
    """Without --yes a removing replace asks; 'n' keeps everything (exit 1); no answer on
    stdin refuses in one line (exit 2); 'y' removes."""
    db = str(catalog_file)
    cli("--db", db, "catalog", "export", "--kind", "gpus", "-o", str(tmp_path / "g.json"))
    cli("--db", db, *CARD)
    before = snapshot(catalog_file)
    question = "--replace removes 1 row that g.json lacks (GPU test-card). Go ahead? [y/N]:"
    declined = cli(
        "--db", db, "catalog", "import", "--replace", str(tmp_path / "g.json"), input="n\n"
    )
    assert (declined.exit_code, declined.stderr) == (1, question)
    closed = cli("--db", db, "catalog", "import", "--replace", str(tmp_path / "g.json"), input="")
    assert (closed.exit_code, closed.stderr) == (
        2,
        question + "\nerror: no answer on stdin; nothing changed (pass --yes to go ahead "
        "without asking)\n",
    )
    assert snapshot(catalog_file) == before
    agreed = cli(
        "--db", db, "catalog", "import", "--replace", str(tmp_path / "g.json"), input="y\n"
    )
    assert agreed.exit_code == 0, agreed.stderr
    assert query(catalog_file, "SELECT slug FROM gpu WHERE slug = 'test-card'") == []


def test_replace_of_an_export_missing_a_kind_section(
    catalog_file: Path, cli: Fixture, query: Fixture, tmp_path: Path
) -> None:
    """A JSON file records its kinds by its sections: an empty 'quants' section removes
    every quant format, while the absent sections leave their kinds alone."""
    path = tmp_path / "q.json"
    path.write_text(
        json.dumps({"format": "gpu-fit-advisor-catalog", "version": 1, "quants": []}),
        encoding="utf-8",
    )
    before = _counts(query, catalog_file)
    result = cli("--db", str(catalog_file), "catalog", "import", "--replace", "--yes", str(path))
    assert result.exit_code == 0, result.stderr
    assert _counts(query, catalog_file) == {**before, "quant_format": 0}


def test_export_refuses_the_catalog_file(catalog_file: Path, cli: Fixture) -> None:
    """Issue 17: `--db cat.db catalog export -o cat.db` overwrote the catalog with JSON."""
    before = catalog_file.read_bytes()
    for target in (catalog_file, Path(f"{catalog_file}-wal")):
        result = cli("--db", str(catalog_file), "catalog", "export", "-o", str(target), "--force")
        assert (result.exit_code, result.stderr) == (
            1,
            f"error: refusing to export onto the catalog's own file {target}\n",
        )
    assert catalog_file.read_bytes() == before


def test_export_refuses_any_database_and_existing_files(
    catalog_file: Path, cli: Fixture, tmp_path: Path
) -> None:
    """Another SQLite file is never overwritten; an existing file only with --force."""
    other = tmp_path / "other.db"
    connection = sqlite3.connect(other)
    connection.execute("CREATE TABLE t (x)")
    connection.close()
    other_bytes = other.read_bytes()
    db = str(catalog_file)
    refused = cli("--db", db, "catalog", "export", "-o", str(other), "--force")
    assert (refused.exit_code, refused.stderr) == (
        1,
        f"error: refusing to export onto {other}: it is a SQLite database\n",
    )
    assert other.read_bytes() == other_bytes
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n", encoding="utf-8")
    kept = cli("--db", db, "catalog", "export", "-o", str(notes))
    assert (kept.exit_code, kept.stderr) == (
        1,
        f"error: {notes} exists; pass --force to overwrite it\n",
    )
    assert notes.read_text(encoding="utf-8") == "mine\n"
    forced = cli("--db", db, "catalog", "export", "--kind", "quants", "-o", str(notes), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(notes.read_text(encoding="utf-8"))["format"] == "gpu-fit-advisor-catalog"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _foreign(path: Path, revision: str | None) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER)")
    connection.execute("INSERT INTO invoices (total) VALUES (42)")
    if revision is not None:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        connection.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    connection.commit()
    connection.close()


@pytest.mark.parametrize("revision", [None, "0001", "0002", "9999"])
def test_foreign_database_untouched(cli: Fixture, tmp_path: Path, revision: str | None) -> None:
    """Another program's SQLite file (with its own Alembic revision 0001 or 0002, or none)
    is refused in one line, byte for byte unchanged: no WAL switch, no backup, no migration."""
    path = tmp_path / "other.db"
    _foreign(path, revision)
    before = path.read_bytes()
    for args in (("catalog", "gpus"), ("catalog", "sync"), ("db", "upgrade"), ("db", "current")):
        result = cli("--db", str(path), *args)
        assert (result.exit_code, result.traceback) == (1, None), args
        assert result.stderr == (
            f"error: the database at sqlite:///{path} holds tables that are not an advisor "
            "catalog; refusing to use or change it\n"
        ), args
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
