"""The stdlib read path (catalog/reader.py) answers exactly as the SQLModel path, falls back to
the full open whenever the file is not current, and never reads stale rows after a write."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from advisor.enums import Market, Vendor
from advisor.errors import AmbiguousNameError, DatabaseError, NotFoundError
from catalog import bundled, migrate, queries
from catalog.bundled_files import DIGEST_KEY
from catalog.location import SCHEMA_HEAD, plain_sqlite_file
from catalog.reader import (
    CatalogReader,
    GPURecord,
    QuantRecord,
    RecipeRecord,
    SessionReader,
    SQLiteReader,
    open_reader,
)
from catalog.session import Catalog, OpenReport, make_engine, open_catalog
from catalog.tables import GPUCreate, GPUFields, QuantFields

CARD: dict[str, Any] = {
    "slug": "test-card",
    "name": "Testing Card 9000",
    "vendor": "nvidia",
    "architecture": "Test",
    "market": "consumer",
    "memory_bytes": 24 * 2**30,
    "bandwidth_bytes_per_s": 1_000_000_000_000,
    "source": "a test",
    "aliases": ["TC 9000"],
}

# Names that exercise every resolution rule: slugs, aliases, case, spaces and punctuation,
# dots that tell sizes apart, near misses with suggestions, substrings, and nothing at all.
TRICKY_NAMES = (
    "rtx4090",
    "RTX-4090",
    "rtx 4090",
    "GeForce RTX 4090",
    "rtx4900",
    "h100",
    "H100 SXM",
    "a100",
    "m1",
    "llama-65b",
    "LLaMA 65B",
    "lama-2-7b",
    "llama-2-7b",
    "opt-1.3b",
    "opt-13b",
    "mixtral",
    "deepseek",
    "q4_k_m",
    "Q4-K-M",
    "int4",
    "NF4",
    "gptq",
    "fp8",
    "llama",
    "Meta",
    "qwen",
    "4090",
    "xyz",
    "unslot",
    "TorchTitan",
    "common finetune",
    "",
    " ",
    "-",
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seeded catalog file for this module; tests copy it rather than seed again."""
    path = tmp_path_factory.mktemp("template") / "catalog.db"
    open_catalog(str(path)).close()
    return path


@pytest.fixture
def catalog_file(template: Path, isolated_database: Path) -> Path:
    """This test's own copy of the seeded catalog, at the path ADVISOR_DB names."""
    shutil.copyfile(template, isolated_database)
    return isolated_database


@dataclass
class Paths:
    """The stdlib reader and the SQLModel reader on the same file, and the SQLModel session."""

    fast: CatalogReader
    slow: CatalogReader
    session: Session


@pytest.fixture
def both(catalog_file: Path) -> Iterator[Paths]:
    full = open_catalog(str(catalog_file))
    try:
        with open_reader(str(catalog_file)) as fast, full.session() as session:
            assert isinstance(fast, SQLiteReader)
            yield Paths(fast, SessionReader(session), session)
    finally:
        full.close()


@contextmanager
def _session() -> Iterator[Session]:
    """A SQLModel session on this test's catalog, for writes."""
    catalog = open_catalog(None)
    try:
        with catalog.session() as session:
            yield session
    finally:
        catalog.close()


def _outcome(call: Callable[[], Any]) -> Any:
    """The value, or the error's class, message and suggestions."""
    try:
        return call()
    except NotFoundError as error:
        return (type(error), str(error), error.suggestions)
    except AmbiguousNameError as error:  # 'a100': both paths list the same candidates
        return (type(error), str(error), error.candidates)


def _filters() -> list[dict[str, Any]]:
    vendors: list[Vendor | None] = [None, *Vendor]
    markets: list[Market | None] = [None, *Market]
    return [{"vendor": v, "market": m} for v, m in itertools.product(vendors, markets)]


def test_every_gpu_equal(both: Paths) -> None:
    """Every GPU, every listing filter and the current-cards selection: same records, same order."""
    fast, slow = both.fast, both.slow
    slugs = [gpu.slug for gpu in slow.gpus()]
    assert len(slugs) > 20
    for slug in slugs:
        assert fast.gpu(slug) == slow.gpu(slug)
    for filters in _filters():
        assert fast.gpus(**filters) == slow.gpus(**filters)
        assert fast.current_gpus(**filters) == slow.current_gpus(**filters)
    # and the records are the rows' own values
    for row in queries.list_gpus(both.session):
        assert fast.gpu(row.slug)._asdict() == {f: getattr(row, f) for f in GPURecord._fields}


