"""`advisor fit`: which cards, how many of each, at which quantization level.

Parses the options, looks the model, the formats and the cards up, hands them to
`advisor.fit.plan` and renders its options. No estimation logic lives here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.enums import Market, Vendor
from advisor.errors import InvalidValueError
from advisor.units import Units, format_size, unit_label
from advisor.workload import KVDtype, Method, Optimizer, Parallel, Precision, Stage

if TYPE_CHECKING:
    from rich.text import Text

    from advisor.arch import Architecture
    from advisor.estimator import Estimate
    from advisor.fit import Card, Level, Option, Plan
    from advisor.workload import WeightFormat, Workload
    from catalog.reader import GPURecord

BAR_WIDTH = 16
# Quantization levels `fit` compares for inference unless told: 16-bit, bitsandbytes int8,
# 4-bit integer (GPTQ/AWQ-style, group size 128) and llama.cpp's most used k-quant.
DEFAULT_INFERENCE_QUANTS = ("int8", "int4", "q4_k_m")
# Dtypes that are a precision of the whole model rather than a weight format.
FLOAT_DTYPES = {"fp32": Precision.fp32, "bf16": Precision.bf16, "fp16": Precision.fp16}
# The fine-tuning methods compared unless one is asked, and QLoRA's base format by default
# (bitsandbytes NF4 without double quantization, BitsAndBytesConfig's default).
COMPARED_METHODS = (Method.full, Method.lora, Method.qlora)
DEFAULT_QLORA_QUANT = "nf4"
# Styles of the three states of a cell (plain text when piped or NO_COLOR is set).
STYLE_FITS = "green"
STYLE_TIGHT = "yellow"
STYLE_NONE = "red"
NO_FIT = "—"
# Marks a tight cell in plain text too (colour is lost in a pipe).
TIGHT_MARK = "!"


class SortBy(StrEnum):
    """Row order: fewest cards first, cheapest hour first, or largest card first."""

    by_count = "count"
    by_price = "price"
    by_memory = "memory"


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkloadArgs:
    """The workload options as typed, before defaults that depend on the model are filled."""

    stage: Stage
    method: Method | None
    precision: Precision
    quants: Sequence[str]
    kv_dtype: KVDtype | None
    batch: int | None
    seq: int | None
    optimizer: Optimizer
    grad_checkpointing: bool
    lora_rank: int
    lora_targets: str
    trainable_layers: int | None
    parallel: Parallel | None
    offload_optimizer: bool


def build_levels(
    ctx: typer.Context,
    arch: Architecture,
    args: WorkloadArgs,
    *,
    default_quants: Sequence[str],
    formats: dict[str, WeightFormat] | None = None,
) -> list[Level]:
    """The columns to compare: one per quantization (inference) or method (fine-tuning).

    `formats` caches the catalog's weight formats across calls (which-models builds levels
    per model).
    """
    from advisor.fit import Level
    from advisor.workload import Workload

    formats = {} if formats is None else formats
    quants = list(dict.fromkeys(args.quants))
    if args.stage is Stage.inference and not quants:
        first = args.precision.value if args.precision.value in FLOAT_DTYPES else "bf16"
        quants = [first, *default_quants]
    elif args.stage is Stage.finetune and args.method in (None, Method.qlora) and not quants:
        quants = [DEFAULT_QLORA_QUANT]
    wanted = [q for q in quants if q not in FLOAT_DTYPES and q not in formats]
    if wanted:
        for name, fmt in zip(wanted, options.weight_formats(ctx, wanted), strict=True):
            formats[name] = fmt
    base = Workload(
        stage=args.stage,
        method=Method.full,
        precision=args.precision,
        kv_dtype=args.kv_dtype,
        batch=1 if args.batch is None else args.batch,
        seq=options.default_seq(arch, args.stage) if args.seq is None else args.seq,
        optimizer=args.optimizer,
        grad_checkpointing=args.grad_checkpointing,
        lora_rank=args.lora_rank,
        lora_targets=options.lora_targets(args.lora_targets),
        parallel=args.parallel,
        offload_optimizer=args.offload_optimizer,
    )
    if args.stage is Stage.inference:
        if args.method is not None:
            raise InvalidValueError(
                f"--method {args.method.value} is a fine-tuning method; inference has none"
            )
        levels = []
        for quant in quants:
            if quant in FLOAT_DTYPES:
                w = dataclasses.replace(base, precision=FLOAT_DTYPES[quant])
                levels.append(Level(label=quant, workload=w, quant=quant))
            else:
                fmt = formats[quant]
                w = dataclasses.replace(base, weight_format=fmt)
                levels.append(Level(label=fmt.slug, workload=w, quant=fmt.slug))
        return levels
    if args.stage is Stage.pretrain:
        if args.method not in (None, Method.full):
            raise InvalidValueError("pretraining trains every weight: --method must be full")
        if args.quants:
            raise InvalidValueError("--quant applies to inference and to the QLoRA base")
        return [Level(label=args.precision.value, workload=base)]
    methods = COMPARED_METHODS if args.method is None else (args.method,)
    if args.quants and Method.qlora not in methods:
        raise InvalidValueError(
            "--quant applies to inference and to the QLoRA base; use --precision for training"
        )
    levels = []
    for method in methods:
        base_format = formats[quants[0]] if method is Method.qlora else None
        w = dataclasses.replace(
            base,
            method=method,
            weight_format=base_format,
            trainable_layers=args.trainable_layers if method is Method.freeze else None,
        )
        levels.append(
            Level(label=method.value, workload=w, quant=base_format.slug if base_format else None)
        )
    return levels


def card_of(row: GPURecord) -> Card:
    from advisor.fit import Card

    return Card(
        slug=row.slug,
        name=row.name,
        memory_bytes=row.memory_bytes,
        usable_fraction=row.usable_memory_fraction or 1.0,
        price_per_hour=row.cloud_price_per_hour_usd,
    )


def architecture_line(slug: str, arch: Architecture, params: int) -> str:
    moe = (
        f", {arch.num_experts} experts ({arch.num_experts_per_tok} active)"
        if arch.num_experts
        else ""
    )
    return (
        f"{slug}: {params:,} parameters · {arch.model_type.value}, "
        f"{arch.num_hidden_layers} layers, hidden {arch.hidden_size:,}, "
        f"{arch.num_attention_heads} heads ({arch.num_key_value_heads} KV, "
        f"{arch.attention_kind.value.upper()}), head dim {arch.head_dim}, "
        f"FFN {arch.intermediate_size:,}{moe}, vocab {arch.vocab_size:,}, "
        f"context {arch.max_position_embeddings:,}"
    )


def workload_line(w: Workload, levels: Sequence[Level], cards: str) -> str:
    parts = [w.stage.value]
    if w.training:
        parts.append(f"{w.optimizer.value}, {w.precision.value}")
        if w.grad_checkpointing:
            parts.append("gradient checkpointing")
        if any(lv.workload.method in (Method.lora, Method.qlora) for lv in levels):
            parts.append(f"LoRA rank {w.lora_rank} on {','.join(w.lora_targets)}")
        parts.append(f"batch {w.batch} x {w.seq:,} tokens")
    else:
        parts.append(f"batch {w.batch}, context {w.seq:,} tokens")
        parts.append(f"KV cache {w.kv_dtype.value if w.kv_dtype else _compute_dtype(w)}")
    parts.append(cards)
    return " · ".join(parts)


def _compute_dtype(w: Workload) -> str:
    """The dtype activations and (by default) the KV cache are kept in."""
    return {"fp32": "fp32", "fp16": "fp16", "mixed-fp16": "fp16"}.get(w.precision.value, "bf16")


def strategy_words(w: Workload) -> str:
    if w.stage is Stage.inference:
        return "pipeline parallel" if w.parallel is Parallel.pp else "tensor parallel"
    if w.parallel is None:
        return "ZeRO-3 beyond one card"
    return f"{w.parallel.value} beyond one card"


def level_words(level: Level) -> str:
    if level.method is not None and level.quant:
        return f"{level.label} ({level.quant})"
    return level.label


def breakdown_table(levels: Sequence[Level], estimates: Sequence[Estimate], units: Units) -> Any:
    """Each level's memory by term on one card (or the chosen count), with a bar of the total."""
    from rich.table import Table

    from advisor.estimator import COMPONENTS

    shown = [c for c in COMPONENTS if any(e.components[c] for e in estimates)]
    table = Table(show_edge=False, pad_edge=False, title_justify="left")
    table.add_column("level")
    for name in shown:
        table.add_column(name.replace("runtime_overhead", "overhead"), justify="right")
    table.add_column(f"total ({unit_label(units)})", justify="right")
    table.add_column("")
    largest = max(e.per_gpu_bytes for e in estimates)
    for level, e in zip(levels, estimates, strict=True):
        values = e.components
        table.add_row(
            level_words(level),
            *(format_size(values[c], units, digits=2).split()[0] for c in shown),
            format_size(e.per_gpu_bytes, units, digits=2).split()[0],
            "█" * max(1, round(e.per_gpu_bytes / largest * BAR_WIDTH)),
        )
    return table


