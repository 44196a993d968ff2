"""The estimator: traced calibration cases, the rules of thumb, and its invariants."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from advisor.arch import Architecture, architecture_from_hf_config
from advisor.errors import InvalidValueError
from advisor.estimator import COMPONENTS, RuntimeOverhead, estimate, rule_of_thumb
from advisor.workload import (
    KVDtype,
    Method,
    Parallel,
    Precision,
    Stage,
    WeightFormat,
    Workload,
)
from support import workload_from_flags

DATA = Path(__file__).parent / "data"
CALIBRATION = DATA / "calibration" / "traced.jsonl"
SHARED_CALIBRATION = Path(__file__).parents[2] / "shared" / "calibration" / "traced.jsonl"
# Issue 3: every traced case within 3 % of the measured peak.
CALIBRATION_BOUND = 0.03
NO_OVERHEAD = RuntimeOverhead(context_bytes=0, allocator_reserve_fraction=0)


def _config(name: str) -> Architecture:
    return architecture_from_hf_config(json.loads((DATA / "configs" / name).read_text()))


def _cases() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CALIBRATION.read_text().splitlines() if line]


def test_vendored_calibration_matches_shared() -> None:
    """tests/data holds the shared calibration set unchanged (checked where ../shared exists)."""
    if not SHARED_CALIBRATION.exists():
        pytest.skip("../shared/calibration is not beside this checkout")
    assert CALIBRATION.read_text() == SHARED_CALIBRATION.read_text()


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["id"])
def test_calibration_case_within_bound(case: dict[str, Any]) -> None:
    """The tensor peak (total minus runtime overhead) is within 3 % of the traced peak."""
    arch = _config(Path(case["config"]).name)
    result = estimate(
        arch, workload_from_flags(case["advisor_estimate_flags"]), overhead=NO_OVERHEAD
    )
    assert result.params == case["params"]
    error = result.tensor_bytes / case["peak_bytes"] - 1
    assert abs(error) <= CALIBRATION_BOUND, f"{case['id']}: {error:+.2%}"


@pytest.mark.parametrize(
    ("params", "workload", "expected"),
    [
        (7_000_000_000, Workload(stage=Stage.inference), 14_000_000_000),
        (13_000_000_000, Workload(stage=Stage.inference), 26_000_000_000),
        (65_000_000_000, Workload(stage=Stage.inference), 130_000_000_000),
        (
            7_000_000_000,
            Workload(
                stage=Stage.inference, weight_format=WeightFormat(slug="int8", bits_per_weight=8)
            ),
            7_000_000_000,
        ),
        (
            7_000_000_000,
            Workload(
                stage=Stage.inference,
                weight_format=WeightFormat(slug="int4", bits_per_weight=4.156),
            ),
            3_500_000_000,
        ),
    ],
)
def test_rule_of_thumb_inference(params: int, workload: Workload, expected: int) -> None:
    """7B → 14 GB, 13B → 26 GB, 65B → 130 GB at 16 bit; int8 halves, int4 quarters."""
    assert rule_of_thumb(params, workload, activations_per_sample=0) == expected


def test_rule_of_thumb_pretraining() -> None:
    """(P + B·A + P + 2P) x 4 bytes."""
    workload = Workload(stage=Stage.pretrain, batch=2)
    assert rule_of_thumb(1000, workload, activations_per_sample=50) == (1000 + 100 + 3000) * 4


def test_components_sum_and_json_shape() -> None:
    """Every component is reported; the per-GPU total is their sum; total = per GPU x GPUs."""
    arch = _config("llama-2-7b.json")
    result = estimate(arch, Workload(stage=Stage.finetune, gpus=4, parallel=Parallel.zero3))
    assert tuple(result.components) == COMPONENTS
    assert sum(result.components.values()) == result.per_gpu_bytes
    assert result.total_bytes == 4 * result.per_gpu_bytes


def test_gqa_kv_cache_is_eight_times_smaller() -> None:
    """Llama-3-8B keeps 8 KV heads of 32: its cache is a quarter of an MHA model's."""
    arch = _config("llama-3-8b.json")
    gqa = estimate(arch, Workload(stage=Stage.inference, seq=8192)).components["kv_cache"]
    mha = replace(arch, num_key_value_heads=arch.num_attention_heads)
    full = estimate(mha, Workload(stage=Stage.inference, seq=8192)).components["kv_cache"]
    assert full == 4 * gqa
    # 32 layers x 8192 tokens x 2 (K, V) x 8 heads x 128 dims x 2 bytes
    assert gqa == 32 * 8192 * 2 * 8 * 128 * 2


def test_kv_dtype_scales_the_cache() -> None:
    arch = _config("llama-3-8b.json")
    bf16 = estimate(arch, Workload(stage=Stage.inference)).components["kv_cache"]
    fp8 = estimate(arch, Workload(stage=Stage.inference, kv_dtype=KVDtype.fp8))
    assert fp8.components["kv_cache"] * 2 == bf16


def test_tensor_parallel_counts_must_divide_heads() -> None:
    arch = _config("llama-3-8b.json")
    with pytest.raises(InvalidValueError) as error:
        estimate(arch, Workload(stage=Stage.inference, gpus=3))
    assert str(error.value) == (
        "tensor parallelism over 3 GPUs needs the count to divide 32 attention and 8 KV "
        "heads; valid counts: 1, 2, 4, 8"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"stage": Stage.inference, "method": Method.lora},
            "--method lora is a fine-tuning method; inference has none",
        ),
        ({"stage": Stage.finetune, "batch": 0}, "batch must be at least 1, got 0"),
        (
            {"stage": Stage.finetune, "method": Method.qlora},
            "qlora needs a 4-bit base format (--quant nf4)",
        ),
        (
            {"stage": Stage.inference, "parallel": Parallel.zero3},
            "--parallel zero3 does not apply to inference; use pp or tp",
        ),
        (
            {"stage": Stage.finetune, "method": Method.freeze},
            "--method freeze needs --trainable-layers N",
        ),
    ],
)
def test_impossible_workloads_rejected(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError) as error:
        Workload(**kwargs)
    assert str(error.value) == message