def test_every_model_equal(both: Paths) -> None:
    """Every model (architecture included), and the listing for every family."""
    fast, slow = both.fast, both.slow
    models = slow.models()
    assert len(models) > 50
    assert fast.models() == models
    for model in models:
        assert fast.model(model.slug) == slow.model(model.slug)
    for family in sorted({m.family for m in models}):
        assert fast.models(family=family) == slow.models(family=family)
    for row, family in queries.list_models_with_family(both.session):
        record = fast.model(row.slug)
        assert (record.family, record.params, record.active_params, record.architecture) == (
            family,
            row.params,
            row.active_params,
            row.architecture(),
        )


def test_every_quant_equal(both: Paths) -> None:
    """Every quantization format, and the weight format the estimator gets from it."""
    fast, slow = both.fast, both.slow
    rows = queries.list_quants(both.session)
    assert len(rows) > 20
    for row in rows:
        assert fast.quant(row.slug) == slow.quant(row.slug)
        assert fast.quant(row.slug)._asdict() == {f: getattr(row, f) for f in QuantRecord._fields}
        format_ = fast.quant(row.slug).weight_format()
        assert (format_.slug, format_.bits_per_weight, format_.scope) == (
            row.slug,
            row.bits_per_weight,
            row.scope,
        )


def test_every_recipe_equal(both: Paths) -> None:
    """Every training recipe, column for column, and the core's view of it."""
    fast, slow = both.fast, both.slow
    rows = queries.list_recipes(both.session)
    assert len(rows) == len(bundled.load().recipes) >= 8
    for row in rows:
        assert fast.recipe(row.slug) == slow.recipe(row.slug)
        assert fast.recipe(row.slug)._asdict() == {f: getattr(row, f) for f in RecipeRecord._fields}
        recipe = fast.recipe(row.name).recipe()
        assert (recipe.slug, recipe.checkpointing, recipe.parallel) == (
            row.slug,
            row.checkpointing,
            row.parallel,
        )


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_names_resolve_alike(both: Paths, name: str) -> None:
    """Each tricky name finds the same row, or fails with the same message and suggestions."""
    for lookup in ("gpu", "model", "quant", "recipe"):
        fast, slow = getattr(both.fast, lookup), getattr(both.slow, lookup)
        assert _outcome(partial(fast, name)) == _outcome(partial(slow, name)), lookup
    assert _outcome(partial(both.fast.models, family=name)) == _outcome(
        partial(both.slow.models, family=name)
    )


def test_unknown_gpu_message(both: Paths) -> None:
    """A near miss says what it did not find and offers the closest card."""
    with pytest.raises(NotFoundError) as error:
        both.fast.gpu("rtx4900")
    assert str(error.value).startswith("unknown GPU 'rtx4900'; did you mean 'rtx4090'")


def test_records_cover_the_tables() -> None:
    """A column added to GPUs or formats must be added to the records too (GPU records also
    carry the row's origin, which tables show)."""
    assert set(GPURecord._fields) == {*GPUFields.model_fields, "origin"}
    assert set(QuantRecord._fields) == set(QuantFields.model_fields)


def test_writes_are_seen_by_the_next_read(catalog_file: Path) -> None:
    """An add, an update and a removal through the SQLModel path show in the next read."""
    with open_reader() as reader:
        assert isinstance(reader, SQLiteReader)
        with pytest.raises(NotFoundError):
            reader.gpu("tc 9000")
    with _session() as session:
        queries.add_gpu(session, data=GPUCreate.model_validate(CARD))
    with open_reader() as reader:
        assert isinstance(reader, SQLiteReader)
        assert reader.gpu("tc 9000").memory_bytes == 24 * 2**30
    with _session() as session:
        queries.update_gpu(session, name="test-card", changes={"memory_bytes": 2**38})
    with open_reader() as reader:
        assert reader.gpu("TC-9000").memory_bytes == 2**38
        assert reader.gpus(vendor=Vendor.nvidia, market=Market.consumer)[0].slug == "test-card"
    with _session() as session:
        queries.remove_gpu(session, name="test-card")
    with open_reader() as reader, pytest.raises(NotFoundError):
        reader.gpu("test-card")


class _Announced:
    def __init__(self) -> None:
        self.reports: list[OpenReport] = []

    def __call__(self, catalog: Catalog) -> None:
        self.reports.append(catalog.report)


def test_missing_file_is_created_then_read(isolated_database: Path) -> None:
    """No file yet: the full open creates and seeds it, says so, and the rows are read."""
    announced = _Announced()
    with open_reader(announce=announced) as reader:
        assert isinstance(reader, SessionReader)
        assert reader.gpu("rtx4090").slug == "rtx4090"
    assert len(announced.reports) == 1
    assert announced.reports[0].created and announced.reports[0].seeded > 300
    with open_reader(announce=announced) as reader:
        assert isinstance(reader, SQLiteReader)
    assert len(announced.reports) == 1


