"""`advisor catalog add …`: add a GPU, a model or a training recipe, one option per field."""

from __future__ import annotations

from pathlib import Path
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
    AliasOption,
    ArchOption,
    Entity,
    arch_options,
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
    from advisor.arch import Architecture

app = typer.Typer(help="Add a GPU, a model or a training recipe.", no_args_is_help=True)


def _add(
    ctx: typer.Context, entity: Entity, given: dict[str, Any], aliases: list[str] | None = None
) -> None:
    """Validate the row (a problem names its option), add it in one transaction, say so."""
    if entity.name_from_slug and "slug" in given:
        given.setdefault("name", given["slug"])
    if entity.aliases:
        given["aliases"] = aliases or []
    data = entity.validated(given)
    with shared.session(ctx) as session:
        row = entity.query("add")(session, data=data)
        slug, detail = row.slug, entity.added(row)
    shared.note(f"added {entity.kind} {slug!r}{detail}")


@app.command("gpu")
def add_gpu(
    ctx: typer.Context,
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
    alias: AliasOption = None,
) -> None:
    """Add a GPU: one option per field."""
    # Every field option is a parameter named after its field.
    _add(ctx, GPU, values(GPU_FIELDS, locals()), alias)


def _arch_fields(arch: Architecture, *, source: str) -> dict[str, Any]:
    """Catalog fields of an architecture read from a file, with where it was read."""
    import dataclasses

    fields = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)}
    fields["arch_options"] = dict(arch.arch_options)
    fields["source"] = source
    return fields


def _slug_of(label: str) -> str:
    """A slug made of a repo's or file's name: lowercase, other characters as '-'."""
    import re

    return re.sub(r"[^a-z0-9._-]+", "-", label.lower()).strip("-._") or "model"


def _config_fields(path: Path) -> dict[str, Any]:
    """Catalog fields read from a Hugging Face config.json."""
    from advisor.arch import (
        architecture_from_hf_config,
        load_hf_config,
        native_dtype_from_hf_config,
    )

    config = load_hf_config(path)
    try:
        arch = architecture_from_hf_config(config)
    except InvalidValueError as error:
        raise InvalidValueError(f"{path}: {error}") from None
    fields = _arch_fields(arch, source=f"config.json read from {path.resolve()}")
    fields["native_dtype"] = native_dtype_from_hf_config(config)
    return fields


def _hub_fields(repo_id: str, *, offline: bool) -> dict[str, Any]:
    """Catalog fields read from a Hub repo's config.json (or the local Hugging Face cache)."""
    import os

    from advisor.arch import native_dtype_from_hf_config
    from catalog.hub import HubSettings, looks_like_repo_id, read_hub

    if not looks_like_repo_id(repo_id):
        raise InvalidValueError(f"--from-hub needs a repo id as OWNER/NAME, got {repo_id!r}")
    found = read_hub(repo_id, HubSettings.from_env(os.environ, offline=offline))
    shared.note(found.message())
    fields = _arch_fields(found.architecture, source=found.source)
    fields["native_dtype"] = native_dtype_from_hf_config(found.config)
    fields["slug"] = _slug_of(repo_id.split("/", 1)[1])
    fields["name"] = repo_id
    return fields


def _gguf_fields(path: Path) -> dict[str, Any]:
    """Catalog fields read from a GGUF file's header (its architecture and context length)."""
    from advisor.gguf_file import read_gguf

    found = read_gguf(path)
    fields = _arch_fields(found.arch, source=f"GGUF header read from {path.resolve()}")
    fields["slug"] = _slug_of(found.label)
    fields["name"] = found.label
    return fields


FromGGUFOption = Annotated[
    Path | None,
    typer.Option(
        "--from-gguf",
        help="Read the architecture from a GGUF file's header (llama.cpp's format); other "
        "options override it.",
        exists=False,
        dir_okay=False,
    ),
]
FromHubOption = Annotated[
    str | None,
    typer.Option(
        "--from-hub",
        help="Read the architecture from a Hugging Face repo (OWNER/NAME): its config.json from "
        "the Hub or the local cache; the repo id and commit become the source.",
    ),
]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="With --from-hub: use only the local Hugging Face cache."),
]
FromConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--from-config",
        help="Read the architecture from a Hugging Face config.json; other options override it.",
        exists=False,
        dir_okay=False,
    ),
]


@app.command("model")
def add_model(
    ctx: typer.Context,
    from_config: FromConfigOption = None,
    from_hub: FromHubOption = None,
    from_gguf: FromGGUFOption = None,
    offline: OfflineOption = False,
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
    alias: AliasOption = None,
    arch_option: ArchOption = None,
) -> None:
    """Add a model: from a config.json, a Hub repo or a GGUF file, and/or one option per
    field."""
    # Every field option is a parameter named after its field.
    given = values(MODEL_FIELDS, locals())
    if sum(x is not None for x in (from_config, from_hub, from_gguf)) > 1:
        raise InvalidValueError("give one of --from-config, --from-hub and --from-gguf")
    read = _config_fields(from_config) if from_config else {}
    if from_gguf:
        read = _gguf_fields(from_gguf)
    aliases = list(alias or [])
    if from_hub:
        read = _hub_fields(from_hub, offline=offline)
        aliases = [from_hub, *aliases]
    read.update(given)
    if arch_option:
        read["arch_options"] = {**read.get("arch_options", {}), **arch_options(arch_option)}
    if "hidden_size" in read and "num_attention_heads" in read:
        if read["num_attention_heads"] > 0:
            read.setdefault("head_dim", read["hidden_size"] // read["num_attention_heads"])
        read.setdefault("num_key_value_heads", read["num_attention_heads"])
    _add(ctx, MODEL, read, aliases)


@app.command("recipe")
def add_recipe(
    ctx: typer.Context,
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
) -> None:
    """Add a training recipe (a team's own setup): one option per field, each training option
    spelled as `fit` and `estimate` take it."""
    # Every field option is a parameter named after its field.
    _add(ctx, RECIPE, values(RECIPE_FIELDS, locals()))
