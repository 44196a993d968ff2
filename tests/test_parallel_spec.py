"""`--parallel` as typed: one strategy and training degrees (advisor.workload.parse_parallel)."""

from __future__ import annotations

import pytest

from advisor.errors import InvalidValueError
from advisor.workload import Parallel, ParallelSpec, parse_parallel


def test_strategy_and_degrees() -> None:
    assert parse_parallel("zero3,tp:8,pp:8") == ParallelSpec(
        strategy=Parallel.zero3, tensor=8, pipeline=8, context=1
    )
    assert parse_parallel(" cp:2 , ddp ") == ParallelSpec(strategy=Parallel.ddp, context=2)
    assert parse_parallel("tp") == ParallelSpec(strategy=Parallel.tp)
    assert parse_parallel(None) == ParallelSpec()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zero3,zero2", "--parallel names two strategies (zero3, zero2): give one"),
        ("tp:x", "--parallel: 'tp:x' is not a degree (tp:N, pp:N or cp:N, each once)"),
        ("tp:2,tp:4", "--parallel: 'tp:4' is not a degree (tp:N, pp:N or cp:N, each once)"),
        ("ep:2", "--parallel: 'ep:2' is not a degree (tp:N, pp:N or cp:N, each once)"),
        (
            "fsdp",
            "--parallel: unknown strategy 'fsdp' (one of tp, pp, ddp, zero1, zero2, zero3, "
            "or tp:N, pp:N, cp:N)",
        ),
        ("pp:0", "--parallel pp must be at least 1, got 0"),
    ],
)
def test_bad_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        parse_parallel(text)
    assert str(caught.value) == message
