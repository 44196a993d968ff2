"""`advisor fit`: which cards, how many, at which quantization.

Not built yet: the estimator and the advisor are open issues. Until then the command resolves
the model in the catalog, so names and the catalog can be checked, and says so plainly.
"""

from __future__ import annotations

from typing import Annotated

import typer

from advisor.cli import shared


def fit(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", help="Model slug or alias, e.g. llama-65b.")],
    stage: Annotated[
        str, typer.Option("--stage", help="inference, finetune or pretrain.")
    ] = "inference",
) -> None:
    """Which GPUs, how many and at which quantization a model needs (not built yet)."""
    from catalog import queries

    with shared.session(ctx) as session:
        row = queries.get_model(session, name=model)
        name, params, layers = row.name, row.params, row.num_hidden_layers
        hidden = row.hidden_size
    typer.echo(f"{name}: {params:,} parameters, {layers} layers, hidden size {hidden}")
    shared.note(
        f"the fit advisor ({stage}) is not built yet: the catalog entry above is all "
        "this version can show"
    )
