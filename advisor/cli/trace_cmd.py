"""`advisor trace`: the peak memory of one workload measured on the real model (fake tensors).

Takes the options of `advisor estimate`, calls `advisor.trace.trace` and
`advisor.estimator.estimate`, and renders the traced peak by category beside the estimate.
No tracing logic lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from advisor.cli import options, shared
from advisor.cli.estimate_cmd import estimate_json, resolve, workload_header
from advisor.errors import InvalidValueError
from advisor.policy import Request, checkpointing_asked
from advisor.units import Units, format_size
from advisor.workload import (
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    Method,
    Stage,
    TrainingOffload,
)

if TYPE_CHECKING:
    from advisor.estimator import Estimate
    from advisor.recipes import Applied
    from advisor.trace import Comparison, Trace

# What each compared group sums, for the table's legend.
GROUP_LEGEND = (
    "parameters: weights + adapters vs param + buffer; activations: kv_cache + activations + "
    "logits vs act + temp (forward and backward tensors)"
)


def trace_json(
    model: str, result: Trace, est: Estimate, applied: Applied | None = None
) -> dict[str, Any]:
    """The estimate's JSON shape plus `traced` and the estimate's `error_pct` by group."""
    from advisor.trace import compare

    rows = compare(result, est)
    return {
        **estimate_json(model, est, applied=applied),
        "traced": {
            "peak_bytes": result.peak_bytes,
            "by_category": dict(result.by_category),
            "params": result.params,
            "model_type": result.model_type,
            "notes": list(result.notes),
            "versions": dict(result.versions),
        },
        "error_pct": {
            row.name: None if row.error_pct is None else round(row.error_pct, 3) for row in rows
        },
    }


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}%"


def _render(model: str, result: Trace, est: Estimate, units: Units) -> None:
    from rich.table import Table

    from advisor.trace import compare

    console = shared.out()
    console.print(workload_header(model, result.params, result.workload))
    console.print(
        f"traced: transformers' {result.model_type} model on fake tensors with "
        + ", ".join(f"{name} {version}" for name, version in result.versions.items())
    )
    unit = units.value.replace("gib", "GiB").replace("gb", "GB")
    table = Table(show_edge=False, pad_edge=False, title="traced peak by category")
    table.add_column("category")
    table.add_column(f"traced ({unit})", justify="right")
    table.add_column("bytes", justify="right")
    for name, value in result.by_category.items():
        if value:
            table.add_row(name, format_size(value, units, digits=2), f"{value:,}")
    table.add_row(
        "peak (tensors)", format_size(result.peak_bytes, units, digits=2), f"{result.peak_bytes:,}"
    )
    console.print(table)

    rows: tuple[Comparison, ...] = compare(result, est)
    against = Table(show_edge=False, pad_edge=False, title="against the estimate")
    against.add_column("term")
    against.add_column(f"traced ({unit})", justify="right")
    against.add_column(f"estimate ({unit})", justify="right")
    against.add_column("error", justify="right")
    for row in rows:
        if row.traced or row.estimated:
            against.add_row(
                row.name,
                format_size(row.traced, units, digits=2),
                format_size(row.estimated, units, digits=2),
                _percent(row.error_pct),
            )
    console.print(against)
    console.print(GROUP_LEGEND)
    console.print(
        f"not tensors, so not traced: runtime_overhead "
        f"{format_size(est.components['runtime_overhead'], units)} (CUDA context, cuBLAS "
        f"workspace, allocator reserve); estimated total per GPU "
        f"{format_size(est.per_gpu_bytes, units)}"
    )
    for note in result.notes:
        console.print(f"note: {note}")


def trace(
    ctx: typer.Context,
    model: options.ModelOpt,
    stage: options.StageOpt = Stage.inference,
    recipe: options.TraceRecipeOpt = None,
    method: options.MethodOpt = Method.full,
    precision: options.PrecisionOpt = DEFAULT_PRECISION,
    quant: options.QuantOpt = None,
    kv_dtype: options.KVDtypeOpt = None,
    batch: options.BatchOpt = None,
    seq: options.SeqOpt = None,
    optimizer: options.OptimizerOpt = DEFAULT_OPTIMIZER,
    checkpointing: options.CheckpointingOpt = None,
    grad_checkpointing: options.GradCheckpointingOpt = False,
    loss: options.LossOpt = DEFAULT_LOSS,
    lora_rank: options.LoraRankOpt = DEFAULT_LORA_RANK,
    lora_targets: options.LoraTargetsOpt = DEFAULT_LORA_TARGETS,
    trainable_layers: options.TrainableLayersOpt = None,
    gpus: options.GpusOpt = 1,
    parallel: options.ParallelOpt = None,
    offload_optimizer: options.OffloadOpt = False,
    offload: options.OffloadWhatOpt = TrainingOffload.none,
    optimizer_in_backward: options.OptimizerInBackwardOpt = False,
    microbatches: options.MicrobatchesOpt = None,
    lora_dtype: options.LoraDtypeOpt = None,
    attention: options.AttentionOpt = None,
    units: options.UnitsOpt = Units.gib,
    as_json: options.JsonOpt = False,
) -> None:
    """Peak tensor memory of one workload traced on the real model (fake tensors, no GPU),
    beside the estimate. Needs the `trace` extra."""
    from advisor.arch import load_hf_config
    from advisor.estimator import estimate
    from advisor.trace import trace as run_trace

    request = Request(
        stage=stage,
        method=method,
        precision=precision,
        quants=(quant,) if quant else (),
        kv_dtype=options.kv_dtype(kv_dtype),
        batch=batch,
        seq=seq,
        optimizer=optimizer,
        checkpointing=checkpointing_asked(checkpointing, grad_checkpointing),
        loss=loss,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        trainable_layers=trainable_layers,
        gpus=gpus,
        **options.parallel_fields(parallel, microbatches=microbatches),
        offload_optimizer=offload_optimizer,
        offload=offload,
        optimizer_in_backward=optimizer_in_backward,
        lora_dtype=lora_dtype,
        attention=attention,
    )
    from advisor.policy import NO_RECIPE

    request, applied = options.with_recipe(ctx, request, recipe or NO_RECIPE)
    try:
        slug, arch, workload = resolve(ctx, model, request)
    except InvalidValueError as error:
        raise options.recipe_conflict(error, applied) from None
    traced: Any = arch
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"  # a checkpoint folder: its config.json, as below
    if path.suffix == ".json" or path.is_file():
        # A config.json is traced as written (every field transformers reads), not as the
        # architecture advisor keeps of it; `load_model` above has validated it.
        traced = load_hf_config(path)
    result = run_trace(traced, workload)
    est = estimate(arch, workload)
    if as_json:
        shared.print_json(trace_json(slug, result, est, applied))
    else:
        _render(slug, result, est, units)
