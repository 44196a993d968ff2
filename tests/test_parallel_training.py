"""Training on several GPUs: ZeRO-3/FSDP's gathered units, tensor, pipeline and context
parallelism, their validation, and the published torchtitan runs they are checked on."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from advisor.arch import Architecture, architecture_from_hf_config, count_params
from advisor.enums import Market, Vendor
from advisor.errors import InvalidValueError
from advisor.estimator import CUDA_CONTEXT_BYTES, _training_shards, estimate
from advisor.fit import candidate_counts
from advisor.workload import (
    INTERLEAVED_STAGES_PER_CARD,
    Checkpointing,
    Float8Scaling,
    Loss,
    Method,
    Parallel,
    PipelineSchedule,
    Precision,
    Stage,
    Workload,
    parse_parallel,
)
from support import Run

DATA = Path(__file__).parent / "data"
# The three torchtitan Llama-3.1-8B FSDP runs of ../shared/calibration/published.jsonl, as
# recorded there (torchtitan benchmarks/llama3_h100_202412_torchtitan.md).
TORCHTITAN = DATA / "published" / "torchtitan.jsonl"
# The bound on those runs (docs/estimates.md, "Several GPUs"): what torchtitan logs is
# max_memory_reserved, so it is compared with the estimate less the CUDA context (tensors +
# the 5 % allocator reserve). Reserved memory also holds fragmentation beyond that reserve,
# torchtitan frees the logits before backward (`del pred`, counted here as unfused) and two
# runs are compiled (not expressible): 8 %, the issue's goal for a training median.
TORCHTITAN_BOUND = 0.08


def _arch() -> Architecture:
    # Llama-3-8B has Llama-3.1-8B's layers and parameters (8,030,261,248); only the rotary
    # scaling and the trained context differ, which no memory term reads.
    return architecture_from_hf_config(
        json.loads((DATA / "configs" / "llama-3-8b.json").read_text())
    )


def _round(n: int) -> int:
    return -(-n // 512) * 512


PRETRAIN = Workload(
    stage=Stage.pretrain,
    precision=Precision.mixed_bf16,
    batch=2,
    seq=8192,
    checkpointing=Checkpointing.selective,
    gpus=8,
    parallel=Parallel.zero3,
)


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TORCHTITAN.read_text().splitlines() if line]


@pytest.mark.parametrize("record", _records(), ids=lambda r: r["id"])
def test_torchtitan_runs_within_bound(record: dict[str, Any]) -> None:
    """Each torchtitan FSDP run (bf16 mixed precision, selective per-op checkpointing, 2 x
    8192 tokens per GPU, AdamW, 8 GPUs) is within 8 % of its logged max reserved memory."""
    settings = record["settings"]
    assert (settings["parallelism"], settings["activation_checkpointing"]) == (
        "FSDP 8",
        "selective",
    )
    workload = replace(
        PRETRAIN, batch=record["batch"], seq=record["seq_len"], gpus=record["n_gpus"]
    )
    result = estimate(_arch(), workload)
    assert result.params == record["params"]
    reserved = result.per_gpu_bytes - CUDA_CONTEXT_BYTES
    error = reserved / record["value_bytes"] - 1
    assert abs(error) <= TORCHTITAN_BOUND, f"{record['id']}: {error:+.2%}"


# The other multi-GPU tables of the same torchtitan benchmark (context, tensor and pipeline
# parallelism; tests/data/published/torchtitan_parallel.jsonl, quoted with their source).
# Most ran torch.compile and Float8 linears, which the estimate cannot express (the 8B runs
# show compile saving about 5 GiB): 10 % per record, except Table 4's 70B FSDP 32 x TP 8 runs,
# a known gap (docs/estimates.md "Several GPUs"): held to the side it errs on.
TORCHTITAN_PARALLEL = DATA / "published" / "torchtitan_parallel.jsonl"
PARALLEL_BOUND = 0.10
KNOWN_GAPS = {
    "titan-l31-70b-fsdp32-tp8": (-0.25, 0.0),
    "titan-l31-70b-fsdp32-tp8-asynctp": (-0.25, 0.0),
}
CATALOG_NAMES = {
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-405B": "llama-3.1-405b",
}


def _parallel_records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TORCHTITAN_PARALLEL.read_text().splitlines() if line]


def _degrees(parallelism: str) -> tuple[int, int, int]:
    """'FSDP 8, TP 8, PP 8, CP 2' -> (tp, pp, cp) (FSDP is the data-parallel rest)."""
    named = dict(part.split() for part in parallelism.split(", "))
    return int(named.get("TP", 1)), int(named.get("PP", 1)), int(named.get("CP", 1))


@pytest.mark.parametrize("record", _parallel_records(), ids=lambda r: r["id"])
def test_torchtitan_parallel_runs_within_bound(record: dict[str, Any], session: Any) -> None:
    """torchtitan's FSDP/TP/PP/CP runs of Llama 3.1 8B, 70B, 405B against their reserved
    memory; a pipeline's local batch is split into one micro-batch per stage (torchtitan's
    default: pp, or 2 x pp under the interleaved schedule)."""
    from catalog import queries

    arch = queries.get_model(session, name=CATALOG_NAMES[record["model"]]).architecture()
    tp, pp, cp = _degrees(record["settings"]["parallelism"])
    interleaved = "Interleaved" in record["settings"]["techniques"]
    schedule = PipelineSchedule.interleaved if interleaved else PipelineSchedule.one_f_one_b
    stages = pp * (INTERLEAVED_STAGES_PER_CARD if interleaved else 1)
    workload = replace(
        PRETRAIN,
        batch=record["batch"] // stages,
        pp_schedule=schedule,
        seq=record["seq_len"],
        gpus=record["n_gpus"],
        checkpointing=Checkpointing(record["settings"]["activation_checkpointing"]),
        tensor_parallel=tp,
        pipeline_parallel=pp,
        context_parallel=cp,
    )
    result = estimate(arch, workload)
    assert result.params == record["params"]
    error = (result.per_gpu_bytes - CUDA_CONTEXT_BYTES) / record["value_bytes"] - 1
    low, high = KNOWN_GAPS.get(record["id"], (-PARALLEL_BOUND, PARALLEL_BOUND))
    assert low <= error <= high, f"{record['id']}: {error:+.2%}"


def test_zero3_weights_are_the_shard_and_the_gathered_units() -> None:
    """At the start of backward each GPU holds its fp32 shard and, in bf16, the root unit
    (embedding, final norm, output head) and the last block, nothing else of the weights."""
    arch = _arch()
    counts = count_params(arch)
    block = counts.layers // arch.num_hidden_layers
    root = counts.total - counts.layers
    result = estimate(arch, PRETRAIN)
    assert result.peak_moment == "start of backward"
    shard = math.ceil(counts.total * 4 / 8)
    assert result.components["weights"] == shard + (root + block) * 2
    # The issue's figure was 17.72 GiB (an unsharded 16-bit copy on every GPU).
    assert round(result.components["weights"] / 2**30, 2) == 6.10


def test_zero3_gathered_units_do_not_shrink_with_gpus() -> None:
    """More GPUs shrink the shard; the gathered units stay the same size."""
    arch = _arch()
    total = count_params(arch).total
    at = {n: estimate(arch, replace(PRETRAIN, gpus=n)).components["weights"] for n in (8, 128)}
    assert at[8] - math.ceil(total * 4 / 8) == at[128] - math.ceil(total * 4 / 128)


def test_tensor_parallel_splits_activations_and_logits() -> None:
    """With sequence parallelism and selective checkpointing every saved tensor is split
    over the tensor-parallel GPUs; loss parallelism splits the logits over the vocabulary."""
    arch = _arch()
    one = estimate(arch, replace(PRETRAIN, gpus=1, parallel=Parallel.ddp))
    tp = estimate(arch, replace(PRETRAIN, gpus=8, parallel=Parallel.ddp, tensor_parallel=8))
    assert one.peak_moment == tp.peak_moment == "start of backward"
    assert tp.components["activations"] == math.ceil(one.components["activations"] / 8)
    assert abs(tp.components["logits"] * 8 - one.components["logits"]) <= 3 * 8 * 512
    # DDP over one replica of 8 tensor-parallel GPUs: 1/8 of the states each.
    assert tp.components["optimizer"] == math.ceil(one.components["optimizer"] / 8)


def test_tensor_parallel_without_checkpointing_saves_the_gathered_inputs() -> None:
    """Without recomputation the two all-gathered norm outputs of each layer stay whole."""
    arch = _arch()
    base = replace(PRETRAIN, precision=Precision.bf16, checkpointing=Checkpointing.none, gpus=1)
    base = replace(base, parallel=Parallel.ddp)
    one = estimate(arch, base)
    tp = estimate(arch, replace(base, gpus=4, tensor_parallel=4))
    assert one.peak_moment == tp.peak_moment == "start of backward"
    gathered = _round(2 * 8192 * 2 * arch.hidden_size * 2)
    extra = arch.num_hidden_layers * (gathered - gathered // 4)
    assert tp.components["activations"] == math.ceil(one.components["activations"] / 4) + extra


def test_pipeline_first_stage_holds_its_layers_and_embedding() -> None:
    """pp:4 over 32 layers: the first stage holds the embedding and 8 layers' weights, and
    its activations for 4 micro-batches in flight (1F1B), close to 32 layers' worth."""
    arch = _arch()
    counts = count_params(arch)
    base = Workload(stage=Stage.pretrain, batch=4, seq=4096, loss=Loss.fused, parallel=Parallel.ddp)
    one = estimate(arch, base)
    pp = estimate(arch, replace(base, gpus=4, pipeline_parallel=4))
    per_layer = counts.layers // arch.num_hidden_layers
    assert pp.components["weights"] == 2 * (counts.embedding + 8 * per_layer)
    assert pp.components["activations"] >= one.components["activations"]
    assert pp.components["activations"] - one.components["activations"] < (
        one.components["activations"] / arch.num_hidden_layers
    )


