"""The speed model (`advisor.speed`) and the cheapest plan (`advisor.plans`): each mechanism
against a hand computation, the tables complete, a missing figure never guessed."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from advisor.arch import Architecture, architecture_from_hf_config, count_params
from advisor.enums import Engine, Market, QuantKind, Vendor
from advisor.errors import InvalidValueError, NoPlanError
from advisor.estimator import OVERHEAD_BY_VENDOR, Runtime, traffic
from advisor.fit import Card, plan
from advisor.plans import cheapest, option_speed
from advisor.policy import Level
from advisor.speed import (
    BACKEND_SPEED,
    MAX_TRAINING_TOKENS,
    MFU_BY_RECIPE,
    Bound,
    Compute,
    Recipe,
    speed,
    training_tokens,
)
from advisor.workload import (
    Checkpointing,
    Float8Scaling,
    Method,
    Optimizer,
    Parallel,
    PipelineSchedule,
    Precision,
    Serving,
    Stage,
    TrainingOffload,
    WeightFormat,
    Workload,
)
from support import Run

CONFIGS = Path(__file__).parent / "data" / "configs"
SPEED_RECORDS = Path(__file__).parent / "data" / "speed.jsonl"
SHARED_SPEED = Path(__file__).parents[2] / "shared" / "calibration" / "speed.jsonl"
TERA = 1e12


@pytest.fixture(scope="module")
def llama() -> Architecture:
    return architecture_from_hf_config(json.loads((CONFIGS / "llama-3-8b.json").read_text()))


@pytest.fixture(scope="module")
def mixtral() -> Architecture:
    return architecture_from_hf_config(json.loads((CONFIGS / "mixtral-8x7b.json").read_text()))


def card(**figures: object) -> Compute:
    values: dict[str, object] = {
        "name": "test card",
        "vendor": Vendor.nvidia,
        "market": Market.datacenter,
        "bandwidth_bytes_per_s": 2_000_000_000_000,
        "fp16_tflops": 300.0,
        "fp8_tflops": 600.0,
        "int8_tops": 600.0,
        "interconnect_bytes_per_s": 600_000_000_000,
        "price_per_hour": 2.0,
    }
    values.update(figures)
    return Compute(**values)  # type: ignore[arg-type]


def inference(**kw: object) -> Workload:
    values: dict[str, object] = {
        "stage": Stage.inference,
        "precision": Precision.bf16,
        "batch": 1,
        "seq": 1024,
        "serving": Serving(engine=Engine.vllm),
    }
    values.update(kw)
    return Workload(**values)  # type: ignore[arg-type]


def test_vendored_speed_records_match_shared() -> None:
    """tests/data holds the shared speed records unchanged (checked where ../shared exists)."""
    if not SHARED_SPEED.exists():
        pytest.skip("../shared/calibration is not beside this checkout")
    assert SPEED_RECORDS.read_text() == SHARED_SPEED.read_text()


def test_every_engine_has_figures_on_every_backend() -> None:
    """One entry per engine and runtime, no fallback; every recipe has an MFU."""
    assert set(BACKEND_SPEED) == {(e, r) for e in Engine for r in Runtime}
    assert set(MFU_BY_RECIPE) == set(Recipe)
    for entry in BACKEND_SPEED.values():
        assert 0 < entry.bandwidth_efficiency <= 1 and 0 < entry.utilization <= 1
        assert entry.source


def test_decode_at_batch_1_is_the_weights_and_kv_over_bandwidth(llama: Architecture) -> None:
    """vLLM, bf16, one sequence at 1,024 tokens: (weights but the embedding lookup + the KV
    cache read) / (bandwidth x efficiency) + layers x the per-layer time."""
    w = inference()
    found = speed(llama, w, card())
    engine = BACKEND_SPEED[(Engine.vllm, Runtime.cuda)]
    params = count_params(llama).total
    lookup = llama.vocab_size * llama.hidden_size
    kv_per_token = 2 * llama.num_key_value_heads * llama.head_dim * 2 * llama.num_hidden_layers
    read = (params - lookup) * 2 + kv_per_token * 1024
    step = read / (2e12 * engine.bandwidth_efficiency) + 32 * engine.layer_overhead_s
    assert found.decode_tokens_per_s == pytest.approx(1 / step, rel=1e-9)
    assert found.decode_tokens_per_s_total == found.decode_tokens_per_s
    assert found.bound is Bound.memory


def test_a_large_batch_is_compute_bound(llama: Architecture) -> None:
    """Past the roofline crossover the step is the batch's FLOPs over the tensor cores."""
    small = speed(llama, inference(batch=1), card())
    large = speed(llama, inference(batch=4096, seq=128), card())
    assert small.bound is Bound.memory and large.bound is Bound.compute
    assert large.decode_tokens_per_s_total is not None and small.decode_tokens_per_s is not None
    assert large.decode_tokens_per_s_total > 100 * small.decode_tokens_per_s


def test_decode_grows_with_bandwidth_and_falls_with_context(llama: Architecture) -> None:
    slow = speed(llama, inference(), card(bandwidth_bytes_per_s=1_000_000_000_000))
    fast = speed(llama, inference(), card())
    longer = speed(llama, inference(seq=8192), card())
    assert slow.decode_tokens_per_s is not None and fast.decode_tokens_per_s is not None
    assert longer.decode_tokens_per_s is not None
    assert slow.decode_tokens_per_s < fast.decode_tokens_per_s
    assert longer.decode_tokens_per_s < fast.decode_tokens_per_s


