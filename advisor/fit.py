"""Which cards, how many of each, at which quantization: the advisor's search over the estimator.

Pure: no CLI, rendering or database imports. The caller turns catalog rows into `Card`s and an
`Architecture`, describes the columns to compare as `Level`s (a weight format, or a fine-tuning
method), and gets frozen `Option`s back: per card and level, the fewest cards that fit, the
memory per card, the headroom, and the longest context and largest batch that still fit.

The estimates depend on the level and the card count, never on the card, so a sweep over
thousands of cards costs a few dozen estimates plus comparisons; the context and batch searches
are memoized per usable-memory budget (cards of one size share them).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from advisor.arch import Architecture, count_params
from advisor.errors import InvalidValueError
from advisor.estimator import Estimate, RuntimeOverhead, estimate, valid_tp_counts
from advisor.workload import Method, Parallel, Stage, Workload

# How many cards `fit` tries at most unless told otherwise: one 8-GPU server (DGX/HGX nodes).
DEFAULT_MAX_GPUS = 8
# Inference context when none is asked: 4096 tokens, or the model's maximum if shorter.
DEFAULT_INFERENCE_CONTEXT = 4096
# Training sequence and batch when none are asked (a common fine-tuning recipe).
DEFAULT_TRAINING_SEQ = 2048
DEFAULT_TRAINING_BATCH = 1
# A card is "tight" when less than this share of its usable memory is left free.
TIGHT_HEADROOM_FRACTION = 0.10
# Upper ends of the searches: the longest context searched when longer-than-trained contexts are
# allowed (16 Mi tokens, beyond the longest published context, Llama 4 Scout's 10M), and the
# largest number of concurrent sequences searched.
CONTEXT_SEARCH_CEILING = 2**24
BATCH_SEARCH_CEILING = 2**16


@dataclass(frozen=True, kw_only=True)
class Card:
    """A GPU as the advisor needs it; `usable_fraction` < 1 for unified-memory machines, whose
    operating system keeps part of the memory from the GPU."""

    slug: str
    name: str
    memory_bytes: int
    usable_fraction: float = 1.0
    price_per_hour: float | None = None

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0:
            raise InvalidValueError(f"{self.slug}: memory must be positive")
        if not 0 < self.usable_fraction <= 1:
            raise InvalidValueError(f"{self.slug}: usable memory fraction must be in (0, 1]")

    @property
    def capacity_bytes(self) -> int:
        """Memory a process can allocate on the card (the whole card on a discrete GPU)."""
        return math.floor(self.memory_bytes * self.usable_fraction)


@dataclass(frozen=True, kw_only=True)
class Level:
    """One column of the comparison: the workload at one quantization level or method, on one
    card (the search changes only the card count, the context and the batch)."""

    label: str
    workload: Workload
    quant: str | None = None

    @property
    def method(self) -> Method | None:
        return self.workload.method if self.workload.training else None


@dataclass(frozen=True, kw_only=True)
class Option:
    """One card at one level: the fewest cards that fit (None: none up to the limit)."""

    card: Card
    level: Level
    count: int | None
    estimate: Estimate  # at `count`, or at the largest valid count when nothing fits
    max_context: int | None  # longest context (inference: at batch 1) that fits on `count` cards
    max_batch: int | None  # most sequences at the workload's context that fit on `count` cards
    # The tensors' peak per card (what `torch.cuda.max_memory_allocated()` reports) and the
    # runtime overhead charged on each card, both from `estimate`.
    per_gpu_bytes: int
    overhead_bytes: int

    @property
    def fits(self) -> bool:
        return self.count is not None

    @property
    def usable_bytes_per_gpu(self) -> int:
        """The card's memory less the runtime overhead the estimator charges on it."""
        return self.card.capacity_bytes - self.overhead_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.usable_bytes_per_gpu - self.per_gpu_bytes

    @property
    def used_fraction(self) -> float:
        usable = self.usable_bytes_per_gpu
        return self.per_gpu_bytes / usable if usable > 0 else math.inf

    @property
    def tight(self) -> bool:
        return self.fits and self.headroom_bytes < TIGHT_HEADROOM_FRACTION * max(
            self.usable_bytes_per_gpu, 0
        )

    @property
    def price_per_hour(self) -> float | None:
        """What the configuration costs an hour: cards x the catalog's hourly price."""
        if self.count is None or self.card.price_per_hour is None:
            return None
        return round(self.count * self.card.price_per_hour, 4)


def default_context(arch: Architecture) -> int:
    return min(DEFAULT_INFERENCE_CONTEXT, arch.max_position_embeddings)