def test_pipeline_schedules_hold_their_warm_up_micro_batches() -> None:
    """pp:8: when its first backward starts a card holds the activations of its warm-up
    forwards and one more. 1F1B (PyTorch's Schedule1F1B warms rank r up with pp - 1 - r
    forwards): min(8, m) micro-batches on the first card, 1 on the last. Interleaved 1F1B, 2
    half-size stages per card (ScheduleInterleaved1F1B: (v - 1) pp + 2 (pp - 1 - r)):
    min(23, 2 m) stages on the first card, min(9, 2 m) on the last. The default count is one
    micro-batch per stage: 8, or 16 interleaved. More micro-batches never need less memory."""
    arch = _arch()
    base = replace(
        PRETRAIN,
        batch=4,
        parallel=Parallel.ddp,
        pipeline_parallel=8,
        checkpointing=Checkpointing.full,
    )
    expected = {
        PipelineSchedule.one_f_one_b: {None: (8, 1), 1: (1, 1), 4: (4, 1), 16: (8, 1)},
        PipelineSchedule.interleaved: {None: (23, 9), 1: (2, 2), 4: (8, 8), 16: (23, 9)},
    }
    for schedule, counts in expected.items():
        needs = []
        for m, in_flight in counts.items():
            w = replace(base, pp_schedule=schedule, microbatches=m)
            first, last = _training_shards(arch, w)
            assert (first.in_flight, last.in_flight) == in_flight, (schedule, m)
            assert first.chunks == last.chunks == w.stages_per_card
            if m is not None:
                needs.append(estimate(arch, w).per_gpu_bytes)
        assert needs == sorted(needs)
    assert replace(base, pp_schedule=PipelineSchedule.interleaved).step_microbatches == 16