def test_moe_decode_reads_only_the_routed_experts(mixtral: Architecture) -> None:
    """Mixtral at batch 1 reads 2 of 8 experts: its step is far shorter than reading all
    47B parameters, and grows toward it as more sequences route to more experts."""
    one = speed(mixtral, inference(), card())
    assert one.decode_tokens_per_s is not None
    all_weights = count_params(mixtral).total * 2 / (2e12 * 0.85)
    assert 1 / one.decode_tokens_per_s < 0.5 * all_weights
    per_seq = [speed(mixtral, inference(batch=b), card()).decode_tokens_per_s for b in (1, 2, 8)]
    assert per_seq[0] is not None and per_seq[1] is not None and per_seq[2] is not None
    assert per_seq[0] > per_seq[1] > per_seq[2]


def test_tensor_parallelism_splits_the_reads_and_pays_the_link(llama: Architecture) -> None:
    one = speed(llama, inference(), card())
    two = speed(llama, inference(gpus=2, parallel=Parallel.tp), card())
    slow_link = speed(
        llama, inference(gpus=2, parallel=Parallel.tp), card(interconnect_bytes_per_s=10**9)
    )
    assert one.decode_tokens_per_s is not None and two.decode_tokens_per_s is not None
    assert slow_link.decode_tokens_per_s is not None
    assert two.decode_tokens_per_s > one.decode_tokens_per_s
    assert slow_link.decode_tokens_per_s < two.decode_tokens_per_s


def test_llama_cpp_cards_run_their_layers_one_after_another(llama: Architecture) -> None:
    """llama.cpp's layer split: two cards decode no faster than one (a hand-over per card)."""
    w = inference(serving=Serving(engine=Engine.llama_cpp), precision=Precision.fp16)
    one = speed(llama, w, card())
    two = speed(llama, dataclasses.replace(w, gpus=2), card())
    assert one.decode_tokens_per_s is not None and two.decode_tokens_per_s is not None
    assert two.decode_tokens_per_s < one.decode_tokens_per_s


def test_a_missing_figure_is_never_guessed(llama: Architecture) -> None:
    """No tensor throughput: no prefill, no decode past batch 1; no bandwidth: no decode;
    tensor parallelism without a link figure: no decode either. Each names the figure."""
    no_tflops = speed(llama, inference(), card(fp16_tflops=None))
    assert no_tflops.decode_tokens_per_s is not None
    assert no_tflops.prefill_tokens_per_s is None and no_tflops.time_to_first_token_s is None
    assert no_tflops.missing == ("FP16/BF16 dense TFLOPS",)
    batched = speed(llama, inference(batch=8), card(fp16_tflops=None))
    assert batched.decode_tokens_per_s is None
    no_bandwidth = speed(llama, inference(), card(bandwidth_bytes_per_s=None))
    assert no_bandwidth.decode_tokens_per_s is None and no_bandwidth.headline is None
    assert no_bandwidth.missing == ("memory bandwidth",)
    no_link = speed(
        llama, inference(gpus=2, parallel=Parallel.tp), card(interconnect_bytes_per_s=None)
    )
    assert no_link.decode_tokens_per_s is None
    assert no_link.missing == ("interconnect bandwidth",)
    fp32 = speed(llama, inference(precision=Precision.fp32), card())
    assert fp32.prefill_tokens_per_s is None and "FP32 tensor TFLOPS" in fp32.missing


def test_prefill_is_the_prompts_flops_over_the_tensor_cores(llama: Architecture) -> None:
    """transformers, one 1,024-token prompt: (2 x matmul weights x prompt + the causal
    attention 2 x 2 x width x prompt^2 / 2 per layer) / (TFLOPS x utilization) + the layers'
    fixed time."""
    w = inference(serving=Serving(engine=Engine.transformers))
    found = speed(llama, w, card())
    engine = BACKEND_SPEED[(Engine.transformers, Runtime.cuda)]
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    width = llama.num_attention_heads * llama.head_dim
    flops = 2 * matmul * 1024 + 4 * width * 32 * 1024 * 1024 / 2
    seconds = flops / (300 * TERA * engine.utilization) + 32 * engine.layer_overhead_s
    assert found.time_to_first_token_s == pytest.approx(seconds, rel=1e-9)
    assert found.prefill_tokens_per_s == pytest.approx(1024 / seconds, rel=1e-9)


def test_llama_cpp_metal_prefill_runs_at_the_metal_utilizations(llama: Architecture) -> None:
    """llama.cpp on an Apple card: one 512-token micro-batch, compute-bound, at Metal's own
    shares of the card's figure (0.71 with 16-bit weights, 0.57 block-quantized), not CUDA's
    0.37/0.29, plus the layers' fixed time."""
    apple = card(
        vendor=Vendor.apple,
        market=Market.unified_memory,
        fp16_tflops=10.4,
        bandwidth_bytes_per_s=400_000_000_000,
    )
    engine = BACKEND_SPEED[(Engine.llama_cpp, Runtime.metal)]
    assert (engine.utilization, engine.quantized_utilization) == (0.71, 0.57)
    w = inference(seq=512, serving=Serving(engine=Engine.llama_cpp))
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    width = llama.num_attention_heads * llama.head_dim
    flops = 2 * matmul * 512 + 4 * width * 32 * 512 * 512 / 2
    q4 = WeightFormat(slug="q4_k_m", bits_per_weight=4.85, scope="all", kind=QuantKind.gguf)
    for fmt, share in ((None, 0.71), (q4, 0.57)):
        found = speed(llama, dataclasses.replace(w, weight_format=fmt), apple)
        seconds = flops / (10.4 * TERA * share) + 32 * engine.layer_overhead_s
        assert found.time_to_first_token_s == pytest.approx(seconds, rel=1e-9)


