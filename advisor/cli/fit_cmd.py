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
from advisor.cli.estimate_cmd import engine_words
from advisor.cli.shared import NO_FIT, STYLE_FITS, STYLE_NONE, STYLE_TIGHT, level_words
from advisor.enums import Market, Vendor
from advisor.errors import InvalidValueError
from advisor.policy import (
    COMPARED_METHODS,
    DEFAULT_FLOAT_LEVEL,
    DEFAULT_MAX_GPUS,
    DEFAULT_QLORA_QUANT,
    FIT_QUANTS,
    Request,
    checkpointing_asked,
)
from advisor.units import Units, format_size, unit_label
from advisor.workload import (
    DEFAULT_CHECKPOINTING,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_LORA_RANK,
    DEFAULT_LORA_TARGETS,
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    DEFAULT_UBATCH,
    Method,
    Parallel,
    Stage,
    TrainingOffload,
)

if TYPE_CHECKING:
    from rich.text import Text

    from advisor.arch import Architecture
    from advisor.estimator import Estimate
    from advisor.fit import Card, Option, Plan
    from advisor.offload import Offload
    from advisor.policy import Level
    from advisor.workload import Workload

BAR_WIDTH = 16
# Marks a tight cell in plain text too (colour is lost in a pipe).
TIGHT_MARK = "!"
# The card column wraps a collapsed row's names at this width.
CARD_COLUMN_WIDTH = 36
# Marks cards that split the model over PCIe (no GPU-to-GPU link): it works, more slowly.
PCIE_MARK = "~"


class SortBy(StrEnum):
    """Row order: fewest cards first, cheapest hour first, or largest card first."""

    by_count = "count"
    by_price = "price"
    by_memory = "memory"


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
        if w.checkpointing is not DEFAULT_CHECKPOINTING:
            parts.append(f"{w.checkpointing.value} checkpointing")
        if w.loss is not DEFAULT_LOSS:
            parts.append(f"{w.loss.value} loss")
        if any(lv.workload.method in (Method.lora, Method.qlora) for lv in levels):
            parts.append(f"LoRA rank {w.lora_rank} on {','.join(w.lora_targets)}")
        parts.append(f"batch {w.batch} x {w.seq:,} tokens")
    else:
        parts.append(f"batch {w.batch}, context {w.seq:,} tokens")
        parts.append(f"KV cache {w.kv_dtype.value if w.kv_dtype else _compute_dtype(w)}")
        used = list(dict.fromkeys(lv.workload for lv in levels))
        engines_used = {lv.workload.serving.engine for lv in levels}
        if len(engines_used) == 1:
            parts.append(f"engine {engine_words(used[0])}")
        else:
            parts.append("engine by format (column engine)")
    parts.append(cards)
    return " · ".join(parts)


def _compute_dtype(w: Workload) -> str:
    """The dtype activations and (by default) the KV cache are kept in."""
    return {"fp32": "fp32", "fp16": "fp16", "mixed-fp16": "fp16"}.get(w.precision.value, "bf16")


def strategy_words(w: Workload) -> str:
    if w.stage is Stage.inference:
        return "pipeline parallel" if w.parallel is Parallel.pp else "tensor parallel"
    if w.model_parallel > 1:
        return f"{w.parallel_label} (multiples of {w.model_parallel} cards)"
    if w.parallel is None:
        return "ZeRO-3 beyond one card"
    return f"{w.parallel.value} beyond one card"