def test_context_parallel_is_the_shorter_sequence() -> None:
    """cp:2 runs half of each sequence per GPU, and ZeRO-3 shards over the cp ranks too: the
    same need per GPU as half the sequence on two data-parallel GPUs."""
    arch = _arch()
    base = replace(PRETRAIN, gpus=2)
    split = estimate(arch, replace(base, seq=8192, context_parallel=2))
    half = estimate(arch, replace(base, seq=4096))
    assert split.per_gpu_bytes == half.per_gpu_bytes


def test_the_issues_examples_are_sized() -> None:
    """`--gpus 64 --parallel zero3,tp:8` and `--gpus 512 --parallel zero3,tp:8,pp:8`."""
    arch = _arch()
    for gpus, text in ((64, "zero3,tp:8"), (512, "zero3,tp:8,pp:8")):
        spec = parse_parallel(text)
        w = replace(
            PRETRAIN,
            gpus=gpus,
            tensor_parallel=spec.tensor,
            pipeline_parallel=spec.pipeline,
            context_parallel=spec.context,
        )
        assert w.data_parallel == 8
        eight = replace(w, gpus=8, tensor_parallel=1, pipeline_parallel=1)
        assert estimate(arch, w).per_gpu_bytes < estimate(arch, eight).per_gpu_bytes


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"gpus": 12, "tensor_parallel": 8},
            "--parallel tp:8 spans 8 GPUs per model replica, which does not divide --gpus 12",
        ),
        (
            {"gpus": 48, "tensor_parallel": 4, "pipeline_parallel": 4, "context_parallel": 2},
            "--parallel tp:4,pp:4,cp:2 spans 32 GPUs per model replica, which does not "
            "divide --gpus 48",
        ),
        (
            {
                "stage": Stage.inference,
                "gpus": 2,
                "tensor_parallel": 2,
                "parallel": None,
                "checkpointing": Checkpointing.none,
                "precision": Precision.bf16,
            },
            "--parallel tp:2: tensor, pipeline and context degrees apply to training; "
            "inference splits over --gpus with --parallel tp or pp",
        ),
        (
            {"stage": Stage.finetune, "method": Method.full, "context_parallel": 2},
            "--parallel cp:2: context parallelism splits causal attention without a padding "
            "mask (PyTorch's ring attention); finetune batches carry one",
        ),
        (
            {
                "stage": Stage.inference,
                "microbatches": 4,
                "parallel": None,
                "checkpointing": Checkpointing.none,
                "precision": Precision.bf16,
                "gpus": 1,
            },
            "--microbatches applies to training only",
        ),
        (
            {"microbatches": 4, "optimizer_in_backward": True, "gpus": 1, "parallel": None},
            "--optimizer-in-backward applies each gradient as it is made, so it cannot "
            "accumulate --microbatches 4 (torchtune refuses gradient accumulation with it)",
        ),
        (
            {"pp_schedule": PipelineSchedule.interleaved},
            "--pp-schedule interleaved-1f1b applies to pipeline parallelism (--parallel pp:N)",
        ),
        (
            {"pipeline_parallel": 8, "microbatches": 0},
            "--microbatches must be at least 1, got 0",
        ),
        (
            {"pipeline_parallel": 8, "microbatches": 2**16 + 1},
            "--microbatches must be at most 65,536, got 65537",
        ),
        (
            {"fp8_scaling": Float8Scaling.rowwise},
            "--fp8-scaling rowwise applies to --precision fp8 (float8 training)",
        ),
    ],
)
def test_impossible_degrees_are_refused(changes: dict[str, Any], message: str) -> None:
    """Degrees that cannot run are one InvalidValueError naming the conflict (exit 2)."""
    with pytest.raises(InvalidValueError) as caught:
        replace(PRETRAIN, **changes)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"tensor_parallel": 16, "gpus": 16},
            "--parallel tp:16 must divide the model's 32 attention and 8 KV heads; valid "
            "degrees: 1, 2, 4, 8",
        ),
        (
            {"pipeline_parallel": 64, "gpus": 64},
            "--parallel pp:64 exceeds the model's 32 layers (a pipeline stage holds at least one)",
        ),
        (
            {"pipeline_parallel": 32, "gpus": 32, "pp_schedule": PipelineSchedule.interleaved},
            "--pp-schedule interleaved-1f1b with --parallel pp:32 makes 64 stages, more than "
            "the model's 32 layers (a stage holds at least one)",
        ),
        (
            {"context_parallel": 4, "seq": 8188},
            "--parallel cp:4 needs --seq divisible by 8 (2 x cp load-balanced chunks), got 8,188",
        ),
    ],
)
def test_degrees_the_model_cannot_take_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        estimate(_arch(), replace(PRETRAIN, **changes))
    assert str(caught.value) == message


