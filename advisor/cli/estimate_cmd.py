"""`advisor estimate`: the peak memory of one workload, term by term.

Parses the options, looks the model (or reads a config.json) and the quantization format up,
calls `advisor.estimator.estimate` and renders its result. No estimation logic lives here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.enums import Engine, Vendor
from advisor.policy import Request, checkpointing_asked
from advisor.units import Units, format_size
from advisor.workload import (
    DEFAULT_CHECKPOINTING,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    DEFAULT_UBATCH,
    KVDtype,
    Method,
    Stage,
    TrainingOffload,
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
        "checkpointing": w.checkpointing.value if w.training else None,
        "loss": w.loss.value if w.training else None,
        "lora_rank": w.lora_rank if w.method in (Method.lora, Method.qlora) else None,
        "lora_targets": list(w.lora_targets) if w.method in (Method.lora, Method.qlora) else None,
        "trainable_layers": w.trainable_layers,
        "gpus": w.gpus,
        "parallel": w.strategy.value,
        # Training degrees (inference splits over `gpus` by `parallel` alone: null).
        "tensor_parallel": w.tensor_parallel if w.training else None,
        "pipeline_parallel": w.pipeline_parallel if w.training else None,
        "context_parallel": w.context_parallel if w.training else None,
        "data_parallel": w.data_parallel if w.training else None,
        "offload_optimizer": w.offload_optimizer,
        "attention_mask": w.with_attention_mask,
        "engine": w.serving.engine.value,
        "engine_settings": engine_settings(w),
    }


def engine_settings(w: Workload) -> dict[str, Any] | None:
    """The settings that size the engine's memory (None for transformers)."""
    if w.serving.engine is Engine.llama_cpp:
        return {
            "n_ubatch": w.serving.ubatch,
            "flash_attention": w.serving.flash_attention,
            "kv_dtype": (w.kv_dtype or KVDtype.fp16).value,
        }
    if w.serving.engine is Engine.vllm:
        return {
            "gpu_memory_utilization": w.serving.gpu_memory_utilization,
            "max_num_batched_tokens": w.serving.max_batched_tokens,
            "max_num_seqs": w.serving.max_seqs,
        }
    return None


def engine_words(w: Workload) -> str:
    """The engine as headers name it, with the settings that size it."""
    serving = w.serving
    if serving.engine is Engine.llama_cpp:
        fa = "flash attention" if serving.flash_attention else "no flash attention"
        return f"llama.cpp (n_ubatch {serving.ubatch}, {fa})"
    if serving.engine is Engine.vllm:
        return f"vllm (gpu_memory_utilization {serving.gpu_memory_utilization:g})"
    return serving.engine.value


def estimate_json(model: str, result: Estimate) -> dict[str, Any]:
    return {
        "model": model,
        "params": result.params,
        "workload": workload_json(result.workload),
        "gpus": result.gpus,
        "per_gpu_bytes": result.per_gpu_bytes,
        "host_bytes": result.host_bytes,
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
        savers = savers_words(w)
        header += f" · {savers}" if savers else ""
    header += f" · {w.precision.value}"
    if w.weight_format:
        header += f" · weights {w.weight_format.slug}"
    if not w.training:
        header += f" · engine {engine_words(w)}"
    header += f" · batch {w.batch} x {w.seq} tokens · {w.gpus} GPU"
    header += "s" if w.gpus > 1 else ""
    if w.gpus > 1:
        header += f" ({w.parallel_label})"
    return header


def savers_words(w: Workload) -> str:
    """The memory savers a training workload uses beyond the defaults, in words."""
    words = []
    if w.checkpointing is not DEFAULT_CHECKPOINTING:
        words.append(f"{w.checkpointing.value} checkpointing")
    if w.loss is not DEFAULT_LOSS:
        words.append(f"{w.loss.value} loss")
    return ", ".join(words)


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

    from advisor.estimator import OVERHEAD_BY_VENDOR, VLLM_CUDA_GRAPH_BYTES, engine_overhead

    console = shared.out()
    w = result.workload
    console.print(workload_header(model, result.params, w))
    overhead = engine_overhead(OVERHEAD_BY_VENDOR[vendor], w.serving.engine)
    line = overhead_line(overhead, vendor, units)
    if w.serving.engine is Engine.vllm and not w.training:
        line += f" + CUDA graphs {format_size(VLLM_CUDA_GRAPH_BYTES, units)}"
    console.print(line)
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
    if result.host_bytes:
        console.print(f"host memory per GPU: {format_size(result.host_bytes, units)}")
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


def resolve(
    ctx: typer.Context, model: str, request: Request, *, offline: bool = False
) -> tuple[str, Architecture, Workload]:
    """Look the model (catalog, config.json, checkpoint folder or Hub id) and the format up and
    build the validated Workload; a pre-quantized checkpoint brings its own format, and a
    fine-tune gets the default QLoRA base (`policy.default_base`) as `fit` does."""
    from advisor.policy import default_base, workload

    choice = options.load_model_and_format(ctx, model, offline=offline)
    base = default_base(request)
    formats = options.weight_formats(ctx, (base,) if base else ())
    fmt = formats[base] if base else None
    if fmt is None and request.stage is Stage.inference:
        fmt = choice.weight_format
        if request.kv_dtype is None and choice.kv_dtype is not None:
            request = dataclasses.replace(request, kv_dtype=choice.kv_dtype)
    return choice.label, choice.arch, workload(choice.arch, request, weight_format=fmt)


def estimate(
    ctx: typer.Context,
    model: options.ModelOpt,
    offline: options.OfflineOpt = False,
    stage: options.StageOpt = Stage.inference,
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
    lora_dtype: options.LoraDtypeOpt = None,
    attention: options.AttentionOpt = None,
    engine: options.EngineOpt = None,
    ubatch: options.UbatchOpt = DEFAULT_UBATCH,
    flash_attn: options.FlashAttnOpt = True,
    gpu_memory_utilization: options.GpuMemoryUtilizationOpt = DEFAULT_GPU_MEMORY_UTILIZATION,
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
        checkpointing=checkpointing_asked(checkpointing, grad_checkpointing),
        loss=loss,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        trainable_layers=trainable_layers,
        gpus=gpus,
        **options.parallel_fields(parallel),
        offload_optimizer=offload_optimizer,
        offload=offload,
        optimizer_in_backward=optimizer_in_backward,
        lora_dtype=lora_dtype,
        attention=attention,
        engine=options.engine(engine),
        serving=options.serving(ubatch, flash_attn, gpu_memory_utilization),
    )
    slug, arch, workload = resolve(ctx, model, request, offline=offline)
    check_context(arch, workload, allow_longer=allow_longer_context)
    result = run_estimate(arch, workload, overhead=OVERHEAD_BY_VENDOR[vendor])
    if as_json:
        shared.print_json(estimate_json(slug, result))
    else:
        _render(slug, result, vendor, units, explain)