def breakdown_table(levels: Sequence[Level], estimates: Sequence[Estimate], units: Units) -> Any:
    """Each level's need per card by term on one card (or the chosen count), with a bar of the
    total: tensors + runtime overhead, the figure every other table compares with a card."""
    from rich.table import Table

    from advisor.estimator import COMPONENTS

    shown = [c for c in COMPONENTS if any(e.components[c] for e in estimates)]
    table = Table(show_edge=False, pad_edge=False, title_justify="left")
    # Names and figures never shrink (a narrow terminal crops the bar, never a header).
    engines = [level.workload.serving.engine.value for level in levels]
    table.add_column("level", min_width=max(len(level_words(lv)) for lv in levels), no_wrap=True)
    table.add_column("engine", min_width=max(len("engine"), *map(len, engines)), no_wrap=True)
    for name in shown:
        header = name.replace("runtime_overhead", "overhead")
        table.add_column(header, justify="right", min_width=len(header), no_wrap=True)
    per_card = f"per card ({unit_label(units)})"
    table.add_column(per_card, justify="right", min_width=len(per_card), no_wrap=True)
    table.add_column("", no_wrap=True, overflow="crop")
    largest = max(e.per_gpu_bytes for e in estimates)
    for level, e in zip(levels, estimates, strict=True):
        values = e.components
        table.add_row(
            level_words(level),
            engines[levels.index(level)],
            *(_number(values[c], units, digits=2) for c in shown),
            _number(e.per_gpu_bytes, units, digits=2),
            "█" * max(1, round(e.per_gpu_bytes / largest * BAR_WIDTH)),
        )
    return table


def cell(option: Option, units: Units) -> Text:
    """'2x 84% +12.3' (cards, share of the card's memory needed, headroom) and, below, the
    longest context and the batch that fit."""
    from rich.text import Text

    if option.offload is not None:
        return Text(partial_words(option.offload, units), style=STYLE_TIGHT)
    if not option.fits:
        return Text(f"{NO_FIT} short {_number(-option.headroom_bytes, units)}", style=STYLE_NONE)
    mark = TIGHT_MARK if option.tight else ""
    pcie = PCIE_MARK if option.over_pcie else ""
    first = (
        f"{option.layout}{pcie} {option.used_fraction:.0%}{mark} "
        f"+{_number(option.headroom_bytes, units)}"
    )
    second = f"{option.max_context or 0:,} · {option.max_batch or 0:,}"
    return Text(f"{first}\n{second}", style=STYLE_TIGHT if option.tight else STYLE_FITS)


def partial_words(offload: Offload, units: Units) -> str:
    """'partial: 28/33 layers on GPU, 6.1 GiB in RAM' (llama.cpp's CPU offload)."""
    return (
        f"partial: {offload.gpu_layers}/{offload.total_layers} layers on GPU, "
        f"{format_size(offload.host_bytes, units)} in RAM"
    )


def offload_json(offload: Offload | None) -> dict[str, int] | None:
    if offload is None:
        return None
    return {
        "gpu_layers": offload.gpu_layers,
        "total_layers": offload.total_layers,
        "host_bytes": offload.host_bytes,
    }


def kv_pool_json(option: Option) -> dict[str, Any] | None:
    """vLLM: the KV blocks left on each card and the sequences of the context they hold."""
    pool = option.kv_pool
    if pool is None:
        return None
    return {
        "kv_pool_bytes": pool.pool_bytes,
        "blocks": pool.blocks,
        "tokens": pool.tokens,
        "max_concurrency": round(pool.max_concurrency, 2),
    }


def _number(value: int, units: Units, digits: int = 1) -> str:
    """A size in the table's unit without its label (the header names it)."""
    return format_size(value, units, digits=digits).split()[0]