def check_context(arch: Architecture, workload: Workload, *, allow_longer: bool) -> None:
    """Refuse an inference context beyond what the model was trained for, unless allowed."""
    if (
        workload.stage is Stage.inference
        and workload.seq > arch.max_position_embeddings
        and not allow_longer
    ):
        raise InvalidValueError(
            f"a context of {workload.seq:,} tokens exceeds the model's maximum of "
            f"{arch.max_position_embeddings:,}; pass --allow-longer-context to size it anyway"
        )


def candidate_counts(arch: Architecture, workload: Workload, max_gpus: int) -> tuple[int, ...]:
    """The card counts the strategy allows, up to `max_gpus`.

    Tensor parallelism splits the heads, so the count must divide the query and KV heads;
    pipeline parallelism needs a layer per card at least; data-parallel training (DDP, ZeRO)
    runs on any count.
    """
    if max_gpus < 1:
        raise InvalidValueError(f"max-gpus must be at least 1, got {max_gpus}")
    strategy = workload.parallel
    if workload.stage is Stage.inference:
        if strategy is Parallel.pp:
            return tuple(range(1, min(max_gpus, arch.num_hidden_layers) + 1))
        return valid_tp_counts(arch, limit=max_gpus)
    return tuple(range(1, max_gpus + 1))


class _Sized:
    """Estimates of one level, memoized by card count, context and batch."""

    def __init__(
        self, arch: Architecture, level: Level, overhead: RuntimeOverhead | None, ceiling: int
    ) -> None:
        self.arch = arch
        self.level = level
        self.overhead = overhead
        self.context_ceiling = ceiling
        self._estimates: dict[tuple[int, int, int], Estimate] = {}
        self._searches: dict[tuple[str, int, int], int | None] = {}
        self._split: dict[int, tuple[int, int]] = {}

    def option(
        self, card: Card, count: int | None, shown: Estimate, *, batch: bool = True
    ) -> Option:
        """`card` at this level: `count` cards (None: none fit), sized by `shown`; the largest
        batch is searched only with `batch`."""
        split = self._split.get(id(shown))
        if split is None:
            overhead = shown.components["runtime_overhead"]
            split = self._split[id(shown)] = (shown.per_gpu_bytes - overhead, overhead)
        capacity = card.capacity_bytes
        return Option(
            card=card,
            level=self.level,
            count=count,
            estimate=shown,
            max_context=None if count is None else self.longest_context(count, capacity),
            max_batch=None if count is None or not batch else self.largest_batch(count, capacity),
            per_gpu_bytes=split[0],
            overhead_bytes=split[1],
        )

    def at(self, gpus: int, *, seq: int | None = None, batch: int | None = None) -> Estimate:
        w = self.level.workload
        key = (gpus, seq or w.seq, batch or w.batch)
        found = self._estimates.get(key)
        if found is None:
            varied = dataclasses.replace(w, gpus=gpus, seq=key[1], batch=key[2])
            found = self._estimates[key] = estimate(self.arch, varied, overhead=self.overhead)
        return found

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
            )
        return self._searches[key]

    def largest_batch(self, gpus: int, capacity: int) -> int | None:
        key = ("batch", gpus, capacity)
        if key not in self._searches:
            self._searches[key] = largest_fitting(
                lambda n: self.at(gpus, batch=n).per_gpu_bytes, 1, BATCH_SEARCH_CEILING, capacity
            )
        return self._searches[key]


