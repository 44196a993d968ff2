"""How fast and at what cost: decode and prefill tokens per second, training throughput, the
time and cost of a run.

Pure: no CLI, rendering or database imports. Typed inputs in (an `Architecture`, a `Workload`,
a card's `Compute` figures), a frozen `Speed` out with every figure it used named in `inputs`.
A figure the card lacks (bandwidth, a tensor throughput, the link between cards) leaves the
figures that need it None and is named in `Speed.missing`: no stand-in value is ever used.

The mechanisms (docs/estimates.md "Speed and cost" documents each with its source):

- Decode is one step per generated token for every sequence in the batch. A step reads the
  weights the step touches (a routed expert only when some sequence routes to it; the input
  embedding is a lookup of one row) and each sequence's KV cache at its context, at the card's
  bandwidth times what the engine reaches; it multiplies 2 x the active weights + the attention
  over the context per sequence at the card's dense tensor throughput times a utilisation. The
  slower of the two bounds the step (the roofline), plus the engine's fixed time per layer
  (kernel launches, Python, sampling) and, with tensor parallelism, two all-reduces of the
  hidden state per layer over the card's link.
- Prefill multiplies the whole prompt: 2 x active weights per token + the causal attention
  (2 x layers x width x prompt^2), read the weights once per micro-batch of the engine.
- Training runs 3 passes' worth of matmuls per token (forward, backward for activations,
  backward for weights), one more forward with full checkpointing; frozen weights (LoRA, QLoRA,
  freeze) skip the weight gradient, and frozen layers below every trained one skip backward.
  QLoRA dequantizes each 4-bit weight to 16 bits in every forward and backward pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from advisor.arch import Architecture
from advisor.enums import Engine, Market, QuantKind, Vendor
from advisor.errors import InvalidValueError
from advisor.estimator import GGML_F32_BYTES, OVERHEAD_BY_VENDOR, Runtime, Traffic, traffic
from advisor.traits import MLPKind
from advisor.workload import (
    ZERO_STRATEGIES,
    Checkpointing,
    Float8Scaling,
    Loss,
    Method,
    Parallel,
    Precision,
    Stage,
    TrainingOffload,
    Workload,
    check_count,
)

__all__ = [
    "BACKEND_SPEED",
    "MFU_BY_RECIPE",
    "Bound",
    "Compute",
    "EngineSpeed",
    "Recipe",
    "Speed",
    "speed",
    "training_tokens",
]

TERA = 1e12
SECONDS_PER_HOUR = 3600
MILLION = 1_000_000
# 16-bit activations cross the link between cards under tensor parallelism.
ACTIVATION_BYTES = 2
# Tensor parallelism all-reduces the hidden state twice per layer (after attention and after
# the MLP: Megatron-LM's row-parallel layers, Shoeybi et al. 2019, section 3).
ALLREDUCES_PER_LAYER = 2
# A ring all-reduce sends and receives 2 (n - 1) / n of the buffer per card (Patarasuk and
# Yuan 2009; nccl-tests doc/PERFORMANCE.md: bus bandwidth = algorithm bandwidth x 2(n-1)/n).
RING_FACTOR_NUMERATOR = 2
# Vendors state a link's bandwidth as both directions together (NVIDIA: H100 NVLink 900 GB/s
# = 18 links of 50 GB/s, 25 each way; A100 600 GB/s, "300+300"); a ring all-reduce step sends
# to one neighbour while it receives from the other, each at one direction's share (nccl-tests
# doc/PERFORMANCE.md compares bus bandwidth with one direction's peak).
LINK_DIRECTIONS = 2
# Fixed cost of one all-reduce (launch and synchronisation), independent of its size: an
# order of magnitude, not a calibration (NCCL's small-message all-reduce within one machine
# takes some microseconds to tens of them; nccl-tests all_reduce_perf prints it per size). No
# record of the calibration set isolates it: vLLM's 2- and 4-card runs are within 10 % with it.
ALLREDUCE_LATENCY_S = 10e-6
# llama.cpp's layer split hands the hidden state from one card to the next once per step; its
# cost per hand-over is calibrated on llama-bench's tg512 figures of Llama-3-8B on 1 to 6
# RTX 3090 and RTX 4090 cards (0.18 to 0.29 ms per added card, XiongjieDai/
# GPU-Benchmarks-on-LLM-Inference).
PIPELINE_HOP_S = 0.2e-3
# NVIDIA GeForce (consumer and laptop) cards run FP16 tensor math at twice the rate the catalog
# lists when the accumulation is FP16 too: the catalog's dense figure is the FP32-accumulate
# one (NVIDIA Ada GPU architecture whitepaper, RTX 4090: 330.3 TFLOPS FP16-accumulate vs
# 165.2 FP32-accumulate; Ampere GA102 whitepaper likewise). llama.cpp's CUDA backend runs its
# F16 GEMMs with FP16 compute (ggml-cuda: cublasGemmEx with CUBLAS_COMPUTE_16F).
GEFORCE_FP16_ACCUMULATE_SPEEDUP = 2.0
GEFORCE_MARKETS = frozenset({Market.consumer, Market.laptop})
# Weight formats of at most this many bits per weight, of the float kind, are FP8 checkpoints.
FP8_BITS = 8
# bitsandbytes dequantizes an NF4 weight to 16 bits before each matmul: it reads the packed
# 4.5-bit weight and writes a 16-bit copy that the matmul reads back (bitsandbytes
# functional.dequantize_4bit; QLoRA, Dettmers et al. 2023, section 3).
QLORA_DEQUANT_BYTES_PER_WEIGHT = 4.5 / 8 + 2 + 2
# Passes over a frozen matrix per training step: forward and the activation gradient.
FROZEN_PASSES = 2
# Passes over a trained matrix: forward, activation gradient, weight gradient (Kaplan et al.
# 2020, "6N" per token = 3 passes of 2 FLOPs per weight).
TRAINED_PASSES = 3
FLOPS_PER_MAC = 2
# transformers' decode step (DynamicCache.update: torch.cat of the old cache and the new token;
# modeling_*.repeat_kv: K and V expanded to every query head before attention): the cache is
# read and written by the concatenation, and its expansion written and read once more.
KV_CONCAT_PASSES = 2
KV_REPEAT_PASSES = 2
# llama.cpp's logical batch (-b, common/common.h n_batch = 2048): a prompt is split into
# batches of this many tokens, each into micro-batches of n_ubatch; with layers split over
# cards, the micro-batches of one batch flow through the cards as a pipeline that drains at
# the end of each batch (src/llama-context.cpp pipeline parallelism, n_batch > n_ubatch).
LLAMA_CPP_N_BATCH = 2048
# Engines whose cards each hold whole layers, run one after the other, whatever strategy is
# asked: llama.cpp's default `--split-mode layer` (its memory is sized the same way,
# advisor.estimator._llama_cpp_terms).
LAYER_SPLIT_ENGINES = frozenset({Engine.llama_cpp})
# Without flash attention llama.cpp's graph (src/llama-graph.cpp build_attn_mha) writes the
# fp32 scores KQ, reads and writes them in soft_max, and reads them in the KQV product.
LLAMA_CPP_SCORE_PASSES = 4


# --- training: element-wise traffic, tensor parallelism, recomputation -------------------------
# Every training step also runs the kernels between the matmuls (norms, residual adds, rotary
# embeddings, the MLP's activation, materialized attention scores, the loss over the
# vocabulary). They do few FLOPs and are bound by memory: their time is the bytes they move
# over the card's bandwidth (Ivanov et al. 2021, "Data Movement Is All You Need", MLSys: such
# operators take a large share of a transformer's training time in PyTorch). Eager PyTorch runs
# each op as its own kernel, which reads its inputs and writes its output; torch.compile's
# Inductor fuses each chain of them between two matmuls into one kernel that reads the chain's
# inputs once and writes its outputs once. Bytes per element per forward pass, counted on the
# model code the calibration records ran (torchtitan torchtitan/models/norms.py RMSNorm and
# models/llama/model.py at 9dec370; transformers' LlamaRMSNorm is the same chain):
# RMSNorm eager: x.float() (read 2, write 4), pow (4 + 4), mean (4), x * rsqrt (4 + 4),
# type_as (4 + 2), * weight (2 + 2).
EAGER_RMSNORM_BYTES = 36
# LayerNorm eager: F.layer_norm is one kernel (read 2, write 2).
EAGER_LAYERNORM_BYTES = 4
# A residual add, eager: read both operands, write the sum (2 + 2 + 2). Two per layer (after
# attention, after the MLP) in every pre-norm and post-norm block the catalog holds.
EAGER_RESIDUAL_BYTES = 6
RESIDUALS_PER_LAYER = 2
# Rotary embedding per query and key element, eager (torchtitan apply_rotary_emb): float()
# (2 + 4), complex multiply (4 + 4), type_as (4 + 2).
EAGER_ROPE_BYTES = 18
# The MLP's activation per intermediate element, eager: gated (F.silu(gate) * up: 2 + 2, then
# 2 + 2 + 2); GPT-2's tanh GELU written out in Python (modeling_gpt2 NewGELUActivation: eight
# ops, pow, three multiplies, two adds, tanh, the final product: 36); one-kernel GELU or ReLU
# (2 + 2).
EAGER_ACTIVATION_BYTES: Mapping[MLPKind, int] = MappingProxyType(
    {MLPKind.gated: 10, MLPKind.gelu_new: 36, MLPKind.gelu: 4, MLPKind.relu: 4}
)
# Materialized attention scores per element (eager attention: transformers'
# eager_attention_forward, nanoGPT before PyTorch 2.0's SDPA): QK^T written (2), scaled (2 + 2),
# masked (2 + 2), softmax upcast to fp32 (2 + 4), cast back (4 + 2), read by AV (2).
EAGER_SCORE_BYTES = 24
# The loss per vocabulary element, eager (transformers ForCausalLMLoss, torchtitan's
# cross_entropy on logits.float()): logits written (2), upcast (2 + 4), log-softmax (4 + 4).
EAGER_LOGIT_BYTES = 16
# Compiled (Inductor): a norm fused with the residual add before it reads the input and the
# residual and writes the sum and the normalized tensor (2 + 2 + 2 + 2); rotary read and write
# (2 + 2); the activation reads its inputs and writes the product (gated 2 + 2 + 2, one input
# 2 + 2); scores written by QK^T, read and written once by the fused scale-mask-softmax and read
# by AV (2 + 2 + 2 + 2); logits written and read by the fused log-softmax (2 + 2).
COMPILED_NORM_BYTES = 8
COMPILED_ROPE_BYTES = 4
COMPILED_ACTIVATION_BYTES: Mapping[MLPKind, int] = MappingProxyType(
    {MLPKind.gated: 6, MLPKind.gelu_new: 4, MLPKind.gelu: 4, MLPKind.relu: 4}
)
COMPILED_SCORE_BYTES = 8
COMPILED_LOGIT_BYTES = 4
# Float8 training (torchao Float8Linear, dynamic tensorwise scaling, torchtitan's default
# recipe; torchao/float8/float8_linear.py `matmul_with_hp_or_float8_args`) casts every linear
# layer's 16-bit operands to fp8 around each matmul: the input in forward, and again in
# backward for the weight gradient (the 16-bit input is what is saved), the output gradient
# once for the input gradient and once, transposed, for the weight gradient. Each cast finds
# the tensor's absolute maximum (read 2) and writes the scaled copy (read 2, write 1); the
# output gradient's two copies share one maximum, compiled into one kernel (2 + 2 + 1 + 1).
# The output head stays 16-bit (torchtitan's converter skips "output").
FP8_INPUT_CAST_BYTES = 5
FP8_GRAD_CAST_BYTES = 6
FP8_CASTS_PER_INPUT = 2  # forward, and the weight gradient's copy in backward
# Recomputed casts: full checkpointing recomputes the forward's cast of every input;
# torchtitan's per-op policy saves the maxima (`_save_list` keeps abs and max) and recomputes
# the cast alone (read 2, write 1).
FP8_RECOMPUTED_CAST_BYTES = 3
# Eager attention multiplies all seq x seq scores and masks the future afterwards: twice the
# causal half a fused kernel computes (FlashAttention skips the blocks above the diagonal).
MATERIALIZED_SCORE_FACTOR = 2
# Backward moves about twice the forward's bytes per element-wise op: each op's derivative
# reads the saved input (or output) and the incoming gradient and writes the outgoing one
# (PyTorch tools/autograd/derivatives.yaml: e.g. mul, silu, pow, _log_softmax backward).
BACKWARD_TRAFFIC_RATIO = 2
# The share of the card's bandwidth PyTorch's element-wise kernels reach: the figure
# transformers' own kernels reach reading weights in decode (_TRANSFORMERS_CUDA, calibrated on
# Qwen2.5's A100 benchmark); no training record isolates it.
TRAINING_BANDWIDTH_EFFICIENCY = 0.85
# torchtitan's per-op selective checkpointing saves the output of every matmul but every
# second one, and of the attention kernel; everything else in a block is recomputed in
# backward (torchtitan parallelize_llama.py `_save_list` and `_custom_policy` at 9dec370):
# one forward of the blocks' element-wise kernels and the products it does not save
# (advisor.estimator._selective_split: of a Llama block's q, k, v, o, gate, up, down the 2nd,
# 4th and 6th; a biased projection's `addmm` is neither saved nor counted).
# Tensor parallelism in training (Megatron-LM, Shoeybi et al. 2019, section 3; with sequence
# parallelism each all-reduce is an all-gather and a reduce-scatter moving the same bytes,
# Korthikanti et al. 2022): two per layer in forward, two in backward; full checkpointing
# recomputes the forward's two, torchtitan's per-op policy recomputes the all-gathers (it
# saves reduce-scatter outputs: `_save_list`), half the forward's bytes. Not overlapped with
# compute (vanilla TP; async TP overlaps part of it: the records show 4-16 % faster).
TP_BACKWARD_ALLREDUCES = 2
TP_SELECTIVE_RECOMPUTED_ALLREDUCES = 1


# --- bounds ------------------------------------------------------------------------------------
# Tokens of one training run: the largest published pretraining runs use about 1.5 * 10^13
# (Llama 3: 15T tokens); 10^15 is over sixty times that.
MAX_TRAINING_TOKENS = 10**15
# Passes over a dataset: fine-tuning recipes use 1 to 10; 10^4 bounds the product's loop-free
# arithmetic far above any recipe.
MAX_EPOCHS = 10_000


def training_tokens(
    tokens: int | None, dataset_tokens: int | None, epochs: int | None
) -> int | None:
    """The tokens a run trains on: `tokens`, or `dataset_tokens` x `epochs` (1 epoch unless
    told); None when neither is given. Checked against the bounds before any use."""
    if tokens is not None and dataset_tokens is not None:
        raise InvalidValueError(
            "--tokens is the whole run; --dataset-tokens with --epochs "
            "describes it another way: give one"
        )
    if epochs is not None and dataset_tokens is None:
        raise InvalidValueError("--epochs counts passes over --dataset-tokens: give both")
    if tokens is not None:
        return check_count("tokens", tokens, MAX_TRAINING_TOKENS)
    if dataset_tokens is None:
        return None
    check_count("dataset-tokens", dataset_tokens, MAX_TRAINING_TOKENS)
    passes = check_count("epochs", 1 if epochs is None else epochs, MAX_EPOCHS)
    return check_count("dataset-tokens x epochs", dataset_tokens * passes, MAX_TRAINING_TOKENS)


class Bound(StrEnum):
    """What limits a decode step: reading memory, or the tensor cores."""

    memory = "memory"
    compute = "compute"


class Compute(NamedTuple):
    """A card's figures the speed model reads; None where the catalog has none."""

    name: str
    vendor: Vendor
    market: Market
    bandwidth_bytes_per_s: int | None
    fp16_tflops: float | None
    fp8_tflops: float | None
    int8_tops: float | None
    interconnect_bytes_per_s: int | None
    price_per_hour: float | None = None  # one card

    @property
    def runtime(self) -> Runtime:
        return OVERHEAD_BY_VENDOR[self.vendor].runtime


