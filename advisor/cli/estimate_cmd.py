"""`advisor estimate`: the peak memory of one workload, term by term.

Parses the options, looks the model (or reads a config.json) and the quantization format up,
calls `advisor.estimator.estimate` and renders its result. No estimation logic lives here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, get_type_hints

import typer

from advisor.cli import options, shared
from advisor.units import Units, format_size
from advisor.workload import KVDtype, Method, Optimizer, Parallel, Precision, Stage

if TYPE_CHECKING:
    from advisor.arch import Architecture
    from advisor.estimator import Estimate
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


def _render(model: str, result: Estimate, units: Units, explain: bool) -> None:
    from rich.table import Table

    console = shared.out()
    console.print(workload_header(model, result.params, result.workload))
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
    console.print(
        f"rule of thumb: {format_size(result.rule_of_thumb_bytes, units)} "
        f"({result.rule_of_thumb_bytes / 1e9:,.1f} GB)"
    )
    if explain:
        for term in result.terms:
            inputs = ", ".join(
                f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in term.inputs.items()
            )
            console.print(f"{term.name}: {term.formula}\n    {inputs}")


def _workload_options(
    ctx: typer.Context,
    model: options.ModelOpt,
    stage: options.StageOpt = Stage.inference,
    method: options.MethodOpt = Method.full,
    precision: options.PrecisionOpt = Precision.bf16,
    quant: options.QuantOpt = None,
    kv_dtype: options.KVDtypeOpt = None,
    batch: options.BatchOpt = None,
    seq: options.SeqOpt = None,
    optimizer: options.OptimizerOpt = Optimizer.adamw,
    grad_checkpointing: options.CheckpointingOpt = False,
    lora_rank: options.LoraRankOpt = 16,
    lora_targets: options.LoraTargetsOpt = "attention",
    trainable_layers: options.TrainableLayersOpt = None,
    gpus: Annotated[int, typer.Option("--gpus", help="Number of GPUs.")] = 1,
    parallel: options.ParallelOpt = None,
    offload_optimizer: options.OffloadOpt = False,
    units: options.UnitsOpt = Units.gib,
    as_json: options.JsonOpt = False,
) -> None:
    """The options of every one-workload command (`estimate`, `trace`); never registered."""


CommandT = TypeVar("CommandT", bound=Callable[..., None])


def workload_command(command: CommandT) -> CommandT:
    """Give `command(ctx, *, own options..., **workload)` the options of `_workload_options`
    followed by its own keyword-only ones, so every one-workload command spells them alike."""
    template = inspect.signature(_workload_options, eval_str=True)
    own = [
        p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    hints = get_type_hints(_workload_options, include_extras=True)
    hints.update(get_type_hints(command, include_extras=True))
    command.__signature__ = template.replace(  # type: ignore[attr-defined]
        parameters=[*template.parameters.values(), *own]
    )
    command.__annotations__ = {name: hints[name] for name in command.__signature__.parameters}  # type: ignore[attr-defined]
    return command


@dataclass(frozen=True)
class WorkloadRequest:
    """What the workload options ask for: the model, its architecture, the workload, and how
    to print the answer."""

    slug: str
    arch: Architecture
    workload: Workload
    units: Units
    as_json: bool


def workload_request(
    ctx: typer.Context,
    *,
    model: str,
    stage: Stage,
    method: Method,
    precision: Precision,
    quant: str | None,
    kv_dtype: KVDtype | None,
    batch: int | None,
    seq: int | None,
    optimizer: Optimizer,
    grad_checkpointing: bool,
    lora_rank: int,
    lora_targets: str,
    trainable_layers: int | None,
    gpus: int,
    parallel: Parallel | None,
    offload_optimizer: bool,
    units: Units,
    as_json: bool,
) -> WorkloadRequest:
    """Look the model (or config.json) and format up and build the validated Workload."""
    from advisor.workload import Workload

    slug, arch = options.load_model(ctx, model)
    workload = Workload(
        stage=stage,
        method=method,
        precision=precision,
        weight_format=options.weight_format(ctx, quant),
        kv_dtype=kv_dtype,
        batch=1 if batch is None else batch,
        seq=options.default_seq(arch, stage) if seq is None else seq,
        optimizer=optimizer,
        grad_checkpointing=grad_checkpointing,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        trainable_layers=trainable_layers,
        gpus=gpus,
        parallel=parallel,
        offload_optimizer=offload_optimizer,
    )
    return WorkloadRequest(slug, arch, workload, units, as_json)


@workload_command
def estimate(
    ctx: typer.Context,
    *,
    explain: Annotated[
        bool, typer.Option("--explain", help="Print each term's formula and inputs.")
    ] = False,
    **workload: Any,
) -> None:
    """Peak GPU memory of one workload, term by term."""
    from advisor.estimator import estimate as run_estimate

    request = workload_request(ctx, **workload)
    result = run_estimate(request.arch, request.workload)
    if request.as_json:
        shared.print_json(estimate_json(request.slug, result))
    else:
        _render(request.slug, result, request.units, explain)