def largest_fitting(size: Callable[[int], int], lo: int, hi: int, budget: int) -> int | None:
    """The largest n in [lo, hi] with size(n) <= budget, for `size` non-decreasing in n.

    Memory grows almost linearly in context and batch, so each step guesses by linear
    interpolation and checks the guess's neighbour; every other step bisects, which bounds the
    search at about 2 log2(hi - lo) sizes even where the growth is not linear.
    """
    size_lo = size(lo)
    if size_lo > budget:
        return None
    size_hi = size(hi)
    if size_hi <= budget:
        return hi
    step = 0
    while hi - lo > 1:
        if step % 2 == 0 and size_hi > size_lo:
            guess = lo + (budget - size_lo) * (hi - lo) // (size_hi - size_lo)
        else:
            guess = (lo + hi) // 2
        guess = min(max(guess, lo + 1), hi - 1)
        size_guess = size(guess)
        if size_guess <= budget:
            lo, size_lo = guess, size_guess
            if step % 2 == 0 and guess + 1 < hi:
                above = size(guess + 1)
                if above > budget:
                    return guess
                lo, size_lo = guess + 1, above
        else:
            hi, size_hi = guess, size_guess
            if step % 2 == 0 and guess - 1 > lo:
                below = size(guess - 1)
                if below <= budget:
                    return guess - 1
                hi, size_hi = guess - 1, below
        step += 1
    return lo


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The answer for one model: the levels compared, and an option per card and level."""

    arch: Architecture
    levels: tuple[Level, ...]
    options: tuple[Option, ...]
    max_gpus: int
    breakdowns: tuple[Estimate, ...] = field(default=())  # each level on one card


@dataclass
class _Planner:
    arch: Architecture
    overhead: RuntimeOverhead | None
    context_ceiling: int
    sized: dict[str, _Sized] = field(default_factory=dict)

    def level(self, level: Level) -> _Sized:
        found = self.sized.get(level.label)
        if found is None:
            found = self.sized[level.label] = _Sized(
                self.arch, level, self.overhead, self.context_ceiling
            )
        return found


def _context_ceiling(arch: Architecture, allow_longer: bool) -> int:
    return CONTEXT_SEARCH_CEILING if allow_longer else arch.max_position_embeddings


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
    """For every card and level: the fewest cards (up to `max_gpus`) whose memory holds the
    workload, or, with `count`, whether exactly that many do."""
    if not levels:
        raise InvalidValueError("nothing to compare: give at least one quantization or method")
    for level in levels:
        check_context(arch, level.workload, allow_longer=allow_longer_context)
    planner = _Planner(arch, overhead, _context_ceiling(arch, allow_longer_context))
    counts: dict[str, tuple[int, ...]] = {}
    for level in levels:
        if count is not None:
            # Raises the estimator's error when the strategy cannot split over `count` cards.
            planner.level(level).at(count)
            counts[level.label] = (count,)
        else:
            counts[level.label] = candidate_counts(arch, level.workload, max_gpus)
            if not counts[level.label]:
                raise InvalidValueError(
                    f"no card count up to {max_gpus} can split {arch.num_attention_heads} "
                    f"heads ({arch.num_key_value_heads} KV heads) with tensor parallelism; "
                    "try --parallel pp"
                )
    options: list[Option] = []
    for card in cards:
        capacity = card.capacity_bytes
        for level in levels:
            sized = planner.level(level)
            tried = counts[level.label]
            found: int | None = None
            for n in tried:
                if sized.at(n).per_gpu_bytes <= capacity:
                    found = n
                    break
            shown = sized.at(found if found is not None else tried[-1])
            options.append(sized.option(card, found, shown))
    breakdowns = tuple(planner.level(level).at(count or 1) for level in levels)
    return Plan(
        arch=arch,
        levels=tuple(levels),
        options=tuple(options),
        max_gpus=count or max_gpus,
        breakdowns=breakdowns,
    )


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


def best_level(
    name: str,
    arch: Architecture,
    levels: Sequence[Level],
    card: Card,
    count: int,
    *,
    all_levels: bool = False,
    allow_longer_context: bool = False,
    with_batch: bool = False,
    overhead: RuntimeOverhead | None = None,
) -> ModelFit:
    """The highest level of `levels` (ordered best first) that fits on `count` cards.

    With `all_levels`, every level is tried, so that `fitting_levels` lists all that fit
    (the fine-tuning methods); `with_batch` also searches the largest batch of each fitting
    level (left None otherwise: which-models does not show it). A model that cannot be sized
    at all (a context beyond its maximum, a count its strategy cannot split over) comes back
    with a `reason`.
    """
    first = levels[0].workload
    parallel, reason = _strategy_for(arch, first, count)
    if not reason and first.stage is Stage.inference:
        try:
            check_context(arch, first, allow_longer=allow_longer_context)
        except InvalidValueError:
            reason = f"context {first.seq:,} beyond its maximum {arch.max_position_embeddings:,}"
    if reason:
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
    if parallel is not first.parallel:
        levels = [
            dataclasses.replace(lv, workload=dataclasses.replace(lv.workload, parallel=parallel))
            for lv in levels
        ]
    planner = _Planner(arch, overhead, _context_ceiling(arch, allow_longer_context))
    best: Option | None = None
    last: Option | None = None
    fitting: list[str] = []
    capacity = card.capacity_bytes
    for level in levels:
        sized = planner.level(level)
        shown = sized.at(count)
        fits = shown.per_gpu_bytes <= capacity
        last = sized.option(card, count if fits else None, shown, batch=with_batch)
        if fits:
            fitting.append(level.label)
            best = best or last
            if not all_levels:
                break
    assert last is not None
    return ModelFit(
        name=name,
        arch=arch,
        params=last.estimate.params,
        best=best,
        closest=best or last,
        fitting_levels=tuple(fitting),
        parallel=parallel,
    )