class EngineSpeed(NamedTuple):
    """What one engine reaches on one vendor backend.

    `bandwidth_efficiency`: the share of the card's memory bandwidth a decode step's weight
    reads reach, and `bandwidth_ceiling_bytes_per_s` the most its kernels read per second on
    any card (None: no ceiling seen); `layer_overhead_s`: fixed time per layer per step (kernel
    launches, the framework's own work), paid on top of the memory or compute time;
    `utilization`: the share of the dense tensor throughput its prefill reaches with 16-bit
    weights, `quantized_utilization` with block-quantized ones (dequantized on the fly, or
    llama.cpp's integer MMQ kernels); `kv_copies`:
    each step copies the KV cache (transformers' DynamicCache grows by concatenation and
    `repeat_kv` expands K and V to every query head); `pipelines_prompt`: with layers split
    over cards, a long prompt's micro-batches flow through the cards at once. `measured`
    False: no published figure for this pair, the CUDA backend's stand in (said in the
    output)."""

    bandwidth_efficiency: float
    bandwidth_ceiling_bytes_per_s: float | None
    layer_overhead_s: float
    utilization: float
    quantized_utilization: float
    kv_copies: bool
    pipelines_prompt: bool
    measured: bool
    source: str


_LLAMA_CPP_CUDA = EngineSpeed(
    bandwidth_efficiency=0.90,
    bandwidth_ceiling_bytes_per_s=1.1e12,
    layer_overhead_s=0.09e-3,
    utilization=0.37,
    quantized_utilization=0.29,
    kv_copies=False,
    pipelines_prompt=True,
    measured=True,
    source=(
        "llama-bench tg512/pp512, Llama-3-8B and 70B Q4_K_M and F16 on 20 NVIDIA cards "
        "(XiongjieDai/GPU-Benchmarks-on-LLM-Inference, llama.cpp b1 2024-05, CUDA 12.1)"
    ),
)
# llama.cpp's Metal prefill reaches a larger share of an Apple card's figure than its CUDA
# prefill does of an NVIDIA one: the Apple figure is the shader ALUs' FMA peak (the M1/M2 GPU
# has no matrix units), which Metal's simdgroup_matrix multiplies use whole and approach (the
# best GEMM kernel reaches 102.5 of 128 FP16 FMAs per core per clock, 0.80;
# philipturner/metal-benchmarks "Operations per Second"), where CUDA's is a tensor-core peak.
# Calibrated on llama-bench pp512/pp4096 of Llama-3-8B and 70B on M1, M1 Max and M2 Ultra
# (XiongjieDai/GPU-Benchmarks-on-LLM-Inference, Metal): F16 runs reach 0.58-0.76 of the
# figure, median 0.71; Q4_K_M runs, which dequantize each weight tile in the kernel, 0.45-0.61,
# median 0.57 (tests/test_speed_calibration.py).
LLAMA_CPP_METAL_UTILIZATION = 0.71
LLAMA_CPP_METAL_QUANTIZED_UTILIZATION = 0.57
_LLAMA_CPP_METAL = EngineSpeed(
    bandwidth_efficiency=0.80,
    bandwidth_ceiling_bytes_per_s=None,
    layer_overhead_s=0.25e-3,
    utilization=LLAMA_CPP_METAL_UTILIZATION,
    quantized_utilization=LLAMA_CPP_METAL_QUANTIZED_UTILIZATION,
    kv_copies=False,
    pipelines_prompt=True,
    measured=True,
    source=(
        "llama-bench tg512/pp512/pp4096, Llama-3-8B and 70B on Apple M1, M1 Max, M2 Ultra, "
        "M3 Max (XiongjieDai/GPU-Benchmarks-on-LLM-Inference, Metal backend; prefill "
        "utilisation of the M1/M2 figures, M3 has none)"
    ),
)
_VLLM_CUDA = EngineSpeed(
    bandwidth_efficiency=0.85,
    bandwidth_ceiling_bytes_per_s=None,
    layer_overhead_s=0.11e-3,
    utilization=0.50,
    quantized_utilization=0.5,
    kv_copies=False,
    pipelines_prompt=True,
    measured=True,
    source=(
        "Qwen2.5 speed benchmark, vLLM 0.6 on A100 80GB, 0.5B-72B BF16/GPTQ/AWQ, 1-4 GPUs "
        "(QwenLM/Qwen2.5 docs/source/benchmark/speed_benchmark.rst)"
    ),
)
_TRANSFORMERS_CUDA = EngineSpeed(
    bandwidth_efficiency=0.85,
    bandwidth_ceiling_bytes_per_s=None,
    layer_overhead_s=0.88e-3,
    utilization=0.50,
    quantized_utilization=0.5,
    kv_copies=True,
    pipelines_prompt=False,
    measured=True,
    source=(
        "Qwen2.5 speed benchmark, transformers 4.46 on A100 80GB, 0.5B-72B: 21-57 ms per "
        "token, 0.84-0.90 ms per layer at every size (QwenLM/Qwen2.5 speed_benchmark.rst)"
    ),
)