@settings(max_examples=40, deadline=None)
@given(
    config=st.sampled_from(["llama-3-8b.json", "llama-3.2-1b.json", "qwen2.5-0.5b.json"]),
    tp=st.sampled_from([1, 2]),
    pp=st.sampled_from([1, 2, 4]),
    replicas=st.integers(1, 4),
    more=st.integers(0, 4),
    strategy=st.sampled_from([Parallel.zero1, Parallel.zero2, Parallel.zero3]),
)
def test_more_replicas_never_raise_per_gpu_memory(
    config: str, tp: int, pp: int, replicas: int, more: int, strategy: Parallel
) -> None:
    """With the degrees fixed, more data-parallel replicas only shard ZeRO's terms finer."""
    arch = architecture_from_hf_config(json.loads((DATA / "configs" / config).read_text()))
    base = Workload(
        stage=Stage.pretrain,
        seq=1024,
        parallel=strategy,
        gpus=tp * pp * replicas,
        tensor_parallel=tp,
        pipeline_parallel=pp,
    )
    wider = replace(base, gpus=tp * pp * (replicas + more))
    assert estimate(arch, wider).per_gpu_bytes <= estimate(arch, base).per_gpu_bytes


@settings(max_examples=40, deadline=None)
@given(
    config=st.sampled_from(["llama-3-8b.json", "llama-3.2-1b.json", "qwen2.5-0.5b.json"]),
    pp=st.sampled_from([2, 4, 8]),
    schedule=st.sampled_from(list(PipelineSchedule)),
    microbatches=st.integers(1, 64),
    more=st.integers(1, 64),
)
def test_more_micro_batches_never_need_less_memory_or_run_slower(
    config: str, pp: int, schedule: PipelineSchedule, microbatches: int, more: int
) -> None:
    """A step of more micro-batches holds at least as many in flight and idles less."""
    from advisor.speed import Compute, speed

    arch = architecture_from_hf_config(json.loads((DATA / "configs" / config).read_text()))
    base = Workload(
        stage=Stage.pretrain,
        seq=1024,
        parallel=Parallel.ddp,
        gpus=pp,
        pipeline_parallel=pp,
        pp_schedule=schedule,
        microbatches=microbatches,
    )
    longer = replace(base, microbatches=microbatches + more)
    assert estimate(arch, longer).per_gpu_bytes >= estimate(arch, base).per_gpu_bytes
    card = Compute(
        name="card",
        vendor=Vendor.nvidia,
        market=Market.datacenter,
        bandwidth_bytes_per_s=2 * 10**12,
        fp16_tflops=300.0,
        fp8_tflops=None,
        int8_tops=None,
        interconnect_bytes_per_s=None,
    )
    fast, slow = speed(arch, longer, card), speed(arch, base, card)
    assert fast.train_tokens_per_s is not None and slow.train_tokens_per_s is not None
    assert fast.train_tokens_per_s > slow.train_tokens_per_s


