"""`advisor catalog show …`: every field of one GPU, model or training recipe."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Annotated, Any

import typer

from advisor.cli import shared
from advisor.cli.catalog_entities import (
    GPU,
    MODEL,
    RECIPE,
    Entity,
    JsonOption,
    UnitsOption,
    gpu_pairs,
    model_pairs,
    recipe_pairs,
    show_table,
)
from advisor.units import Units

app = typer.Typer(
    help="Show every field of one GPU, model or training recipe.", no_args_is_help=True
)


def _show(
    ctx: typer.Context,
    entity: Entity,
    name: str,
    *,
    as_json: bool,
    pairs: Callable[[Any], Sequence[tuple[str, str]]],
) -> None:
    """Look the row up in a read-only transaction; print its public view as JSON, or its
    `pairs` under its shown name."""
    from catalog import queries
    from catalog.rules import shown_name

    with shared.reading(ctx) as session:
        row = entity.query("get")(session, name=name)
        view = queries.public(session, row=row)
        title = shown_name(view.name, row.origin)
    if as_json:
        shared.print_json(view.model_dump(mode="json"))
        return
    show_table(title, pairs(view))


@app.command("gpu")
def show_gpu(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug or any alias: rtx4090, 'RTX 4090', 4090.", metavar="NAME")
    ],
    units: UnitsOption = Units.gib,
    as_json: JsonOption = False,
) -> None:
    """Show one GPU."""
    _show(ctx, GPU, name, as_json=as_json, pairs=partial(gpu_pairs, units=units))


@app.command("model")
def show_model(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug or any alias: llama-2-7b, Llama-2-7b-hf.", metavar="NAME")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show one model."""
    _show(ctx, MODEL, name, as_json=as_json, pairs=model_pairs)


@app.command("recipe")
def show_recipe(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug or name: unsloth, 'Unsloth notebook QLoRA'.", metavar="NAME")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show one training recipe: each option it fills, its source."""
    _show(ctx, RECIPE, name, as_json=as_json, pairs=recipe_pairs)