def _unmeasured(entry: EngineSpeed, backend: str) -> EngineSpeed:
    return entry._replace(
        measured=False,
        source=f"no published {backend} figure in the calibration set: {entry.source}",
    )


# Every engine on every backend: one entry each, no fallback (tests/test_speed.py checks).
BACKEND_SPEED: Mapping[tuple[Engine, Runtime], EngineSpeed] = MappingProxyType(
    {
        (Engine.llama_cpp, Runtime.cuda): _LLAMA_CPP_CUDA,
        (Engine.llama_cpp, Runtime.metal): _LLAMA_CPP_METAL,
        (Engine.llama_cpp, Runtime.rocm): _unmeasured(_LLAMA_CPP_CUDA, "ROCm (HIP)"),
        (Engine.llama_cpp, Runtime.level_zero): _unmeasured(_LLAMA_CPP_CUDA, "SYCL"),
        (Engine.vllm, Runtime.cuda): _VLLM_CUDA,
        (Engine.vllm, Runtime.rocm): _unmeasured(_VLLM_CUDA, "ROCm"),
        (Engine.vllm, Runtime.metal): _unmeasured(_VLLM_CUDA, "Metal"),
        (Engine.vllm, Runtime.level_zero): _unmeasured(_VLLM_CUDA, "XPU"),
        (Engine.transformers, Runtime.cuda): _TRANSFORMERS_CUDA,
        (Engine.transformers, Runtime.rocm): _unmeasured(_TRANSFORMERS_CUDA, "ROCm"),
        (Engine.transformers, Runtime.metal): _unmeasured(_TRANSFORMERS_CUDA, "MPS"),
        (Engine.transformers, Runtime.level_zero): _unmeasured(_TRANSFORMERS_CUDA, "XPU"),
    }
)


