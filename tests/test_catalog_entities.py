"""The catalog's editable kinds (advisor/cli/catalog_entities.py): every field of a kind's
table is an option of its `add` and `update` commands, spelled and documented as the table
says, and every query function its generic path calls exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_type_hints

import pytest
from sqlmodel import SQLModel

from advisor.cli import catalog_add, catalog_update
from advisor.cli.catalog_entities import GPU, MODEL, RECIPE, Entity
from catalog import queries, tables

COMMANDS: list[tuple[Entity, Callable[..., Any], Callable[..., Any]]] = [
    (GPU, catalog_add.add_gpu, catalog_update.update_gpu),
    (MODEL, catalog_add.add_model, catalog_update.update_model),
    (RECIPE, catalog_add.add_recipe, catalog_update.update_recipe),
]


@pytest.mark.parametrize(
    ("entity", "add", "update"), COMMANDS, ids=[entity.kind for entity, _, _ in COMMANDS]
)
def test_every_field_is_an_option_of_add_and_update(
    entity: Entity, add: Callable[..., Any], update: Callable[..., Any]
) -> None:
    """Each field is a parameter of that name whose option has the table's flag (a --x/--no-x
    switch for a boolean) and help text."""
    for command in (add, update):
        hints = get_type_hints(command, include_extras=True)
        for field in entity.fields:
            assert field.field in hints, (command.__name__, field.field)
            info = hints[field.field].__metadata__[0]
            flag = f"{field.flag}/--no-{field.flag[2:]}" if field.type is bool else field.flag
            # In an Annotated option, typer keeps the first flag where a default would go.
            assert ((info.default, *info.param_decls), info.help) == ((flag,), field.help)


@pytest.mark.parametrize("entity", [GPU, MODEL, RECIPE], ids=lambda e: e.kind)
def test_every_entity_names_its_query_functions_and_create_model(entity: Entity) -> None:
    """The generic show/add/update/remove paths find each function they call."""
    for verb in ("get", "add", "update", "remove"):
        assert entity.query(verb) is getattr(queries, f"{verb}_{entity.table}")
    assert issubclass(getattr(tables, entity.create), SQLModel)
