"""Speed and cost of `fit`'s options, and the cheapest plan that meets a throughput target.

Pure: no CLI, rendering or database imports. `option_speed` gives an option's speed at batch 1
and at the concurrency that fits (inference) or at its batch (training); `cheapest` searches
cards, card counts (from the fewest that fit up to the limit, only counts that can be built)
and levels for the lowest hourly price whose throughput meets a target, within a budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from advisor.arch import Architecture
from advisor.engines import budget_bytes
from advisor.errors import InvalidValueError, NoPlanError
from advisor.estimator import Estimate, RuntimeOverhead, estimate
from advisor.fit import (
    BATCH_SEARCH_CEILING,
    Card,
    Option,
    buildable_counts,
    candidate_counts,
    check_context,
    largest_fitting,
)
from advisor.policy import DEFAULT_MAX_GPUS, Level
from advisor.speed import Speed, single_speed, speed
from advisor.workload import MAX_SEARCH_GPUS, Stage, check_count

__all__ = ["Candidate", "Choice", "OptionSpeed", "cheapest", "option_speed"]

# Largest throughput target and hourly budget a user may ask: 10^9 tokens/s is a thousand
# times the largest published serving deployments' aggregate; 10^7 $/h is beyond any cluster.
MAX_TARGET_TOKENS_PER_S = 1e9
MAX_BUDGET_PER_HOUR = 1e7


@dataclass(frozen=True, kw_only=True)
class OptionSpeed:
    """An option's speed: `single` at batch 1 (inference) or the workload's batch (training);
    `full` at `concurrency`, the most sequences that fit (inference only)."""

    single: Speed
    full: Speed | None
    concurrency: int | None

    @property
    def throughput(self) -> float | None:
        """Tokens per second the option delivers at its best: all sequences, or training."""
        best = self.full or self.single
        return best.headline

    @property
    def cost_per_million(self) -> float | None:
        best = self.full or self.single
        return best.cost_per_million_tokens_usd


def option_speed(arch: Architecture, option: Option, *, tokens: int | None = None) -> OptionSpeed:
    """The speed of `option` on its cards (nothing fits, or a card without figures: Speeds
    whose figures are None)."""
    compute = option.card.compute
    if option.count is None or compute is None:
        return OptionSpeed(single=Speed(missing=("card figures",)), full=None, concurrency=None)
    w = option.estimate.workload
    single = single_speed(arch, w, compute, tokens=tokens)
    if w.stage is not Stage.inference:
        return OptionSpeed(single=single, full=None, concurrency=None)
    concurrency = option.max_batch
    full = None
    if concurrency is not None:
        full = speed(arch, dataclasses.replace(w, batch=concurrency), compute)
    return OptionSpeed(single=single, full=full, concurrency=concurrency)


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One plan: `count` cards of `card` at `level`, at `concurrency` sequences (inference),
    with its speed and hourly price."""

    card: Card
    level: Level
    count: int
    concurrency: int | None
    speed: Speed

    @property
    def throughput(self) -> float:
        return self.speed.headline or 0.0

    @property
    def price_per_hour(self) -> float | None:
        price = self.card.price_per_hour
        return None if price is None else price * self.count


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The cheapest plan meeting the target (`best`), and every plan that met it, cheapest
    first (`met`), of the `considered` plans sized."""

    best: Candidate
    met: tuple[Candidate, ...]
    considered: int


def check_target(target_tps: float | None, budget_per_hour: float | None) -> None:
    """Refuse a target or budget that is not positive or beyond the bounds."""
    for name, value, bound in (
        ("target-tps", target_tps, MAX_TARGET_TOKENS_PER_S),
        ("budget-per-hour", budget_per_hour, MAX_BUDGET_PER_HOUR),
    ):
        if value is None:
            continue
        if math.isnan(value) or not 0 < value <= bound:
            raise InvalidValueError(
                f"{name} must be positive and at most {bound:,.0f}, got {value:g}"
            )


class _Sizer:
    """Estimates of one level under one runtime overhead, memoized by count and batch."""

    def __init__(self, arch: Architecture, level: Level, overhead: RuntimeOverhead) -> None:
        self.arch = arch
        self.level = level
        self.overhead = overhead
        self.cache: dict[tuple[int, int], Estimate] = {}

    def at(self, gpus: int, batch: int) -> Estimate:
        key = (gpus, batch)
        found = self.cache.get(key)
        if found is None:
            w = dataclasses.replace(self.level.workload, gpus=gpus, batch=batch)
            found = self.cache[key] = estimate(self.arch, w, overhead=self.overhead)
        return found


def _need(sizer: _Sizer, count: int) -> Callable[[int], int]:
    """Bytes per card at a batch, on `count` cards."""

    def need(batch: int) -> int:
        return sizer.at(count, batch).per_gpu_bytes

    return need


def _candidates(
    arch: Architecture, level: Level, card: Card, sizer: _Sizer, max_gpus: int, tokens: int | None
) -> Iterable[Candidate]:
    compute = card.compute
    if compute is None:
        return
    w = level.workload
    capacity = budget_bytes(card.capacity_bytes, w.serving)
    for count in buildable_counts(card, candidate_counts(arch, w, max_gpus)):
        if sizer.at(count, w.batch).per_gpu_bytes > capacity:
            continue
        if w.stage is Stage.inference:
            most = largest_fitting(_need(sizer, count), 1, BATCH_SEARCH_CEILING, capacity)
            batch = most or 1
            at = dataclasses.replace(w, gpus=count, batch=batch)
            yield Candidate(
                card=card,
                level=level,
                count=count,
                concurrency=batch,
                speed=speed(arch, at, compute),
            )
        else:
            at = dataclasses.replace(w, gpus=count)
            yield Candidate(
                card=card,
                level=level,
                count=count,
                concurrency=None,
                speed=speed(arch, at, compute, tokens=tokens),
            )


def cheapest(
    arch: Architecture,
    levels: Sequence[Level],
    cards: Iterable[Card],
    *,
    target_tps: float | None = None,
    budget_per_hour: float | None = None,
    max_gpus: int = DEFAULT_MAX_GPUS,
    tokens: int | None = None,
    allow_longer_context: bool = False,
) -> Choice:
    """The plan with the lowest hourly price whose throughput (inference: decode tokens/s of
    every sequence at the concurrency that fits; training: tokens/s) meets `target_tps`, and
    whose price is within `budget_per_hour`. With a budget and no target: the fastest plan
    within the budget. Plans without a price or a speed cannot be compared and are left out.
    NoPlanError says how close the best plan comes."""
    check_target(target_tps, budget_per_hour)
    if target_tps is None and budget_per_hour is None:
        raise InvalidValueError("give --target-tps, --budget-per-hour or both")
    check_count("max-gpus", max_gpus, MAX_SEARCH_GPUS)
    for level in levels:
        check_context(arch, level.workload, allow_longer=allow_longer_context)
    sizers: dict[tuple[str, RuntimeOverhead], _Sizer] = {}
    considered: list[Candidate] = []
    for card in cards:
        for level in levels:
            key = (level.label, card.overhead)
            sizer = sizers.setdefault(key, _Sizer(arch, level, card.overhead))
            considered += [
                c
                for c in _candidates(arch, level, card, sizer, max_gpus, tokens)
                if c.price_per_hour is not None and c.speed.headline is not None
            ]
    if not considered:
        raise NoPlanError(
            "no plan can be compared: no card that fits has both an hourly price and the "
            "figures its speed needs in the catalog"
        )
    within = [c for c in considered if budget_per_hour is None or _price(c) <= budget_per_hour]
    met = [c for c in within if target_tps is None or c.throughput >= target_tps]
    if not met:
        raise NoPlanError(_closest(considered, within, target_tps, budget_per_hour))
    if target_tps is None:
        ordered = sorted(met, key=lambda c: (-c.throughput, _price(c), c.card.slug))
    else:
        ordered = sorted(met, key=lambda c: (_price(c), -c.throughput, c.card.slug))
    return Choice(best=ordered[0], met=tuple(ordered), considered=len(considered))


def _price(c: Candidate) -> float:
    price = c.price_per_hour
    assert price is not None  # the search keeps priced plans only
    return price


def describe(c: Candidate) -> str:
    """'4 x h100-sxm5-80gb at int4: 1,234 tokens/s for $15.12/h'."""
    return (
        f"{c.count} x {c.card.slug} at {c.level.label}: {c.throughput:,.0f} tokens/s "
        f"for ${_price(c):,.2f}/h"
    )


def _closest(
    considered: Sequence[Candidate],
    within: Sequence[Candidate],
    target: float | None,
    budget: float | None,
) -> str:
    """How close the best plan comes to the target, or the budget's floor."""
    if not within:
        cheapest_plan = min(considered, key=_price)
        return f"no plan within ${budget:,.2f}/h; the cheapest is {describe(cheapest_plan)}"
    best = max(within, key=lambda c: c.throughput)
    assert target is not None
    share = best.throughput / target
    where = f" within ${budget:,.2f}/h" if budget is not None else ""
    return (
        f"no plan{where} reaches {target:,.0f} tokens/s; the fastest is {describe(best)} "
        f"({share:.0%} of the target)"
    )
