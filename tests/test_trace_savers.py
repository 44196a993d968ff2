"""Memory savers measured on fake tensors (skipped without the `trace` extra)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from advisor import trace as tracing
from advisor.arch import architecture_from_hf_config
from advisor.errors import TraceUnavailableError
from advisor.estimator import estimate
from advisor.workload import Checkpointing, Loss, Method, Stage, Workload

TRACE_CONFIGS = Path(__file__).parent / "data" / "trace"
# The bound every traced mechanism is held to (tests/test_trace.py).
ESTIMATE_BOUND_PCT = 3.0
# Groups of terms below this share of the traced peak are not compared (as tests/test_trace.py).
MATTERS = 0.1
TINY = Workload(stage=Stage.finetune, batch=2, seq=256)
TINY_LLAMA = architecture_from_hf_config(
    json.loads((TRACE_CONFIGS / "tiny-llama.json").read_text())
)


@pytest.mark.parametrize(
    ("method", "change"),
    [
        (Method.full, {"checkpointing": Checkpointing.selective}),
        (Method.lora, {"checkpointing": Checkpointing.selective}),
        (Method.full, {"loss": Loss.chunked}),
    ],
    ids=["selective-full", "selective-lora", "chunked-full"],
)
def test_saver_within_bound_of_trace(method: Method, change: dict[str, object]) -> None:
    """torchtitan's per-op checkpointing and torchtune's chunked loss, applied to
    transformers' Llama, are estimated within 3 % of the trace."""
    workload = dataclasses.replace(TINY, method=method, **change)  # type: ignore[arg-type]
    result = tracing.trace(TINY_LLAMA, workload)
    rows = tracing.compare(result, estimate(TINY_LLAMA, workload))
    checked = [row for row in rows if row.traced >= MATTERS * result.peak_bytes]
    assert checked[-1].name == "total"
    for row in checked:
        assert row.error_pct is not None
        assert abs(row.error_pct) <= ESTIMATE_BOUND_PCT, (row.name, row.estimated, row.traced)


def test_chunked_loss_with_lora_total_within_bound_of_trace() -> None:
    """LoRA with the chunked loss: the total within 3 % (the activation group alone is 3.3 %
    under the trace, a gap docs/estimates.md records)."""
    workload = dataclasses.replace(TINY, method=Method.lora, loss=Loss.chunked)
    result = tracing.trace(TINY_LLAMA, workload)
    total = tracing.compare(result, estimate(TINY_LLAMA, workload))[-1]
    assert total.name == "total"
    assert total.error_pct is not None
    assert abs(total.error_pct) <= ESTIMATE_BOUND_PCT, (total.estimated, total.traced)


def test_selective_keeps_more_than_full_and_less_than_none() -> None:
    peaks = {
        policy: tracing.trace(TINY_LLAMA, dataclasses.replace(TINY, checkpointing=policy)).category(
            "act"
        )
        for policy in (Checkpointing.none, Checkpointing.full, Checkpointing.selective)
    }
    assert peaks[Checkpointing.full] < peaks[Checkpointing.selective] < peaks[Checkpointing.none]


def test_chunked_loss_traced_below_the_unfused_loss() -> None:
    """torchtune's chunked loss lowers the traced peak, as the estimate says it does."""
    unfused = tracing.trace(TINY_LLAMA, TINY)
    chunked_workload = dataclasses.replace(TINY, loss=Loss.chunked)
    chunked = tracing.trace(TINY_LLAMA, chunked_workload)
    assert chunked.peak_bytes < unfused.peak_bytes
    assert estimate(TINY_LLAMA, chunked_workload).tensor_bytes < (
        estimate(TINY_LLAMA, TINY).tensor_bytes
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"checkpointing": Checkpointing.offload},
            "--checkpointing offload moves checkpoints to host memory; it is not traced",
        ),
        (
            {"loss": Loss.fused},
            "--loss fused needs Liger's Triton kernels, which fake tensors cannot run",
        ),
    ],
)
def test_untraceable_savers_are_refused(change: dict[str, object], reason: str) -> None:
    with pytest.raises(TraceUnavailableError) as error:
        tracing.trace(TINY_LLAMA, dataclasses.replace(TINY, **change))  # type: ignore[arg-type]
    assert reason in str(error.value)
