"""What would make a level fit: the cheapest change, in the order people reach for them.

Pure: no CLI, rendering or database imports. Where a workload does not fit a card, `fit` and
`which-models` say (1) the longest sequence that fits as it is, and (2) the first change, in
`SAVER_ORDER`, that makes it fit: activation checkpointing, a fused loss, an 8-bit optimizer,
the optimizer states in host memory, each added to the ones before it, then more cards.
The sizes come from a function the caller gives (`fit`'s memoized estimates), so this module
holds only the order and the search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import InvalidValueError
from advisor.estimator import Estimate
from advisor.workload import Checkpointing, Loss, Optimizer, TrainingOffload, Workload


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """A change of options (option name as the flag without dashes → value as typed) and
    the need per card with it; `fits`: whether that need fits the card."""

    change: tuple[tuple[str, str], ...]
    per_gpu_bytes: int
    host_bytes: int
    fits: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "change": {option: _value(value) for option, value in self.change},
            "per_gpu_bytes": self.per_gpu_bytes,
            "host_bytes": self.host_bytes,
            "fits": self.fits,
        }

    def flags(self) -> str:
        """'--checkpointing full --loss fused' (the change as it would be typed)."""
        return " ".join(f"--{option} {value}" for option, value in self.change)


def _value(text: str) -> str | int:
    return int(text) if text.isdigit() else text


@dataclass(frozen=True)
class _Saver:
    """One memory saver: its option, the value it takes, and when it applies."""

    option: str
    value: str
    applies: Callable[[Workload], bool]
    changes: Callable[[Workload], dict[str, Any]]


# The savers in the order a practitioner reaches for them (issue 11): recompute activations
# (every public recipe does), never hold the full logits (fused linear cross-entropy), 8-bit
# optimizer states (bitsandbytes AdamW8bit), then the optimizer states in host memory
# (ZeRO-Offload). A paged optimizer is not offered while the estimator cannot size one.
SAVER_ORDER: tuple[_Saver, ...] = (
    _Saver(
        "checkpointing",
        Checkpointing.full.value,
        lambda w: w.checkpointing is Checkpointing.none,
        lambda w: {"checkpointing": Checkpointing.full},
    ),
    _Saver(
        "loss",
        Loss.fused.value,
        lambda w: w.loss is not Loss.fused,
        lambda w: {"loss": Loss.fused},
    ),
    _Saver(
        "optimizer",
        Optimizer.adamw_8bit.value,
        lambda w: w.optimizer is Optimizer.adamw,
        lambda w: {"optimizer": Optimizer.adamw_8bit},
    ),
    _Saver(
        "offload",
        TrainingOffload.optimizer.value,
        lambda w: w.offload is TrainingOffload.none,
        lambda w: {"offload": TrainingOffload.optimizer, "offload_optimizer": True},
    ),
)

Size = Callable[[Workload], Estimate]


# The most cards a suggestion proposes: eight 8-GPU machines, a cluster a team can rent by the
# hour; beyond it the answer is a different plan, not a change of options.
MORE_CARDS_MAX = 64


def shorter_seq(seq: int, sized: Estimate) -> Suggestion:
    """The suggestion to train (or serve) `seq` tokens, sized by `sized`."""
    return _suggestion([("seq", str(seq))], sized, fits=True)


def cheapest_change(
    size: Size, workload: Workload, capacity: int, more_cards: Sequence[int] = ()
) -> Suggestion | None:
    """The first change in SAVER_ORDER (each added to the ones before) whose need per card
    fits `capacity`; failing that, the fewest of `more_cards` that fits with every saver;
    failing that, every saver with `fits` False. None for inference, or when no saver
    applies and no count of `more_cards` is given."""
    if not workload.training:
        return None
    changed = workload
    change: list[tuple[str, str]] = []
    last: Estimate | None = None
    for saver in SAVER_ORDER:
        if not saver.applies(changed):
            continue
        try:
            candidate = dataclasses.replace(changed, **saver.changes(changed))
            sized = size(candidate)
        except InvalidValueError:  # a saver this workload cannot take (the estimator says)
            continue
        changed, last = candidate, sized
        change.append((saver.option, saver.value))
        if sized.per_gpu_bytes <= capacity:
            return _suggestion(change, sized, fits=True)
    for count in more_cards:
        if count <= changed.gpus:
            continue
        try:
            sized = size(dataclasses.replace(changed, gpus=count))
        except InvalidValueError:
            continue
        if sized.per_gpu_bytes <= capacity:
            return _suggestion([*change, ("count", str(count))], sized, fits=True)
    if last is None:
        return None
    return _suggestion(change, last, fits=False)


def _suggestion(change: list[tuple[str, str]], sized: Estimate, *, fits: bool) -> Suggestion:
    return Suggestion(
        change=tuple(change),
        per_gpu_bytes=sized.per_gpu_bytes,
        host_bytes=sized.host_bytes,
        fits=fits,
    )