# --- invariants ------------------------------------------------------------------------------

ARCHS = [
    _config(name)
    for name in (
        "llama-3.2-1b.json",
        "qwen2.5-0.5b.json",
        "gpt2.json",
        "mixtral-8x7b.json",
        "opt-1.3b.json",
    )
] + [
    # The held-out architectures: eager and math attention paths, ALiBi, sliding windows.
    architecture_from_hf_config(json.loads(line)["config"])
    for line in (DATA / "heldout" / "traced.jsonl").read_text().splitlines()
    if line and json.loads(line)["id"] == "inf-b1-s2048"
]
STAGES = st.sampled_from([Stage.inference, Stage.finetune, Stage.pretrain])
PRECISIONS = st.sampled_from([Precision.bf16, Precision.fp32, Precision.mixed_bf16])


def _base(stage: Stage, precision: Precision, checkpointing: bool) -> Workload:
    return Workload(
        stage=stage,
        precision=precision,
        grad_checkpointing=checkpointing and stage is not Stage.inference,
    )


@settings(max_examples=150, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    stage=STAGES,
    precision=PRECISIONS,
    checkpointing=st.booleans(),
    batch=st.integers(1, 64),
    seq=st.integers(1, 16384),
    more_batch=st.integers(0, 16),
    more_seq=st.integers(0, 4096),
)
def test_more_tokens_never_need_less(
    arch: Architecture,
    stage: Stage,
    precision: Precision,
    checkpointing: bool,
    batch: int,
    seq: int,
    more_batch: int,
    more_seq: int,
) -> None:
    base = replace(_base(stage, precision, checkpointing), batch=batch, seq=seq)
    more = replace(base, batch=batch + more_batch, seq=seq + more_seq)
    small, large = estimate(arch, base), estimate(arch, more)
    assert large.per_gpu_bytes >= small.per_gpu_bytes
    assert sum(small.components.values()) == small.per_gpu_bytes


@settings(max_examples=80, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    bits=st.lists(st.floats(1.5, 16), min_size=2, max_size=2),
    scope=st.sampled_from(["all", "linear"]),
)
def test_fewer_bits_never_need_more(arch: Architecture, bits: list[float], scope: str) -> None:
    low, high = sorted(bits)
    results = [
        estimate(
            arch,
            Workload(
                stage=Stage.inference,
                weight_format=WeightFormat(slug="x", bits_per_weight=b, scope=scope),
            ),
        ).per_gpu_bytes
        for b in (low, high)
    ]
    assert results[0] <= results[1]


@settings(max_examples=60, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    rank=st.integers(1, 256),
    more=st.integers(0, 256),
    all_linear=st.booleans(),
)
def test_lora_rank_never_needs_less(
    arch: Architecture, rank: int, more: int, all_linear: bool
) -> None:
    targets = ("q_proj", "k_proj", "v_proj", "o_proj") + (
        ("gate_proj", "up_proj", "down_proj") if all_linear else ()
    )
    base = Workload(stage=Stage.finetune, method=Method.lora, lora_rank=rank, lora_targets=targets)
    assert (
        estimate(arch, replace(base, lora_rank=rank + more)).per_gpu_bytes
        >= estimate(arch, base).per_gpu_bytes
    )


@settings(max_examples=60, deadline=None)
@given(arch=st.sampled_from(ARCHS), layers=st.integers(0, 40), more=st.integers(0, 40))
def test_more_trainable_layers_never_need_less(arch: Architecture, layers: int, more: int) -> None:
    # Never more than the model has: a larger count is refused (test_bounds_and_values).
    top = arch.num_hidden_layers
    base = Workload(stage=Stage.finetune, method=Method.freeze, trainable_layers=min(layers, top))
    wider = replace(base, trainable_layers=min(layers + more, top))
    assert estimate(arch, wider).per_gpu_bytes >= estimate(arch, base).per_gpu_bytes


@settings(max_examples=80, deadline=None)
@given(
    arch=st.sampled_from(ARCHS),
    strategy=st.sampled_from([Parallel.zero1, Parallel.zero2, Parallel.zero3, Parallel.pp]),
    gpus=st.integers(1, 8),
    more=st.integers(0, 8),
)
def test_more_gpus_never_raise_per_gpu_memory(
    arch: Architecture, strategy: Parallel, gpus: int, more: int
) -> None:
    stage = Stage.inference if strategy is Parallel.pp else Stage.finetune
    assume(strategy is not Parallel.pp or gpus + more <= arch.num_hidden_layers)
    base = Workload(stage=stage, gpus=gpus, parallel=strategy)
    assert (
        estimate(arch, replace(base, gpus=gpus + more)).per_gpu_bytes
        <= estimate(arch, base).per_gpu_bytes
    )


def test_core_is_pure() -> None:
    """Importing the estimator loads no CLI, rendering or database library."""
    import subprocess
    import sys

    code = (
        "import sys, advisor.estimator, advisor.workload, advisor.arch; "
        "print(sorted(m for m in ('typer', 'rich', 'sqlmodel', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