def cell(option: Option, units: Units) -> Text:
    """'2x 84% +12.3' (cards, use of usable memory, headroom) and, below, the longest
    context and the batch that fit."""
    from rich.text import Text

    if not option.fits:
        return Text(f"{NO_FIT} short {_number(-option.headroom_bytes, units)}", style=STYLE_NONE)
    mark = TIGHT_MARK if option.tight else ""
    first = (
        f"{option.count}x {option.used_fraction:.0%}{mark} +{_number(option.headroom_bytes, units)}"
    )
    second = f"{option.max_context or 0:,} · {option.max_batch or 0:,}"
    return Text(f"{first}\n{second}", style=STYLE_TIGHT if option.tight else STYLE_FITS)


def _number(value: int, units: Units) -> str:
    """A size in the table's unit without its label (the header names it)."""
    return format_size(value, units).split()[0]


def option_json(
    option: Option, components: dict[int, dict[str, int]] | None = None
) -> dict[str, Any]:
    """One option as `fit --json` prints it; `components` caches each estimate's terms (many
    cards share an estimate)."""
    w = option.estimate.workload
    if components is None:
        components = {}
    terms = components.get(id(option.estimate))
    if terms is None:
        terms = components[id(option.estimate)] = option.estimate.components
    return {
        "gpu": option.card.slug,
        "quant": option.level.quant,
        "method": option.level.method.value if option.level.method else None,
        "count": option.count,
        "per_gpu_bytes": option.per_gpu_bytes,
        "usable_bytes_per_gpu": option.usable_bytes_per_gpu,
        "fits": option.fits,
        "headroom_bytes": option.headroom_bytes,
        "max_context": option.max_context,
        "price_per_hour": option.price_per_hour,
        "max_batch": option.max_batch,
        "gpus_sized": option.estimate.gpus,
        "parallel": w.strategy.value,
        "overhead_bytes": option.overhead_bytes,
        "components": terms,
    }


