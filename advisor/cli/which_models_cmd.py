"""`advisor which-models`: what runs on the cards I have, and how.

Looks the card and the catalog's models up, asks `advisor.fit.best_level` for each model and
renders the answers grouped by family. No estimation logic lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.cli.shared import (
    NO_FIT,
    STYLE_FITS,
    STYLE_NONE,
    STYLE_TIGHT,
    host_bytes,
    level_words,
    offload_json,
    partial_words,
    rate_words,
    suggestion_brief,
)
from advisor.errors import InvalidValueError
from advisor.policy import (
    COMPARED_METHODS,
    DEFAULT_FLOAT_LEVEL,
    DEFAULT_INFERENCE_CONTEXT,
    DEFAULT_QLORA_QUANT,
    WHICH_MODELS_LADDER,
    Request,
    checkpointing_asked,
)
from advisor.units import Units, format_size, unit_label
from advisor.workload import (
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    DEFAULT_TRAINING_SEQ,
    DEFAULT_UBATCH,
    Float8Scaling,
    Method,
    Parallel,
    PipelineSchedule,
    Stage,
    TrainingOffload,
    parallel_words,
)

if TYPE_CHECKING:
    from advisor.fit import Card, ModelFit
    from advisor.recipes import Applied


def tokens_per_s(found: ModelFit) -> float | None:
    """The model's speed at its best fitting level on the cards: decode tokens/s of one
    sequence (inference) or training tokens/s; None when nothing fits or the card lacks the
    figures (`advisor.speed.single_speed`, what `fit` leads its speeds with)."""
    from advisor.speed import single_speed

    best = found.best
    if best is None or best.count is None or best.card.compute is None:
        return None
    return single_speed(found.arch, best.estimate.workload, best.card.compute).headline


def model_json(found: ModelFit, family: str) -> dict[str, Any]:
    option = found.best or found.closest
    rate = tokens_per_s(found)
    return {
        "model": found.name,
        "params": found.params,
        "fits": found.fits,
        "verdict": found.verdict.value,
        "offload": offload_json(found.offload),
        "engine": option.level.workload.serving.engine.value if option else None,
        "quant": option.level.quant if option and found.fits else None,
        "method": (
            option.level.method.value if option and found.fits and option.level.method else None
        ),
        "per_gpu_bytes": option.per_gpu_bytes if option else None,
        "host_bytes": host_bytes(option) if option else None,
        "tensor_bytes": option.tensor_bytes if option else None,
        "overhead_bytes": option.overhead_bytes if option else None,
        "headroom_bytes": option.headroom_bytes if option else None,
        "max_context": option.max_context if option and found.fits else None,
        "family": family,
        "fitting_levels": list(found.fitting_levels),
        "parallel": found.parallel.value if found.parallel else None,
        "reason": found.reason,
        "tokens_per_s": None if rate is None else round(rate, 4),
        "suggestions": (
            [s.as_json() for s in option.suggestions] if option and not found.fits else []
        ),
    }


def _describe(found: ModelFit, units: Units) -> tuple[Any, str, str, str]:
    """(level, memory per card, headroom, longest context) cells of one model."""
    from rich.text import Text

    option = found.best or found.closest
    if found.reason is not None or option is None:
        return Text(NO_FIT, style=STYLE_NONE), "", "", found.reason or ""
    memory = format_size(option.per_gpu_bytes, units)
    if found.offload is not None:
        words = partial_words(found.offload, units)
        return (
            Text(f"{words} at {level_words(option.level)}", style=STYLE_TIGHT),
            format_size(found.offload.gpu_bytes, units),
            "",
            "",
        )
    if not found.fits:
        short = format_size(-option.headroom_bytes, units)
        hint = suggestion_brief(option)
        return (
            Text(
                f"{NO_FIT} (short {short} at {level_words(option.level)})"
                + (f"; {hint}" if hint else ""),
                style=STYLE_NONE,
            ),
            memory,
            "",
            "",
        )
    label = level_words(option.level)
    if len(found.fitting_levels) > 1 and option.level.workload.training:
        label = ", ".join(found.fitting_levels)
    style = STYLE_TIGHT if option.tight else STYLE_FITS
    return (
        Text(label, style=style),
        memory,
        format_size(option.headroom_bytes, units),
        f"{option.max_context:,}" if option.max_context else NO_FIT,
    )


def _render(
    card: Card,
    count: int,
    request: Request,
    results: list[tuple[ModelFit, str]],
    show_all: bool,
    units: Units,
    applied: Applied | None = None,
) -> None:
    from rich.table import Table

    console = shared.out()
    cards = f"{count} x {card.name}" if count > 1 else card.name
    degrees = (
        parallel_words(
            request.parallel or Parallel.zero3,
            request.tensor_parallel,
            request.pipeline_parallel,
            request.context_parallel,
        )
        if request.tensor_parallel * request.pipeline_parallel * request.context_parallel > 1
        else ""
    )
    console.print(
        f"{cards}: {format_size(card.capacity_bytes, units)} per card"
        + (" (usable share of unified memory)" if card.usable_fraction < 1 else "")
        + f" · {request.stage.value}"
        + (f" · {degrees}" if degrees else "")
    )
    if applied is not None:
        console.print(applied.words())
    fitting = [r for r in results if r[0].fits]
    partial = [r for r in results if r[0].offload is not None]
    shown = results if show_all else fitting + partial
    table = Table(show_edge=False, pad_edge=False)
    # Names never shrink to an ellipsis: the other columns wrap first.
    longest = max((len(found.name) for found, _ in shown), default=len("model"))
    table.add_column("family", no_wrap=True)
    table.add_column("model", no_wrap=True, min_width=max(len("model"), longest))
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("methods that fit" if request.stage is not Stage.inference else "best quant")
    table.add_column("engine", no_wrap=True, min_width=len("transformers"))
    table.add_column(f"per card ({unit_label(units)})", justify="right")
    table.add_column("headroom", justify="right")
    table.add_column(
        "longest context" if request.stage is Stage.inference else "longest seq", justify="right"
    )
    table.add_column("tokens/s", justify="right", no_wrap=True)
    previous = None
    for found, family in shown:
        level, memory, headroom, context = _describe(found, units)
        option = found.best or found.closest
        rate = tokens_per_s(found)
        table.add_row(
            family if family != previous else "",
            found.name,
            f"{found.params / 1e9:,.2f}B",
            level,
            option.level.workload.serving.engine.value if option else "",
            memory.split()[0] if memory else "",
            headroom,
            context,
            "" if rate is None else rate_words(rate),
        )
        previous = family
    console.print(table)
    line = f"{len(fitting)} of {len(results)} models fit"
    if partial:
        line += f", {len(partial)} more only with layers in system RAM (partial)"
    if not show_all and len(fitting) < len(results):
        line += "; --all lists the rest and by how much they miss"
    what = "decode of one sequence" if request.stage is Stage.inference else "training"
    console.print(f"tokens/s: {what}, from the card's figures (docs/estimates.md).")
    console.print(line + ".")


def _answers(
    ctx: typer.Context,
    request: Request,
    gpu: str | Card,
    count: int,
    family: str | None,
    allow_longer_context: bool,
) -> tuple[Card, list[tuple[ModelFit, str]]]:
    """The card, and each catalog model's best level on `count` of it with its family."""
    from advisor.fit import best_level, check_buildable
    from advisor.policy import is_ladder, levels_by_model

    with shared.reader(ctx) as catalog:
        card = options.card_of(catalog.gpu(gpu)) if isinstance(gpu, str) else gpu
    check_buildable(card, count)
    formats = options.level_formats(ctx, request, WHICH_MODELS_LADDER)
    with shared.reader(ctx) as catalog:
        rows = [(m.slug, m.architecture, m.family) for m in catalog.models(family=family)]
    levels = levels_by_model(
        [arch for _, arch, _ in rows], request, formats, default_quants=WHICH_MODELS_LADDER
    )
    results = []
    for (name, arch, family_slug), model_levels in zip(rows, levels, strict=True):
        found = best_level(
            name,
            arch,
            model_levels,
            card,
            count,
            all_levels=request.stage is not Stage.inference,
            ladder=is_ladder(request),
            allow_longer_context=allow_longer_context,
        )
        results.append((found, family_slug))
    return card, results