def test_fit_searches_whole_replicas() -> None:
    """With degrees, fit tries only multiples of tp x pp x cp cards."""
    w = replace(PRETRAIN, gpus=8, tensor_parallel=4, pipeline_parallel=2)
    assert candidate_counts(_arch(), w, 40) == (8, 16, 24, 32, 40)
    assert candidate_counts(_arch(), replace(PRETRAIN, gpus=1), 3) == (1, 2, 3)


@pytest.mark.usefixtures("ready_catalog")
def test_estimate_names_the_degrees(run: Run) -> None:
    """The header and the JSON workload name the strategy and every degree."""
    args = ("estimate", "--model", "llama-3.1-70b", "--stage", "pretrain", "--gpus", "512",
            "--parallel", "zero3,tp:8,pp:8")  # fmt: skip
    text = run(*args)
    assert text.exit_code == 0, text.stderr
    assert "512 GPUs (zero3 x tp 8 x pp 8, 1f1b over 8 micro-batches)" in " ".join(
        text.stdout.split()
    )
    data = json.loads(run(*args, "--json").stdout)["workload"]
    assert {k: data[k] for k in ("parallel", "tensor_parallel", "pipeline_parallel",
                                 "context_parallel", "data_parallel")} == {
        "parallel": "zero3", "tensor_parallel": 8, "pipeline_parallel": 8,
        "context_parallel": 1, "data_parallel": 8,
    }  # fmt: skip


@pytest.mark.usefixtures("ready_catalog")
def test_bad_degrees_exit_2_with_one_line(run: Run) -> None:
    result = run("estimate", "--model", "llama-3.1-8b", "--stage", "pretrain", "--gpus", "60",
                 "--parallel", "zero3,tp:8")  # fmt: skip
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: --parallel tp:8 spans 8 GPUs per model replica, which does not divide --gpus 60\n"
    )


@pytest.mark.usefixtures("ready_catalog")
def test_fit_with_degrees(run: Run) -> None:
    """fit sizes whole replicas, names the degrees, and refuses a count that splits one."""
    args = ("fit", "--model", "llama-3.1-70b", "--stage", "pretrain", "--gpu", "h100-sxm5-80gb",
            "--parallel", "zero3,tp:8", "--max-gpus", "64", "--recipe", "none")  # fmt: skip
    data = json.loads(run(*args, "--json").stdout)
    (option,) = data["options"]
    assert option["count"] % 8 == 0
    assert data["workload"]["tensor_parallel"] == 8
    words = " ".join(run(*args).stdout.split())  # the console wraps long lines
    assert "zero3 x tp 8 (multiples of 8 cards), up to 64 cards of the cards asked" in words
    bad = run(*args, "--count", "4")
    assert (bad.exit_code, bad.stderr) == (
        2,
        "error: --parallel tp:8 spans 8 GPUs per model replica, which does not divide --count 4\n",
    )