def _sort_key(sort: SortBy, options_: Sequence[Option]) -> tuple[Any, ...]:
    card = options_[0].card
    if sort is SortBy.by_memory:
        return (-card.capacity_bytes, card.slug)
    if sort is SortBy.by_price:
        prices = [o.price_per_hour for o in options_ if o.price_per_hour is not None]
        return (min(prices) if prices else float("inf"), card.capacity_bytes, card.slug)
    counts = tuple(o.count if o.count is not None else 10**9 for o in options_)
    return (*counts, card.capacity_bytes, card.slug)


def rows_by_card(result: Plan, sort: SortBy) -> list[tuple[Option, ...]]:
    grouped: dict[str, list[Option]] = {}
    for option in result.options:
        grouped.setdefault(option.card.slug, []).append(option)
    return sorted((tuple(v) for v in grouped.values()), key=lambda o: _sort_key(sort, o))


def _select_cards(
    ctx: typer.Context,
    gpus: list[str] | None,
    all_cards: bool,
    vendor: Vendor | None,
    market: Market | None,
) -> tuple[list[Card], str]:
    if gpus and (vendor or market):
        raise InvalidValueError(
            "--vendor and --market narrow the default or --all cards; with --gpu, name the cards"
        )
    with shared.reader(ctx) as catalog:
        if gpus:
            rows = [catalog.gpu(name) for name in gpus]
            rows = list({row.slug: row for row in rows}.values())
            what = "the cards asked"
        elif all_cards:
            rows = catalog.gpus(vendor=vendor, market=market)
            what = "every card in the catalog"
        else:
            rows = catalog.current_gpus(vendor=vendor, market=market)
            what = "current cards (--all for every card)"
        if vendor or market:
            what += " of " + " ".join(v.value for v in (vendor, market) if v)
        cards = [card_of(row) for row in rows]
    if not cards:
        raise InvalidValueError("no card in the catalog matches --vendor/--market")
    return cards, what


