"""Exporting the catalog to JSON or CSV, and importing such a file all-or-nothing.

JSON: `{"format": "gpu-fit-advisor-catalog", "version": 1, "families": [...], "models": [...],
"gpus": [...], "quants": [...]}`, each row as `catalog show … --json` prints it.
CSV: one row per catalog row, a leading `table` column (family, model, gpu, quant) and the
union of the fields of the kinds exported; lists and objects are JSON text in their cell,
empty cells are null.

An import validates every row before it writes anything; an error names the row and the
field. Rows whose slug exists are updated (and marked as changed by the user), new rows added.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
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


# --- reading files -------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedRow:
    kind: Kind
    where: str  # "gpus[3]" or "line 7", for error messages
    values: dict[str, Any]


def parse(text: str, *, filename: str) -> list[ParsedRow]:
    """Rows of a JSON or CSV export (told apart by content); ImportFileError if malformed."""
    if text.lstrip().startswith("{"):
        return _parse_json(text, filename)
    return _parse_csv(text, filename)


def _parse_json(text: str, filename: str) -> list[ParsedRow]:
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise ImportFileError(
            f"{filename}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if content.get("format") != FORMAT_NAME:
        raise ImportFileError(
            f'{filename}: not an advisor catalog export (expected "format": "{FORMAT_NAME}")'
        )
    if content.get("version") != FORMAT_VERSION:
        raise ImportFileError(f"{filename}: unsupported export version {content.get('version')!r}")
    unknown = set(content) - {"format", "version"} - {kind.value for kind in Kind}
    if unknown:
        raise ImportFileError(f"{filename}: unknown section {sorted(unknown)[0]!r}")
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
    return rows


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
                    f"{filename} {where}: table {cells[0]!r} is not family, model, gpu or quant"
                )
            known = set(_fields(kind))
            values: dict[str, Any] = {}
            for column, cell in zip(header[1:], cells[1:], strict=True):
                if cell == "":
                    continue
                if column not in known:
                    raise ImportFileError(
                        f"{filename} {where}: column {column!r} does not apply to a {cells[0]}"
                    )
                values[column] = _uncell(column, cell, filename, where)
            rows.append(ParsedRow(kind, where, values))
    except csv.Error as error:
        raise ImportFileError(f"{filename}: malformed CSV: {error}") from None
    return rows


def _uncell(column: str, cell: str, filename: str, where: str) -> Any:
    if column in ("aliases", "arch_options"):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            raise ImportFileError(
                f"{filename} {where}: {column}: not valid JSON: {cell!r}"
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
            raise ImportFileError(f"{filename} {row.where}: unknown field {sorted(unknown)[0]!r}")
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


def import_rows(
    session: Session, *, rows: Sequence[ParsedRow], filename: str, replace: bool = False
) -> ImportResult:
    """Validate every row, then apply them; on any error raise and write nothing (the caller's
    transaction is rolled back). With `replace`, rows absent from the file are removed."""
    order = list(Kind)
    validated = sorted(_validated(rows, filename), key=lambda pair: order.index(pair[0].kind))
    result = ImportResult()
    tables: dict[Kind, type[Any]] = {
        Kind.families: ModelFamily,
        Kind.models: LanguageModel,
        Kind.gpus: GPU,
        Kind.quants: QuantFormat,
    }
    existing = {
        kind: {row.slug for row in session.exec(select(table)).all()}
        for kind, table in tables.items()
    }
    for row, data in validated:
        try:
            _apply_row(session, row.kind, data, existing[row.kind], result)
        except (ConflictError, InvalidValueError, NotFoundError) as error:
            raise ImportFileError(f"{filename} {row.where} ({data.slug}): {error}") from None
    if replace:
        in_file = {(row.kind, data.slug) for row, data in validated}
        removers: dict[Kind, Callable[..., object]] = {
            Kind.models: queries.remove_model,
            Kind.gpus: queries.remove_gpu,
            Kind.quants: queries.remove_quant,
            Kind.families: queries.remove_family,
        }
        for kind in (Kind.models, Kind.gpus, Kind.quants, Kind.families):
            for slug in sorted(existing[kind]):
                if (kind, slug) not in in_file:
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
