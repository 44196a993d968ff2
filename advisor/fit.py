"""Which cards, how many of each, at which quantization: the advisor's search over the estimator.

Pure: no CLI, rendering or database imports. The caller turns catalog rows into `Card`s and an
`Architecture`, describes the columns to compare as `Level`s (a weight format, or a fine-tuning
method), and gets frozen `Option`s back: per card and level, the fewest cards that fit, the
memory per card, the headroom, and the longest context and largest batch that still fit.

Every figure is one need per card (tensors + the runtime overhead of the card's vendor) against
one capacity (the card's memory as the catalog defines usable memory). The estimates depend on
the level, the card count and the card's runtime, never on the card's size, so a sweep over
thousands of cards costs a few dozen estimates plus comparisons; the context and batch searches
are memoized per capacity (cards of one size and runtime share them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from advisor import engines
from advisor.arch import Architecture, count_params
from advisor.engines import budget_bytes
from advisor.enums import Engine, LinkKind, Market, Vendor
from advisor.errors import InvalidValueError
from advisor.estimator import (
    CUDA_OVERHEAD,
    LLAMA_CPP_CTX_PAD,
    OVERHEAD_BY_VENDOR,
    Estimate,
    KVPool,
    RuntimeOverhead,
    degrees_conflict,
    estimate,
    valid_tp_counts,
    vllm_kv_pool,
)
from advisor.offload import Offload, Verdict, split
from advisor.policy import (
    DEFAULT_MAX_GPUS,
    TOPOLOGY_BY_MARKET,
    Level,
    default_context,
    mixed_precision_counterpart,
    mixed_precision_differs,
    with_parallel,
)
from advisor.workload import (
    MAX_SEARCH_GPUS,
    Parallel,
    Stage,
    Workload,
    check_count,
    check_replicas,
)

if TYPE_CHECKING:
    # Types only: the speed and suggestion modules load when a command uses them.
    from advisor.speed import Compute
    from advisor.suggest import Suggestion

__all__ = [
    "DEFAULT_MAX_GPUS",
    "BestChoice",
    "Card",
    "Level",
    "ModelFit",
    "Option",
    "Plan",
    "best_choices",
    "best_level",
    "buildable_counts",
    "candidate_counts",
    "check_buildable",
    "check_context",
    "default_context",
    "largest_fitting",
    "plan",
]

# A card is "tight" when less than this share of its capacity is left free.
TIGHT_HEADROOM_FRACTION = 0.10
# Upper ends of the searches: the longest context searched when longer-than-trained contexts are
# allowed (16 Mi tokens, beyond the longest published context, Llama 4 Scout's 10M), and the
# largest number of concurrent sequences searched.
CONTEXT_SEARCH_CEILING = 2**24
BATCH_SEARCH_CEILING = 2**16


@dataclass(frozen=True, kw_only=True)
class Card:
    """A GPU as the advisor needs it; `usable_fraction` < 1 for unified-memory machines, whose
    operating system keeps part of the memory from the GPU. The vendor sets the runtime, and
    so the overhead charged on the card (`advisor.estimator.OVERHEAD_BY_VENDOR`).

    How cards combine: `max_per_node` cards in one machine, joined by `link`; with
    `multi_node`, whole machines joined over the network. Each left None takes the rule of the
    card's market (`advisor.policy.TOPOLOGY_BY_MARKET`)."""

    slug: str
    name: str
    vendor: Vendor
    market: Market
    memory_bytes: int
    usable_fraction: float = 1.0
    price_per_hour: float | None = None
    max_per_node: int | None = None
    link: LinkKind | None = None
    multi_node: bool | None = None
    # The figures speed needs (bandwidth, tensor throughput, link); None: not known.
    compute: Compute | None = None

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0:
            raise InvalidValueError(f"{self.slug}: memory must be positive")
        if not 0 < self.usable_fraction <= 1:
            raise InvalidValueError(f"{self.slug}: usable memory fraction must be in (0, 1]")
        if self.max_per_node is not None and self.max_per_node < 1:
            raise InvalidValueError(f"{self.slug}: cards per machine must be at least 1")
        rule = TOPOLOGY_BY_MARKET[self.market]
        # Frozen: the market's rule fills what the catalog left empty, once.
        for name in ("max_per_node", "link", "multi_node"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(rule, name))

    @property
    def per_node(self) -> int:
        """The most of these cards one machine takes."""
        return self.max_per_node or TOPOLOGY_BY_MARKET[self.market].max_per_node

    @property
    def joins_nodes(self) -> bool:
        return bool(self.multi_node)

    def buildable(self, count: int) -> bool:
        """Whether `count` cards can be built: within one machine, or whole machines joined
        over the network where the card's machines join."""
        if count <= self.per_node:
            return count >= 1
        return self.joins_nodes and count % self.per_node == 0

    def most_buildable(self, limit: int) -> int:
        """The largest count up to `limit` that can be built (one for a laptop or a Mac)."""
        return next((n for n in range(limit, 0, -1) if self.buildable(n)), 1)

    def nodes(self, count: int) -> int:
        """How many machines `count` cards take (whole machines beyond one)."""
        return max(1, -(-count // self.per_node))

    def over_pcie(self, count: int) -> bool:
        """Whether `count` cards in one machine talk over PCIe (tensor parallelism works but
        every all-reduce crosses the host bus)."""
        return count > 1 and self.link is LinkKind.pcie

    @property
    def capacity_bytes(self) -> int:
        """Memory a process can allocate on the card (the whole card on a discrete GPU)."""
        return math.floor(self.memory_bytes * self.usable_fraction)

    @property
    def overhead(self) -> RuntimeOverhead:
        return OVERHEAD_BY_VENDOR[self.vendor]


@dataclass(frozen=True, kw_only=True)
class Option:
    """One card at one level: the fewest cards that fit (None: none up to the limit).

    One need per card against one capacity: `per_gpu_bytes` (tensors + runtime overhead, the
    estimate's total per card) against `capacity_bytes` (the card's memory as the catalog
    defines usable memory).
    """

    card: Card
    level: Level
    count: int | None
    estimate: Estimate  # at `count`, or at the largest valid count when nothing fits
    max_context: int | None  # longest context (inference: at batch 1) that fits on `count` cards
    max_batch: int | None  # most sequences at the workload's context that fit on `count` cards
    # llama.cpp on one card when the model does not fit: the layers that do (None otherwise).
    offload: Offload | None = None
    # When nothing fits: the longest sequence that fits, then the cheapest change of options
    # that does (advisor/suggest.py); empty when it fits or none was searched.
    suggestions: tuple[Suggestion, ...] = ()

    @property
    def fits(self) -> bool:
        return self.count is not None

    @property
    def verdict(self) -> Verdict:
        """fits; partial (some layers in system RAM, never counted as fitting); no."""
        if self.fits:
            return Verdict.fits
        return Verdict.partial if self.offload is not None else Verdict.no

    @property
    def kv_pool(self) -> KVPool | None:
        """vLLM: the KV blocks left on each card and the concurrency they allow."""
        if self.count is None or self.estimate.workload.serving.engine is not Engine.vllm:
            return None
        return vllm_kv_pool(self.estimate, self.capacity_bytes)

    @property
    def per_gpu_bytes(self) -> int:
        """What one card must hold: the tensors' peak plus the runtime overhead."""
        return self.estimate.per_gpu_bytes

    @property
    def tensor_bytes(self) -> int:
        """The tensors' peak per card (what `torch.cuda.max_memory_allocated()` reports)."""
        return self.estimate.tensor_bytes

    @property
    def overhead_bytes(self) -> int:
        """The runtime overhead charged on each card (context and allocator reserve)."""
        return self.estimate.per_gpu_bytes - self.estimate.tensor_bytes

    @property
    def capacity_bytes(self) -> int:
        """What the engine may use of the card: all of it, or vLLM's
        gpu_memory_utilization share."""
        return budget_bytes(self.card.capacity_bytes, self.level.workload.serving)

    @property
    def headroom_bytes(self) -> int:
        return self.capacity_bytes - self.per_gpu_bytes

    @property
    def used_fraction(self) -> float:
        return self.per_gpu_bytes / self.capacity_bytes

    @property
    def tight(self) -> bool:
        return self.fits and self.headroom_bytes < TIGHT_HEADROOM_FRACTION * self.capacity_bytes

    @property
    def nodes(self) -> int | None:
        """Machines the cards take (None: nothing fits)."""
        return None if self.count is None else self.card.nodes(self.count)

    @property
    def over_pcie(self) -> bool:
        return self.count is not None and self.card.over_pcie(self.count)

    @property
    def layout(self) -> str:
        """The cards as they are built: '2x', or '2 nodes x 8' across machines."""
        if self.count is None:
            return ""
        nodes = self.card.nodes(self.count)
        if nodes > 1:
            return f"{nodes} nodes x {self.card.per_node}"
        return f"{self.count}x"

    @property
    def price_per_hour(self) -> float | None:
        """What the configuration costs an hour: cards x the catalog's hourly price."""
        if self.count is None or self.card.price_per_hour is None:
            return None
        return round(self.count * self.card.price_per_hour, 4)


def check_context(arch: Architecture, workload: Workload, *, allow_longer: bool) -> None:
    """Refuse a context (inference) or training sequence beyond what the model was trained
    for, unless allowed: one rule for every stage."""
    if workload.seq > arch.max_position_embeddings and not allow_longer:
        what = "a context" if workload.stage is Stage.inference else "a training sequence"
        raise InvalidValueError(
            f"{what} of {workload.seq:,} tokens exceeds the model's maximum of "
            f"{arch.max_position_embeddings:,}; pass --allow-longer-context to size it anyway"
        )


def check_buildable(card: Card, count: int) -> None:
    """Refuse a card count that cannot be built (a second laptop GPU, 12 cards in 8-card
    machines), naming what can; a count past the search's bound is refused first."""
    check_count("count", count, MAX_SEARCH_GPUS)
    if card.buildable(count):
        return
    per = card.per_node
    if per == 1 and not card.joins_nodes:
        can = f"one device per machine ({card.market.value})"
    elif card.joins_nodes:
        can = f"up to {per} per machine, or whole machines of {per}"
    else:
        can = f"up to {per} per machine ({card.market.value}), machines not joined"
    raise InvalidValueError(f"{count} x {card.slug} cannot be built: {can}")


def buildable_counts(card: Card, counts: Sequence[int]) -> tuple[int, ...]:
    """The counts of `counts` that can be built with `card`."""
    return tuple(n for n in counts if card.buildable(n))


def candidate_counts(arch: Architecture, workload: Workload, max_gpus: int) -> tuple[int, ...]:
    """The card counts the strategy allows, up to `max_gpus`.

    Tensor parallelism splits the heads, so the count must divide the query and KV heads;
    pipeline parallelism needs a layer per card at least; data-parallel training (DDP, ZeRO)
    runs on any count, or, with training degrees, on whole model replicas (multiples of
    tp x pp x cp).
    """
    if max_gpus < 1:
        raise InvalidValueError(f"max-gpus must be at least 1, got {max_gpus}")
    strategy = workload.parallel
    if workload.stage is Stage.inference:
        if strategy is Parallel.pp:
            return tuple(range(1, min(max_gpus, arch.num_hidden_layers) + 1))
        return valid_tp_counts(arch, limit=max_gpus)
    spans = workload.model_parallel
    return tuple(range(spans, max_gpus + 1, spans))


def _check_replicas(levels: Sequence[Level], count: int) -> None:
    """A card count given (`--count`) must hold whole model replicas of the training
    degrees."""
    if levels:
        w = levels[0].workload
        check_replicas(w.tensor_parallel, w.pipeline_parallel, w.context_parallel, count, "--count")


class _Sized:
    """Estimates of one level under one runtime overhead, memoized by card count, context and
    batch (plain tuples of integers as keys)."""

    def __init__(
        self, arch: Architecture, level: Level, overhead: RuntimeOverhead, ceiling: int
    ) -> None:
        self.arch = arch
        self.level = level
        self.overhead = overhead
        self.context_ceiling = ceiling
        self._estimates: dict[tuple[int, int, int], Estimate] = {}
        self._searches: dict[tuple[str, int, int], int | None] = {}

    def option(
        self,
        card: Card,
        count: int | None,
        shown: Estimate,
        *,
        batch: bool = True,
        offload: bool = True,
        suggest: bool = True,
    ) -> Option:
        """`card` at this level: `count` cards (None: none fit), sized by `shown`; the largest
        batch is searched only with `batch`. When nothing fits and the engine can keep layers
        in system RAM, the split on one card; with `suggest`, what would make it fit."""
        capacity = self.budget(card)
        layers_in_ram = None
        if count is None and offload:
            one = self.at(1)
            layers_in_ram = split(self.arch, one.workload, self.overhead, capacity)
        suggestions = self.suggestions(card, shown, capacity) if count is None and suggest else ()
        return Option(
            card=card,
            level=self.level,
            count=count,
            estimate=shown,
            max_context=None if count is None else self.longest_context(count, capacity),
            max_batch=None if count is None or not batch else self.largest_batch(count, capacity),
            offload=layers_in_ram,
            suggestions=suggestions,
        )

    def suggestions(self, card: Card, shown: Estimate, capacity: int) -> tuple[Suggestion, ...]:
        """What would make this level fit `capacity` on `shown.gpus` cards: the longest
        sequence at the workload's batch, and the cheapest change of options (more cards:
        counts `card` can be built with)."""
        from advisor.suggest import MORE_CARDS_MAX, cheapest_change, shorter_seq

        gpus, w = shown.gpus, self.level.workload
        found: list[Suggestion] = []
        seq = largest_fitting(
            lambda n: self.at(gpus, seq=n).per_gpu_bytes, 1, max(1, w.seq - 1), capacity
        )
        if seq is not None and seq < w.seq:
            found.append(shorter_seq(seq, self.at(gpus, seq=seq)))
        more = [n for n in range(gpus + 1, MORE_CARDS_MAX + 1) if card.buildable(n)]
        change = cheapest_change(
            lambda changed: estimate(self.arch, changed, overhead=self.overhead),
            dataclasses.replace(w, gpus=gpus),
            capacity,
            more,
        )
        if change is not None:
            found.append(change)
        return tuple(found)

    def budget(self, card: Card) -> int:
        """What this level's engine may use of `card`."""
        return budget_bytes(card.capacity_bytes, self.level.workload.serving)

    def at(self, gpus: int, *, seq: int | None = None, batch: int | None = None) -> Estimate:
        w = self.level.workload
        key = (gpus, seq or w.seq, batch or w.batch)
        found = self._estimates.get(key)
        if found is None:
            same = key == (w.gpus, w.seq, w.batch)  # the level's own workload: no copy to check
            varied = w if same else dataclasses.replace(w, gpus=gpus, seq=key[1], batch=key[2])
            found = self._estimates[key] = estimate(self.arch, varied, overhead=self.overhead)
        return found

    def fewest(self, counts: Sequence[int], capacity: int) -> int | None:
        """The first of `counts` whose need per card fits in `capacity` (None: none does)."""
        return next((n for n in counts if self.at(n).per_gpu_bytes <= capacity), None)

    def longest_context(self, gpus: int, capacity: int) -> int | None:
        """Longest context that fits on `gpus` cards of `capacity` bytes (inference: batch 1)."""
        key = ("seq", gpus, capacity)
        if key not in self._searches:
            batch = 1 if self.level.workload.stage is Stage.inference else None
            self._searches[key] = largest_fitting(
                lambda n: self.at(gpus, seq=n, batch=batch).per_gpu_bytes,
                1,
                self.context_ceiling,
                capacity,
                known=self._known(gpus, capacity, seq=self.level.workload.seq, batch=batch),
                step=_context_step(self.level.workload, batch),
            )
        return self._searches[key]

    def largest_batch(self, gpus: int, capacity: int) -> int | None:
        key = ("batch", gpus, capacity)
        if key not in self._searches:
            self._searches[key] = largest_fitting(
                lambda n: self.at(gpus, batch=n).per_gpu_bytes,
                1,
                BATCH_SEARCH_CEILING,
                capacity,
                known=self._known(gpus, capacity, batch=self.level.workload.batch),
            )
        return self._searches[key]

    def _known(
        self, gpus: int, capacity: int, *, seq: int | None = None, batch: int | None = None
    ) -> tuple[int, int] | None:
        """Where a search may start: the workload's own context (or batch) when its estimate
        is already made (the fewest-cards check made it) and fits; None otherwise."""
        w = self.level.workload
        key = (gpus, seq or w.seq, batch or w.batch)
        found = self._estimates.get(key)
        if found is None or found.per_gpu_bytes > capacity:
            return None
        n = key[1] if seq is not None else key[2]
        ceiling = self.context_ceiling if seq is not None else BATCH_SEARCH_CEILING
        return (n, found.per_gpu_bytes) if n <= ceiling else None


def _context_step(workload: Workload, batch: int | None) -> int:
    """How many contexts in a row need the same bytes: llama.cpp allocates its KV cells
    (batch x context) in multiples of `LLAMA_CPP_CTX_PAD`, and its every other term follows
    the cells, so at batch 1 each run of that many contexts ending at a multiple has one size
    (`tests/test_fit.py` checks it on the estimator); 1 elsewhere."""
    if workload.serving.engine is Engine.llama_cpp and (batch or workload.batch) == 1:
        return LLAMA_CPP_CTX_PAD
    return 1


def largest_fitting(
    size: Callable[[int], int],
    lo: int,
    hi: int,
    budget: int,
    *,
    known: tuple[int, int] | None = None,
    step: int = 1,
) -> int | None:
    """The largest n in [lo, hi] with size(n) <= budget, for `size` non-decreasing in n.

    `known`: a point (n, size(n)) already known to fit, where the search starts instead of
    sizing `lo`. `step`: `size` is constant on each run of `step` values ending at a multiple
    of `step` (llama.cpp's padded context), so only the multiples are sized.

    Memory grows almost linearly in context and batch, so each step guesses by linear
    interpolation between the ends of the bracket. Plain interpolation approaches from one
    side when the growth bends (regula falsi), so an end kept twice in a row counts half in
    the next guess (the Illinois rule); and every third step bisects unless the two before it
    halved the bracket, which bounds the search at about 3 log2(hi - lo) sizes where the
    growth is not linear at all.
    """
    if step > 1:
        # Search the runs: run k holds ((k - 1) step, k step], sized at its last value in
        # [lo, hi]; the largest fitting n is the end of the last fitting run (or hi).
        found = largest_fitting(
            lambda k: size(min(k * step, hi)),
            -(-lo // step),
            -(-hi // step),
            budget,
            known=None if known is None else (-(-known[0] // step), known[1]),
        )
        return None if found is None else min(found * step, hi)
    if known is not None:
        lo, size_lo = known
    else:
        size_lo = size(lo)
        if size_lo > budget:
            return None
    size_hi = size(hi)
    if size_hi <= budget:
        return hi
    return _narrow(size, (lo, size_lo), (hi, size_hi), budget)


def _narrow(
    size: Callable[[int], int], low: tuple[int, int], high: tuple[int, int], budget: int
) -> int:
    """`largest_fitting`'s search between `low` = (lo, size(lo)) that fits and `high` =
    (hi, size(hi)) that does not: the last n that fits."""
    (lo, size_lo), (hi, size_hi) = low, high
    # Invariant: size(lo) <= budget < size(hi).
    weight_lo = weight_hi = 1.0
    moved = 0  # which end the last step moved: -1 lo, +1 hi
    width = hi - lo  # the bracket at the last check that interpolation halves it
    turn = 0
    while hi - lo > 1:
        if turn % 3 == 2 and 2 * (hi - lo) > width:
            guess = (lo + hi) // 2
        else:
            below = (budget - size_lo) * weight_lo
            above = (size_hi - budget) * weight_hi
            guess = lo + int((hi - lo) * below / (below + above))
        if turn % 3 == 2:
            width = hi - lo
        guess = min(max(guess, lo + 1), hi - 1)
        size_guess = size(guess)
        if size_guess <= budget:
            lo, size_lo = guess, size_guess
            weight_lo, weight_hi = 1.0, weight_hi / 2 if moved < 0 else 1.0
            moved = -1
        else:
            hi, size_hi = guess, size_guess
            weight_lo, weight_hi = weight_lo / 2 if moved > 0 else 1.0, 1.0
            moved = 1
        turn += 1
    return lo


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The answer for one model: the levels compared, an option per card and level, and each
    level's estimate on one card (or the chosen count) under `breakdown_overhead`."""

    arch: Architecture
    levels: tuple[Level, ...]
    options: tuple[Option, ...]
    max_gpus: int
    breakdowns: tuple[Estimate, ...] = field(default=())
    count: int | None = None  # exactly this many cards were asked (`--count`)
    # Cards asked that cannot be built at any count tried (by slug): no option for them.
    left_out: tuple[str, ...] = ()
    breakdown_overhead: RuntimeOverhead = CUDA_OVERHEAD
    note: str = ""  # a strategy chosen for the user ('' when none was)
    # A pure 16-bit full training's need with fp32 master weights and states, on the
    # breakdowns' count, when it is more than `MIXED_PRECISION_SHOWN_ABOVE` larger.
    mixed_precision: Estimate | None = None


@dataclass
class _Planner:
    """The sized levels of one model, one per level and runtime overhead."""

    arch: Architecture
    context_ceiling: int
    sized: dict[tuple[str, RuntimeOverhead], _Sized] = field(default_factory=dict)

    def level(self, level: Level, overhead: RuntimeOverhead) -> _Sized:
        key = (level.label, overhead)
        found = self.sized.get(key)
        if found is None:
            found = self.sized[key] = _Sized(self.arch, level, overhead, self.context_ceiling)
        return found


def _context_ceiling(arch: Architecture, allow_longer: bool) -> int:
    return CONTEXT_SEARCH_CEILING if allow_longer else arch.max_position_embeddings


def _counts(planner: _Planner, level: Level, count: int | None, max_gpus: int) -> tuple[int, ...]:
    """The card counts tried for `level`: exactly `count`, or every count the strategy allows."""
    if count is not None:
        # Raises the estimator's error when the strategy cannot split over `count` cards.
        planner.level(level, CUDA_OVERHEAD).at(count)
        return (count,)
    arch = planner.arch
    counts = candidate_counts(arch, level.workload, max_gpus)
    spans = level.workload.model_parallel
    if not counts and level.workload.training:
        raise InvalidValueError(
            f"--parallel {level.workload.degrees_label} spans {spans} cards per model replica, "
            f"more than --max-gpus {max_gpus}"
        )
    if not counts:
        raise InvalidValueError(
            f"no card count up to {max_gpus} can split {arch.num_attention_heads} "
            f"heads ({arch.num_key_value_heads} KV heads) with tensor parallelism; "
            "try --parallel pp"
        )
    return counts


def _shared_overhead(cards: Sequence[Card], overhead: RuntimeOverhead | None) -> RuntimeOverhead:
    """The overhead of every card when they share one runtime; the CUDA one otherwise."""
    if overhead is not None:
        return overhead
    runtimes = {card.overhead for card in cards}
    return runtimes.pop() if len(runtimes) == 1 else CUDA_OVERHEAD


def plan(
    arch: Architecture,
    levels: Sequence[Level],
    cards: Iterable[Card],
    *,
    max_gpus: int = DEFAULT_MAX_GPUS,
    count: int | None = None,
    allow_longer_context: bool = False,
    overhead: RuntimeOverhead | None = None,
) -> Plan:
    """For every card and level: the fewest cards (up to `max_gpus`, and only counts that can
    be built: `Card.buildable`) whose capacity holds the need per card, or, with `count`,
    whether exactly that many do (cards that cannot be built `count` times are left out).
    Each card is charged its vendor's runtime overhead unless `overhead` is given for all."""
    check_count("max-gpus", max_gpus, MAX_SEARCH_GPUS)
    if count is not None:
        check_count("count", count, MAX_SEARCH_GPUS)
        _check_replicas(levels, count)
    if not levels:
        raise InvalidValueError("nothing to compare: give at least one quantization or method")
    for level in levels:
        check_context(arch, level.workload, allow_longer=allow_longer_context)
    switched = ""
    if count is not None:
        # The rule `best_level` follows too: tensor parallelism where the count divides the
        # heads, pipeline parallelism otherwise, said in `Plan.note`.
        parallel, reason = _strategy_for(arch, levels[0].workload, count)
        if parallel is not levels[0].workload.parallel and not reason:
            levels = with_parallel(levels, parallel)
            # Said only when tensor parallelism, the first choice, could not be taken.
            switched = switch_note(arch, count) if parallel is Parallel.pp else ""
    planner = _Planner(arch, _context_ceiling(arch, allow_longer_context))
    counts = {level.label: _counts(planner, level, count, max_gpus) for level in levels}
    cards, left_out = _buildable(tuple(cards), counts, count)
    _refuse_unrunnable(cards, levels)
    options = _options(planner, cards, levels, counts, overhead)
    shown_overhead = _shared_overhead(cards, overhead)
    shown_count = count or levels[0].workload.model_parallel  # one replica when not asked
    breakdowns = tuple(planner.level(lv, shown_overhead).at(shown_count) for lv in levels)
    return Plan(
        arch=arch,
        levels=tuple(levels),
        options=tuple(options),
        max_gpus=count or max_gpus,
        breakdowns=breakdowns,
        count=count,
        left_out=left_out,
        breakdown_overhead=shown_overhead,
        note=switched,
        mixed_precision=_mixed_precision(arch, breakdowns, shown_overhead),
    )


def _buildable(
    cards: tuple[Card, ...], counts: Mapping[str, Sequence[int]], count: int | None
) -> tuple[tuple[Card, ...], tuple[str, ...]]:
    """The cards that can be built `count` times, or (no count) at some count tried for every
    level: a replica of tensor x pipeline x context cards needs that many in one machine, or
    machines that join. Refused, saying why, when none can; the others' slugs are left out."""
    if count is not None:
        built = tuple(card for card in cards if card.buildable(count))
    else:
        built = tuple(
            card for card in cards if all(buildable_counts(card, c) for c in counts.values())
        )
    if not built and cards:
        check_buildable(cards[0], count or min(min(c) for c in counts.values() if c))
    kept = {id(card) for card in built}
    return built, tuple(card.slug for card in cards if id(card) not in kept)


def _options(
    planner: _Planner,
    cards: Sequence[Card],
    levels: Sequence[Level],
    counts: Mapping[str, Sequence[int]],
    overhead: RuntimeOverhead | None,
) -> list[Option]:
    """Every card at every level: the fewest of `counts[level]` cards that hold it."""
    options: list[Option] = []
    for card in cards:
        for level in levels:
            sized = planner.level(level, overhead or card.overhead)
            # Counts beyond one machine only where the card's machines join (whole machines).
            tried = buildable_counts(card, counts[level.label])
            found = sized.fewest(tried, sized.budget(card))
            shown = sized.at(found if found is not None else tried[-1])
            options.append(sized.option(card, found, shown))
    return options


def _mixed_precision(
    arch: Architecture, breakdowns: Sequence[Estimate], overhead: RuntimeOverhead
) -> Estimate | None:
    """The first pure 16-bit full training's need with fp32 master weights and states, when it
    differs enough to be shown (`advisor.policy.mixed_precision_differs`)."""
    for pure in breakdowns:
        counterpart = mixed_precision_counterpart(pure.workload)
        if counterpart is not None:
            mixed = estimate(arch, counterpart, overhead=overhead)
            if mixed_precision_differs(pure.per_gpu_bytes, mixed.per_gpu_bytes):
                return mixed
            return None
    return None


class BestChoice(NamedTuple):
    """One of the best choices among a plan's options, and why: the fewest cards, the
    cheapest hour, the most headroom (one option may be several)."""

    option: Option
    reasons: tuple[str, ...]


# The best choices, in the order they are listed.
FEWEST_CARDS = "fewest cards"
CHEAPEST = "cheapest"
MOST_HEADROOM = "most headroom"


def best_choices(options: Sequence[Option]) -> tuple[BestChoice, ...]:
    """Among the options that fit: the fewest cards (ties: the higher level, then the
    cheaper hour, then more headroom), the cheapest hour where prices are known (ties: the
    higher level, then more headroom) and the most headroom per card (ties: fewer cards,
    then the higher level). One option chosen for several reasons is one choice; none fit:
    no choice."""
    fitting = [o for o in options if o.count is not None]
    if not fitting:
        return ()
    rank = {label: i for i, label in enumerate(dict.fromkeys(o.level.label for o in options))}

    def price(o: Option) -> float:
        return math.inf if o.price_per_hour is None else o.price_per_hour

    picks = [
        (
            FEWEST_CARDS,
            min(
                fitting,
                key=lambda o: (
                    o.count,
                    rank[o.level.label],
                    price(o),
                    -o.headroom_bytes,
                    o.card.slug,
                ),
            ),
        ),
    ]
    priced = [o for o in fitting if o.price_per_hour is not None]
    if priced:
        picks.append(
            (
                CHEAPEST,
                min(
                    priced,
                    key=lambda o: (price(o), rank[o.level.label], -o.headroom_bytes, o.card.slug),
                ),
            )
        )
    picks.append(
        (
            MOST_HEADROOM,
            min(
                fitting,
                key=lambda o: (-o.headroom_bytes, o.count, rank[o.level.label], o.card.slug),
            ),
        )
    )
    chosen: dict[int, BestChoice] = {}
    for reason, option in picks:
        found = chosen.get(id(option))
        reasons = (*found.reasons, reason) if found else (reason,)
        chosen[id(option)] = BestChoice(option=option, reasons=reasons)
    return tuple(chosen.values())


@dataclass(frozen=True, kw_only=True)
class ModelFit:
    """`which-models`: the first level (highest precision first) at which a model fits."""

    name: str
    arch: Architecture
    params: int
    best: Option | None  # None: fits at no level
    closest: Option | None  # the smallest level tried when none fits (None: none was sized)
    fitting_levels: tuple[str, ...]
    parallel: Parallel | None
    reason: str | None = None  # why the model could not be sized at all

    @property
    def fits(self) -> bool:
        return self.best is not None

    @property
    def offload(self) -> Offload | None:
        """When the model fits at no level: the split of the smallest level tried, if its
        engine keeps layers in system RAM and one layer fits."""
        if self.best is not None or self.closest is None:
            return None
        return self.closest.offload

    @property
    def verdict(self) -> Verdict:
        if self.best is not None:
            return Verdict.fits
        return Verdict.partial if self.offload is not None else Verdict.no


def switch_note(arch: Architecture, count: int) -> str:
    """What `fit` and `which-models` say when they split over `count` cards with pipeline
    parallelism because tensor parallelism cannot."""
    return (
        f"tensor parallelism cannot split {arch.num_attention_heads} heads "
        f"({arch.num_key_value_heads} KV) over {count} cards: sized with pipeline parallelism "
        "(--parallel pp; --parallel tp refuses)"
    )


def _strategy_for(arch: Architecture, first: Workload, count: int) -> tuple[Parallel | None, str]:
    """The inference strategy over `count` cards, or why there is none ('' when fine).

    With no strategy asked, tensor parallelism where the count divides the heads, pipeline
    parallelism otherwise."""
    parallel = first.parallel
    if count == 1 or first.stage is not Stage.inference:
        return parallel, ""
    tp_ok = count in valid_tp_counts(arch, limit=count)
    pp_ok = count <= arch.num_hidden_layers
    if parallel is None:
        parallel = Parallel.tp if tp_ok else Parallel.pp
    if parallel is Parallel.tp and not tp_ok:
        return parallel, (
            f"tensor parallelism cannot split {arch.num_attention_heads} heads "
            f"({arch.num_key_value_heads} KV) over {count} cards"
        )
    if parallel is Parallel.pp and not pp_ok:
        return parallel, f"{arch.num_hidden_layers} layers cannot be split over {count} cards"
    return parallel, ""


def _unsizable(
    arch: Architecture, first: Workload, count: int, allow_longer_context: bool
) -> tuple[Parallel | None, str]:
    """The strategy over `count` cards, and why the model cannot be sized ('' when it can)."""
    parallel, reason = _strategy_for(arch, first, count)
    if not reason and first.training:
        reason = degrees_conflict(arch, first)
    if not reason:
        try:
            check_context(arch, first, allow_longer=allow_longer_context)
        except InvalidValueError:
            what = "context" if first.stage is Stage.inference else "sequence"
            reason = f"{what} {first.seq:,} beyond its maximum {arch.max_position_embeddings:,}"
    return parallel, reason


def _refuse_unrunnable(cards: Sequence[Card], levels: Sequence[Level]) -> list[Level]:
    """The levels whose engine runs on some of `cards`; InvalidValueError (exit 2) when no
    card can run any level's engine (vLLM asked for on a Mac)."""
    runnable = [
        level
        for level in levels
        if any(
            engines.card_refusal(level.workload.serving.engine, c.vendor, c.name) is None
            for c in cards
        )
    ]
    if cards and not runnable:
        card, engine = cards[0], levels[0].workload.serving.engine
        raise InvalidValueError(engines.card_refusal(engine, card.vendor, card.name) or "")
    return runnable


def best_level(
    name: str,
    arch: Architecture,
    levels: Sequence[Level],
    card: Card,
    count: int,
    *,
    all_levels: bool = False,
    ladder: bool = False,
    allow_longer_context: bool = False,
    with_batch: bool = False,
    overhead: RuntimeOverhead | None = None,
) -> ModelFit:
    """The highest level of `levels` (best first) that fits on `count` cards. `all_levels`:
    try every level (`fitting_levels` lists all that fit); `with_batch`: search each fitting
    level's largest batch; `ladder`: each level needs no more than the one before
    (`policy.is_ladder`), so the first that fits is bisected for. A model that cannot be sized
    (context beyond its maximum, a count its strategy cannot split over) has a `reason`;
    when no level fits, the last one (training) carries its suggestions. The card's vendor
    overhead is charged unless `overhead`."""
    check_count("count", count, MAX_SEARCH_GPUS)
    _check_replicas(levels, count)
    first = levels[0].workload
    parallel, reason = _unsizable(arch, first, count, allow_longer_context)
    if reason:
        return _unsized(name, arch, parallel, reason)
    if parallel is not first.parallel:
        levels = with_parallel(levels, parallel)
    levels = _refuse_unrunnable((card,), levels)
    planner = _Planner(arch, _context_ceiling(arch, allow_longer_context))
    charged = overhead or card.overhead

    def sized(index: int) -> _Sized:  # only the levels a search tries are sized
        return planner.level(levels[index], charged)

    def fits(index: int) -> bool:
        return sized(index).at(count).per_gpu_bytes <= sized(index).budget(card)

    fitting = _fitting(fits, len(levels), all_levels=all_levels, ladder=ladder)
    options = [sized(i).option(card, count, sized(i).at(count), batch=with_batch) for i in fitting]
    last = sized(len(levels) - 1)
    # The split to system RAM is one card's (several cards asked get none), and only the
    # smallest level tried says it (`ModelFit.offload`).
    closest = (
        options[0]
        if options
        else last.option(card, None, last.at(count), offload=count == 1, suggest=first.training)
    )
    return ModelFit(
        name=name,
        arch=arch,
        params=closest.estimate.params,
        best=options[0] if options else None,
        closest=closest,
        fitting_levels=tuple(option.level.label for option in options),
        parallel=parallel,
    )


def _unsized(name: str, arch: Architecture, parallel: Parallel | None, reason: str) -> ModelFit:
    """A model that cannot be sized at all on the count asked, and why."""
    return ModelFit(
        name=name,
        arch=arch,
        params=count_params(arch).total,
        best=None,
        closest=None,
        fitting_levels=(),
        parallel=parallel,
        reason=reason,
    )


def _fitting(
    fits: Callable[[int], bool], levels: int, *, all_levels: bool, ladder: bool
) -> list[int]:
    """The levels `best_level` reports: every one that fits (`all_levels`), else the first
    that fits, bisected for on a ladder, walked to otherwise."""
    if all_levels:
        return [i for i in range(levels) if fits(i)]
    chosen = (
        _first_fitting(fits, levels)
        if ladder
        else next((i for i in range(levels) if fits(i)), None)
    )
    return [] if chosen is None else [chosen]


def _first_fitting(fits: Callable[[int], bool], levels: int) -> int | None:
    """The first of `levels` levels that fits (None: none does), when a level after the first
    never needs more than the one before: the first level, then the last, then a bisection
    of those between."""
    if fits(0):
        return 0
    if not fits(levels - 1):
        return None
    lo, hi = 0, levels - 1  # lo does not fit, hi does
    while hi - lo > 1:
        middle = (lo + hi) // 2
        if fits(middle):
            hi = middle
        else:
            lo = middle
    return hi
