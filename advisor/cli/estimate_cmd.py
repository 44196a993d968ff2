"""`advisor estimate`: the peak memory of one workload, term by term.

Parses the options, looks the model (or reads a config.json) and the quantization format up,
calls `advisor.estimator.estimate` and renders its result. No estimation logic lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.cli.shared import rate_words
from advisor.engines import kv_dtype_name
from advisor.enums import Engine, Vendor
from advisor.errors import InvalidValueError
from advisor.policy import Request, checkpointing_asked
from advisor.units import Units, format_bandwidth, format_size
from advisor.workload import (
    DEFAULT_CHECKPOINTING,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    DEFAULT_UBATCH,
    Float8Scaling,
    KVDtype,
    Method,
    PipelineSchedule,
    Precision,
    Stage,
    TrainingOffload,
)

if TYPE_CHECKING:
    from advisor.arch import Architecture
    from advisor.estimator import Estimate, RuntimeOverhead
    from advisor.recipes import Applied
    from advisor.speed import Compute, Speed
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
        "lora_rank": w.lora_rank if w.adapters else None,
        "lora_targets": list(w.lora_targets) if w.adapters else None,
        "lora_dtype": w.adapter_dtype.value if w.adapters else None,
        "trainable_layers": w.trainable_layers,
        "gpus": w.gpus,
        "parallel": w.strategy.value,
        # Training degrees (inference splits over `gpus` by `parallel` alone: null).
        "tensor_parallel": w.tensor_parallel if w.training else None,
        "pipeline_parallel": w.pipeline_parallel if w.training else None,
        "context_parallel": w.context_parallel if w.training else None,
        # Micro-batches per optimizer step (training) and the pipeline's schedule (null
        # without pipeline parallelism).
        "microbatches": w.step_microbatches if w.training else None,
        "pp_schedule": w.pp_schedule.value if w.pipeline_parallel > 1 else None,
        "data_parallel": w.data_parallel if w.training else None,
        "offload_optimizer": w.offload_optimizer,
        "offload": w.offload.value if w.training else None,
        "optimizer_in_backward": w.optimizer_in_backward if w.training else None,
        "compile": w.compile if w.training else None,
        "fp8_scaling": w.fp8_scaling.value if w.precision is Precision.fp8 else None,
        "attention": w.attention.value if w.attention else None,
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
            "kv_dtype": kv_dtype_name(Engine.llama_cpp, w.kv_dtype or KVDtype.fp16),
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


# The keys of the `speed` object, in order: every one is present, null when it does not apply.
SPEED_KEYS = (
    "decode_tokens_per_s",
    "decode_tokens_per_s_total",
    "prefill_tokens_per_s",
    "time_to_first_token_s",
    "train_tokens_per_s",
    "train_time_s",
    "cost_usd",
    "cost_per_million_tokens_usd",
)
# Digits kept in the JSON's speed figures (tokens/s, seconds, dollars): well below what the
# model's accuracy resolves, enough to keep every printed figure exact.
SPEED_JSON_DIGITS = 4
# Rates from this many tokens/s up print as whole numbers.
WHOLE_RATE = 100


def speed_json(found: Speed | None) -> dict[str, Any]:
    """The stable `speed` object: every figure, null when it does not apply (or no card)."""
    figures: dict[str, Any] = dict.fromkeys(SPEED_KEYS)
    if found is None:
        return {**figures, "bound": None, "inputs": {}}
    for key in SPEED_KEYS:
        value = getattr(found, key)
        figures[key] = None if value is None else round(value, SPEED_JSON_DIGITS)
    return {
        **figures,
        "bound": found.bound.value if found.bound else None,
        "inputs": dict(found.inputs),
    }


def estimate_json(
    model: str,
    result: Estimate,
    found: Speed | None = None,
    gpu: str | None = None,
    *,
    mixed: Estimate | None = None,
    applied: Applied | None = None,
) -> dict[str, Any]:
    """The estimate as `--json` prints it, its workload naming the recipe that filled it
    (`applied`; None: none); `speed` on `gpu` (null figures without one);
    `mixed_precision`: a pure 16-bit full training's need with fp32 master weights and states,
    where it is shown (null otherwise)."""
    return {
        "model": model,
        "params": result.params,
        "workload": {**workload_json(result.workload), **options.recipe_json(applied)},
        "gpus": result.gpus,
        "per_gpu_bytes": result.per_gpu_bytes,
        "host_bytes": result.host_bytes,
        "tensor_bytes": result.tensor_bytes,
        "overhead_bytes": result.per_gpu_bytes - result.tensor_bytes,
        "total_bytes": result.total_bytes,
        "components": result.components,
        "rule_of_thumb_bytes": result.rule_of_thumb_bytes,
        "peak_moment": result.peak_moment,
        "gpu": gpu,
        "speed": speed_json(found),
        "mixed_precision": None
        if mixed is None
        else {
            "precision": mixed.workload.precision.value,
            "per_gpu_bytes": mixed.per_gpu_bytes,
            "tensor_bytes": mixed.tensor_bytes,
            "components": mixed.components,
        },
    }


def duration_words(seconds: float) -> str:
    """'42 s', '3.5 min', '12.3 h', '4.2 days'."""
    minute, hour, day = 60, 3600, 86400
    if seconds < minute:
        return f"{seconds:.3g} s"
    if seconds < hour:
        return f"{seconds / minute:.3g} min"
    if seconds < 2 * day:
        return f"{seconds / hour:.3g} h"
    return f"{seconds / day:,.1f} days"


def speed_lines(found: Speed, w: Workload, compute: Compute) -> list[str]:
    """The speed section: decode, prefill and cost for inference; throughput, time and cost
    for training; what limits each, and the constants used."""
    cards = f"{w.gpus} x {compute.name}"
    lines = []
    if w.training:
        if found.train_tokens_per_s is not None:
            line = f"training: {rate_words(found.train_tokens_per_s)} tokens/s on {cards}"
            if found.train_time_s is not None:
                line += f"; the run takes {duration_words(found.train_time_s)}"
            if found.cost_usd is not None:
                line += f", ${found.cost_usd:,.2f}"
            lines.append(line)
            lines.append(
                f"    MFU {float(found.inputs['mfu']):.2f} ({found.inputs['recipe']}) x "
                f"{found.inputs['tensor_tflops']} {found.inputs['tensor_tflops_kind']} per card"
            )
            kernels = "compiled" if w.compile else "eager (--compile fuses them)"
            lines.append(
                f"    + element-wise kernels {kernels}: memory-bound at "
                f"{found.inputs['training_bandwidth_efficiency']} x "
                f"{format_bandwidth(int(found.inputs['bandwidth_bytes_per_s']))}"
            )
            if "optimizer_step_s" in found.inputs:
                step_tokens = w.tokens * w.step_microbatches
                lines.append(
                    f"    + optimizer step {float(found.inputs['optimizer_step_s']) * 1e3:.3g} ms"
                    f" per card (memory-bound), once per step of {step_tokens:,} tokens per replica"
                )
            if "pipeline_bubble" in found.inputs:
                lines.append(
                    f"    x (1 + pipeline bubble {float(found.inputs['pipeline_bubble']):.0%}): "
                    f"{w.pipeline_parallel} stages, {w.step_microbatches} micro-batches, "
                    f"{w.pp_schedule.value}"
                )
    else:
        if found.decode_tokens_per_s is not None and found.decode_tokens_per_s_total is not None:
            bound = found.bound.value if found.bound else ""
            lines.append(
                f"decode: {rate_words(found.decode_tokens_per_s)} tokens/s per sequence, "
                f"{rate_words(found.decode_tokens_per_s_total)} in total at batch {w.batch} "
                f"(context {w.seq:,}; {bound}-bound) on {cards}"
            )
        if found.prefill_tokens_per_s is not None and found.time_to_first_token_s is not None:
            lines.append(
                f"prefill: {rate_words(found.prefill_tokens_per_s)} tokens/s; time to first token "
                f"{duration_words(found.time_to_first_token_s)} for a {w.seq:,}-token prompt"
            )
        from advisor.speed import BACKEND_SPEED

        used = BACKEND_SPEED[(w.serving.engine, compute.runtime)]
        measured = "" if used.measured else " (unmeasured: CUDA's figures)"
        lines.append(
            f"    {w.serving.engine.value} on {compute.runtime.value}{measured}: "
            f"{used.bandwidth_efficiency:.0%} of bandwidth, "
            f"{used.layer_overhead_s * 1e3:.2f} ms per layer per step, "
            f"{found.inputs['utilization']:.0%} of tensor throughput in prefill"
        )
    if found.cost_per_million_tokens_usd is not None:
        what = "trained" if w.training else "output"
        lines.append(
            f"cost: ${found.cost_per_million_tokens_usd:,.4g} per million {what} tokens at "
            f"${found.inputs['price_per_hour_usd']:,.2f}/h"
        )
    return lines


def pure_precision_line(w: Workload, mixed: Estimate | None, units: Units) -> str:
    """What a pure 16-bit full training assumes, and what the same training needs with fp32
    master weights and states (when it differs enough to be shown)."""
    line = (
        f"pure {w.precision.value}: weights, gradients and {w.optimizer.value} states in "
        f"{w.precision.value}, no fp32 master copy"
    )
    if mixed is None:
        return line
    return line + (
        f"; with fp32 master weights and states (--precision "
        f"{mixed.workload.precision.value}, as Hugging Face's Trainer keeps them for a model "
        f"loaded in fp32): {format_size(mixed.per_gpu_bytes, units, digits=2)} per GPU"
    )


def mixed_precision_estimate(
    arch: Architecture, result: Estimate, overhead: RuntimeOverhead
) -> Estimate | None:
    """The mixed-precision counterpart of a pure 16-bit full training, when it differs enough
    to be shown (`advisor.policy.mixed_precision_differs`)."""
    from advisor.estimator import estimate as run_estimate
    from advisor.policy import mixed_precision_counterpart, mixed_precision_differs

    counterpart = mixed_precision_counterpart(result.workload)
    if counterpart is None:
        return None
    mixed = run_estimate(arch, counterpart, overhead=overhead)
    return mixed if mixed_precision_differs(result.per_gpu_bytes, mixed.per_gpu_bytes) else None


def workload_header(model: str, params: int, w: Workload) -> str:
    """The first line of a one-workload command: the model and what it runs."""
    header = f"{model}: {params:,} parameters · {w.stage.value}"
    if w.training:
        header += f" ({w.method.value}, {w.optimizer.value})"
        savers = savers_words(w)
        header += f" · {savers}" if savers else ""
    header += f" · {precision_words(w)}"
    if w.weight_format:
        header += f" · weights {w.weight_format.slug}"
    if not w.training:
        header += f" · engine {engine_words(w)}"
    header += f" · batch {w.batch} x {w.seq} tokens{shared.accumulation_words(w)} · {w.gpus} GPU"
    header += "s" if w.gpus > 1 else ""
    if w.gpus > 1:
        header += f" ({w.parallel_label})"
    return header


def precision_words(w: Workload) -> str:
    """The precision as headers name it: 'pure bf16' for a full training that keeps no fp32
    master copy (`advisor.policy.mixed_precision_counterpart`)."""
    from advisor.policy import mixed_precision_counterpart

    if mixed_precision_counterpart(w) is None:
        return w.precision.value
    return f"pure {w.precision.value}"


def savers_words(w: Workload) -> str:
    """The memory savers a training workload uses beyond the defaults, in words."""
    words = []
    if w.checkpointing is not DEFAULT_CHECKPOINTING:
        words.append(f"{w.checkpointing.value} checkpointing")
    if w.loss is not DEFAULT_LOSS:
        words.append(f"{w.loss.value} loss")
    words.extend(training_option_words(w))
    return ", ".join(words)


def training_option_words(w: Workload) -> list[str]:
    """Optimizer placement, adapter dtype and attention kernel, where asked, in words."""
    words = []
    if w.optimizer_in_backward:
        words.append("optimizer in backward")
    if w.offload is not TrainingOffload.none:
        words.append(f"{w.offload.value} offloaded")
    if w.lora_dtype is not None:
        words.append(f"{w.lora_dtype.value} adapters")
    if w.attention is not None:
        words.append(f"{w.attention.value} attention")
    return words


def overhead_line(overhead: RuntimeOverhead, vendor: Vendor, units: Units) -> str:
    """Which runtime's overhead the estimate charges: with no card, `--vendor`'s (NVIDIA's
    CUDA by default)."""
    stand_in = "" if overhead.measured else " (unmeasured: CUDA's figure)"
    return (
        f"runtime overhead ({vendor.value} {overhead.runtime.value}): context "
        f"{format_size(overhead.context_bytes, units)}{stand_in} + "
        f"{overhead.allocator_reserve_fraction:.0%} allocator reserve"
    )


def _render(
    model: str,
    result: Estimate,
    vendor: Vendor,
    units: Units,
    explain: bool,
    mixed: Estimate | None = None,
    applied: Applied | None = None,
) -> None:
    from rich.table import Table

    from advisor.estimator import OVERHEAD_BY_VENDOR, VLLM_CUDA_GRAPH_BYTES, engine_overhead

    console = shared.out()
    w = result.workload
    console.print(workload_header(model, result.params, w))
    if applied is not None:
        console.print(applied.words())
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
    if precision_words(w) != w.precision.value:
        console.print(pure_precision_line(w, mixed, units))
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
            request = request._replace(kv_dtype=choice.kv_dtype)
    return choice.label, choice.arch, workload(choice.arch, request, weight_format=fmt)


def estimate(
    ctx: typer.Context,
    model: options.ModelOpt,
    offline: options.OfflineOpt = False,
    stage: options.StageOpt = Stage.inference,
    recipe: options.RecipeOpt = None,
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
    pp_schedule: options.PpScheduleOpt = PipelineSchedule.one_f_one_b,
    fp8_scaling: options.Fp8ScalingOpt = Float8Scaling.tensorwise,
    compile_model: options.CompileOpt = False,
    lora_dtype: options.LoraDtypeOpt = None,
    attention: options.AttentionOpt = None,
    engine: options.EngineOpt = None,
    ubatch: options.UbatchOpt = DEFAULT_UBATCH,
    flash_attn: options.FlashAttnOpt = True,
    gpu_memory_utilization: options.GpuMemoryUtilizationOpt = DEFAULT_GPU_MEMORY_UTILIZATION,
    vendor: options.RuntimeVendorOpt = Vendor.nvidia,
    gpu: options.SpeedGpuOpt = None,
    tokens: options.TokensOpt = None,
    dataset_tokens: options.DatasetTokensOpt = None,
    epochs: options.EpochsOpt = None,
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
    """Peak GPU memory of one workload, term by term; with --gpu, its speed and cost."""
    from advisor.estimator import OVERHEAD_BY_VENDOR
    from advisor.estimator import estimate as run_estimate
    from advisor.fit import check_context
    from advisor.speed import training_tokens

    run_tokens = training_tokens(tokens, dataset_tokens, epochs)
    if run_tokens is not None and stage is Stage.inference:
        raise InvalidValueError("--tokens, --dataset-tokens and --epochs size a training run")

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
        **options.parallel_fields(parallel, microbatches=microbatches, pp_schedule=pp_schedule),
        offload_optimizer=offload_optimizer,
        offload=offload,
        optimizer_in_backward=optimizer_in_backward,
        fp8_scaling=fp8_scaling,
        compile=compile_model,
        lora_dtype=lora_dtype,
        attention=attention,
        engine=options.engine(engine),
        serving=options.serving(ubatch, flash_attn, gpu_memory_utilization),
    )
    request, applied = options.with_recipe(ctx, request, recipe)
    try:
        slug, arch, workload = resolve(ctx, model, request, offline=offline)
    except InvalidValueError as error:
        raise options.recipe_conflict(error, applied) from None
    check_context(arch, workload, allow_longer=allow_longer_context)
    compute, gpu_slug = None, None
    if gpu is not None:
        with shared.reader(ctx) as catalog:
            row = catalog.gpu(gpu)
        compute, gpu_slug = options.compute_of(row), row.slug
        # The card sets the runtime overhead, as in `fit`.
        vendor = compute.vendor
    result = run_estimate(arch, workload, overhead=OVERHEAD_BY_VENDOR[vendor])
    mixed = mixed_precision_estimate(arch, result, OVERHEAD_BY_VENDOR[vendor])
    found = None if compute is None else _speed(arch, workload, compute, run_tokens, gpu_slug)
    if as_json:
        shared.print_json(
            estimate_json(slug, result, found, gpu_slug, mixed=mixed, applied=applied)
        )
    else:
        _render(slug, result, vendor, units, explain, mixed, applied)
        if found is not None and compute is not None:
            console = shared.out()
            console.print(f"speed on {gpu_slug}:")
            for line in speed_lines(found, workload, compute):
                console.print(line)


def _speed(
    arch: Architecture, w: Workload, compute: Compute, tokens: int | None, slug: str | None
) -> Speed:
    """The workload's speed on the card; a card without the figure the headline needs is an
    error naming it, one without a secondary figure a note."""
    from advisor.errors import MissingFigureError
    from advisor.speed import speed

    found = speed(arch, w, compute, tokens=tokens)
    if found.headline is None:
        what = "training speed" if w.training else "decode speed"
        raise MissingFigureError(
            f"{slug}: the catalog has no {' or '.join(found.missing)} for {compute.name}, "
            f"which {what} needs (`advisor catalog update gpu {slug}` can add it)"
        )
    if found.missing:
        shared.note(
            f"{slug} has no {' or '.join(found.missing)} in the catalog: the figures that "
            "need it are left out"
        )
    return found