def test_older_revision_is_upgraded_then_read(catalog_file: Path) -> None:
    """A catalog at an older schema goes through the full open (backup and upgrade) first."""
    engine = make_engine(f"sqlite:///{catalog_file}", foreign_keys=False)
    migrate.downgrade(engine, "0001")
    engine.dispose()
    announced = _Announced()
    with open_reader(announce=announced) as reader:
        assert isinstance(reader, SessionReader)
        assert reader.model("llama-65b").slug == "llama-65b"
    assert [r.upgraded_from for r in announced.reports] == ["0001"]
    # revision 0001 kept no digest of the bundled data: the full path reports the catalog
    # unsynced until `catalog sync`, so reads keep taking it until then
    with open_reader(announce=announced) as reader:
        assert isinstance(reader, SessionReader)
    assert announced.reports[-1].bundled_newer
    with _session() as session:
        bundled.sync(session)
    with open_reader() as reader:
        assert isinstance(reader, SQLiteReader)
    with sqlite3.connect(catalog_file) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    connection.close()
    assert revision == [(SCHEMA_HEAD,)]


def test_unsynced_bundled_data_takes_the_full_path(catalog_file: Path) -> None:
    """A catalog synced with other bundled data is judged by the full open (which says so)."""
    with sqlite3.connect(catalog_file) as connection:
        connection.execute("UPDATE catalog_meta SET value = 'older' WHERE key = ?", (DIGEST_KEY,))
    connection.close()
    announced = _Announced()
    with open_reader(announce=announced) as reader:
        assert isinstance(reader, SessionReader)
        assert reader.quant("q4_k_m").slug == "q4_k_m"
    assert [r.bundled_newer for r in announced.reports] == [True]
    with _session() as session:
        bundled.sync(session)
    with open_reader() as reader:
        assert isinstance(reader, SQLiteReader)


def test_in_memory_and_other_urls_use_sqlmodel() -> None:
    """In-memory SQLite and non-SQLite URLs go through SQLModel, errors included."""
    with open_reader("sqlite://") as reader:
        assert isinstance(reader, SessionReader)
        assert reader.gpu("rtx4090").slug == "rtx4090"
    with pytest.raises(DatabaseError) as error, open_reader("nosuchdb://somewhere"):
        pass
    assert str(error.value) == (
        "cannot use the database URL 'nosuchdb://somewhere': Can't load plugin: "
        "sqlalchemy.dialects:nosuchdb"
    )


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    """The full open's refusal, word for word; the file stays as it was."""
    path = tmp_path / "notes.db"
    path.write_bytes(b"garbage" * 100)
    with pytest.raises(DatabaseError) as error, open_reader(str(path)):
        pass
    assert str(error.value) == f"{path} is not a SQLite database; refusing to use or overwrite it"
    assert path.read_bytes() == b"garbage" * 100


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sqlite:////abs/catalog.db", Path("/abs/catalog.db")),
        ("sqlite:///rel.db", Path("rel.db")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///x.db?mode=ro", None),
        ("sqlite:///my%20file.db", None),
        ("sqlite+pysqlite:///x.db", None),
        ("postgresql://user@host/advisor", None),
    ],
)
def test_plain_sqlite_file(value: str, expected: Path | None) -> None:
    """Only URLs whose file is certain without SQLAlchemy take the stdlib path."""
    assert plain_sqlite_file(value) == expected


def test_plain_path_resolves_like_the_full_path(tmp_path: Path) -> None:
    """A plain path names the same file as session.resolve_url makes of it."""
    from catalog.session import resolve_url, sqlite_path

    value = str(tmp_path / "sub" / ".." / "c.db")
    assert plain_sqlite_file(value) == sqlite_path(resolve_url(value))


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "--model", "llama-65b", "--gpu", "rtx4090", "--json"],
        ["which-models", "--gpu", "rtx4090", "--json"],
        ["estimate", "--model", "llama-2-7b", "--quant", "q4_k_m", "--json"],
    ],
)
def test_read_only_commands_load_no_orm(catalog_file: Path, argv: list[str]) -> None:
    """On a current catalog, fit, which-models and estimate load neither SQLAlchemy, SQLModel
    nor pydantic (each costs a noticeable share of a cold start)."""
    code = (
        "import sys\nfrom advisor.cli import main\n"
        f"code = main({argv!r})\n"
        "print(code, sorted(m for m in ('sqlalchemy', 'sqlmodel', 'pydantic', 'alembic') "
        "if m in sys.modules), file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip().splitlines()[-1] == "0 []"
    assert result.stdout.startswith("{")


def test_an_unreadable_table_is_a_database_error(catalog_file: Path) -> None:
    """A table SQLite cannot read after the checks passed is one DatabaseError, not a trace."""
    with sqlite3.connect(catalog_file) as connection:
        connection.execute("DROP TABLE model_alias")
    connection.close()
    with pytest.raises(DatabaseError) as error, open_reader() as reader:
        reader.model("no-such-model")
    assert str(error.value) == (
        f"cannot read the database at {catalog_file}: no such table: model_alias"
    )
