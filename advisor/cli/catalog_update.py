"""`advisor catalog update …`: change fields of a GPU, a model or a training recipe."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import shared
from advisor.cli.catalog_entities import (
    GPU,
    GPU_FIELDS,
    MODEL,
    MODEL_FIELDS,
    RECIPE,
    RECIPE_FIELDS,
    AddAliasOption,
    ArchOption,
    ClearOption,
    Entity,
    NameArgument,
    RecipeNameArgument,
    RemoveAliasOption,
    arch_options,
    clears,
    flagged,
    option,
    values,
)
from advisor.enums import LinkKind, Market, ModelType, Vendor
from advisor.errors import InvalidValueError
from advisor.workload import (
    Attention,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Precision,
    TrainingOffload,
)

if TYPE_CHECKING:
    from sqlmodel import Session

app = typer.Typer(
    help="Change fields of a GPU, a model or a training recipe.", no_args_is_help=True
)


def _update(
    ctx: typer.Context,
    entity: Entity,
    target: str,
    given: Mapping[str, Any],
    *,
    clear: Sequence[str] | None,
    add_alias: Sequence[str] | None = None,
    remove_alias: Sequence[str] | None = None,
    read: Callable[[Session], dict[str, Any]] | None = None,
) -> None:
    """Change the fields given (and `read`'s, computed from the stored row) in one
    transaction, re-validated together; a problem names its option."""
    changes = {**values(entity.fields, given), **clears(entity.fields, clear)}
    if not changes and not add_alias and not remove_alias and read is None:
        raise InvalidValueError("nothing to change: give at least one option")
    edits = (
        {"add_aliases": add_alias or (), "remove_aliases": remove_alias or ()}
        if entity.aliases
        else {}
    )
    with shared.session(ctx) as session:
        if read is not None:
            changes.update(read(session))
        try:
            row = entity.query("update")(session, name=target, changes=changes, **edits)
        except InvalidValueError as error:
            raise flagged(error, entity.fields) from None
        slug = row.slug
    shared.note(f"updated {entity.kind} {slug!r}")


@app.command("gpu")
def update_gpu(
    ctx: typer.Context,
    target: NameArgument,
    slug: Annotated[str | None, option(GPU_FIELDS, "slug")] = None,
    name: Annotated[str | None, option(GPU_FIELDS, "name")] = None,
    vendor: Annotated[Vendor | None, option(GPU_FIELDS, "vendor")] = None,
    architecture: Annotated[str | None, option(GPU_FIELDS, "architecture")] = None,
    market: Annotated[Market | None, option(GPU_FIELDS, "market")] = None,
    memory_bytes: Annotated[str | None, option(GPU_FIELDS, "memory_bytes")] = None,
    memory_type: Annotated[str | None, option(GPU_FIELDS, "memory_type")] = None,
    bandwidth_bytes_per_s: Annotated[
        str | None, option(GPU_FIELDS, "bandwidth_bytes_per_s")
    ] = None,
    fp16_tflops: Annotated[float | None, option(GPU_FIELDS, "fp16_tflops")] = None,
    fp8_tflops: Annotated[float | None, option(GPU_FIELDS, "fp8_tflops")] = None,
    int8_tops: Annotated[float | None, option(GPU_FIELDS, "int8_tops")] = None,
    interconnect: Annotated[str | None, option(GPU_FIELDS, "interconnect")] = None,
    interconnect_bytes_per_s: Annotated[
        str | None, option(GPU_FIELDS, "interconnect_bytes_per_s")
    ] = None,
    release_year: Annotated[int | None, option(GPU_FIELDS, "release_year")] = None,
    list_price_usd: Annotated[float | None, option(GPU_FIELDS, "list_price_usd")] = None,
    list_price_date: Annotated[str | None, option(GPU_FIELDS, "list_price_date")] = None,
    cloud_price_per_hour_usd: Annotated[
        float | None, option(GPU_FIELDS, "cloud_price_per_hour_usd")
    ] = None,
    cloud_price_date: Annotated[str | None, option(GPU_FIELDS, "cloud_price_date")] = None,
    usable_memory_fraction: Annotated[
        float | None, option(GPU_FIELDS, "usable_memory_fraction")
    ] = None,
    source: Annotated[str | None, option(GPU_FIELDS, "source")] = None,
    notes: Annotated[str | None, option(GPU_FIELDS, "notes")] = None,
    max_per_node: Annotated[int | None, option(GPU_FIELDS, "max_per_node")] = None,
    link: Annotated[LinkKind | None, option(GPU_FIELDS, "link")] = None,
    multi_node: Annotated[bool | None, option(GPU_FIELDS, "multi_node")] = None,
    default_set: Annotated[bool | None, option(GPU_FIELDS, "default_set")] = None,
    default_set_reason: Annotated[str | None, option(GPU_FIELDS, "default_set_reason")] = None,
    add_alias: AddAliasOption = None,
    remove_alias: RemoveAliasOption = None,
    clear: ClearOption = None,
) -> None:
    """Change fields of a GPU; only the options given change."""
    # Every field option is a parameter named after its field.
    _update(ctx, GPU, target, locals(), clear=clear, add_alias=add_alias, remove_alias=remove_alias)


@app.command("model")
def update_model(
    ctx: typer.Context,
    target: NameArgument,
    slug: Annotated[str | None, option(MODEL_FIELDS, "slug")] = None,
    name: Annotated[str | None, option(MODEL_FIELDS, "name")] = None,
    family: Annotated[str | None, option(MODEL_FIELDS, "family")] = None,
    model_type: Annotated[ModelType | None, option(MODEL_FIELDS, "model_type")] = None,
    params: Annotated[int | None, option(MODEL_FIELDS, "params")] = None,
    num_hidden_layers: Annotated[int | None, option(MODEL_FIELDS, "num_hidden_layers")] = None,
    hidden_size: Annotated[int | None, option(MODEL_FIELDS, "hidden_size")] = None,
    num_attention_heads: Annotated[int | None, option(MODEL_FIELDS, "num_attention_heads")] = None,
    num_key_value_heads: Annotated[int | None, option(MODEL_FIELDS, "num_key_value_heads")] = None,
    head_dim: Annotated[int | None, option(MODEL_FIELDS, "head_dim")] = None,
    intermediate_size: Annotated[int | None, option(MODEL_FIELDS, "intermediate_size")] = None,
    vocab_size: Annotated[int | None, option(MODEL_FIELDS, "vocab_size")] = None,
    max_position_embeddings: Annotated[
        int | None, option(MODEL_FIELDS, "max_position_embeddings")
    ] = None,
    tie_word_embeddings: Annotated[bool | None, option(MODEL_FIELDS, "tie_word_embeddings")] = None,
    num_experts: Annotated[int | None, option(MODEL_FIELDS, "num_experts")] = None,
    num_experts_per_tok: Annotated[int | None, option(MODEL_FIELDS, "num_experts_per_tok")] = None,
    n_shared_experts: Annotated[int | None, option(MODEL_FIELDS, "n_shared_experts")] = None,
    moe_intermediate_size: Annotated[
        int | None, option(MODEL_FIELDS, "moe_intermediate_size")
    ] = None,
    first_k_dense_replace: Annotated[
        int | None, option(MODEL_FIELDS, "first_k_dense_replace")
    ] = None,
    sliding_window: Annotated[int | None, option(MODEL_FIELDS, "sliding_window")] = None,
    num_sliding_layers: Annotated[int | None, option(MODEL_FIELDS, "num_sliding_layers")] = None,
    q_lora_rank: Annotated[int | None, option(MODEL_FIELDS, "q_lora_rank")] = None,
    kv_lora_rank: Annotated[int | None, option(MODEL_FIELDS, "kv_lora_rank")] = None,
    qk_nope_head_dim: Annotated[int | None, option(MODEL_FIELDS, "qk_nope_head_dim")] = None,
    qk_rope_head_dim: Annotated[int | None, option(MODEL_FIELDS, "qk_rope_head_dim")] = None,
    v_head_dim: Annotated[int | None, option(MODEL_FIELDS, "v_head_dim")] = None,
    native_dtype: Annotated[str | None, option(MODEL_FIELDS, "native_dtype")] = None,
    source: Annotated[str | None, option(MODEL_FIELDS, "source")] = None,
    notes: Annotated[str | None, option(MODEL_FIELDS, "notes")] = None,
    add_alias: AddAliasOption = None,
    remove_alias: RemoveAliasOption = None,
    clear: ClearOption = None,
    arch_option: ArchOption = None,
) -> None:
    """Change fields of a model; changing the architecture recomputes the parameter count unless
    --params is given."""
    from catalog import queries

    def merged_arch_options(session: Session) -> dict[str, Any]:
        current = queries.get_model(session, name=target).arch_options or {}
        return {"arch_options": {**current, **arch_options(arch_option or ())}}

    # Every field option is a parameter named after its field.
    _update(
        ctx,
        MODEL,
        target,
        locals(),
        clear=clear,
        add_alias=add_alias,
        remove_alias=remove_alias,
        read=merged_arch_options if arch_option else None,
    )


@app.command("recipe")
def update_recipe(
    ctx: typer.Context,
    target: RecipeNameArgument,
    slug: Annotated[str | None, option(RECIPE_FIELDS, "slug")] = None,
    name: Annotated[str | None, option(RECIPE_FIELDS, "name")] = None,
    framework: Annotated[str | None, option(RECIPE_FIELDS, "framework")] = None,
    description: Annotated[str | None, option(RECIPE_FIELDS, "description")] = None,
    source: Annotated[str | None, option(RECIPE_FIELDS, "source")] = None,
    method: Annotated[Method | None, option(RECIPE_FIELDS, "method")] = None,
    precision: Annotated[Precision | None, option(RECIPE_FIELDS, "precision")] = None,
    optimizer: Annotated[Optimizer | None, option(RECIPE_FIELDS, "optimizer")] = None,
    optimizer_in_backward: Annotated[
        bool | None, option(RECIPE_FIELDS, "optimizer_in_backward")
    ] = None,
    checkpointing: Annotated[Checkpointing | None, option(RECIPE_FIELDS, "checkpointing")] = None,
    loss: Annotated[Loss | None, option(RECIPE_FIELDS, "loss")] = None,
    offload: Annotated[TrainingOffload | None, option(RECIPE_FIELDS, "offload")] = None,
    lora_dtype: Annotated[LoraDtype | None, option(RECIPE_FIELDS, "lora_dtype")] = None,
    lora_targets: Annotated[str | None, option(RECIPE_FIELDS, "lora_targets")] = None,
    lora_rank: Annotated[int | None, option(RECIPE_FIELDS, "lora_rank")] = None,
    attention: Annotated[Attention | None, option(RECIPE_FIELDS, "attention")] = None,
    parallel: Annotated[str | None, option(RECIPE_FIELDS, "parallel")] = None,
    batch: Annotated[int | None, option(RECIPE_FIELDS, "batch")] = None,
    seq: Annotated[int | None, option(RECIPE_FIELDS, "seq")] = None,
    notes: Annotated[str | None, option(RECIPE_FIELDS, "notes")] = None,
    clear: ClearOption = None,
) -> None:
    """Change fields of a training recipe; only the options given change (--clear FIELD
    leaves an option to the user again)."""
    # Every field option is a parameter named after its field.
    _update(ctx, RECIPE, target, locals(), clear=clear)
