"""Workload options shared by `estimate`, `fit`, `which-models` and `trace`, and the look-ups
behind them (a model by name or config.json, a weight format by name).

Each option is an `Annotated` alias, so every command spells, documents and validates it the
same way; defaults stay in the command signatures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from advisor.cli import shared
from advisor.errors import InvalidValueError
from advisor.units import Units
from advisor.workload import KVDtype, Method, Optimizer, Parallel, Precision, Stage

if TYPE_CHECKING:
    from advisor.arch import Architecture
    from advisor.workload import WeightFormat

LORA_TARGET_SETS = {
    "attention": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "all-linear": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}

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
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Sequences per step. Default: 1.")]
SeqOpt = Annotated[
    int | None,
    typer.Option(
        "--seq",
        help="Tokens per sequence (inference: the context held in the KV cache). "
        "Default: min(4096, model maximum) for inference, 2048 for training.",
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
    from advisor.arch import architecture_from_hf_config

    path = Path(name)
    if name.endswith(".json") or path.is_file():
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidValueError(f"{name}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidValueError(f"{name}: not a readable JSON config ({error})") from None
        if not isinstance(config, dict):
            raise InvalidValueError(f"{name}: a config.json holds one JSON object")
        return path.stem, architecture_from_hf_config(config)
    with shared.reader(ctx) as catalog:
        model = catalog.model(name)
    return model.slug, model.architecture


def weight_format(ctx: typer.Context, quant: str | None) -> WeightFormat | None:
    """The catalog's format named `quant` (None: the precision's own dtype)."""
    if quant is None:
        return None
    return weight_formats(ctx, [quant])[0]


def weight_formats(ctx: typer.Context, quants: list[str]) -> list[WeightFormat]:
    with shared.reader(ctx) as catalog:
        return [catalog.quant(q).weight_format() for q in quants]


def lora_targets(text: str) -> tuple[str, ...]:
    if text in LORA_TARGET_SETS:
        return LORA_TARGET_SETS[text]
    return tuple(part.strip() for part in text.split(",") if part.strip())


def default_seq(arch: Architecture, stage: Stage) -> int:
    from advisor.fit import DEFAULT_TRAINING_SEQ, default_context

    return default_context(arch) if stage is Stage.inference else DEFAULT_TRAINING_SEQ
