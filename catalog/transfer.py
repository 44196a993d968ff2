"""Exporting the catalog to JSON or CSV, and importing such a file all-or-nothing.

JSON: `{"format": "gpu-fit-advisor-catalog", "version": 1, "families": [...], "models": [...],
"gpus": [...], "quants": [...]}`, each row as `catalog show … --json` prints it.
CSV: one row per catalog row, a leading `table` column (family, model, gpu, quant) and the
union of the fields of the kinds exported; lists and objects are JSON text in their cell,
empty cells are null.

An import validates every row before it writes anything; an error names the row and the
field. Rows whose slug exists are updated (and marked as changed by the user), new rows added.
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

from pydantic import ValidationError
from sqlalchemy.exc import StatementError
from sqlmodel import Session, SQLModel, select

from advisor.errors import ConflictError, ImportFileError, InvalidValueError, NotFoundError
from catalog import queries
from catalog.tables import (
    GPU,
    FamilyCreate,
    GPUCreate,
    LanguageModel,
    ModelCreate,
    ModelFamily,
    QuantCreate,
    QuantFormat,
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


_CSV_KIND = {Kind.families: "family", Kind.models: "model", Kind.gpus: "gpu", Kind.quants: "quant"}
_KIND_OF_CSV = {value: key for key, value in _CSV_KIND.items()}
_CREATE: dict[Kind, type[SQLModel]] = {
    Kind.families: FamilyCreate,
    Kind.models: ModelCreate,
    Kind.gpus: GPUCreate,
    Kind.quants: QuantCreate,
}
# Derived fields left out of exports: an import recomputes them.
_EXCLUDE: dict[Kind, set[str]] = {Kind.families: {"models"}}


def export_catalog(session: Session, *, kinds: Sequence[Kind] = tuple(Kind)) -> dict[str, Any]:
    """The catalog as plain JSON-ready data, rows sorted by slug."""
    out: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION}
    for kind in Kind:
        if kind not in kinds:
            continue
        if kind is Kind.families:
            rows = [
                f.model_dump(mode="json", exclude=_EXCLUDE[kind])
                for f in queries.list_families(session)
            ]
        elif kind is Kind.models:
            rows = [
                queries.model_public(session, model=m).model_dump(mode="json")
                for m in session.exec(select(LanguageModel)).all()
            ]
        elif kind is Kind.gpus:
            rows = [
                queries.gpu_public(session, gpu=g).model_dump(mode="json")
                for g in session.exec(select(GPU)).all()
            ]
        else:
            rows = [
                queries.quant_public(q).model_dump(mode="json")
                for q in session.exec(select(QuantFormat)).all()
            ]
        out[kind.value] = sorted(rows, key=lambda row: row["slug"])
    return out


def to_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _fields(kind: Kind) -> list[str]:
    return [name for name in _CREATE[kind].model_fields if name not in _EXCLUDE.get(kind, ())]


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
                    "is not family, model, gpu or quant"
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


def _validated(rows: Iterable[ParsedRow], filename: str) -> list[tuple[ParsedRow, Any]]:
    out: list[tuple[ParsedRow, Any]] = []
    seen: set[tuple[Kind, str]] = set()
    for row in rows:
        model = _CREATE[row.kind]
        unknown = set(row.values) - set(model.model_fields) - _EXCLUDE.get(row.kind, set())
        if unknown:
            raise ImportFileError(
                f"{filename} {row.where}: unknown field {_short(sorted(unknown)[0])}"
            )
        values = {k: v for k, v in row.values.items() if k not in _EXCLUDE.get(row.kind, ())}
        try:
            data = model.model_validate(values)
        except ValidationError as error:
            slug = row.values.get("slug")
            label = f" ({slug})" if isinstance(slug, str) else ""
            raise ImportFileError(
                f"{filename} {row.where}{label}: {queries.validation_message(error)}"
            ) from None
        key = (row.kind, data.slug)  # type: ignore[attr-defined]
        if key in seen:
            raise ImportFileError(f"{filename} {row.where}: duplicate slug {key[1]!r}")
        seen.add(key)
        out.append((row, data))
    return out


_TABLES: dict[Kind, type[Any]] = {
    Kind.families: ModelFamily,
    Kind.models: LanguageModel,
    Kind.gpus: GPU,
    Kind.quants: QuantFormat,
}
# Removal order of a replacing import: models before the families they belong to.
_REMOVAL_ORDER = (Kind.models, Kind.gpus, Kind.quants, Kind.families)


def removals(
    session: Session, *, rows: Sequence[ParsedRow], filename: str, kinds: Collection[Kind]
) -> list[tuple[Kind, str]]:
    """What a replacing import of `rows` would remove: the catalog's rows of `kinds` whose
    slugs the file lacks, in removal order. ImportFileError if a row is invalid."""
    return _removals(session, _validated(rows, filename), kinds)


def _removals(
    session: Session, validated: Sequence[tuple[ParsedRow, Any]], kinds: Collection[Kind]
) -> list[tuple[Kind, str]]:
    in_file = {(row.kind, data.slug) for row, data in validated}
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
    validated = sorted(_validated(rows, filename), key=lambda pair: order.index(pair[0].kind))
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
    for row, data in validated:
        try:
            _apply_row(session, row.kind, data, existing[row.kind], result)
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
        Kind.families: queries.remove_family,
    }
    for kind, slug in planned:
        removers[kind](session, name=slug)
        result.removed += 1
    return result


def _apply_row(
    session: Session, kind: Kind, data: Any, existing: set[str], result: ImportResult
) -> None:
    adders: dict[Kind, Callable[..., object]] = {
        Kind.families: queries.add_family,
        Kind.models: queries.add_model,
        Kind.gpus: queries.add_gpu,
        Kind.quants: queries.add_quant,
    }
    if data.slug not in existing:
        adders[kind](session, data=data)
        existing.add(data.slug)
        result.added += 1
        return
    before = _current(session, kind, data.slug)
    if before == data.model_dump():
        result.unchanged += 1
        return
    values = data.model_dump()
    if kind is Kind.families:
        queries.update_family(session, name=data.slug, changes=values)
    elif kind is Kind.models:
        queries.update_model(session, name=data.slug, changes=values)
    elif kind is Kind.gpus:
        queries.update_gpu(session, name=data.slug, changes=values)
    else:
        queries.update_quant(session, name=data.slug, changes=values)
    result.updated += 1


def _current(session: Session, kind: Kind, slug: str) -> dict[str, Any]:
    if kind is Kind.families:
        return FamilyCreate.model_validate(queries.get_family(session, name=slug)).model_dump()
    if kind is Kind.models:
        model = queries.get_model(session, name=slug)
        return queries.model_public(session, model=model).model_dump()
    if kind is Kind.gpus:
        return queries.gpu_public(session, gpu=queries.get_gpu(session, name=slug)).model_dump()
    return QuantCreate.model_validate(queries.get_quant(session, name=slug)).model_dump()