def _render_single(result: Plan, units: Units) -> None:
    """`--gpu X --count N`: the breakdown per card of each level, and what else fits."""
    from rich.table import Table
    from rich.text import Text

    console = shared.out()
    table = Table(show_edge=False, pad_edge=False)
    for name in ("level", "per card", "usable", "headroom", "fits", "longest context", "batch"):
        table.add_column(name, justify="left" if name in ("level", "fits") else "right")
    training = result.levels[0].workload.training
    for option in result.options:
        style = STYLE_NONE if not option.fits else STYLE_TIGHT if option.tight else STYLE_FITS
        table.add_row(
            level_words(option.level),
            format_size(option.per_gpu_bytes, units, digits=2),
            format_size(option.usable_bytes_per_gpu, units, digits=2),
            format_size(option.headroom_bytes, units, digits=2),
            Text("tight" if option.tight else "yes" if option.fits else "no", style=style),
            f"{option.max_context:,}" if option.max_context else NO_FIT,
            f"{option.max_batch:,}" if option.max_batch else NO_FIT,
        )
    card = result.options[0].card
    console.print(
        f"on {result.max_gpus} x {card.name} ({format_size(card.capacity_bytes, units)} "
        f"each{', usable share of unified memory' if card.usable_fraction < 1 else ''}):"
    )
    console.print(table)
    if training:
        console.print(
            "longest context: the longest sequence that fits at the batch; batch: the largest "
            "batch that fits at the sequence length"
        )
    else:
        console.print(
            "longest context: the longest context that fits at batch 1; batch: the most "
            "sequences at the context whose prompts fit in one forward pass"
        )


def _render(
    slug: str, params: int, result: Plan, cards_what: str, units: Units, sort: SortBy
) -> None:
    from rich.table import Table

    from advisor.fit import TIGHT_HEADROOM_FRACTION

    console = shared.out()
    levels = result.levels
    first = levels[0].workload
    console.print(architecture_line(slug, result.arch, params))
    cards = f"{strategy_words(first)}, up to {result.max_gpus} cards of {cards_what}"
    if len(result.options) == len(levels):
        n = result.max_gpus
        cards = f"{n} card{'s, ' + strategy_words(first) if n > 1 else ''}"
    console.print(workload_line(first, levels, cards))
    n = result.breakdowns[0].gpus
    console.print(f"memory per card on {n} card{'s' if n > 1 else ''}, by term:")
    console.print(breakdown_table(levels, result.breakdowns, units))
    console.print()
    if len(result.options) == len(levels):
        _render_single(result, units)
        return
    rows = rows_by_card(result, sort)
    priced = any(o[0].card.price_per_hour is not None for o in rows)
    table = Table(show_edge=False, pad_edge=False, show_lines=True)
    # Cells never wrap inside (a narrow terminal crops them instead of tripling the rows).
    table.add_column("card", no_wrap=True)
    table.add_column(unit_label(units), justify="right")
    if priced:
        table.add_column("$/h", justify="right")
    for level in levels:
        table.add_column(level_words(level), no_wrap=True)
    for row in rows:
        card = row[0].card
        cells: list[Any] = [card.slug, format_size(card.capacity_bytes, units).split()[0]]
        if priced:
            cells.append(f"{card.price_per_hour:.2f}" if card.price_per_hour else "")
        cells += [cell(o, units) for o in row]
        table.add_row(*cells)
    console.print(table)
    fitting = sum(1 for row in rows if any(o.fits for o in row))
    label = unit_label(units)
    price = "$/h: the catalog's hourly price of one card. " if priced else ""
    console.print(
        f"{fitting} of {len(rows)} cards fit at some level. {label}: memory per card; {price}"
        "Each cell: cards needed x use of "
        f"usable memory (card memory less runtime overhead) +headroom per card in {label}, "
        f"{TIGHT_MARK} tight (under {TIGHT_HEADROOM_FRACTION:.0%} free); below it, "
        + (
            "the longest context at batch 1 · the most sequences at the context."
            if first.stage is Stage.inference
            else "the longest sequence at the batch · the largest batch at the length."
        )
    )


