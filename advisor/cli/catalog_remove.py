"""`advisor catalog remove …`: remove a GPU, a model or a training recipe."""

from __future__ import annotations

import typer

from advisor.cli import shared
from advisor.cli.catalog_entities import (
    GPU,
    MODEL,
    RECIPE,
    Entity,
    NameArgument,
    RecipeNameArgument,
    YesOption,
)

app = typer.Typer(help="Remove a GPU, a model or a training recipe.", no_args_is_help=True)


def _remove(ctx: typer.Context, entity: Entity, *, name: str, yes: bool) -> None:
    """Look the row up, ask (outside any transaction, so no lock is held while the user
    thinks), then remove it by slug in a write transaction of its own."""
    with shared.opened(ctx) as catalog:
        with catalog.reading() as session:
            row = entity.query("get")(session, name=name)
            slug, label = row.slug, row.name
        if not yes and not shared.confirm(
            f"Remove {entity.kind} {slug!r} ({label}) from the catalog?"
        ):
            raise typer.Exit(1)
        with catalog.session() as session:
            entity.query("remove")(session, name=slug)
    shared.note(f"removed {entity.kind} {slug!r}")


@app.command("gpu")
def remove_gpu(ctx: typer.Context, name: NameArgument, yes: YesOption = False) -> None:
    """Remove a GPU (asks first unless --yes)."""
    _remove(ctx, GPU, name=name, yes=yes)


@app.command("model")
def remove_model(ctx: typer.Context, name: NameArgument, yes: YesOption = False) -> None:
    """Remove a model (asks first unless --yes)."""
    _remove(ctx, MODEL, name=name, yes=yes)


@app.command("recipe")
def remove_recipe(ctx: typer.Context, name: RecipeNameArgument, yes: YesOption = False) -> None:
    """Remove a training recipe (asks first unless --yes; `catalog sync` does not bring a
    removed bundled recipe back)."""
    _remove(ctx, RECIPE, name=name, yes=yes)