class Recipe(StrEnum):
    """The kinds of training run whose model FLOPs utilisation differs: 16-bit matmuls, or
    FP8 linear layers (torchao float8 under torchtitan)."""

    bf16 = "16-bit"
    fp8 = "fp8"
    fp8_rowwise = "fp8 rowwise"


class MFU(NamedTuple):
    """Model FLOPs utilisation of a recipe: FLOPs the model needs over the card's dense peak
    for the matmul dtype."""

    mfu: float
    source: str


MFU_BY_RECIPE: Mapping[Recipe, MFU] = MappingProxyType(
    {
        Recipe.bf16: MFU(
            mfu=0.40,
            source=(
                "torchtitan Llama-3.1-8B/70B BF16 on 8-256 H100 (FSDP: 5,605-6,667 "
                "tokens/s/GPU for 8B at 8k, eager and compiled; FSDP x TP 8: 4,378-4,809 for "
                "8B, 597-652 for 70B; pytorch/torchtitan benchmarks/llama3_h100_202412 and "
                "asyncTP_llama3_h100_2025-06) and nanoGPT's GPT-2 124M on A100: the median "
                "ratio of prediction to measurement is closest to 1 (0.99) with the matmul "
                "FLOPs, element-wise traffic and tensor-parallel exchanges counted here "
                "(tests/test_speed_calibration.py)"
            ),
        ),
        Recipe.fp8: MFU(
            mfu=0.36,
            source=(
                "torchtitan Llama-3.1-8B/70B/405B float8 tensorwise linears on H100 and H200 "
                "(8,380-8,532 tokens/s/GPU for 8B FSDP at 8k, 5,078-5,570 with TP 8, 809-942 "
                "for 70B with TP 8, 76-128 for 405B with TP 8 x PP 8, its bubble counted; "
                "pytorch/torchtitan benchmarks/), against the FP8 dense peak, the float8 casts "
                "counted as traffic: median ratio 0.99"
            ),
        ),
        Recipe.fp8_rowwise: MFU(
            mfu=0.18,
            source=(
                "torchtitan Llama-3.1-8B and 70B float8 rowwise linears with TP 8 on 64-256 "
                "H100 (3,708-3,915 and 600-625 tokens/s/GPU, no faster than BF16; pytorch/"
                "torchtitan benchmarks/asyncTP_llama3_h100_2025-06_torchtitan.md; torchtitan "
                "issue 1207 on rowwise's low baseline performance), against the FP8 dense peak: "
                "median ratio 0.99"
            ),
        ),
    }
)