def fit_json(slug: str, params: int, result: Plan) -> dict[str, Any]:
    from advisor.cli.estimate_cmd import workload_json

    first = result.levels[0].workload
    shared_terms: dict[int, dict[str, int]] = {}
    workload = workload_json(first)
    workload.pop("quant")
    workload.pop("method")
    workload["gpus"] = None
    workload["max_gpus"] = result.max_gpus
    workload["quants"] = [lv.quant for lv in result.levels] if not first.training else None
    workload["methods"] = [lv.method.value for lv in result.levels if lv.method] or None
    workload["parallel"] = first.parallel.value if first.parallel else None
    return {
        "model": slug,
        "params": params,
        "stage": first.stage.value,
        "workload": workload,
        "options": [option_json(o, shared_terms) for o in result.options],
    }


def fit(
    ctx: typer.Context,
    model: options.ModelOpt,
    stage: options.StageOpt = Stage.inference,
    method: Annotated[
        Method | None,
        typer.Option("--method", help="Fine-tuning method; default: compare full, lora and qlora."),
    ] = None,
    precision: options.PrecisionOpt = Precision.bf16,
    quant: Annotated[
        list[str] | None,
        typer.Option(
            "--quant",
            help="A level to compare (repeatable): bf16/fp16/fp32 or a format of `advisor "
            "catalog quants`. Default: bf16, int8, int4, q4_k_m; for QLoRA: its base (nf4).",
        ),
    ] = None,
    kv_dtype: options.KVDtypeOpt = None,
    batch: options.BatchOpt = None,
    seq: options.SeqOpt = None,
    optimizer: options.OptimizerOpt = Optimizer.adamw,
    grad_checkpointing: options.CheckpointingOpt = False,
    lora_rank: options.LoraRankOpt = 16,
    lora_targets: options.LoraTargetsOpt = "attention",
    trainable_layers: options.TrainableLayersOpt = None,
    parallel: options.ParallelOpt = None,
    offload_optimizer: options.OffloadOpt = False,
    gpu: Annotated[
        list[str] | None,
        typer.Option("--gpu", help="A card to consider (repeatable). Default: current cards."),
    ] = None,
    all_cards: Annotated[
        bool, typer.Option("--all", help="Consider every card in the catalog.")
    ] = False,
    vendor: Annotated[Vendor | None, typer.Option("--vendor", help="Only this vendor.")] = None,
    market: Annotated[Market | None, typer.Option("--market", help="Only this market.")] = None,
    max_gpus: Annotated[
        int, typer.Option("--max-gpus", help="Most cards of one kind to consider.")
    ] = 8,
    count: Annotated[
        int | None,
        typer.Option("--count", help="Check exactly this many cards (with --gpu: in detail)."),
    ] = None,
    allow_longer_context: Annotated[
        bool,
        typer.Option(
            "--allow-longer-context", help="Size a context beyond the model's trained maximum."
        ),
    ] = False,
    sort: Annotated[SortBy, typer.Option("--sort", help="Order of the cards.")] = SortBy.by_count,
    units: options.UnitsOpt = Units.gib,
    as_json: options.JsonOpt = False,
) -> None:
    """Which cards, how many of each and at which quantization a model needs."""
    from advisor.arch import count_params
    from advisor.fit import plan

    if count is not None and count < 1:
        raise InvalidValueError(f"count must be at least 1, got {count}")
    slug, arch = options.load_model(ctx, model)
    params = count_params(arch).total
    args = WorkloadArgs(
        stage=stage,
        method=method,
        precision=precision,
        quants=quant or [],
        kv_dtype=kv_dtype,
        batch=batch,
        seq=seq,
        optimizer=optimizer,
        grad_checkpointing=grad_checkpointing,
        lora_rank=lora_rank,
        lora_targets=lora_targets,
        trainable_layers=trainable_layers,
        parallel=parallel,
        offload_optimizer=offload_optimizer,
    )
    levels = build_levels(ctx, arch, args, default_quants=DEFAULT_INFERENCE_QUANTS)
    cards, what = _select_cards(ctx, gpu, all_cards, vendor, market)
    result = plan(
        arch,
        levels,
        cards,
        max_gpus=max_gpus,
        count=count,
        allow_longer_context=allow_longer_context,
    )
    if as_json:
        shared.print_json(fit_json(slug, params, result))
    else:
        _render(slug, params, result, what, units, sort)
