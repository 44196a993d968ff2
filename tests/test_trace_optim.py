"""Adapters, DoRA, eager attention and the optimizer in backward measured on fake tensors
(skipped without the `trace` extra)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from advisor import trace as tracing
from advisor.arch import Architecture, architecture_from_hf_config
from advisor.errors import TraceUnavailableError
from advisor.estimator import STEP_IN_BACKWARD, estimate
from advisor.workload import (
    LORA_TARGET_SETS,
    Attention,
    LoraDtype,
    Method,
    Optimizer,
    Precision,
    Stage,
    TrainingOffload,
    Workload,
)

TRACE_CONFIGS = Path(__file__).parent / "data" / "trace"
# The bound every traced mechanism is held to (tests/test_trace.py).
ESTIMATE_BOUND_PCT = 3.0
# Groups of terms below this share of the traced peak are not compared (as tests/test_trace.py).
MATTERS = 0.1
TINY = Workload(stage=Stage.finetune, batch=2, seq=256)
ALL_LINEAR = LORA_TARGET_SETS["all-linear"]


def _tiny(name: str) -> Architecture:
    return architecture_from_hf_config(json.loads((TRACE_CONFIGS / f"{name}.json").read_text()))


def _check(arch: Architecture, workload: Workload) -> None:
    result = tracing.trace(arch, workload)
    rows = tracing.compare(result, estimate(arch, workload))
    checked = [row for row in rows if row.traced >= MATTERS * result.peak_bytes]
    assert checked[-1].name == "total"
    for row in checked:
        assert row.error_pct is not None
        assert abs(row.error_pct) <= ESTIMATE_BOUND_PCT, (row.name, row.estimated, row.traced)


@pytest.mark.parametrize(
    ("model", "change"),
    [
        ("tiny-llama", {"attention": Attention.eager}),
        ("tiny-llama", {"attention": Attention.eager, "method": Method.lora}),
        ("tiny-llama", {"method": Method.lora, "lora_dtype": LoraDtype.bf16}),
        ("tiny-llama", {"method": Method.dora, "batch": 4, "seq": 512}),
        ("tiny-llama", {"method": Method.dora, "lora_dtype": LoraDtype.bf16}),
        ("tiny-gpt2", {"method": Method.lora, "lora_targets": ALL_LINEAR}),
        ("tiny-phi3", {"method": Method.lora, "lora_targets": ALL_LINEAR}),
        ("tiny-falcon", {"method": Method.lora, "lora_targets": ALL_LINEAR}),
        (
            "tiny-opt",
            {"method": Method.lora, "lora_targets": ALL_LINEAR, "lora_dtype": LoraDtype.bf16},
        ),
    ],
    ids=[
        "eager-full",
        "eager-lora",
        "lora-bf16",
        "dora-fp32",
        "dora-bf16",
        "gpt2-all-linear",
        "phi3-all-linear",
        "falcon-all-linear",
        "opt-all-linear-bf16",
    ],
)
def test_mechanism_within_bound_of_trace(model: str, change: dict[str, Any]) -> None:
    """Eager attention's scores, bf16 adapters' shared inputs, DoRA's magnitude products and
    all-linear targets per model type are estimated within 3 % of the trace."""
    _check(_tiny(model), dataclasses.replace(TINY, **change))


@pytest.mark.parametrize("precision", [Precision.bf16, Precision.fp32])
def test_optimizer_in_backward_within_bound_of_trace(precision: Precision) -> None:
    """torchtune's per-parameter steps in backward: one gradient alive, the first step taken
    with every saved activation alive (a short sequence, so the step is the peak)."""
    workload = Workload(
        stage=Stage.finetune, batch=1, seq=16, precision=precision, optimizer_in_backward=True
    )
    arch = _tiny("tiny-llama")
    assert estimate(arch, workload).peak_moment == STEP_IN_BACKWARD
    _check(arch, workload)
    plain = tracing.trace(arch, dataclasses.replace(workload, optimizer_in_backward=False))
    hooked = tracing.trace(arch, workload)
    assert hooked.category("grad") < plain.category("grad")


def test_eager_attention_traced_above_sdpa() -> None:
    """The materialized scores raise the traced peak, as the estimate says."""
    arch = _tiny("tiny-llama")
    eager = dataclasses.replace(TINY, attention=Attention.eager)
    assert tracing.trace(arch, eager).peak_bytes > tracing.trace(arch, TINY).peak_bytes
    assert estimate(arch, eager).tensor_bytes > estimate(arch, TINY).tensor_bytes


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            {"optimizer": Optimizer.paged_adamw_8bit},
            "--optimizer paged-adamw-8bit is not in torch.optim; it is not traced",
        ),
        (
            {"attention": Attention.flash},
            "--attention flash needs FlashAttention-2's CUDA kernels (not on fake tensors)",
        ),
        (
            {"offload": TrainingOffload.optimizer_params},
            "--offload optimizer+params moves state off the device; it is not traced",
        ),
    ],
)
def test_untraceable_options_are_refused(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(TraceUnavailableError) as error:
        tracing.trace(_tiny("tiny-llama"), dataclasses.replace(TINY, **change))
    assert str(error.value) == reason