def training(**kw: object) -> Workload:
    values: dict[str, object] = {
        "stage": Stage.finetune,
        "precision": Precision.bf16,
        "batch": 1,
        "seq": 2048,
    }
    values.update(kw)
    return Workload(**values)  # type: ignore[arg-type]


# Llama-3-8B's element-wise bytes per token and forward pass, eager (advisor.speed's counts):
# two RMSNorms (36 B per element) and two residual adds (6 B) over 4,096, SwiGLU (10 B) over
# 14,336, rotary (18 B) over the 4,096 query and 1,024 key columns; the loss 16 B per
# vocabulary entry (128,256).
LLAMA_EAGER_LAYER = 4096 * (2 * 36 + 2 * 6) + 14336 * 10 + (4096 + 1024) * 18
LLAMA_EAGER_LOGITS = 128256 * 16
# Compiled: norm with its residual add 8 B, SwiGLU 6 B, rotary 4 B, the loss 4 B.
LLAMA_COMPILED_LAYER = 4096 * 2 * 8 + 14336 * 6 + (4096 + 1024) * 4
LLAMA_COMPILED_LOGITS = 128256 * 4
TRAINING_BANDWIDTH = 2e12 * 0.85  # card()'s bandwidth x PyTorch's element-wise efficiency


# Llama-3-8B's parameters, every one stepped by a full fine-tune.
LLAMA_PARAMS = 8_030_261_248
# Bytes a fused AdamW step with gradient clipping moves per parameter in pure bf16: the
# parameter read and written (2 x 2), the gradient read once and clipped in three passes
# (4 x 2), both moments read and written (2 x 2 x 2); fp32 master weights and states (mixed
# precision, fp8): 2 x 4 + 4 x 4 + 2 x 2 x 4.
BF16_STEP_BYTES = 20
FP32_STEP_BYTES = 40


def _step_per_token(
    shards: int = 1, tokens: int = 2048, step_bytes: int = BF16_STEP_BYTES
) -> float:
    """Seconds per token of the optimizer step: the card's share of the parameters' step bytes
    over the bandwidth, once per step of `tokens` tokens."""
    return LLAMA_PARAMS * step_bytes / shards / TRAINING_BANDWIDTH / tokens


def _llama_seconds(
    layer_bytes: float, logit_bytes: float, passes: int, flops: float, shards: int = 1
) -> float:
    """Seconds per token: the matmuls at TFLOPS x MFU, the element-wise bytes of every pass
    (forward, backward's two, any recomputation) over the bandwidth, and the optimizer step
    over the step's tokens (the card's `shards`-th of the parameters)."""
    mfu = MFU_BY_RECIPE[Recipe.bf16].mfu
    traffic = 32 * layer_bytes * passes + logit_bytes * 3
    return flops / (300 * TERA * mfu) + traffic / TRAINING_BANDWIDTH + _step_per_token(shards)


def test_full_training_is_six_flops_per_weight_and_the_element_wise_bytes(
    llama: Architecture,
) -> None:
    """3 passes of 2 FLOPs per multiplied weight + 3 passes of the causal attention over
    TFLOPS x MFU, the eager element-wise bytes (forward + twice that in backward) over the
    bandwidth, and each card's share of the optimizer step once per step; the time and cost
    of --tokens follow."""
    found = speed(llama, training(gpus=4), card(), tokens=10**9)
    assert count_params(llama).total == LLAMA_PARAMS
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    width = llama.num_attention_heads * llama.head_dim
    flops = 6 * matmul + 3 * 2 * width * 32 * 2048
    # ZeRO-3 over 4 cards (the default on several): each steps a quarter of the parameters.
    rate = 4 / _llama_seconds(LLAMA_EAGER_LAYER, LLAMA_EAGER_LOGITS, 3, flops, shards=4)
    assert found.train_tokens_per_s == pytest.approx(rate, rel=1e-9)
    assert found.train_time_s == pytest.approx(1e9 / rate, rel=1e-9)
    assert found.cost_usd == pytest.approx(4 * 2.0 * 1e9 / rate / 3600, rel=1e-9)
    assert found.decode_tokens_per_s is None and found.bound is None
    assert found.inputs["compiled"] == "no"