def option_json(option: Option) -> dict[str, Any]:
    """One option as `fit --json` prints it: the need per card (`per_gpu_bytes` = tensors +
    overhead) against the card's capacity."""
    estimate = option.estimate
    return {
        "gpu": option.card.slug,
        "quant": option.level.quant,
        "method": option.level.method.value if option.level.method else None,
        "count": option.count,
        "per_gpu_bytes": option.per_gpu_bytes,
        "tensor_bytes": option.tensor_bytes,
        "overhead_bytes": option.overhead_bytes,
        "capacity_bytes": option.capacity_bytes,
        "engine": estimate.workload.serving.engine.value,
        "fits": option.fits,
        "verdict": option.verdict.value,
        "offload": offload_json(option.offload),
        "kv_pool": kv_pool_json(option),
        "headroom_bytes": option.headroom_bytes,
        "max_context": option.max_context,
        "price_per_hour": option.price_per_hour,
        "max_batch": option.max_batch,
        "gpus_sized": estimate.gpus,
        "parallel": estimate.workload.strategy.value,
        "runtime": option.card.overhead.runtime.value,
        "nodes": option.nodes,
        "per_node": option.card.per_node,
        "link": option.card.link.value if option.card.link else None,
        "over_pcie": option.over_pcie,
        "components": estimate.components,
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


def collapsed_rows(
    rows: Sequence[tuple[Option, ...]], units: Units
) -> list[tuple[list[str], tuple[Option, ...]]]:
    """Cards whose rows read the same (same memory and cells: the same count, layout, link
    mark and headroom at every level) as one row listing their names, in first order; the row
    shown is its cheapest card's. The JSON keeps one entry per card."""
    groups: dict[tuple[Any, ...], tuple[list[str], tuple[Option, ...]]] = {}
    for row in rows:
        card = row[0].card
        key = (card.capacity_bytes, *(cell(o, units).plain for o in row))
        names, kept = groups.setdefault(key, ([], row))
        names.append(card.slug)
        if _cheaper(card.price_per_hour, kept[0].card.price_per_hour):
            groups[key] = (names, row)
    return list(groups.values())


def _cheaper(price: float | None, than: float | None) -> bool:
    return price is not None and (than is None or price < than)


def _select_cards(
    ctx: typer.Context,
    gpus: list[str] | None,
    all_cards: bool,
    vendor: Vendor | None,
    market: Market | None,
) -> tuple[list[Card], str]:
    if gpus and all_cards:
        raise InvalidValueError("--all considers every card and --gpu names the cards: give one")
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
            rows = [r for r in catalog.gpus(vendor=vendor, market=market) if r.default_set]
            what = "the default card set (--all for every card)"
        if vendor or market:
            what += " of " + " ".join(v.value for v in (vendor, market) if v)
        cards = [options.card_of(row) for row in rows]
    if not cards:
        raise InvalidValueError("no card in the catalog matches --vendor/--market")
    return cards, what


def _render_single(result: Plan, units: Units) -> None:
    """`--gpu X --count N`: each level's need per card against the card, and what else fits."""
    from rich.table import Table
    from rich.text import Text

    console = shared.out()
    table = Table(show_edge=False, pad_edge=False)
    names = ["level", "engine", "cards", "per card", "headroom", "use", "fits"]
    names += ["longest context", "batch"]
    for name in names:
        left = name in ("level", "engine", "fits")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for option in result.options:
        style = STYLE_NONE if not option.fits else STYLE_TIGHT if option.tight else STYLE_FITS
        verdict = "tight" if option.tight else "yes" if option.fits else "no"
        if option.offload is not None:
            verdict, style = partial_words(option.offload, units), STYLE_TIGHT
        table.add_row(
            level_words(option.level),
            option.level.workload.serving.engine.value,
            option.layout or NO_FIT,
            format_size(option.per_gpu_bytes, units, digits=2),
            format_size(option.headroom_bytes, units, digits=2),
            f"{option.used_fraction:.0%}",
            Text(verdict, style=style),
            f"{option.max_context:,}" if option.max_context else NO_FIT,
            f"{option.max_batch:,}" if option.max_batch else NO_FIT,
        )
    card = result.options[0].card
    # Each level on the fewest cards that hold it (exactly the count asked with --count), up
    # to max_gpus; the `cards` column says how many.
    console.print(
        f"on {card.name} ({format_size(card.capacity_bytes, units, digits=2)} each"
        f"{', usable share of unified memory' if card.usable_fraction < 1 else ''}), "
        f"up to {result.max_gpus} card{'s' if result.max_gpus != 1 else ''}:"
    )
    console.print(table)
    if result.levels[0].workload.training:
        console.print(
            "per card: tensors + runtime overhead; longest context: the longest sequence that "
            "fits at the batch; batch: the largest batch that fits at the sequence length"
        )
    else:
        console.print(
            "per card: tensors + runtime overhead; longest context: the longest context that "
            "fits at batch 1; batch: the most sequences at the context whose prompts fit in one "
            "forward pass"
        )


def _print_header(slug: str, params: int, result: Plan, cards_what: str, units: Units) -> None:
    """The model, the workload, and each level's need per card by term."""
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
    runtime = result.breakdown_overhead.runtime.value
    console.print(
        f"memory per card on {n} card{'s' if n > 1 else ''}, by term ({runtime} overhead):"
    )
    console.print(breakdown_table(levels, result.breakdowns, units))
    console.print()


def _render(
    slug: str, params: int, result: Plan, cards_what: str, units: Units, sort: SortBy
) -> None:
    from rich.table import Table

    _print_header(slug, params, result, cards_what, units)
    if len(result.options) == len(result.levels):
        _render_single(result, units)
        return
    rows = rows_by_card(result, sort)
    priced = any(o[0].card.price_per_hour is not None for o in rows)
    table = Table(show_edge=False, pad_edge=False, show_lines=True)
    # Cells never wrap inside (a narrow terminal crops them instead of tripling the rows).
    table.add_column("card", max_width=CARD_COLUMN_WIDTH)
    table.add_column(unit_label(units), justify="right")
    if priced:
        table.add_column("$/h", justify="right")
    for level in result.levels:
        table.add_column(level_words(level), no_wrap=True)
    for names, row in collapsed_rows(rows, units):
        card = row[0].card
        cells: list[Any] = [", ".join(names), _number(card.capacity_bytes, units)]
        if priced:
            cells.append(f"{card.price_per_hour:.2f}" if card.price_per_hour else "")
        cells += [cell(o, units) for o in row]
        table.add_row(*cells)
    console = shared.out()
    console.print(table)
    fitting = sum(1 for row in rows if any(o.fits for o in row))
    console.print(_legend(result, fitting, len(rows), priced, units))


def _legend(result: Plan, fitting: int, cards: int, priced: bool, units: Units) -> str:
    from advisor.fit import TIGHT_HEADROOM_FRACTION

    label = unit_label(units)
    price = (
        "$/h: the catalog's hourly price of one card (a row of several: the cheapest). "
        if priced
        else ""
    )
    below = (
        "the longest context at batch 1 · the most sequences at the context."
        if result.levels[0].workload.stage is Stage.inference
        else "the longest sequence at the batch · the largest batch at the length."
    )
    return (
        f"{fitting} of {cards} cards fit at some level. {label}: memory per card; {price}"
        "Each cell: cards needed x share of the card's memory needed (tensors + its runtime "
        f"overhead) +headroom per card in {label}, {TIGHT_MARK} tight (under "
        f"{TIGHT_HEADROOM_FRACTION:.0%} free), {PCIE_MARK} split over PCIe (slower); only counts "
        f"one machine takes, or whole machines where they join; below it, {below}"
    )


def fit_json(slug: str, params: int, result: Plan) -> dict[str, Any]:
    from advisor.cli.estimate_cmd import workload_json

    first = result.levels[0].workload
    workload = workload_json(first)
    workload.pop("quant")
    workload.pop("method")
    workload["gpus"] = None
    workload["data_parallel"] = None  # per option: its count over the model-parallel degrees
    workload["max_gpus"] = result.max_gpus
    workload["quants"] = [lv.quant for lv in result.levels] if not first.training else None
    workload["methods"] = [lv.method.value for lv in result.levels if lv.method] or None
    workload["parallel"] = first.parallel.value if first.parallel else None
    used = list(dict.fromkeys(lv.workload.serving.engine.value for lv in result.levels))
    workload["engine"] = used[0] if len(used) == 1 else None
    workload["engines"] = [lv.workload.serving.engine.value for lv in result.levels]
    return {
        "model": slug,
        "params": params,
        "stage": first.stage.value,
        "workload": workload,
        "options": [option_json(o) for o in result.options],
    }


def fit(
    ctx: typer.Context,
    model: options.ModelOpt,
    offline: options.OfflineOpt = False,
    stage: options.StageOpt = Stage.inference,
    method: Annotated[
        Method | None,
        typer.Option(
            "--method",
            help="Fine-tuning method; default: compare "
            + ", ".join(m.value for m in COMPARED_METHODS)
            + ".",
        ),
    ] = None,
    precision: options.PrecisionOpt = DEFAULT_PRECISION,
    quant: Annotated[
        list[str] | None,
        typer.Option(
            "--quant",
            help="A level to compare (repeatable): bf16/fp16/fp32 or a format of `advisor "
            f"catalog quants`. Default: {', '.join((DEFAULT_FLOAT_LEVEL, *FIT_QUANTS))}; "
            f"for QLoRA: its base ({DEFAULT_QLORA_QUANT}).",
        ),
    ] = None,
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
    gpu: Annotated[
        list[str] | None,
        typer.Option(
            "--gpu",
            help="A card to consider (repeatable); `local`: this machine's cards, as many as it "
            "has. Default: the catalog's default card set (`catalog update gpu X --default-set`).",
        ),
    ] = None,
    all_cards: Annotated[
        bool, typer.Option("--all", help="Consider every card in the catalog.")
    ] = False,
    vendor: Annotated[Vendor | None, typer.Option("--vendor", help="Only this vendor.")] = None,
    market: Annotated[Market | None, typer.Option("--market", help="Only this market.")] = None,
    max_gpus: Annotated[
        int, typer.Option("--max-gpus", help="Most cards of one kind to consider.")
    ] = DEFAULT_MAX_GPUS,
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
    from advisor.fit import check_buildable, plan

    if count is not None and count < 1:
        raise InvalidValueError(f"count must be at least 1, got {count}")
    request = Request(
        stage=stage,
        method=method,
        precision=precision,
        quants=tuple(quant or ()),
        kv_dtype=kv_dtype,
        batch=batch,
        seq=seq,
        optimizer=optimizer,
        checkpointing=checkpointing_asked(checkpointing, grad_checkpointing),
        loss=loss,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        trainable_layers=trainable_layers,
        **options.parallel_fields(parallel, searched=True),
        offload_optimizer=offload_optimizer,
        offload=offload,
        optimizer_in_backward=optimizer_in_backward,
        lora_dtype=lora_dtype,
        attention=attention,
        engine=options.engine(engine),
        serving=options.serving(ubatch, flash_attn, gpu_memory_utilization),
    )
    slug, arch, own, own_kv = options.load_model_and_format(ctx, model, offline=offline)
    if own_kv is not None and request.kv_dtype is None and stage is Stage.inference:
        request = dataclasses.replace(request, kv_dtype=own_kv)
    if own is not None and not request.quants and stage is Stage.inference:
        # A pre-quantized checkpoint: its own weights, byte for byte, are the level.
        from advisor.policy import build_levels

        request = dataclasses.replace(request, quants=(own.slug,))
        levels = build_levels(arch, request, {own.slug: own}, default_quants=FIT_QUANTS)
    else:
        levels = options.levels(ctx, arch, request, FIT_QUANTS)
    if gpu == [options.LOCAL_GPU]:
        from advisor.cli.detect_cmd import local_fit_cards

        cards, local_count, what = local_fit_cards(ctx)
        count = count or local_count
    else:
        cards, what = _select_cards(ctx, gpu, all_cards, vendor, market)
    if gpu and gpu != [options.LOCAL_GPU] and count is not None:
        for card in cards:
            check_buildable(card, count)
    result = plan(
        arch,
        levels,
        cards,
        max_gpus=max_gpus,
        count=count,
        allow_longer_context=allow_longer_context,
    )
    params = count_params(arch).total
    if result.note:
        shared.note(result.note)
    if as_json:
        shared.print_json(fit_json(slug, params, result))
    else:
        _render(slug, params, result, what, units, sort)
