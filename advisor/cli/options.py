"""Workload options shared by `estimate`, `fit`, `which-models` and `trace`, and the look-ups
behind them (a model by name or config.json, a weight format by name).

Each option is an `Annotated` alias, so every command spells, documents and validates it the
same way. Each command lists the options it takes in its own signature, with the defaults
named in `advisor.workload` and `advisor.policy`, and builds an `advisor.policy.Request` from
them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from advisor.cli import shared
from advisor.enums import Vendor
from advisor.policy import DEFAULT_INFERENCE_CONTEXT
from advisor.units import Units
from advisor.workload import (
    DEFAULT_BATCH,
    DEFAULT_TRAINING_SEQ,
    LORA_TARGET_SETS,
    KVDtype,
    Method,
    Optimizer,
    Parallel,
    Precision,
    Stage,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from advisor.arch import Architecture
    from advisor.fit import Card
    from advisor.policy import Level, Request
    from advisor.workload import WeightFormat
    from catalog.reader import GPURecord

ModelOpt = Annotated[str, typer.Option("--model", help="Catalog name or path to a config.json.")]
StageOpt = Annotated[Stage, typer.Option("--stage", help="What to run.")]
MethodOpt = Annotated[Method, typer.Option("--method", help="Fine-tuning method (finetune only).")]
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="Pure dtype, or mixed-* (fp32 weights, autocast)."),
]
QuantOpt = Annotated[
    str | None,
    typer.Option(
        "--quant",
        help="Weight format from `advisor catalog quants` (inference, and the QLoRA base).",
    ),
]
KVDtypeOpt = Annotated[
    KVDtype | None, typer.Option("--kv-dtype", help="KV-cache dtype; default: compute dtype.")
]
BatchOpt = Annotated[
    int | None, typer.Option("--batch", help=f"Sequences per step. Default: {DEFAULT_BATCH}.")
]
SeqOpt = Annotated[
    int | None,
    typer.Option(
        "--seq",
        help="Tokens per sequence (inference: the context held in the KV cache). "
        f"Default: min({DEFAULT_INFERENCE_CONTEXT}, model maximum) for inference, "
        f"min({DEFAULT_TRAINING_SEQ}, model maximum) for training.",
    ),
]
OptimizerOpt = Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer (training).")]
CheckpointingOpt = Annotated[
    bool, typer.Option("--grad-checkpointing", help="Recompute activations in backward.")
]
LoraRankOpt = Annotated[int, typer.Option("--lora-rank", help="LoRA rank.")]
LoraTargetsOpt = Annotated[
    str,
    typer.Option(
        "--lora-targets",
        help="attention, all-linear, or a comma list of projections (q_proj,k_proj,…).",
    ),
]
GpusOpt = Annotated[int, typer.Option("--gpus", help="Number of GPUs.")]
RuntimeVendorOpt = Annotated[
    Vendor,
    typer.Option(
        "--vendor",
        help="Whose runtime overhead to charge: nvidia (CUDA context), amd (ROCm), apple "
        "(Metal), intel (Level Zero).",
    ),
]
TrainableLayersOpt = Annotated[
    int | None,
    typer.Option("--trainable-layers", help="--method freeze: how many top layers train."),
]
ParallelOpt = Annotated[
    Parallel | None,
    typer.Option(
        "--parallel",
        help="tp or pp (inference); ddp, zero1-3 (training). "
        "Default: tp, or zero3 for training on several GPUs.",
    ),
]
OffloadOpt = Annotated[
    bool, typer.Option("--offload-optimizer", help="Keep optimizer states in CPU memory.")
]
UnitsOpt = Annotated[Units, typer.Option("--units", help="gib (binary) or gb (decimal).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def load_model(ctx: typer.Context, name: str) -> tuple[str, Architecture]:
    """A catalog model by any alias, or a Hugging Face config.json by path."""
    from advisor.arch import architecture_from_hf_config, load_hf_config

    path = Path(name)
    if name.endswith(".json") or path.is_file():
        return path.stem, architecture_from_hf_config(load_hf_config(path))
    with shared.reader(ctx) as catalog:
        model = catalog.model(name)
    return model.slug, model.architecture


def weight_formats(ctx: typer.Context, quants: Sequence[str]) -> dict[str, WeightFormat]:
    """The catalog's formats named `quants`, by the name asked (none asked: no catalog)."""
    if not quants:
        return {}
    with shared.reader(ctx) as catalog:
        return {q: catalog.quant(q).weight_format() for q in quants}


def lora_targets(text: str) -> tuple[str, ...]:
    """A named set of LoRA targets, or the projections of a comma list."""
    if text in LORA_TARGET_SETS:
        return LORA_TARGET_SETS[text]
    return tuple(part.strip() for part in text.split(",") if part.strip())


def card_of(row: GPURecord) -> Card:
    """A catalog GPU as the advisor's search needs it."""
    from advisor.fit import Card

    return Card(
        slug=row.slug,
        name=row.name,
        vendor=Vendor(row.vendor),
        market=row.market,
        memory_bytes=row.memory_bytes,
        usable_fraction=row.usable_memory_fraction or 1.0,
        price_per_hour=row.cloud_price_per_hour_usd,
        max_per_node=row.max_per_node,
        link=row.link,
        multi_node=row.multi_node,
    )


def card(ctx: typer.Context, name: str) -> Card:
    """The catalog's GPU named `name` (any alias)."""
    with shared.reader(ctx) as catalog:
        return card_of(catalog.gpu(name))


def level_formats(
    ctx: typer.Context, request: Request, default_quants: Sequence[str]
) -> dict[str, WeightFormat]:
    """The catalog formats of the levels `request` compares (none: no catalog opened)."""
    from advisor.policy import formats_to_look_up, levels_asked

    return weight_formats(ctx, formats_to_look_up(levels_asked(request, default_quants)))


def levels(
    ctx: typer.Context, arch: Architecture, request: Request, default_quants: Sequence[str]
) -> tuple[Level, ...]:
    """The levels `request` compares on `arch`, their formats looked up in the catalog."""
    from advisor.policy import build_levels

    formats = level_formats(ctx, request, default_quants)
    return build_levels(arch, request, formats, default_quants=default_quants)