@pytest.mark.parametrize(
    ("changes", "step_bytes"),
    [
        # Fused AdamW and clipping: parameter r/w, gradient read + 3 clipping passes, 2
        # moments r/w. Pure bf16 2-byte everything; mixed precision fp32 masters and states.
        ({}, 2 * 2 + 4 * 2 + 2 * 2 * 2),
        ({"precision": Precision.mixed_bf16}, 2 * 4 + 4 * 4 + 2 * 2 * 4),
        ({"precision": Precision.mixed_bf16, "optimizer": Optimizer.sgd}, 2 * 4 + 4 * 4),
        ({"precision": Precision.mixed_bf16, "optimizer": Optimizer.sgd_momentum}, 32),
        # bitsandbytes 8-bit: a byte per state value and an fp32 absmax per 256.
        ({"precision": Precision.mixed_bf16, "optimizer": Optimizer.adamw_8bit}, 24 + 4.0625),
        ({"precision": Precision.mixed_bf16, "optimizer": Optimizer.paged_adamw_32bit}, 40),
        # Adafactor: factored states; two fp32 temporaries written and read.
        ({"precision": Precision.mixed_bf16, "optimizer": Optimizer.adafactor}, 24 + 16),
        # PEFT's fp32 adapters step in fp32 whatever the base.
        ({"method": Method.lora}, 40),
    ],
)
def test_optimizer_step_bytes_per_parameter(
    llama: Architecture, changes: dict[str, object], step_bytes: float
) -> None:
    """What one optimizer step moves per trainable parameter, by optimizer and dtype."""
    t = traffic(llama, training(**changes))
    assert t.step_bytes_per_param == step_bytes
    lora = changes.get("method") is Method.lora
    assert (
        (t.trainable_params < LLAMA_PARAMS // 100) if lora else t.trainable_params == LLAMA_PARAMS
    )


def test_optimizer_step_is_paid_once_per_step(llama: Architecture) -> None:
    """The step's seconds (`inputs.optimizer_step_s`) are spread over the step's tokens: a
    batch of 4 pays a quarter per token; on the host (--offload optimizer) it is not counted."""
    one = speed(llama, training(precision=Precision.mixed_bf16), card())
    four = speed(llama, training(precision=Precision.mixed_bf16, batch=4), card())
    step = LLAMA_PARAMS * FP32_STEP_BYTES / TRAINING_BANDWIDTH
    assert one.inputs["optimizer_step_s"] == pytest.approx(step, rel=1e-12)
    assert one.train_tokens_per_s is not None and four.train_tokens_per_s is not None
    gap = 1 / one.train_tokens_per_s - 1 / four.train_tokens_per_s
    assert gap == pytest.approx(step / 2048 - step / (4 * 2048), rel=1e-9)
    offloaded = speed(
        llama,
        training(precision=Precision.mixed_bf16, offload=TrainingOffload.optimizer),
        card(),
    )
    assert "optimizer_step_s" not in offloaded.inputs
    assert offloaded.train_tokens_per_s is not None
    assert 1 / offloaded.train_tokens_per_s == pytest.approx(
        1 / one.train_tokens_per_s - step / 2048, rel=1e-9
    )


def test_gradient_accumulation_spreads_the_step(llama: Architecture) -> None:
    """4 micro-batches of 1 sequence per step pay the optimizer step once, as a batch of 4
    does: the same tokens/s."""
    accumulated = speed(llama, training(precision=Precision.mixed_bf16, microbatches=4), card())
    batched = speed(llama, training(precision=Precision.mixed_bf16, batch=4), card())
    assert accumulated.train_tokens_per_s == pytest.approx(batched.train_tokens_per_s, rel=1e-12)
    assert "pipeline_bubble" not in accumulated.inputs


def test_compile_fuses_the_element_wise_kernels(llama: Architecture) -> None:
    """torch.compile moves each chain's inputs and outputs once: the same FLOPs, fewer bytes."""
    found = speed(llama, training(compile=True), card())
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    flops = 6 * matmul + 3 * 2 * 4096 * 32 * 2048
    seconds = _llama_seconds(LLAMA_COMPILED_LAYER, LLAMA_COMPILED_LOGITS, 3, flops)
    assert found.train_tokens_per_s == pytest.approx(1 / seconds, rel=1e-9)
    assert found.inputs["compiled"] == "yes"
    with pytest.raises(InvalidValueError, match="--compile applies to training only"):
        inference(compile=True)


def test_selective_checkpointing_recomputes_every_second_matmul(llama: Architecture) -> None:
    """torchtitan's per-op policy: of each layer's q, k, v, o, gate, up, down the 2nd, 4th and
    6th (k, o, up) and one forward of the element-wise kernels again; full checkpointing a
    whole forward of the layers (not the head)."""
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    head = llama.vocab_size * llama.hidden_size
    attention = 2 * 4096 * 32 * 2048
    base = 6 * matmul + 3 * attention
    selective = speed(llama, training(checkpointing=Checkpointing.selective), card())
    recomputed = 2 * 32 * (4096 * 1024 + 4096 * 4096 + 4096 * 14336)
    seconds = _llama_seconds(LLAMA_EAGER_LAYER, LLAMA_EAGER_LOGITS, 4, base + recomputed)
    assert selective.train_tokens_per_s == pytest.approx(1 / seconds, rel=1e-9)
    full = speed(llama, training(checkpointing=Checkpointing.full), card())
    seconds = _llama_seconds(
        LLAMA_EAGER_LAYER, LLAMA_EAGER_LOGITS, 4, base + 2 * (matmul - head) + attention
    )
    assert full.train_tokens_per_s == pytest.approx(1 / seconds, rel=1e-9)


def test_frozen_layers_run_their_element_wise_kernels_forward_only(llama: Architecture) -> None:
    """--method freeze with the top 8 of 32 layers trained: the 24 below run forward only,
    their matmuls once (the trained ones' and the head's twice: frozen weights, no weight
    gradient) and their element-wise kernels once."""
    found = speed(llama, training(method=Method.freeze, trainable_layers=8), card())
    counts = count_params(llama)
    matmul = counts.total - llama.vocab_size * llama.hidden_size
    head = llama.vocab_size * llama.hidden_size
    flops = 2 * 2 * matmul - 24 / 32 * 2 * (matmul - head) + 3 * 2 * 4096 * 32 * 2048
    traffic = 32 * LLAMA_EAGER_LAYER * (24 / 32 + 8 / 32 * 3) + LLAMA_EAGER_LOGITS * 3
    # The optimizer steps the top 8 layers, the final norm and the head.
    stepped = counts.layers // 32 * 8 + counts.final_norm + counts.output_head
    seconds = (
        flops / (300 * TERA * MFU_BY_RECIPE[Recipe.bf16].mfu)
        + traffic / TRAINING_BANDWIDTH
        + stepped * BF16_STEP_BYTES / TRAINING_BANDWIDTH / 2048
    )
    assert found.train_tokens_per_s == pytest.approx(1 / seconds, rel=1e-9)


def test_tensor_parallel_training_pays_its_all_reduces(llama: Architecture) -> None:
    """TP 8 divides a token's work over 8 cards and adds 4 all-reduces per layer (2 forward,
    2 backward) of the hidden state, ring factor 2 x 7/8, one direction of the link each, and
    the fixed latency once per micro-batch; the 8 cards make one replica."""
    w = training(stage=Stage.pretrain, gpus=16, tensor_parallel=8, parallel=Parallel.zero3)
    found = speed(llama, w, card())
    alone = speed(llama, training(stage=Stage.pretrain), card())
    assert alone.train_tokens_per_s is not None
    link = 4096 * 2 * 2 * 7 / 8 * 2 / 600e9 + 10e-6 / 2048
    # ZeRO-3 over the 2 replicas of 8 cards: each card steps 1/16 of the parameters.
    work = 1 / alone.train_tokens_per_s - _step_per_token()
    per_token = work / 8 + 32 * 4 * link + _step_per_token(16)
    assert found.train_tokens_per_s == pytest.approx(2 / per_token, rel=1e-9)
    assert found.inputs["interconnect_bytes_per_s"] == 600e9
    lacking = speed(llama, w, card(interconnect_bytes_per_s=None))
    assert lacking.train_tokens_per_s is None
    assert lacking.missing == ("interconnect bandwidth",)


def test_pipeline_parallel_training_waits_out_its_bubble(llama: Architecture) -> None:
    """pp:4 on 8 cards (2 replicas): the cards of a pipeline share a replica's work, then
    idle (p - 1) / (v m) of it: 3/4 at the default 4 micro-batches, 3/12 at 12, 3/16 with the
    interleaved schedule's 2 stages per card and its default 8 micro-batches."""
    alone = speed(llama, training(stage=Stage.pretrain, gpus=8, parallel=Parallel.ddp), card())
    assert alone.train_tokens_per_s is not None
    piped = training(stage=Stage.pretrain, gpus=8, parallel=Parallel.ddp, pipeline_parallel=4)
    # DDP: each card steps its whole slice once per step (the whole model alone; a quarter
    # in a pipeline, once per m micro-batches).
    work = 8 / alone.train_tokens_per_s - _step_per_token()
    for changes, bubble, m in (
        ({}, 3 / 4, 4),
        ({"microbatches": 12}, 3 / 12, 12),
        ({"pp_schedule": PipelineSchedule.interleaved}, 3 / 16, 8),
        ({"pp_schedule": PipelineSchedule.interleaved, "microbatches": 3}, 3 / 6, 3),
    ):
        found = speed(llama, dataclasses.replace(piped, **changes), card())
        assert found.inputs["pipeline_bubble"] == pytest.approx(bubble, rel=1e-12)
        per_token = work * (1 + bubble) + _step_per_token(4, 2048 * m)
        assert found.train_tokens_per_s == pytest.approx(8 / per_token, rel=1e-9)
    assert "pipeline_bubble" not in alone.inputs


def test_rowwise_fp8_runs_at_its_own_utilisation(llama: Architecture) -> None:
    """--fp8-scaling rowwise: the same FLOPs and casts as tensorwise, its matmuls at the
    rowwise recipe's MFU (torch._scaled_mm's row-scaled kernels run slower)."""
    tensorwise = speed(llama, training(precision=Precision.fp8), card())
    rowwise = speed(
        llama, training(precision=Precision.fp8, fp8_scaling=Float8Scaling.rowwise), card()
    )
    assert tensorwise.train_tokens_per_s is not None and rowwise.train_tokens_per_s is not None
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    faster = (
        6
        * matmul
        / (600 * TERA)
        * (1 / MFU_BY_RECIPE[Recipe.fp8_rowwise].mfu - 1 / MFU_BY_RECIPE[Recipe.fp8].mfu)
    )
    assert 1 / rowwise.train_tokens_per_s - 1 / tensorwise.train_tokens_per_s == pytest.approx(
        faster, rel=1e-9
    )
    assert rowwise.inputs["recipe"] == "fp8 rowwise" and tensorwise.inputs["recipe"] == "fp8"


def test_training_needs_the_bandwidth(llama: Architecture) -> None:
    """The element-wise kernels are memory-bound: no bandwidth figure, no training speed."""
    found = speed(llama, training(), card(bandwidth_bytes_per_s=None))
    assert found.train_tokens_per_s is None and found.missing == ("memory bandwidth",)


def test_fp8_training_casts_every_linear_operand(llama: Architecture) -> None:
    """Float8 linears: per layer the inputs of q, k, v, o, gate, up and down cast twice (5 B
    each) and their output gradients once into two layouts (6 B), at the FP8 peak x its MFU."""
    found = speed(llama, training(precision=Precision.fp8), card())
    matmul = count_params(llama).total - llama.vocab_size * llama.hidden_size
    inputs = 3 * 4096 + 4096 + 2 * 4096 + 14336
    grads = 4096 + 2 * 1024 + 4096 + 2 * 14336 + 4096
    casts = inputs * 2 * 5 + grads * 6
    traffic = 32 * (LLAMA_EAGER_LAYER * 3 + casts) + LLAMA_EAGER_LOGITS * 3
    seconds = (
        6 * matmul / (600 * TERA * MFU_BY_RECIPE[Recipe.fp8].mfu)
        + 3 * 2 * 4096 * 32 * 2048 / (300 * TERA * MFU_BY_RECIPE[Recipe.bf16].mfu)
        + traffic / TRAINING_BANDWIDTH
        + _step_per_token(step_bytes=FP32_STEP_BYTES)  # fp32 master weights and states
    )
    assert found.train_tokens_per_s == pytest.approx(1 / seconds, rel=1e-9)


def test_training_recipes_order(llama: Architecture) -> None:
    """Frozen weights skip their gradient (LoRA faster than full), full checkpointing adds a
    forward, QLoRA pays its dequantization, FP8 matmuls run faster."""
    rates = {
        name: speed(llama, w, card()).train_tokens_per_s
        for name, w in {
            "full": training(),
            "lora": training(method=Method.lora),
            "qlora": training(
                method=Method.qlora,
                weight_format=WeightFormat(slug="nf4", bits_per_weight=4.5),
            ),
            "checkpointed": training(checkpointing=Checkpointing.full),
            "fp8": training(precision=Precision.fp8),
        }.items()
    }
    assert all(r is not None for r in rates.values())
    assert rates["lora"] > rates["full"] > rates["checkpointed"]  # type: ignore[operator]
    assert rates["lora"] > rates["qlora"]  # type: ignore[operator]
    assert rates["fp8"] > rates["full"]  # type: ignore[operator]


def test_training_tokens_options() -> None:
    assert training_tokens(None, None, None) is None
    assert training_tokens(5, None, None) == 5
    assert training_tokens(None, 1000, 3) == 3000
    assert training_tokens(None, 1000, None) == 1000
    with pytest.raises(InvalidValueError, match="give one"):
        training_tokens(5, 10, None)
    with pytest.raises(InvalidValueError, match="--epochs counts passes"):
        training_tokens(None, None, 2)
    with pytest.raises(InvalidValueError, match="tokens must be at most"):
        training_tokens(MAX_TRAINING_TOKENS + 1, None, None)
    with pytest.raises(InvalidValueError, match="dataset-tokens x epochs"):
        training_tokens(None, MAX_TRAINING_TOKENS, 2)


def fit_card(slug: str, memory_gib: int, price: float | None, bandwidth: int) -> Card:
    return Card(
        slug=slug,
        name=slug,
        vendor=Vendor.nvidia,
        market=Market.datacenter,
        memory_bytes=memory_gib * 2**30,
        price_per_hour=price,
        compute=card(bandwidth_bytes_per_s=bandwidth, price_per_hour=price),
    )


def test_cheapest_plan_meets_the_target_at_the_lowest_price(llama: Architecture) -> None:
    """Of a cheap slow card and a dear fast one, the target picks the cheapest that meets it;
    a budget alone picks the fastest within it; an unreachable target says how close."""
    level = Level(label="bf16", workload=inference(seq=4096))
    cheap = fit_card("cheap", 80, 1.0, 500_000_000_000)
    dear = fit_card("dear", 80, 5.0, 4_000_000_000_000)
    cards = [cheap, dear]
    slow_rate = cheapest(llama, [level], [cheap], target_tps=1.0, max_gpus=1).best.throughput
    low = cheapest(llama, [level], cards, target_tps=slow_rate * 0.9, max_gpus=1)
    assert low.best.card.slug == "cheap" and low.best.count == 1
    high = cheapest(llama, [level], cards, target_tps=slow_rate * 1.5, max_gpus=1)
    assert high.best.card.slug == "dear"
    budget = cheapest(llama, [level], cards, budget_per_hour=1.5, max_gpus=1)
    assert budget.best.card.slug == "cheap"
    with pytest.raises(NoPlanError, match=r"no plan reaches 1,000,000 tokens/s; the fastest is"):
        cheapest(llama, [level], cards, target_tps=1e6, max_gpus=1)
    with pytest.raises(NoPlanError, match=r"no plan within \$0.50/h; the cheapest is 1 x cheap"):
        cheapest(llama, [level], cards, target_tps=1.0, budget_per_hour=0.5, max_gpus=1)
    with pytest.raises(InvalidValueError, match="target-tps must be positive"):
        cheapest(llama, [level], cards, target_tps=-1.0)
    with pytest.raises(InvalidValueError, match="give --target-tps"):
        cheapest(llama, [level], cards)


def test_option_speed_at_batch_1_and_at_the_concurrency_that_fits(llama: Architecture) -> None:
    level = Level(label="bf16", workload=inference(seq=4096))
    result = plan(llama, [level], [fit_card("c", 80, 1.0, 2_000_000_000_000)], max_gpus=1)
    (option,) = result.options
    found = option_speed(llama, option)
    assert found.concurrency == option.max_batch and found.concurrency is not None
    assert found.concurrency > 1
    assert found.full is not None and found.single.decode_tokens_per_s is not None
    assert found.full.decode_tokens_per_s_total is not None
    assert found.full.decode_tokens_per_s_total > found.single.decode_tokens_per_s
    assert found.throughput == found.full.decode_tokens_per_s_total
    no_figures = dataclasses.replace(option, card=dataclasses.replace(option.card, compute=None))
    assert option_speed(llama, no_figures).throughput is None


def test_vendor_backends_follow_the_runtime() -> None:
    for vendor in Vendor:
        assert card(vendor=vendor).runtime is OVERHEAD_BY_VENDOR[vendor].runtime


# --- the commands ------------------------------------------------------------------------------

pytestmark_cli = pytest.mark.usefixtures("ready_catalog")


@pytestmark_cli
def test_estimate_gpu_json_speed_object(run: Run) -> None:
    """--gpu fills the stable speed object: every key, the figures that apply, their inputs."""
    result = run(
        "estimate", "--model", "llama-3.1-8b", "--gpu", "h100-sxm5-80gb", "--batch", "4", "--json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["gpu"] == "h100-sxm5-80gb"
    found = data["speed"]
    assert list(found) == [
        "decode_tokens_per_s",
        "decode_tokens_per_s_total",
        "prefill_tokens_per_s",
        "time_to_first_token_s",
        "train_tokens_per_s",
        "train_time_s",
        "cost_usd",
        "cost_per_million_tokens_usd",
        "bound",
        "inputs",
    ]
    assert found["decode_tokens_per_s_total"] == pytest.approx(
        4 * found["decode_tokens_per_s"], rel=1e-3
    )
    assert found["train_tokens_per_s"] is None and found["bound"] == "memory"
    assert found["inputs"]["bandwidth_bytes_per_s"] == 3_350_000_000_000
    assert found["inputs"]["price_per_hour_usd"] == 3.78
    # Cost per million output tokens: the hour's price over the tokens of an hour.
    per_hour = found["decode_tokens_per_s_total"] * 3600
    assert found["cost_per_million_tokens_usd"] == pytest.approx(3.78 / per_hour * 1e6, rel=1e-3)


@pytestmark_cli
@pytest.mark.parametrize(("quant", "share"), [("bf16", 0.37), ("q4_k_m", 0.29)])
def test_estimate_names_the_prefill_utilization_it_applied(
    run: Run, quant: str, share: float
) -> None:
    """llama.cpp's prefill reaches a smaller share of the tensor peak with block-quantized
    weights: the JSON inputs and the text both give the share the prediction used."""
    engine = BACKEND_SPEED[(Engine.llama_cpp, Runtime.cuda)]
    assert (engine.utilization, engine.quantized_utilization) == (0.37, 0.29)
    args: tuple[str, ...] = ("estimate", "--model", "llama-3.1-8b", "--quant", quant)
    args += ("--engine", "llama.cpp", "--gpu", "rtx4090")
    data = json.loads(run(*args, "--json").stdout)
    assert data["speed"]["inputs"]["utilization"] == share
    text = run(*args)
    assert text.exit_code == 0, text.stderr
    assert f"{share:.0%} of tensor throughput in prefill" in " ".join(text.stdout.split())


@pytestmark_cli
def test_estimate_training_time_and_cost(run: Run) -> None:
    result = run(
        "estimate", "--model", "llama-3.1-8b", "--stage", "finetune", "--method", "lora",
        "--gpu", "a100-sxm4-80gb", "--dataset-tokens", "50000000", "--epochs", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("training: "))
    assert "tokens/s on 1 x NVIDIA A100 SXM4 80GB; the run takes " in line and ", $" in line


@pytestmark_cli
def test_estimate_compile_option(run: Run) -> None:
    """--compile: the workload JSON says so, training runs faster (fused element-wise
    kernels), the speed section names the kernels; inference refuses it (exit 2)."""
    rates = {}
    for flag in ("--no-compile", "--compile"):
        result = run(
            "estimate", "--model", "llama-3.1-8b", "--stage", "pretrain", "--gpu",
            "h100-sxm5-80gb", flag, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["workload"]["compile"] is (flag == "--compile")
        assert data["speed"]["inputs"]["compiled"] == ("yes" if flag == "--compile" else "no")
        rates[flag] = data["speed"]["train_tokens_per_s"]
    assert rates["--compile"] > rates["--no-compile"]
    result = run("estimate", "--model", "llama-3.1-8b", "--stage", "pretrain", "--gpu", "h100")
    assert "element-wise kernels eager (--compile fuses them)" in result.stdout
    result = run("estimate", "--model", "llama-3.1-8b", "--compile")
    assert result.exit_code == 2 and "--compile applies to training only" in result.stderr


@pytestmark_cli
def test_estimate_pipeline_and_fp8_options(run: Run) -> None:
    """--microbatches, --pp-schedule and --fp8-scaling: in the workload JSON, in the speed
    inputs and its text; each refused where it does not apply (exit 2, one line)."""
    base = (
        "estimate", "--model", "llama-3.1-70b", "--stage", "pretrain", "--gpus", "64",
        "--parallel", "zero3,tp:8,pp:8", "--precision", "fp8", "--gpu", "h100-sxm5-80gb",
    )  # fmt: skip
    more = ("--microbatches", "28", "--pp-schedule", "interleaved-1f1b", "--fp8-scaling", "rowwise")
    result = run(*base, *more, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workload"]["microbatches"] == 28
    assert data["workload"]["pp_schedule"] == "interleaved-1f1b"
    assert data["workload"]["fp8_scaling"] == "rowwise"
    assert data["speed"]["inputs"]["pipeline_bubble"] == 7 / 56
    assert data["speed"]["inputs"]["recipe"] == "fp8 rowwise"
    default = json.loads(run(*base, "--json").stdout)
    assert default["workload"]["microbatches"] == 8
    assert default["workload"]["pp_schedule"] == "1f1b"
    assert default["workload"]["fp8_scaling"] == "tensorwise"
    assert default["speed"]["inputs"]["pipeline_bubble"] == 7 / 8
    text = run(*base, *more).stdout
    assert "    x (1 + pipeline bubble 12%): 8 stages, 28 micro-batches, interleaved-1f1b" in text
    plain = json.loads(run("estimate", "--model", "llama-3.1-8b", "--json").stdout)["workload"]
    assert plain["microbatches"] is plain["pp_schedule"] is plain["fp8_scaling"] is None
    for args, message in (
        (("--stage", "inference", "--microbatches", "4"), "--microbatches applies to training"),
        (("--pp-schedule", "interleaved-1f1b"), "--pp-schedule interleaved-1f1b applies to"),
        (("--fp8-scaling", "rowwise"), "--fp8-scaling rowwise applies to --precision fp8"),
    ):
        result = run("estimate", "--model", "llama-3.1-8b", "--stage", "pretrain", *args)
        assert result.exit_code == 2
        assert result.stderr.startswith(f"error: {message}"), result.stderr
    # Without a pipeline, --microbatches accumulates gradients.
    result = run(
        "estimate", "--model", "llama-3.1-8b", "--stage", "finetune", "--microbatches", "4",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    accumulated = json.loads(result.stdout)
    assert accumulated["workload"]["microbatches"] == 4
    assert accumulated["peak_moment"] == "start of backward"
    assert accumulated["components"]["gradients"] > 0


@pytestmark_cli
def test_estimate_speed_errors(run: Run) -> None:
    """A card without the figure training needs: exit 1 naming it; run tokens for inference
    and contradictory options: exit 2."""
    result = run("estimate", "--model", "llama-3.1-8b", "--stage", "finetune", "--gpu", "dgx-spark")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: dgx-spark: the catalog has no FP16/BF16 dense")
    result = run("estimate", "--model", "llama-3.1-8b", "--gpu", "rtx4090", "--tokens", "10")
    assert result.exit_code == 2 and "size a training run" in result.stderr
    result = run(
        "estimate", "--model", "llama-3.1-8b", "--stage", "finetune", "--tokens", "5",
        "--dataset-tokens", "5",
    )  # fmt: skip
    assert result.exit_code == 2 and "give one" in result.stderr


@pytestmark_cli
def test_fit_target_picks_the_cheapest_plan(run: Run) -> None:
    args = ("fit", "--model", "llama-3.1-70b", "--quant", "int4", "--target-tps", "500")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    best = json.loads(result.stdout)["cheapest"]
    assert best["tokens_per_s"] >= 500
    assert best["price_per_hour"] > 0 and best["plans_meeting"] >= 1
    text = run(*args)
    assert text.exit_code == 0
    assert "cheapest plan for at least 500 tokens/s" in text.stdout


@pytestmark_cli
def test_fit_unreachable_target_and_bad_values(run: Run) -> None:
    result = run("fit", "--model", "llama-3.1-70b", "--quant", "int4", "--target-tps", "1e8")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no plan reaches 100,000,000 tokens/s; the fastest is")
    assert "of the target)" in result.stderr
    result = run("fit", "--model", "llama-3.1-70b", "--target-tps", "0")
    assert result.exit_code == 2 and "target-tps must be positive" in result.stderr
    result = run("fit", "--model", "llama-3.1-70b", "--budget-per-hour", "nan")
    assert result.exit_code == 2


@pytestmark_cli
def test_fit_sort_by_speed(run: Run) -> None:
    """--sort speed: rows fastest first (decode of every sequence that fits)."""
    result = run(
        "fit", "--model", "llama-3.1-8b", "--quant", "bf16", "--gpu", "rtx3090", "--gpu",
        "h100-sxm5-80gb", "--gpu", "l4", "--sort", "speed", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    text = run(
        "fit", "--model", "llama-3.1-8b", "--quant", "bf16", "--gpu", "rtx3090", "--gpu",
        "h100-sxm5-80gb", "--gpu", "l4", "--sort", "speed", "--cards", "all",
    )  # fmt: skip
    rows = [x.split("│")[0].strip() for x in text.stdout.splitlines() if "│" in x]
    names = [r for r in rows if r]
    assert names[1:] == ["h100-sxm5-80gb", "rtx3090", "l4"]


@pytestmark_cli
def test_which_models_tokens_per_second(run: Run) -> None:
    result = run("which-models", "--gpu", "rtx4090", "--family", "llama-3.1", "--json")
    assert result.exit_code == 0, result.stderr
    models = {m["model"]: m for m in json.loads(result.stdout)["models"]}
    rate = models["llama-3.1-8b"]["tokens_per_s"]
    assert isinstance(rate, float) and 10 < rate < 200
    assert math.isfinite(rate)
