"""`advisor estimate`: the peak memory of one workload, term by term.

Parses the options, looks the model (or reads a config.json) and the quantization format up,
calls `advisor.estimator.estimate` and renders its result. No estimation logic lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.enums import Vendor
from advisor.policy import Request
from advisor.units import Units, format_size
from advisor.workload import (
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    Method,
    Stage,
)

if TYPE_CHECKING:
    from advisor.arch import Architecture
    from advisor.estimator import Estimate, RuntimeOverhead
    from advisor.workload import Workload

BAR_WIDTH = 40


def workload_json(w: Workload) -> dict[str, Any]:
    """Every option of the workload with defaults filled in, as `--json` prints it."""
    return {
        "stage": w.stage.value,
        "method": w.method.value if w.training else None,
        "precision": w.precision.value,
        "quant": w.weight_format.slug if w.weight_format else None,
        "kv_dtype": w.kv_dtype.value if w.kv_dtype else None,
        "batch": w.batch,
        "seq": w.seq,
        "optimizer": w.optimizer.value if w.training else None,
        "grad_checkpointing": w.grad_checkpointing,
        "lora_rank": w.lora_rank if w.method in (Method.lora, Method.qlora) else None,
        "lora_targets": list(w.lora_targets) if w.method in (Method.lora, Method.qlora) else None,
        "trainable_layers": w.trainable_layers,
        "gpus": w.gpus,
        "parallel": w.strategy.value,
        "offload_optimizer": w.offload_optimizer,
        "attention_mask": w.with_attention_mask,
    }


def estimate_json(model: str, result: Estimate) -> dict[str, Any]:
    return {
        "model": model,
        "params": result.params,
        "workload": workload_json(result.workload),
        "gpus": result.gpus,
        "per_gpu_bytes": result.per_gpu_bytes,
        "tensor_bytes": result.tensor_bytes,
        "overhead_bytes": result.per_gpu_bytes - result.tensor_bytes,
        "total_bytes": result.total_bytes,
        "components": result.components,
        "rule_of_thumb_bytes": result.rule_of_thumb_bytes,
        "peak_moment": result.peak_moment,
    }


def workload_header(model: str, params: int, w: Workload) -> str:
    """The first line of a one-workload command: the model and what it runs."""
    header = f"{model}: {params:,} parameters · {w.stage.value}"
    if w.training:
        header += f" ({w.method.value}, {w.optimizer.value})"
    header += f" · {w.precision.value}"
    if w.weight_format:
        header += f" · weights {w.weight_format.slug}"
    header += f" · batch {w.batch} x {w.seq} tokens · {w.gpus} GPU"
    header += "s" if w.gpus > 1 else ""
    if w.gpus > 1:
        header += f" ({w.strategy.value})"
    return header


def overhead_line(overhead: RuntimeOverhead, vendor: Vendor, units: Units) -> str:
    """Which runtime's overhead the estimate charges: with no card, `--vendor`'s (NVIDIA's
    CUDA by default)."""
    stand_in = "" if overhead.measured else " (unmeasured: CUDA's figure)"
    return (
        f"runtime overhead ({vendor.value} {overhead.runtime.value}): context "
        f"{format_size(overhead.context_bytes, units)}{stand_in} + "
        f"{overhead.allocator_reserve_fraction:.0%} allocator reserve"
    )


def _render(model: str, result: Estimate, vendor: Vendor, units: Units, explain: bool) -> None:
    from rich.table import Table

    from advisor.estimator import OVERHEAD_BY_VENDOR

    console = shared.out()
    console.print(workload_header(model, result.params, result.workload))
    console.print(overhead_line(OVERHEAD_BY_VENDOR[vendor], vendor, units))
    console.print(f"peak at: {result.peak_moment}")
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("term")
    table.add_column(
        f"per GPU ({units.value.replace('gib', 'GiB').replace('gb', 'GB')})", justify="right"
    )
    table.add_column("share", justify="right")
    table.add_column("")
    total = result.per_gpu_bytes
    for name, value in result.components.items():
        if not value:
            continue
        share = value / total if total else 0.0
        table.add_row(
            name,
            format_size(value, units, digits=2),
            f"{share:6.1%}",
            "█" * round(share * BAR_WIDTH),
        )
    table.add_row("total per GPU", format_size(total, units, digits=2), "", "")
    console.print(table)
    if result.gpus > 1:
        console.print(f"total over {result.gpus} GPUs: {format_size(result.total_bytes, units)}")
    rule = result.rule_of_thumb_bytes
    if rule is not None:
        console.print(f"rule of thumb: {format_size(rule, units)} ({rule / 1e9:,.1f} GB)")
    if explain:
        for term in result.terms:
            inputs = ", ".join(
                f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in term.inputs.items()
            )
            console.print(f"{term.name}: {term.formula}\n    {inputs}")


def resolve(ctx: typer.Context, model: str, request: Request) -> tuple[str, Architecture, Workload]:
    """Look the model (or config.json) and the format up and build the validated Workload."""
    from advisor.policy import default_base, workload

    slug, arch = options.load_model(ctx, model)
    base = default_base(request)
    formats = options.weight_formats(ctx, (base,) if base else ())
    fmt = formats[base] if base else None
    return slug, arch, workload(arch, request, weight_format=fmt)


def estimate(
    ctx: typer.Context,
    model: options.ModelOpt,
    stage: options.StageOpt = Stage.inference,
    method: options.MethodOpt = Method.full,
    precision: options.PrecisionOpt = DEFAULT_PRECISION,
    quant: options.QuantOpt = None,
    kv_dtype: options.KVDtypeOpt = None,
    batch: options.BatchOpt = None,
    seq: options.SeqOpt = None,
    optimizer: options.OptimizerOpt = DEFAULT_OPTIMIZER,
    grad_checkpointing: options.CheckpointingOpt = False,
    lora_rank: options.LoraRankOpt = DEFAULT_LORA_RANK,
    lora_targets: options.LoraTargetsOpt = DEFAULT_LORA_TARGETS,
    trainable_layers: options.TrainableLayersOpt = None,
    gpus: options.GpusOpt = 1,
    parallel: options.ParallelOpt = None,
    offload_optimizer: options.OffloadOpt = False,
    vendor: options.RuntimeVendorOpt = Vendor.nvidia,
    units: options.UnitsOpt = Units.gib,
    as_json: options.JsonOpt = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print each term's formula and inputs.")
    ] = False,
    allow_longer_context: Annotated[
        bool,
        typer.Option(
            "--allow-longer-context",
            help="Size a context or training sequence beyond the model's trained maximum.",
        ),
    ] = False,
) -> None:
    """Peak GPU memory of one workload, term by term."""
    from advisor.estimator import OVERHEAD_BY_VENDOR
    from advisor.estimator import estimate as run_estimate
    from advisor.fit import check_context

    request = Request(
        stage=stage,
        method=method,
        precision=precision,
        quants=(quant,) if quant else (),
        kv_dtype=kv_dtype,
        batch=batch,
        seq=seq,
        optimizer=optimizer,
        grad_checkpointing=grad_checkpointing,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        trainable_layers=trainable_layers,
        gpus=gpus,
        parallel=parallel,
        offload_optimizer=offload_optimizer,
    )
    slug, arch, workload = resolve(ctx, model, request)
    check_context(arch, workload, allow_longer=allow_longer_context)
    result = run_estimate(arch, workload, overhead=OVERHEAD_BY_VENDOR[vendor])
    if as_json:
        shared.print_json(estimate_json(slug, result))
    else:
        _render(slug, result, vendor, units, explain)
