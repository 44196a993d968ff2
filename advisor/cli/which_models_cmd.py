"""`advisor which-models`: what runs on the cards I have, and how.

Looks the card and the catalog's models up, asks `advisor.fit.best_level` for each model and
renders the answers grouped by family. No estimation logic lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.cli.shared import NO_FIT, STYLE_FITS, STYLE_NONE, STYLE_TIGHT, level_words
from advisor.errors import InvalidValueError
from advisor.policy import (
    COMPARED_METHODS,
    DEFAULT_FLOAT_LEVEL,
    DEFAULT_INFERENCE_CONTEXT,
    DEFAULT_QLORA_QUANT,
    WHICH_MODELS_LADDER,
    Request,
)
from advisor.units import Units, format_size, unit_label
from advisor.workload import (
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    DEFAULT_TRAINING_SEQ,
    Method,
    Parallel,
    Stage,
)

if TYPE_CHECKING:
    from advisor.fit import Card, ModelFit


def model_json(found: ModelFit, family: str) -> dict[str, Any]:
    option = found.best or found.closest
    return {
        "model": found.name,
        "params": found.params,
        "fits": found.fits,
        "quant": option.level.quant if option and found.fits else None,
        "method": (
            option.level.method.value if option and found.fits and option.level.method else None
        ),
        "per_gpu_bytes": option.per_gpu_bytes if option else None,
        "tensor_bytes": option.tensor_bytes if option else None,
        "overhead_bytes": option.overhead_bytes if option else None,
        "headroom_bytes": option.headroom_bytes if option else None,
        "max_context": option.max_context if option and found.fits else None,
        "family": family,
        "fitting_levels": list(found.fitting_levels),
        "parallel": found.parallel.value if found.parallel else None,
        "reason": found.reason,
    }


def _describe(found: ModelFit, units: Units) -> tuple[Any, str, str, str]:
    """(level, memory per card, headroom, longest context) cells of one model."""
    from rich.text import Text

    option = found.best or found.closest
    if found.reason is not None or option is None:
        return Text(NO_FIT, style=STYLE_NONE), "", "", found.reason or ""
    memory = format_size(option.per_gpu_bytes, units)
    if not found.fits:
        short = format_size(-option.headroom_bytes, units)
        return (
            Text(f"{NO_FIT} (short {short} at {level_words(option.level)})", style=STYLE_NONE),
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
    stage: Stage,
    results: list[tuple[ModelFit, str]],
    show_all: bool,
    units: Units,
) -> None:
    from rich.table import Table

    console = shared.out()
    cards = f"{count} x {card.name}" if count > 1 else card.name
    console.print(
        f"{cards}: {format_size(card.capacity_bytes, units)} per card"
        + (" (usable share of unified memory)" if card.usable_fraction < 1 else "")
        + f" · {stage.value}"
    )
    fitting = [r for r in results if r[0].fits]
    shown = results if show_all else fitting
    table = Table(show_edge=False, pad_edge=False)
    table.add_column("family")
    table.add_column("model")
    table.add_column("params", justify="right")
    table.add_column("methods that fit" if stage is not Stage.inference else "best quant")
    table.add_column(f"per card ({unit_label(units)})", justify="right")
    table.add_column("headroom", justify="right")
    table.add_column(
        "longest context" if stage is Stage.inference else "longest seq", justify="right"
    )
    previous = None
    for found, family in shown:
        level, memory, headroom, context = _describe(found, units)
        table.add_row(
            family if family != previous else "",
            found.name,
            f"{found.params / 1e9:,.2f}B",
            level,
            memory.split()[0] if memory else "",
            headroom,
            context,
        )
        previous = family
    console.print(table)
    line = f"{len(fitting)} of {len(results)} models fit"
    if not show_all and len(fitting) < len(results):
        line += "; --all lists the rest and by how much they miss"
    console.print(line + ".")


def _answers(
    ctx: typer.Context,
    request: Request,
    gpu: str,
    count: int,
    family: str | None,
    allow_longer_context: bool,
) -> tuple[Card, list[tuple[ModelFit, str]]]:
    """The card, and each catalog model's best level on `count` of it with its family."""
    from advisor.fit import best_level, check_buildable
    from advisor.policy import build_levels

    with shared.reader(ctx) as catalog:
        card = options.card_of(catalog.gpu(gpu))
    check_buildable(card, count)
    formats = options.level_formats(ctx, request, WHICH_MODELS_LADDER)
    with shared.reader(ctx) as catalog:
        rows = [(m.slug, m.architecture, m.family) for m in catalog.models(family=family)]
    results = []
    for name, arch, family_slug in rows:
        levels = build_levels(arch, request, formats, default_quants=WHICH_MODELS_LADDER)
        found = best_level(
            name,
            arch,
            levels,
            card,
            count,
            all_levels=request.stage is not Stage.inference,
            allow_longer_context=allow_longer_context,
        )
        results.append((found, family_slug))
    return card, results


def which_models(
    ctx: typer.Context,
    gpu: Annotated[str, typer.Option("--gpu", help="The card you have, e.g. rtx4090.")],
    count: Annotated[int, typer.Option("--count", help="How many of them.")] = 1,
    stage: options.StageOpt = Stage.inference,
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
    grad_checkpointing: options.CheckpointingOpt = False,
    lora_rank: options.LoraRankOpt = DEFAULT_LORA_RANK,
    lora_targets: options.LoraTargetsOpt = DEFAULT_LORA_TARGETS,
    parallel: options.ParallelOpt = None,
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
    if count < 1:
        raise InvalidValueError(f"count must be at least 1, got {count}")
    if context is not None and context < 1:
        raise InvalidValueError(f"context must be at least 1, got {context}")
    request = Request(
        stage=stage,
        method=method,
        precision=precision,
        quants=tuple(quant or ()),
        kv_dtype=kv_dtype,
        batch=batch,
        seq=context,
        optimizer=optimizer,
        grad_checkpointing=grad_checkpointing,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        parallel=parallel,
    )
    card, results = _answers(ctx, request, gpu, count, family, allow_longer_context)
    switched = sum(1 for f, _ in results if f.parallel is Parallel.pp and parallel is None)
    if switched:
        shared.note(
            f"{switched} model{'s' if switched > 1 else ''} whose heads tensor parallelism "
            f"cannot split over {count} cards sized with pipeline parallelism "
            "(--parallel pp; --parallel tp refuses)"
        )
    if as_json:
        shared.print_json(
            {
                "gpu": card.slug,
                "count": count,
                "stage": stage.value,
                "models": [model_json(f, fam) for f, fam in results if show_all or f.fits],
            }
        )
    else:
        _render(card, count, stage, results, show_all, units)