@dataclass(frozen=True, kw_only=True)
class Speed:
    """The speed of one workload on its `gpus` cards; a figure that does not apply, or that
    needs a card figure the catalog lacks (named in `missing`), is None."""

    decode_tokens_per_s: float | None = None  # per sequence at the workload's batch
    decode_tokens_per_s_total: float | None = None  # all sequences together
    prefill_tokens_per_s: float | None = None
    time_to_first_token_s: float | None = None
    train_tokens_per_s: float | None = None  # all cards together
    train_time_s: float | None = None
    cost_usd: float | None = None
    cost_per_million_tokens_usd: float | None = None
    bound: Bound | None = None
    inputs: Mapping[str, float | str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()

    @property
    def headline(self) -> float | None:
        """The throughput a comparison sorts on: decode (all sequences) or training."""
        if self.train_tokens_per_s is not None:
            return self.train_tokens_per_s
        return self.decode_tokens_per_s_total


# --- the pieces ---------------------------------------------------------------------------------


def _attended(t: Traffic, context: int) -> float:
    """Key positions attended per query, summed over layers, at `context` (sliding-window
    layers see at most the window)."""
    full = t.layers - t.sliding_layers
    window = min(context, t.sliding_window) if t.sliding_window else context
    return full * context + t.sliding_layers * window


def _touched_params(t: Traffic, sequences: int) -> float:
    """Weights a decode step of `sequences` tokens reads: all but the embedding lookup, and of
    the routed experts the expected share some token routes to (independent, uniform routing:
    1 - (1 - k/E)^b)."""
    read = float(t.params - t.lookup_params - t.routed_params)
    if t.routed_params:
        untouched = (1 - t.experts_per_token / t.experts) ** sequences
        read += t.routed_params * (1 - untouched)
    return read


def _matmul_params(t: Traffic) -> int:
    return t.matmul_params


def _tensor_tflops(compute: Compute, w: Workload) -> tuple[float | None, str]:
    """The dense tensor throughput the workload's matmuls run at, and its name."""
    fmt = w.weight_format
    fp8_weights = (
        fmt is not None
        and fmt.kind is QuantKind.float
        and fmt.bits_per_weight <= FP8_BITS
        and w.serving.engine is Engine.vllm
    )
    if w.precision is Precision.fp8:
        return compute.fp8_tflops, "FP8 dense TFLOPS"
    if w.stage is Stage.inference and fp8_weights and compute.fp8_tflops is not None:
        # FP8 weights run FP8 matmuls where the card has FP8 tensor cores; elsewhere vLLM
        # runs them weight-only (Marlin W8A16: 16-bit matmuls on dequantized weights).
        return compute.fp8_tflops, "FP8 dense TFLOPS"
    if w.precision is Precision.fp32:
        return None, "FP32 tensor TFLOPS"
    tflops = compute.fp16_tflops
    if (
        tflops is not None
        and w.stage is Stage.inference
        and w.serving.engine is Engine.llama_cpp
        and compute.vendor is Vendor.nvidia
        and compute.market in GEFORCE_MARKETS
    ):
        return tflops * GEFORCE_FP16_ACCUMULATE_SPEEDUP, "FP16 dense TFLOPS (FP16 accumulate)"
    return tflops, "FP16/BF16 dense TFLOPS"


class _Comm(NamedTuple):
    """Time per step spent between cards."""

    seconds: float
    link: float | None


def _tp_comm(t: Traffic, w: Workload, compute: Compute, tokens: int) -> _Comm | None:
    """Tensor parallelism's all-reduces of `tokens` hidden states per layer (None: the card
    has no link figure)."""
    n = w.gpus
    if n == 1 or _layer_split(w):
        return _Comm(0.0, None)
    link = compute.interconnect_bytes_per_s
    if link is None:
        return None
    size = tokens * t.hidden * ACTIVATION_BYTES * RING_FACTOR_NUMERATOR * (n - 1) / n
    per_layer = ALLREDUCES_PER_LAYER * (ALLREDUCE_LATENCY_S + size * LINK_DIRECTIONS / link)
    return _Comm(t.layers * per_layer, link)


def _layer_split(w: Workload) -> bool:
    """Whether several cards hold whole layers each and run them one after the other."""
    return w.gpus > 1 and (w.strategy is Parallel.pp or w.serving.engine in LAYER_SPLIT_ENGINES)


def _shards(w: Workload) -> int:
    """Cards that split one step's work: tensor parallelism divides it, a pipeline of layers
    runs them one after the other."""
    return 1 if _layer_split(w) else w.gpus


def _hops(w: Workload) -> int:
    return w.gpus - 1 if _layer_split(w) else 0


def _reached(bandwidth: float, engine: EngineSpeed) -> float:
    """The bandwidth the engine's reads reach on a card of `bandwidth` bytes/s."""
    reached = bandwidth * engine.bandwidth_efficiency
    ceiling = engine.bandwidth_ceiling_bytes_per_s
    return reached if ceiling is None else min(reached, ceiling)


def _kv_passes(t: Traffic, engine: EngineSpeed) -> float:
    """Times a decode step moves the KV cache: once (paged or flash attention reads it), or
    with copies: read and written back by the concatenation, then written and read expanded
    to every query head."""
    if not engine.kv_copies:
        return 1
    return KV_CONCAT_PASSES + KV_REPEAT_PASSES * t.query_groups


class _Step(NamedTuple):
    seconds: float
    bound: Bound


def _decode_step(
    t: Traffic, w: Workload, compute: Compute, engine: EngineSpeed, tflops: float | None
) -> _Step | None:
    """One decode step of `w.batch` sequences at context `w.seq`."""
    bandwidth = compute.bandwidth_bytes_per_s
    comm = _tp_comm(t, w, compute, w.batch)
    if bandwidth is None or comm is None:
        return None
    b = w.batch
    shards = _shards(w)
    weights = t.weight_bytes * _touched_params(t, b) / t.params
    kv = b * t.kv_bytes_per_token * _attended(t, w.seq) / t.layers * _kv_passes(t, engine)
    memory = (weights + kv) / shards / _reached(bandwidth, engine)
    compute_s = 0.0
    if tflops is not None:
        flops = b * (
            FLOPS_PER_MAC * _matmul_params(t)
            + 2 * FLOPS_PER_MAC * t.attention_width * _attended(t, w.seq)
        )
        compute_s = flops / shards / (tflops * TERA * engine.utilization)
    elif b > 1:
        return None  # the roofline needs the tensor throughput once a batch shares the reads
    fixed = t.layers * engine.layer_overhead_s + _hops(w) * PIPELINE_HOP_S + comm.seconds
    bound = Bound.memory if memory >= compute_s else Bound.compute
    return _Step(max(memory, compute_s) + fixed, bound)


def _prefill_chunk(w: Workload, prompt: int) -> int:
    """Tokens the engine processes per forward pass of a prompt."""
    if w.serving.engine is Engine.llama_cpp:
        return min(prompt, w.serving.ubatch)
    if w.serving.engine is Engine.vllm:
        return min(prompt, w.serving.max_batched_tokens)
    return prompt


def _prefill_seconds(
    t: Traffic,
    w: Workload,
    compute: Compute,
    engine: EngineSpeed,
    tflops: float | None,
    prompt: int,
) -> float | None:
    """Time to process a prompt of `prompt` tokens (one sequence)."""
    bandwidth = compute.bandwidth_bytes_per_s
    if tflops is None or bandwidth is None:
        return None
    chunk = _prefill_chunk(w, prompt)
    passes = math.ceil(prompt / chunk)
    comm = _tp_comm(t, w, compute, chunk)
    if comm is None:
        return None
    shards = _shards(w)
    # Causal attention: position i attends to i keys, so the prompt's QK^T and AV cost
    # 2 x 2 x width x (prompt^2 / 2) per layer.
    attended = _attended(t, prompt) * prompt / 2
    flops = (
        FLOPS_PER_MAC * _matmul_params(t) * prompt
        + 2 * FLOPS_PER_MAC * t.attention_width * attended
    )
    compute_s = flops / shards / (tflops * TERA * _utilization(w, engine))
    memory = passes * t.weight_bytes / shards / _reached(bandwidth, engine)
    if w.serving.engine is Engine.llama_cpp and not w.serving.flash_attention:
        # Without flash attention ggml writes each micro-batch's fp32 scores (chunk x context
        # x heads) and moves them LLAMA_CPP_SCORE_PASSES times: memory-bound at long prompts.
        scores = t.heads * GGML_F32_BYTES * LLAMA_CPP_SCORE_PASSES * attended
        memory += scores / shards / _reached(bandwidth, engine)
    per_pass = max(compute_s, memory) / passes + t.layers * engine.layer_overhead_s + comm.seconds
    stages = w.gpus if _layer_split(w) else 1
    if stages == 1 or not engine.pipelines_prompt:
        return passes * (per_pass + _hops(w) * PIPELINE_HOP_S)
    # Layers split over `stages` cards: each card runs its share of a micro-batch, and the
    # micro-batches of one logical batch follow each other through the cards, so a batch of
    # m micro-batches takes m + stages - 1 stage times.
    group = math.ceil(min(prompt, _logical_batch(w)) / chunk)
    batches = math.ceil(passes / group)
    stage = per_pass / stages + PIPELINE_HOP_S
    return (passes + batches * (stages - 1)) * stage


def _utilization(w: Workload, engine: EngineSpeed) -> float:
    fmt = w.weight_format
    quantized = fmt is not None and fmt.kind is not QuantKind.float
    return engine.quantized_utilization if quantized else engine.utilization


def _logical_batch(w: Workload) -> int:
    """Tokens submitted to the engine at once, which its pipeline drains between."""
    if w.serving.engine is Engine.llama_cpp:
        return LLAMA_CPP_N_BATCH
    return w.serving.max_batched_tokens


class _TrainingFlops(NamedTuple):
    """FLOPs per trained token: the weights' matmuls, and the attention's (QK^T and AV, which
    run in 16 bits under every recipe)."""

    matmul: float
    attention: float


def _training_flops(t: Traffic, w: Workload) -> _TrainingFlops:
    """Passes over trained and frozen weights, the attention's three passes (its scores are
    never frozen), one more forward of both with full checkpointing."""
    matmul = float(FLOPS_PER_MAC * t.matmul_params)
    attention = FLOPS_PER_MAC * t.attention_width * _attended(t, w.seq)  # causal: half of 2x2
    if t.scores_materialized:
        # Materialized scores are multiplied in full and masked after: the masked half of
        # QK^T and AV is computed too (fused kernels skip the blocks above the diagonal).
        attention *= MATERIALIZED_SCORE_FACTOR
    if w.method is Method.full:
        weights = TRAINED_PASSES * matmul
    else:
        # Frozen weights: forward and the activation gradient only (LoRA's adapters add under
        # 1 % at the ranks used). --method freeze trains the top layers: the frozen layers
        # below them run forward only.
        weights = FROZEN_PASSES * matmul
        if w.method is Method.freeze and w.trainable_layers is not None:
            layer_share = (t.layers - w.trainable_layers) / t.layers
            weights -= layer_share * (matmul - FLOPS_PER_MAC * t.head_params)
    scores = TRAINED_PASSES * attention
    # Recomputation re-runs the layers' forward (the output head is outside every layer).
    layers_forward = matmul - FLOPS_PER_MAC * t.head_params
    if _full_recompute(w):
        weights += layers_forward
        scores += attention
    elif w.checkpointing is Checkpointing.selective:
        weights += _selective_recomputed(t)
    return _TrainingFlops(weights, scores)


def _selective_recomputed(t: Traffic) -> float:
    """FLOPs per token the per-op policy recomputes: the products it does not save (every
    second `mm` and every biased `addmm`: advisor.estimator._selective_split)."""
    return float(FLOPS_PER_MAC * t.selective_recomputed_params)


def _full_recompute(w: Workload) -> bool:
    return w.checkpointing in (Checkpointing.full, Checkpointing.offload)


def _elementwise_bytes(t: Traffic, w: Workload) -> float:
    """Bytes the kernels between the matmuls move per trained token, whole model: each
    layer's norms, residual adds, rotary embedding, activation and materialized scores, eager
    (one kernel per op) or compiled (one per chain), forward, backward and any recomputation;
    the loss over the vocabulary forward and backward."""
    if w.compile:
        norm, residual, rope = COMPILED_NORM_BYTES, 0, COMPILED_ROPE_BYTES
        activation, score = COMPILED_ACTIVATION_BYTES[t.mlp_kind], COMPILED_SCORE_BYTES
        logit = COMPILED_LOGIT_BYTES
    else:
        norm = EAGER_LAYERNORM_BYTES if t.layernorm else EAGER_RMSNORM_BYTES
        residual, rope = EAGER_RESIDUAL_BYTES, EAGER_ROPE_BYTES
        activation, score = EAGER_ACTIVATION_BYTES[t.mlp_kind], EAGER_SCORE_BYTES
        logit = EAGER_LOGIT_BYTES
    if w.loss is Loss.fused:
        logit = COMPILED_LOGIT_BYTES  # the fused loss is one kernel per chunk of logits
    per_layer = float(t.hidden * (t.norms_per_layer * norm + RESIDUALS_PER_LAYER * residual))
    per_layer += t.ffn * activation
    if t.rope:
        per_layer += (t.attention_width + t.kv_width) * rope
    if w.precision is Precision.fp8:
        per_layer += _fp8_cast_bytes(t, w)
    layers = t.layers * per_layer
    if t.scores_materialized:
        layers += t.heads * _attended(t, w.seq) * score  # seq x seq per head, every layer
    # --method freeze: the frozen layers below every trained one run forward only.
    frozen = 0.0
    if w.method is Method.freeze and w.trainable_layers is not None:
        frozen = (t.layers - min(w.trainable_layers, t.layers)) / t.layers
    passes = frozen + (1 - frozen) * _passes(w)
    return layers * passes + t.vocab * logit * (1 + BACKWARD_TRAFFIC_RATIO)


def _fp8_cast_bytes(t: Traffic, w: Workload) -> float:
    """Bytes float8 training's casts move per token per layer, forward, backward and any
    recomputation, counted per forward pass (the caller multiplies by the passes)."""
    gated = t.mlp_kind is MLPKind.gated
    # Inputs of q, k and v (one each), o, the MLP's gate and up (or its one input) and down.
    inputs = 3 * t.hidden + t.attention_width + (2 if gated else 1) * t.hidden + t.ffn
    # Output gradients of the same linears.
    grads = t.attention_width + 2 * t.kv_width + t.hidden + (2 if gated else 1) * t.ffn + t.hidden
    step = inputs * FP8_CASTS_PER_INPUT * FP8_INPUT_CAST_BYTES + grads * FP8_GRAD_CAST_BYTES
    if _full_recompute(w):
        step += inputs * FP8_INPUT_CAST_BYTES
    elif w.checkpointing is Checkpointing.selective:
        step += inputs * FP8_RECOMPUTED_CAST_BYTES
    return step / _passes(w)


def _passes(w: Workload) -> int:
    """Forward-equivalents of element-wise traffic a layer runs per step."""
    recompute = _full_recompute(w) or w.checkpointing is Checkpointing.selective
    return 1 + BACKWARD_TRAFFIC_RATIO + (1 if recompute else 0)


def _training_allreduces(w: Workload) -> float:
    """All-reduces of the hidden state per layer per step under tensor parallelism."""
    count = float(ALLREDUCES_PER_LAYER + TP_BACKWARD_ALLREDUCES)
    if _full_recompute(w):
        count += ALLREDUCES_PER_LAYER
    elif w.checkpointing is Checkpointing.selective:
        count += TP_SELECTIVE_RECOMPUTED_ALLREDUCES
    return count


def _training_tp_seconds(t: Traffic, w: Workload, link: float) -> float:
    """Seconds per trained token the tensor-parallel group spends in its all-reduces, not
    overlapped with compute: each moves the micro-batch's hidden states (ring: 2 (n - 1) / n
    of them per card) and pays the fixed latency once per micro-batch."""
    n = w.tensor_parallel
    if n == 1:
        return 0.0
    size = t.hidden * ACTIVATION_BYTES * RING_FACTOR_NUMERATOR * (n - 1) / n
    per_token = size * LINK_DIRECTIONS / link + ALLREDUCE_LATENCY_S / w.tokens
    return t.layers * _training_allreduces(w) * per_token


def pipeline_bubble(w: Workload) -> float:
    """The time a pipeline's cards wait, over the time they work, per step: with p stages of
    one card each and m micro-batches, a step takes m + p - 1 stage-times, of which p - 1 fill
    and drain the pipeline (GPipe, Huang et al. 2019; 1F1B keeps the same bubble, Narayanan et
    al. 2021 section 2.2); with v stages per card (interleaved 1F1B) each fill step is v times
    shorter: (p - 1) / (v m) (Narayanan et al. 2021, section 2.2.2). 0 without pipelining."""
    p = w.pipeline_parallel
    return (p - 1) / (w.stages_per_card * w.step_microbatches)


def _qlora_dequant_seconds(t: Traffic, w: Workload, bandwidth: float, passes: int) -> float:
    """Seconds per step bitsandbytes spends turning the 4-bit base into 16-bit copies, one per
    pass over the weights (memory-bound: read the packed weight, write and read the copy)."""
    linear = t.matmul_params - t.head_params
    return passes * linear * QLORA_DEQUANT_BYTES_PER_WEIGHT / bandwidth


def _recipe(w: Workload) -> Recipe:
    if w.precision is not Precision.fp8:
        return Recipe.bf16
    return Recipe.fp8_rowwise if w.fp8_scaling is Float8Scaling.rowwise else Recipe.fp8


def speed(
    arch: Architecture,
    workload: Workload,
    compute: Compute,
    *,
    tokens: int | None = None,
    concurrency: int | None = None,
) -> Speed:
    """The speed of `workload` on `workload.gpus` cards of `compute`.

    Inference: decode per sequence and in total at `workload.batch` sequences of context
    `workload.seq`, prefill and time to first token of a `workload.seq`-token prompt, and the
    cost per million output tokens at `concurrency` sequences (default: the batch). Training:
    tokens per second over every card, and with `tokens` the time and cost of training on
    that many tokens."""
    t = traffic(arch, workload)
    if workload.training:
        return _training_speed(t, workload, compute, tokens)
    return _inference_speed(t, workload, compute, concurrency or workload.batch)


def _price(compute: Compute, gpus: int) -> float | None:
    return None if compute.price_per_hour is None else compute.price_per_hour * gpus


def _inference_speed(t: Traffic, w: Workload, compute: Compute, concurrency: int) -> Speed:
    engine = BACKEND_SPEED[(w.serving.engine, compute.runtime)]
    tflops, tflops_name = _tensor_tflops(compute, w)
    missing = []
    if compute.bandwidth_bytes_per_s is None:
        missing.append("memory bandwidth")
    if tflops is None:
        missing.append(tflops_name)
    if w.gpus > 1 and not _layer_split(w) and compute.interconnect_bytes_per_s is None:
        missing.append("interconnect bandwidth")
    step = _decode_step(t, w, compute, engine, tflops)
    prefill = _prefill_seconds(t, w, compute, engine, tflops, w.seq)
    per_seq = None if step is None else 1 / step.seconds
    total = None if per_seq is None else per_seq * w.batch
    cost_per_million = None
    price = _price(compute, w.gpus)
    if price is not None and step is not None:
        at = w if concurrency == w.batch else replace(w, batch=concurrency)
        served = step if at is w else _decode_step(t, at, compute, engine, tflops)
        if served is not None:
            rate = concurrency / served.seconds
            cost_per_million = price / SECONDS_PER_HOUR / rate * MILLION
    inputs: dict[str, float | str] = {
        "engine": w.serving.engine.value,
        "backend": compute.runtime.value,
        "bandwidth_efficiency": engine.bandwidth_efficiency,
        "layer_overhead_s": engine.layer_overhead_s,
        "utilization": _utilization(w, engine),  # the prefill's, 16-bit or block-quantized
        "efficiency_measured": "yes" if engine.measured else "no (CUDA's figures)",
    }
    if compute.bandwidth_bytes_per_s is not None:
        inputs["bandwidth_bytes_per_s"] = compute.bandwidth_bytes_per_s
    if tflops is not None:
        inputs["tensor_tflops"] = tflops
        inputs["tensor_tflops_kind"] = tflops_name
    if w.gpus > 1 and not _layer_split(w) and compute.interconnect_bytes_per_s is not None:
        inputs["interconnect_bytes_per_s"] = compute.interconnect_bytes_per_s
    if _layer_split(w):
        inputs["pipeline_hop_s"] = PIPELINE_HOP_S
    if price is not None:
        inputs["price_per_hour_usd"] = price
    return Speed(
        decode_tokens_per_s=per_seq,
        decode_tokens_per_s_total=total,
        prefill_tokens_per_s=None if prefill is None else w.seq / prefill,
        time_to_first_token_s=prefill,
        cost_per_million_tokens_usd=cost_per_million,
        bound=None if step is None else step.bound,
        inputs=inputs,
        missing=tuple(missing),
    )


def _between_cards(
    t: Traffic, w: Workload, link: float | None, per_token: float, inputs: dict[str, float | str]
) -> float:
    """Seconds per token of one model replica from one card's `per_token`: a tensor-parallel
    group of `tp` cards shares each token's work, then exchanges its hidden states over the
    link; pipeline stages each run their share of the layers, so per token the cards of a
    pipeline do the work of one replica, and then wait out the bubble."""
    tp = w.tensor_parallel
    per_token /= tp
    if tp > 1:
        assert link is not None
        per_token += _training_tp_seconds(t, w, link)
        inputs["interconnect_bytes_per_s"] = link
    if w.pipeline_parallel > 1:
        bubble = pipeline_bubble(w)
        per_token *= 1 + bubble
        inputs["pipeline_bubble"] = bubble
    return per_token


def _optimizer_step_seconds(t: Traffic, w: Workload, bandwidth: float) -> float:
    """Seconds one optimizer step takes on each card, once per step (after the last
    micro-batch): memory-bound, the card's share of the trainable parameters (its tensor and
    pipeline slice, and under ZeRO its data-parallel shard) times the bytes the step moves per
    parameter (advisor.estimator._step_bytes_per_param). 0 when the optimizer runs in host
    memory (--offload: DeepSpeed's CPU Adam, not modelled)."""
    if w.offload is not TrainingOffload.none:
        return 0.0
    slice_cards = w.tensor_parallel * w.pipeline_parallel
    ranks = w.gpus // slice_cards if w.strategy in ZERO_STRATEGIES else 1
    moved = t.trainable_params * t.step_bytes_per_param / (slice_cards * ranks)
    return moved / (bandwidth * TRAINING_BANDWIDTH_EFFICIENCY)


def _training_speed(t: Traffic, w: Workload, compute: Compute, tokens: int | None) -> Speed:
    recipe = _recipe(w)
    mfu = MFU_BY_RECIPE[recipe]
    sixteen = MFU_BY_RECIPE[Recipe.bf16]
    tflops, tflops_name = _tensor_tflops(compute, w)
    inputs: dict[str, float | str] = {
        "recipe": recipe.value,
        "mfu": mfu.mfu,
        "compiled": "yes" if w.compile else "no",
    }
    missing = [] if tflops is not None else [tflops_name]
    if compute.fp16_tflops is None and tflops_name != "FP16/BF16 dense TFLOPS":
        missing.append("FP16/BF16 dense TFLOPS")
    if compute.bandwidth_bytes_per_s is None:
        missing.append("memory bandwidth")
    tp = w.tensor_parallel
    link = compute.interconnect_bytes_per_s
    if tp > 1 and link is None:
        missing.append("interconnect bandwidth")
    bandwidth = compute.bandwidth_bytes_per_s
    if tflops is None or compute.fp16_tflops is None or bandwidth is None or missing:
        return Speed(inputs=inputs, missing=tuple(missing))
    inputs["tensor_tflops"] = tflops
    inputs["tensor_tflops_kind"] = tflops_name
    inputs["bandwidth_bytes_per_s"] = bandwidth
    inputs["training_bandwidth_efficiency"] = TRAINING_BANDWIDTH_EFFICIENCY
    flops = _training_flops(t, w)
    per_token = flops.matmul / (tflops * TERA * mfu.mfu) + flops.attention / (
        compute.fp16_tflops * TERA * sixteen.mfu
    )
    per_token += _elementwise_bytes(t, w) / (bandwidth * TRAINING_BANDWIDTH_EFFICIENCY)
    if w.method is Method.qlora:
        passes = 3 if _full_recompute(w) else 2
        per_token += _qlora_dequant_seconds(t, w, bandwidth, passes) / w.tokens
    per_token = _between_cards(t, w, link, per_token, inputs)
    step = _optimizer_step_seconds(t, w, bandwidth)
    if step:
        inputs["optimizer_step_s"] = step
        per_token += step / (w.tokens * w.step_microbatches)
    rate = w.gpus / tp / per_token
    time_s = None if tokens is None else tokens / rate
    price = _price(compute, w.gpus)
    if price is not None:
        inputs["price_per_hour_usd"] = price
    return Speed(
        train_tokens_per_s=rate,
        train_time_s=time_s,
        cost_usd=None if time_s is None or price is None else price * time_s / SECONDS_PER_HOUR,
        cost_per_million_tokens_usd=(
            None if price is None else price / SECONDS_PER_HOUR / rate * MILLION
        ),
        inputs=inputs,
    )


def single_speed(
    arch: Architecture, workload: Workload, compute: Compute, *, tokens: int | None = None
) -> Speed:
    """The speed an answer leads with: one sequence (inference at batch 1, at the workload's
    context) or the training workload as it is (with `tokens`, its time and cost)."""
    if workload.training:
        return speed(arch, workload, compute, tokens=tokens)
    one = workload if workload.batch == 1 else replace(workload, batch=1)
    return speed(arch, one, compute)