def which_models(
    ctx: typer.Context,
    gpu: Annotated[
        str | None,
        typer.Option(
            "--gpu",
            help="The card you have, e.g. rtx4090. Default (or `local`): this machine's cards, "
            "as `advisor detect` finds them.",
        ),
    ] = None,
    count: Annotated[
        int | None,
        typer.Option("--count", help="How many of them. Default: 1, or as many as detected."),
    ] = None,
    stage: options.StageOpt = Stage.inference,
    recipe: options.RecipeOpt = None,
    method: Annotated[
        Method | None,
        typer.Option(
            "--method",
            help="Fine-tuning method; default: which of "
            + ", ".join(m.value for m in COMPARED_METHODS)
            + " fit.",
        ),
    ] = None,
    precision: options.PrecisionOpt = DEFAULT_PRECISION,
    quant: Annotated[
        list[str] | None,
        typer.Option(
            "--quant",
            help="Levels to try, best first (repeatable). Default: "
            f"{', '.join((DEFAULT_FLOAT_LEVEL, *WHICH_MODELS_LADDER))}; for QLoRA: its base "
            f"({DEFAULT_QLORA_QUANT}).",
        ),
    ] = None,
    context: Annotated[
        int | None,
        typer.Option(
            "--context",
            help="Context (inference) or sequence length (training). "
            f"Default: min({DEFAULT_INFERENCE_CONTEXT}, model maximum), "
            f"min({DEFAULT_TRAINING_SEQ}, model maximum) for training.",
        ),
    ] = None,
    batch: options.BatchOpt = None,
    kv_dtype: options.KVDtypeOpt = None,
    optimizer: options.OptimizerOpt = DEFAULT_OPTIMIZER,
    checkpointing: options.CheckpointingOpt = None,
    grad_checkpointing: options.GradCheckpointingOpt = False,
    loss: options.LossOpt = DEFAULT_LOSS,
    lora_rank: options.LoraRankOpt = DEFAULT_LORA_RANK,
    lora_targets: options.LoraTargetsOpt = DEFAULT_LORA_TARGETS,
    parallel: options.ParallelOpt = None,
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
    family: Annotated[str | None, typer.Option("--family", help="Only this family.")] = None,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also list what does not fit, and by how much.")
    ] = False,
    allow_longer_context: Annotated[
        bool,
        typer.Option(
            "--allow-longer-context", help="Size a context beyond a model's trained maximum."
        ),
    ] = False,
    units: options.UnitsOpt = Units.gib,
    as_json: options.JsonOpt = False,
) -> None:
    """Which catalog models fit on a card (or several), at which quantization or method."""
    if count is not None and count < 1:
        raise InvalidValueError(f"count must be at least 1, got {count}")
    if context is not None and context < 1:
        raise InvalidValueError(f"context must be at least 1, got {context}")
    request = Request(
        stage=stage,
        method=method,
        precision=precision,
        quants=tuple(quant or ()),
        kv_dtype=options.kv_dtype(kv_dtype),
        batch=batch,
        seq=context,
        optimizer=optimizer,
        checkpointing=checkpointing_asked(checkpointing, grad_checkpointing),
        loss=loss,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        **options.parallel_fields(
            parallel, searched=True, microbatches=microbatches, pp_schedule=pp_schedule
        ),
        offload=offload,
        optimizer_in_backward=optimizer_in_backward,
        fp8_scaling=fp8_scaling,
        compile=compile_model,
        lora_dtype=lora_dtype,
        attention=attention,
        engine=options.engine(engine),
        serving=options.serving(ubatch, flash_attn, gpu_memory_utilization),
    )
    detected: str | None = None
    target: str | Card = gpu or options.LOCAL_GPU
    if target == options.LOCAL_GPU:
        from advisor.cli.detect_cmd import local_fit_cards

        cards, local_count, detected = local_fit_cards(ctx)
        target = max(cards, key=lambda c: c.capacity_bytes)
        count = count or (local_count if len(cards) == 1 else 1)
    count = count or 1
    request, applied = options.with_recipe(ctx, request, recipe)
    try:
        card, results = _answers(ctx, request, target, count, family, allow_longer_context)
    except InvalidValueError as error:
        raise options.recipe_conflict(error, applied) from None
    switched = sum(1 for f, _ in results if f.parallel is Parallel.pp and parallel is None)
    if switched:
        shared.note(
            f"{switched} model{'s' if switched > 1 else ''} whose heads tensor parallelism "
            f"cannot split over {count} cards sized with pipeline parallelism "
            "(--parallel pp; --parallel tp refuses)"
        )
    if as_json:
        if detected is not None:
            shared.note(f"using {detected}")
        shared.print_json(
            {
                "gpu": card.slug,
                "count": count,
                "stage": stage.value,
                **options.recipe_json(applied),
                "models": [
                    model_json(f, fam)
                    for f, fam in results
                    if show_all or f.fits or f.offload is not None
                ],
            }
        )
    else:
        if detected is not None:
            shared.out().print(f"Detected {detected}")
        _render(card, count, request, results, show_all, units, applied)
