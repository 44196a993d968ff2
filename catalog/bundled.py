"""The data shipped with the package, and bringing it into a user's catalog.

`sync` inserts bundled rows the catalog lacks and refreshes bundled rows the user never
touched; rows the user added, edited or removed stay as the user left them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.resources.abc import Traversable
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, SQLModel, select

from advisor.errors import DatabaseError
from catalog import queries
from catalog.bundled_files import DIGEST_KEY as DIGEST_KEY
from catalog.bundled_files import data_files, digest
from catalog.tables import (
    GPU,
    ORIGIN_BUNDLED,
    CatalogMeta,
    FamilyCreate,
    GPUCreate,
    LanguageModel,
    ModelCreate,
    ModelFamily,
    QuantCreate,
    QuantFormat,
)


@dataclass(frozen=True)
class BundledData:
    families: tuple[FamilyCreate, ...]
    models: tuple[ModelCreate, ...]
    gpus: tuple[GPUCreate, ...]
    quants: tuple[QuantCreate, ...]


def _rows(file: Traversable, key: str) -> list[dict[str, Any]]:
    content = json.loads(file.read_text(encoding="utf-8"))
    rows = content.get(key, [])
    if not isinstance(rows, list):
        raise DatabaseError(f"bundled data {file.name}: {key!r} must be a list")
    return rows


@cache
def load() -> BundledData:
    """Every bundled row, validated. Bad bundled data is a packaging bug: DatabaseError."""
    families: list[FamilyCreate] = []
    models: list[ModelCreate] = []
    gpus: list[GPUCreate] = []
    quants: list[QuantCreate] = []
    targets: list[tuple[str, type[SQLModel], list[Any]]] = [
        ("families", FamilyCreate, families),
        ("models", ModelCreate, models),
        ("gpus", GPUCreate, gpus),
        ("quants", QuantCreate, quants),
    ]
    for file in data_files():
        for key, model, out in targets:
            for index, row in enumerate(_rows(file, key)):
                try:
                    out.append(model.model_validate(row))
                except ValidationError as error:
                    raise DatabaseError(
                        f"bundled data {file.name} {key}[{index}] "
                        f"({row.get('slug', '?')}): {queries.validation_message(error)}"
                    ) from None
    return BundledData(tuple(families), tuple(models), tuple(gpus), tuple(quants))


@dataclass
class SyncResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)  # user-edited rows left alone
    not_restored: list[str] = field(default_factory=list)  # bundled rows the user removed


def _sync_kind(
    session: Session,
    result: SyncResult,
    *,
    kind: str,
    table: type[Any],
    rows: tuple[Any, ...],
    current: Callable[[Any], dict[str, Any]],
    add: Callable[[Any], object],
    update: Callable[[str, dict[str, Any]], object],
) -> None:
    removed = queries.removed_bundled(session, kind=kind)
    existing = {row.slug: row for row in session.exec(select(table)).all()}
    for data in rows:
        row = existing.get(data.slug)
        if row is None:
            if data.slug in removed:
                result.not_restored.append(f"{kind} {data.slug}")
            else:
                add(data)
                result.added += 1
            continue
        if row.origin != ORIGIN_BUNDLED or row.user_modified:
            if current(row) != data.model_dump():
                result.kept.append(f"{kind} {data.slug}")
            else:
                result.unchanged += 1
            continue
        wanted = data.model_dump()
        if current(row) == wanted:
            result.unchanged += 1
        else:
            update(data.slug, wanted)
            result.updated += 1


def sync(session: Session) -> SyncResult:
    """Bring the bundled rows into the catalog without overwriting the user's changes."""
    data = load()
    result = SyncResult()
    _sync_kind(
        session,
        result,
        kind="family",
        table=ModelFamily,
        rows=data.families,
        current=lambda row: FamilyCreate.model_validate(row).model_dump(),
        add=lambda d: queries.add_family(session, data=d, origin=ORIGIN_BUNDLED),
        update=lambda slug, values: queries.update_family(
            session, name=slug, changes=values, by_user=False
        ),
    )
    _sync_kind(
        session,
        result,
        kind="model",
        table=LanguageModel,
        rows=data.models,
        current=lambda row: queries.model_public(session, model=row).model_dump(),
        add=lambda d: queries.add_model(session, data=d, origin=ORIGIN_BUNDLED),
        update=lambda slug, values: queries.update_model(
            session, name=slug, changes=values, by_user=False
        ),
    )
    _sync_kind(
        session,
        result,
        kind="gpu",
        table=GPU,
        rows=data.gpus,
        current=lambda row: queries.gpu_public(session, gpu=row).model_dump(),
        add=lambda d: queries.add_gpu(session, data=d, origin=ORIGIN_BUNDLED),
        update=lambda slug, values: queries.update_gpu(
            session, name=slug, changes=values, by_user=False
        ),
    )
    _sync_kind(
        session,
        result,
        kind="quant",
        table=QuantFormat,
        rows=data.quants,
        current=lambda row: QuantCreate.model_validate(row).model_dump(),
        add=lambda d: queries.add_quant(session, data=d, origin=ORIGIN_BUNDLED),
        update=lambda slug, values: queries.update_quant(
            session, name=slug, changes=values, by_user=False
        ),
    )
    meta = session.get(CatalogMeta, DIGEST_KEY) or CatalogMeta(key=DIGEST_KEY, value="")
    meta.value = digest()
    session.add(meta)
    session.flush()
    return result


def has_unsynced_changes(session: Session) -> bool:
    """True when this advisor ships bundled data the catalog has not been synced with."""
    meta = session.get(CatalogMeta, DIGEST_KEY)
    return meta is None or meta.value != digest()
