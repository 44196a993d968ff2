"""Peak GPU memory of a workload, term by term, in integer bytes.

Pure: no CLI, rendering or database imports. `estimate(arch, workload)` returns a frozen
`Estimate` whose components add up to the per-GPU total.

What the numbers mean: everything except `runtime_overhead` is what
`torch.cuda.max_memory_allocated()` reports for a Hugging Face transformers model on PyTorch
eager with SDPA attention where transformers offers it (Gemma-2 runs eager attention, Falcon's
multi-query layout PyTorch's math SDPA kernel; the mechanisms were read off traced
allocations; see docs/estimates.md). Training memory peaks at one of these moments and the
estimate takes the largest, reporting what is alive at that moment:

- start of backward: saved activations of every layer, the logits and the loss's buffers;
- end of backward: every gradient, plus the tied embedding's gradient being accumulated;
- optimizer step: every gradient, the states, and the step's temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType

from advisor.arch import MOE_TYPES, Architecture, ParamCount, count_params
from advisor.enums import AttentionKind, ModelType, Vendor
from advisor.errors import InvalidValueError
from advisor.workload import (
    KVDtype,
    Method,
    Optimizer,
    Parallel,
    Precision,
    Stage,
    Workload,
)

GIB = 2**30
MIB = 2**20

# --- named constants ------------------------------------------------------------------------

# CUDA context, kernels and cuBLAS handles that exist before the first tensor: Hugging Face's
# "Model training anatomy" guide measures 1343 MB (MiB) after `torch.ones((1, 1)).to("cuda")`.
CUDA_CONTEXT_BYTES = 1343 * MIB
# The caching allocator's blocks are reused, not packed: the reserved-but-unallocated share is
# a few percent of the peak in PyTorch's memory snapshots; 5 % is the margin we reserve.
ALLOCATOR_RESERVE_FRACTION = 0.05
# The CUDA caching allocator rounds every allocation up to 512 bytes (CUDACachingAllocator.cpp
# kMinBlockSize).
ALLOCATION_GRANULE = 512
# Optimizer states per trainable parameter, in units of the state dtype: Adam's first and
# second moments; momentum for SGD and Lion (Kingma & Ba 2015; Chen et al. 2023).
ADAM_STATES = 2
MOMENTUM_STATES = 1
# bitsandbytes 8-bit optimizers keep each state in 1 byte with one fp32 absmax per block of
# 2048 values (Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization").
EIGHT_BIT_STATE_BYTES = 1
EIGHT_BIT_BLOCK = 2048
FP32_BYTES = 4
# LoRA adapters are created in fp32 (PEFT's default `autocast_adapter_dtype=True`).
LORA_DTYPE_BYTES = 4
# QLoRA: NF4 weights with double-quantized constants (Dettmers et al. 2023): 4.127 bits.
# Used only when the caller gives no measured format.
# Bytes per element of the KV cache by dtype; GGUF q8_0/q4_0 pack 32 values with an fp16 scale
# (34 and 18 bytes per block of 32: ggml-common.h block_q8_0 / block_q4_0).
KV_BYTES_PER_ELEMENT: Mapping[KVDtype, float] = MappingProxyType(
    {
        KVDtype.fp32: 4.0,
        KVDtype.bf16: 2.0,
        KVDtype.fp16: 2.0,
        KVDtype.fp8: 1.0,
        KVDtype.q8_0: 34 / 32,
        KVDtype.q4_0: 18 / 32,
    }
)

# Terms' bytes per GPU in COMPONENTS order without the runtime overhead, the peak moment, and
# the builder of their explanation (called only when `Estimate.terms` is read).
_Result = tuple[tuple[int, int, int, int, int, int, int], str, Callable[[], list["Term"]]]

COMPONENTS = (
    "weights",
    "kv_cache",
    "activations",
    "logits",
    "gradients",
    "optimizer",
    "adapters",
    "runtime_overhead",
)


class Runtime(StrEnum):
    """The GPU runtime PyTorch drives a card through, which sets the memory that is not
    tensors."""

    cuda = "cuda"
    rocm = "rocm"
    metal = "metal"
    level_zero = "level-zero"


@dataclass(frozen=True, kw_only=True)
class RuntimeOverhead:
    """Memory that is not tensors, paid on every GPU: the runtime's context (driver state and
    kernels resident before the first tensor) and the caching allocator's reserve. `measured`
    False: no public measurement of this runtime's context was found and `context_bytes` is a
    stated stand-in (`basis` says which). Override it for your own measurements."""

    runtime: Runtime = Runtime.cuda
    context_bytes: int = CUDA_CONTEXT_BYTES
    allocator_reserve_fraction: float = ALLOCATOR_RESERVE_FRACTION
    measured: bool = True
    basis: str = "CUDA context as measured by Hugging Face's 'Model training anatomy'"

    def __post_init__(self) -> None:
        if self.context_bytes < 0:
            raise InvalidValueError("the runtime context size must not be negative")
        if not 0 <= self.allocator_reserve_fraction < 1:
            raise InvalidValueError("the allocator reserve must be a fraction in [0, 1)")

    def bytes_for(self, tensor_bytes: int) -> int:
        return self.context_bytes + math.ceil(tensor_bytes * self.allocator_reserve_fraction)


CUDA_OVERHEAD = RuntimeOverhead()
# ROCm (HIP): no public measurement of the HIP context's size was found. vLLM's ROCm CI notes
# that PyTorch's initialization overhead is larger on ROCm than on CUDA (vllm-project/vllm
# PR #43236), so the CUDA figure stands in as a floor, flagged unmeasured.
ROCM_CONTEXT_BYTES = CUDA_CONTEXT_BYTES
ROCM_OVERHEAD = RuntimeOverhead(
    runtime=Runtime.rocm,
    context_bytes=ROCM_CONTEXT_BYTES,
    measured=False,
    basis="no published HIP context size; the CUDA figure stands in (ROCm's is larger, "
    "vllm-project/vllm#43236)",
)
# Metal (Apple): no CUDA-style context is carved out of the GPU's memory; what bounds the GPU
# is the working set, Metal's recommendedMaxWorkingSetSize, which PyTorch's MPS allocator
# caps its heaps against (aten/src/ATen/mps/MPSAllocator.mm) and which the catalog already
# charges as the card's capacity (`usable_memory_fraction`). The MPS heap allocator caches
# blocks like CUDA's, so the same reserve applies.
METAL_CONTEXT_BYTES = 0
METAL_OVERHEAD = RuntimeOverhead(
    runtime=Runtime.metal,
    context_bytes=METAL_CONTEXT_BYTES,
    basis="no CUDA-style context; the Metal working-set limit is the card's capacity",
)
# Level Zero (Intel XPU): no public measurement of the device-memory context was found (the
# one report, intel/intel-extension-for-pytorch#732, measures host memory on an integrated
# GPU), so the CUDA figure stands in, flagged unmeasured.
LEVEL_ZERO_CONTEXT_BYTES = CUDA_CONTEXT_BYTES
LEVEL_ZERO_OVERHEAD = RuntimeOverhead(
    runtime=Runtime.level_zero,
    context_bytes=LEVEL_ZERO_CONTEXT_BYTES,
    measured=False,
    basis="no published Level Zero context size; the CUDA figure stands in",
)
# The runtime each vendor's cards run PyTorch through.
OVERHEAD_BY_VENDOR: Mapping[Vendor, RuntimeOverhead] = MappingProxyType(
    {
        Vendor.nvidia: CUDA_OVERHEAD,
        Vendor.amd: ROCM_OVERHEAD,
        Vendor.apple: METAL_OVERHEAD,
        Vendor.intel: LEVEL_ZERO_OVERHEAD,
    }
)
_DEFAULT_OVERHEAD = CUDA_OVERHEAD


@dataclass(frozen=True)
class Term:
    """One component at the peak: its bytes per GPU, and how they were computed."""

    name: str
    bytes: int
    formula: str
    inputs: Mapping[str, int | float | str]


@dataclass(frozen=True)
class Estimate:
    """The peak per GPU. The bytes are computed when the estimate is made; the explanation of
    each term (`terms`: formula and inputs) is built only when it is first read, so sweeps that
    read only `per_gpu_bytes` and `components` never pay for it."""

    workload: Workload
    params: int
    gpus: int
    peak_moment: str
    rule_of_thumb_bytes: int | None  # None: the seed gives no rule for fine-tuning
    per_gpu_bytes: int
    # Bytes per GPU in COMPONENTS order, and the builder of their explanation.
    component_bytes: tuple[int, ...] = field(repr=False)
    _explain: Callable[[], tuple[Term, ...]] = field(repr=False, compare=False)
    valid_gpu_counts: tuple[int, ...] | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def components(self) -> dict[str, int]:
        return dict(zip(COMPONENTS, self.component_bytes, strict=True))

    @cached_property
    def terms(self) -> tuple[Term, ...]:
        """Each present term with its formula and inputs; their bytes are `components`."""
        return self._explain()

    @property
    def total_bytes(self) -> int:
        return self.per_gpu_bytes * self.gpus

    @property
    def tensor_bytes(self) -> int:
        """What `max_memory_allocated()` would report: everything but the runtime overhead."""
        return self.per_gpu_bytes - self.component_bytes[-1]


# --- the architecture as the estimator sees it -------------------------------------------------

_GATED_MLP = frozenset(
    {
        ModelType.llama,
        ModelType.mistral,
        ModelType.qwen2,
        ModelType.qwen3,
        ModelType.gemma,
        ModelType.gemma2,
        ModelType.gemma3_text,
        ModelType.phi3,
        ModelType.deepseek_v3,
    }
)
_LAYERNORM = frozenset(
    {ModelType.gpt2, ModelType.opt, ModelType.falcon, ModelType.gpt_neox, ModelType.bloom}
)
_NO_ROPE = frozenset({ModelType.gpt2, ModelType.opt, ModelType.bloom})
# Saved tensors of the MLP activation in training, in units of tokens x intermediate size:
# SwiGLU keeps gate, up, act(gate) and their product; GPT-2's tanh GELU written out in Python
# keeps its input, tanh, 1 + tanh, 0.5x and the output; OPT's ReLU keeps only its output;
# exact GELU keeps its input and output.
_MLP_SAVED = {
    "gated": 4,
    "gelu_new": 5,
    "relu": 1,
    "gelu": 2,
}
# Live tensors at the peak of an inference MLP, in tokens x intermediate size: act(gate), up
# and their product; GPT-2's Python GELU holds four; a plain MLP its input and output.
_MLP_INFERENCE_LIVE = {
    "gated": 3,
    "gelu_new": 4,
    "relu": 2,
    "gelu": 2,
}
# Hidden-size tensors alive across an inference MLP: the embedding output the model keeps,
# the residual, the attention output added to it and the normalized MLP input; LayerNorm
# models (GPT-2, OPT …) also keep the attention projection's output.
INFERENCE_HIDDEN_LIVE = 4
INFERENCE_HIDDEN_LIVE_LAYERNORM = 5
_LEARNED_POSITIONS = frozenset({ModelType.gpt2, ModelType.opt})
# Gemma-2 has no SDPA path in transformers (its attention-logit soft-capping is no SDPA option;
# `from_config(attn_implementation="sdpa")` refuses it), so it runs `eager_attention_forward`,
# which materializes the batch x heads x seq x seq scores.
_EAGER_ATTENTION = frozenset({ModelType.gemma2})
# Gemma's RMSNorm multiplies by (1 + weight) in fp32 before casting back, so the normalized
# tensor it saves for the weight's gradient is fp32 (transformers `GemmaRMSNorm`).
_FP32_NORM = frozenset({ModelType.gemma, ModelType.gemma2, ModelType.gemma3_text})
# Bytes per batch x head x seq^2 alive at the attention peak of an eager forward: the scores
# in the compute dtype, and softmax(dtype=float32)'s fp32 copy of its input and fp32 output
# (the copy is skipped when the scores are already fp32).
EAGER_SOFTMAX_FP32_BYTES = 4
# PyTorch's math SDPA kernel upcasts 16-bit queries, keys and values to fp32
# (`_scaled_dot_product_attention_math`, `allow_fp16_bf16_reduction_math_sdp` off by default)
# and holds the fp32 scores and their fp32 softmax: bytes per batch x head x seq^2.
MATH_SDPA_SCORE_BYTES = 2 * FP32_BYTES
# A boolean mask is 1 byte per element; SDPA's math kernel adds it as an fp32 additive mask.
BOOL_BYTES = 1
# Gemma-2 alternates full and sliding-window layers and builds one additive mask for each kind.
EAGER_MASKS = 2


def _mlp_kind(t: ModelType) -> str:
    if t is ModelType.gpt2:
        return "gelu_new"
    if t is ModelType.opt:
        return "relu"
    if t in (ModelType.falcon, ModelType.gpt_neox, ModelType.bloom):
        return "gelu"
    return "gated"


@dataclass(frozen=True)
class _Shape:
    """Sizes the memory formulas need, derived once from an Architecture."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    q_dim: int
    kv_dim: int
    ffn: int
    vocab: int
    tied: bool
    moe: bool
    experts_per_tok: int
    expert_ffn: int
    shared_ffn: int
    dense_layers: int
    mlp_kind: str
    layernorm: bool
    rope: bool
    norms_per_layer: int
    qk_norm: bool
    learned_positions: bool
    attention: str  # "sdpa", "eager" or "math": the attention path transformers takes
    softcap: bool  # attention and final logits soft-capped (Gemma-2)
    fp32_norm: bool  # RMSNorm scales in fp32 and keeps the fp32 normalized tensor (Gemma)
    alibi: bool  # ALiBi biases folded into a per-head float mask (Falcon-RW)
    always_mask: bool  # a causal mask is built even when none is needed (Falcon)
    sliding_window: int | None
    sliding_layers: int  # layers attending within the sliding window
    fused_qkv: bool  # q, k and v are views of one fused projection output (Phi-3, GPT-NeoX)
    kv_cache_per_token_layer: int  # elements of K and V cached per token per layer
    counts: ParamCount
    params: int  # counts.total, read on every estimate
    largest_tensor: int
    linear_params: int
    lora_dims: Mapping[str, tuple[int, int]]  # only the projections the model type has


_SHAPE_CACHE_SIZE = 4096


def _shape(arch: Architecture) -> _Shape:
    """The sizes of `arch`, computed once per distinct architecture (sweeps reuse them)."""
    seen = _BY_ID.get(id(arch))
    if seen is not None and seen[0] is arch:
        return seen[1]
    key = (
        arch.model_type,
        *(getattr(arch, name) for name in _ARCH_KEY_FIELDS),
        tuple(sorted(arch.arch_options.items())),
    )
    shape = _shape_of(key, arch)
    if len(_BY_ID) >= _SHAPE_CACHE_SIZE:
        _BY_ID.clear()
    _BY_ID[id(arch)] = (arch, shape)  # the object is kept, so its id cannot be reused
    return shape


_SHAPES: dict[tuple[object, ...], _Shape] = {}
_BY_ID: dict[int, tuple[Architecture, _Shape]] = {}


def _shape_of(key: tuple[object, ...], arch: Architecture) -> _Shape:
    found = _SHAPES.get(key)
    if found is None:
        if len(_SHAPES) >= _SHAPE_CACHE_SIZE:
            _SHAPES.clear()
        found = _SHAPES[key] = _compute_shape(arch)
    return found


# Projections a model type lacks under PEFT's names, so a LoRA target naming them adapts
# nothing (transformers' modeling files; confirmed by tracing PEFT on tiny configs): Phi-3
# fuses q/k/v into qkv_proj and gate/up into gate_up_proj; OPT calls its attention output
# out_proj and its MLP fc1/fc2.
_ABSENT_LORA_TARGETS: Mapping[ModelType, tuple[str, ...]] = MappingProxyType(
    {
        ModelType.phi3: ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"),
        ModelType.opt: ("o_proj", "gate_proj", "up_proj", "down_proj"),
    }
)


# Model types whose attention takes q, k and v as views of one fused projection output, so
# the saved v keeps all of it alive (transformers' Phi3Attention slices qkv_proj's output,
# GPTNeoXAttention views query_key_value's; traced: the saved bytes grow by q + k per token).
_FUSED_QKV_VIEWS = frozenset({ModelType.phi3, ModelType.gpt_neox})


def _lora_targets(s: _Shape, w: Workload) -> tuple[str, ...]:
    """The workload's LoRA targets that exist in the model (PEFT skips the others)."""
    found = tuple(t for t in w.lora_targets if t in s.lora_dims)
    if not found:
        raise InvalidValueError(
            "none of the LoRA targets " + ",".join(w.lora_targets) + " exist in this model; "
            "it has " + ",".join(s.lora_dims)
        )
    return found


def _compute_shape(arch: Architecture) -> _Shape:
    counts = count_params(arch)
    t = arch.model_type
    h, d = arch.hidden_size, arch.head_dim
    q_dim = arch.num_attention_heads * d
    kv_dim = arch.num_key_value_heads * d
    if arch.attention_kind is AttentionKind.mla:
        assert arch.kv_lora_rank is not None and arch.qk_rope_head_dim is not None
        # transformers caches the decompressed keys and values per head (not the latent).
        assert arch.qk_nope_head_dim is not None and arch.v_head_dim is not None
        qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        kv_cache = arch.num_attention_heads * (qk + arch.v_head_dim)
        q_dim = arch.num_attention_heads * qk
        kv_dim = q_dim
    else:
        kv_cache = 2 * kv_dim
    attention = "eager" if t in _EAGER_ATTENTION else "sdpa"
    alibi = False
    if t is ModelType.falcon:
        alibi = bool(arch.option("alibi", False))
        if arch.option("new_decoder_architecture", False):
            # Falcon's new decoder layout broadcasts its KV heads to every query head before
            # caching them (modeling_falcon `_split_heads`, `num_kv_heads = num_heads`).
            kv_cache = 2 * q_dim
        elif arch.num_key_value_heads < arch.num_attention_heads:
            # Multi-query keys and values reach SDPA with one head and no `enable_gqa`: no
            # fused kernel takes that, so PyTorch runs its math kernel.
            attention = "math"
    moe = t in MOE_TYPES
    expert_ffn = arch.moe_intermediate_size or arch.intermediate_size
    shared_ffn = expert_ffn * (arch.n_shared_experts or 0)
    embedding_rows = arch.vocab_size * h
    mlp_matrix = (expert_ffn if moe else arch.intermediate_size) * h
    largest = max(embedding_rows, mlp_matrix * (2 if moe else 1), q_dim * h)
    norms = 4 if t in (ModelType.gemma2, ModelType.gemma3_text) else 2
    per_layer_norm_params = norms * h * (2 if t in _LAYERNORM else 1)
    linear = counts.layers - arch.num_hidden_layers * per_layer_norm_params
    lora_dims = {
        "q_proj": (h, q_dim),
        "k_proj": (h, kv_dim),
        "v_proj": (h, kv_dim),
        "o_proj": (q_dim, h),
        "gate_proj": (h, arch.intermediate_size),
        "up_proj": (h, arch.intermediate_size),
        "down_proj": (arch.intermediate_size, h),
    }
    for name in _ABSENT_LORA_TARGETS.get(t, ()):
        del lora_dims[name]
    return _Shape(
        layers=arch.num_hidden_layers,
        hidden=h,
        heads=arch.num_attention_heads,
        kv_heads=arch.num_key_value_heads,
        head_dim=d,
        q_dim=q_dim,
        kv_dim=kv_dim,
        ffn=arch.intermediate_size,
        vocab=arch.vocab_size,
        tied=arch.tie_word_embeddings,
        moe=moe,
        experts_per_tok=arch.num_experts_per_tok or 0,
        expert_ffn=expert_ffn,
        shared_ffn=shared_ffn,
        dense_layers=(arch.first_k_dense_replace or 0) if moe else arch.num_hidden_layers,
        mlp_kind=_mlp_kind(t),
        layernorm=t in _LAYERNORM,
        rope=t not in _NO_ROPE and not alibi,  # ALiBi replaces rotary embeddings
        norms_per_layer=norms,
        qk_norm=t in (ModelType.qwen3, ModelType.qwen3_moe, ModelType.gemma3_text),
        learned_positions=t in _LEARNED_POSITIONS,
        attention=attention,
        softcap=t is ModelType.gemma2,
        fp32_norm=t in _FP32_NORM,
        alibi=alibi,
        always_mask=t is ModelType.falcon,
        sliding_window=arch.sliding_window,
        sliding_layers=(
            0
            if arch.sliding_window is None
            else (arch.num_sliding_layers or arch.num_hidden_layers)
        ),
        fused_qkv=t in _FUSED_QKV_VIEWS,
        kv_cache_per_token_layer=kv_cache,
        counts=counts,
        params=counts.total,
        largest_tensor=largest,
        linear_params=linear,
        lora_dims=MappingProxyType(lora_dims),
    )


def _round(n: float) -> int:
    """Bytes of one allocation, rounded up to the allocator's granule."""
    whole = math.ceil(n)
    return -(-whole // ALLOCATION_GRANULE) * ALLOCATION_GRANULE


_ARCH_KEY_FIELDS = tuple(
    f.name for f in fields(Architecture) if f.name not in ("model_type", "arch_options")
)

# --- precision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bytes:
    weight: float  # bytes per stored weight
    compute: int  # bytes per activation element
    grad: int
    state: int  # bytes per optimizer state element
    cast: int  # bytes per weight of autocast's working copy (0: none)
    residual: int  # bytes per element of the residual stream


_PRECISION_BYTES: Mapping[Precision, _Bytes] = MappingProxyType(
    {
        Precision.fp32: _Bytes(4, 4, 4, 4, 0, 4),
        Precision.bf16: _Bytes(2, 2, 2, 2, 0, 2),
        Precision.fp16: _Bytes(2, 2, 2, 2, 0, 2),
        # fp32 master weights and states; FP8 working copies of the weights (TransformerEngine).
        Precision.fp8: _Bytes(4, 2, 4, 4, 1, 4),
        # mixed: fp32 model, autocast's 16-bit copies
        Precision.mixed_bf16: _Bytes(4, 2, 4, 4, 2, 4),
        Precision.mixed_fp16: _Bytes(4, 2, 4, 4, 2, 4),
    }
)


def _precision_bytes(p: Precision) -> _Bytes:
    return _PRECISION_BYTES[p]


# Bits of the rule of thumb's classes: a format counts as 4-bit below 6 bits per weight and as
# 8-bit below 12, as users name them (Q4_K_M's 4.9 bits is "int4").
RULE_4BIT_BELOW = 6
RULE_8BIT_BELOW = 12


def rule_of_thumb(params: int, workload: Workload, *, activations_per_sample: int) -> int | None:
    """The classic estimates, kept beside the detailed one, where the seed gives one.

    Inference: params x 2 bytes at 16 bit, x 1 at 8 bit, x 0.5 at 4 bit, x 4 at fp32.
    Pretraining: (P + B·A + P + 2P) x 4 bytes: fp32 weights, activations (A per sample),
    gradients and two Adam states. Fine-tuning: None (the seed gives no rule; the pretraining
    one charges gradients and states for every weight, which LoRA and QLoRA do not train).
    """
    if workload.stage is Stage.finetune:
        return None
    if workload.stage is Stage.inference:
        if workload.weight_format is not None:
            bits = workload.weight_format.bits_per_weight
            bits = (
                4
                if bits < RULE_4BIT_BELOW
                else 8
                if bits < RULE_8BIT_BELOW
                else (16 if bits <= 16 else 32)
            )
        elif workload.precision is Precision.fp32:
            bits = 32
        else:
            bits = 8 if workload.precision is Precision.fp8 else 16
        return params * bits // 8
    batch_activations = workload.batch * activations_per_sample
    return (params + batch_activations + params + 2 * params) * FP32_BYTES


# --- inference ------------------------------------------------------------------------------


def _weight_bytes(s: _Shape, workload: Workload, default_bytes: float) -> int:
    fmt = workload.weight_format
    total = s.params
    if fmt is None:
        return math.ceil(total * default_bytes)
    if fmt.scope == "all":
        return math.ceil(total * fmt.bits_per_weight / 8)
    rest = total - s.linear_params
    return math.ceil(s.linear_params * fmt.bits_per_weight / 8 + rest * 2)


def _kv_element_bytes(workload: Workload, compute: int) -> float:
    if workload.kv_dtype is None:
        return float(compute)
    return KV_BYTES_PER_ELEMENT[workload.kv_dtype]


def _cached_tokens(arch: Architecture, seq: int) -> int:
    """Tokens held in the KV cache, summed over layers.

    While the prompt is processed every layer holds the whole context, sliding-window layers
    included (transformers trims them to the window only after the forward pass); traced
    Mistral prefill peaks match the full-context cache.
    """
    return arch.num_hidden_layers * seq


def _scores_live(s: _Shape, score_elements: int, c: int) -> int:
    """Bytes of the seq x seq attention tensors alive at an inference attention peak."""
    if s.attention == "eager":
        upcast = EAGER_SOFTMAX_FP32_BYTES if c != FP32_BYTES else 0
        return _round(score_elements * c) + _round(score_elements * (upcast + FP32_BYTES))
    if s.attention == "math":
        # the fp32 scores and softmax, and the boolean mask added as an fp32 one
        mask = _round(score_elements // s.heads * FP32_BYTES) if s.always_mask else 0
        return 2 * _round(score_elements * FP32_BYTES) + mask
    return 0


def _model_masks(s: _Shape, batch: int, seq: int, c: int) -> int:
    """Masks the model builds once per forward, batch x (heads x) seq x seq."""
    total = 0
    sliding = s.sliding_window is not None and seq >= s.sliding_window
    if s.always_mask or (sliding and s.attention == "sdpa"):
        # Falcon's materialized causal mask; a sliding window's boolean mask once the context
        # reaches the window (SDPA's is_causal cannot express it).
        total += _round(batch * seq * seq * BOOL_BYTES)
    if s.alibi:
        # ALiBi: the causal mask rebuilt as a float mask per head with the biases folded in.
        total += _round(batch * s.heads * seq * seq * c)
    if s.attention == "eager":
        # Gemma-2's full and sliding-window additive masks, in the compute dtype.
        total += EAGER_MASKS * _round(batch * seq * seq * c)
    return total


def _inference_terms(arch: Architecture, s: _Shape, w: Workload, shard: _Shard) -> _Result:
    b = _PRECISION_BYTES[w.precision]
    c = 2 if w.precision is Precision.fp8 or b.compute == 2 else b.compute
    default_weight = 1.0 if w.precision is Precision.fp8 else b.weight
    weights = shard.weights(_weight_bytes(s, w, default_weight))
    n = w.batch * w.seq
    kv_elem = _kv_element_bytes(w, c)
    cached = _cached_tokens(arch, w.seq)
    kv = shard.kv(math.ceil(w.batch * cached * s.kv_cache_per_token_layer * kv_elem))
    ffn_live = (
        s.experts_per_tok * (4 * s.expert_ffn + s.hidden)
        if s.moe
        else _MLP_INFERENCE_LIVE[s.mlp_kind] * s.ffn
    )
    attn_live = 2 * s.q_dim + s.kv_cache_per_token_layer
    live = max(ffn_live, attn_live)
    scores = _scores_live(s, w.batch * s.heads * w.seq * w.seq, c)
    masks = _model_masks(s, w.batch, w.seq, c)
    hidden = (INFERENCE_HIDDEN_LIVE_LAYERNORM if s.layernorm else INFERENCE_HIDDEN_LIVE) * s.hidden
    layer_peak = max(_round(n * ffn_live * c), _round(n * attn_live * c) + scores)
    act = math.ceil(layer_peak / shard.tp) + _round(n * hidden * c) + masks
    if s.rope:
        act += 2 * _round(w.seq * s.head_dim * c)  # the rotary cos and sin tables
    if s.learned_positions:
        act += _round(w.seq * s.hidden * c)  # the position embeddings of the context
    logits = _round(w.batch * s.vocab * c) + _round(w.batch * s.vocab * FP32_BYTES)

    def explain() -> list[Term]:
        return [
            Term(
                "weights",
                weights,
                "params x bytes per weight"
                + (" (linear layers quantized)" if w.weight_format else ""),
                {
                    "params": s.params,
                    "bytes_per_weight": (
                        w.weight_format.bits_per_weight / 8 if w.weight_format else default_weight
                    ),
                },
            ),
            Term(
                "kv_cache",
                kv,
                "batch x cached tokens summed over layers x (K + V elements per token) x bytes",
                {
                    "batch": w.batch,
                    "cached_tokens": cached,
                    "kv_elements_per_token": s.kv_cache_per_token_layer,
                    "bytes": kv_elem,
                },
            ),
            Term(
                "activations",
                act,
                "the larger of the MLP peak and the attention peak (its seq x seq scores"
                " on eager/math paths) + 4 hidden states per token + the model's masks",
                {
                    "tokens": n,
                    "live_per_token": live,
                    "attention_path": s.attention,
                    "scores": scores,
                    "masks": masks,
                    "hidden": s.hidden,
                    "bytes": c,
                },
            ),
            Term(
                "logits",
                logits,
                "batch x vocab x (bytes + 4): last position's logits and their fp32 copy",
                {"batch": w.batch, "vocab": s.vocab},
            ),
        ]

    return (weights, kv, act, logits, 0, 0, 0), "forward pass over the context", explain


# --- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trainable:
    params: int  # trainable parameters of the base model
    adapter_params: int
    layers_with_grad: int  # layers whose activations are saved for backward
    embedding_trainable: bool


def _lora_params(s: _Shape, w: Workload) -> int:
    targets = _lora_targets(s, w)
    per_layer = sum(w.lora_rank * (i + o) for i, o in (s.lora_dims[t] for t in targets))
    return per_layer * s.layers


def _trainable(s: _Shape, w: Workload) -> _Trainable:
    if w.method in (Method.lora, Method.qlora):
        return _Trainable(0, _lora_params(s, w), s.layers, False)
    if w.method is Method.freeze:
        assert w.trainable_layers is not None
        n = min(w.trainable_layers, s.layers)
        per_layer = s.counts.layers // s.layers
        # The output head trains with the top layers (and so does a tied embedding).
        head = s.counts.output_head + s.counts.final_norm
        return _Trainable(per_layer * n + head, 0, n, False)
    return _Trainable(s.params, 0, s.layers, True)


def _norm_saved(s: _Shape, b: _Bytes, consumers: int, frozen: bool) -> float:
    """Bytes per token one norm saves for backward, its output included."""
    h = s.hidden
    if s.layernorm:
        out = h * b.compute if b.cast == 0 else consumers * h * b.compute
        return h * b.residual + 2 * FP32_BYTES + (0 if frozen else out)
    # RMSNorm as transformers writes it: an fp32 copy of the input, the rsqrt, the normalized
    # tensor cast back (kept for the weight's gradient) and the weighted output.
    normalized = h * (FP32_BYTES if b.cast or s.fp32_norm else b.compute)
    out = consumers * h * b.compute if b.cast else h * b.compute
    if consumers == 0:
        out = 0  # Gemma-2/3's post-norms feed the residual add, which saves nothing
    if frozen:
        return h * FP32_BYTES + FP32_BYTES
    return h * FP32_BYTES + FP32_BYTES + normalized + out


def _masked_layers(s: _Shape, w: Workload, layers: int) -> int:
    """Layers whose attention gets a mask tensor: every one with a padding mask or in Falcon
    (which always builds its causal mask); otherwise the sliding-window layers once the
    context reaches the window (transformers' `_ignore_causal_mask_sdpa` cannot then fall back
    on SDPA's is_causal)."""
    if w.with_attention_mask or s.always_mask:
        return layers
    if s.sliding_window and w.seq >= s.sliding_window:
        return min(s.sliding_layers, layers)
    return 0


def _layer_saved(s: _Shape, b: _Bytes, w: Workload, mask: bool) -> tuple[float, float]:
    """(bytes per token, bytes per batch x seq^2) one layer saves for backward; `mask`: its
    attention gets a mask tensor."""
    c = b.compute
    lora = w.method in (Method.lora, Method.qlora)
    expand = mask and s.kv_heads < s.heads and not lora
    if lora:
        expand = mask and s.kv_heads < s.heads
    kv = s.q_dim if expand else s.kv_dim
    if s.attention == "eager":
        # q, the keys and values expanded to every head by `repeat_kv` (the matmuls save
        # them), the output before o_proj; per head: the soft-capped logits' tanh, softmax's
        # fp32 output and its cast back that multiplies the values.
        kv = s.q_dim if s.kv_heads < s.heads else s.kv_dim
        attn = (2 * s.q_dim + 2 * kv) * c
        score = (c if s.softcap else 0) + FP32_BYTES + c
        per_seq_sq = s.heads * score
    elif s.attention == "math":
        # The math kernel's fp32 copies of q, k and v, the output cast back for the dense
        # projection; per head its fp32 softmax; the boolean mask made additive per layer.
        attn = (s.q_dim + 2 * s.kv_dim) * FP32_BYTES + s.q_dim * c
        per_seq_sq = s.heads * FP32_BYTES + c
    else:
        if s.rope:
            attn = (s.q_dim + 2 * kv) * c
        else:
            attn = (s.q_dim + 2 * s.kv_dim) * c
        attn += s.q_dim * c + s.heads * FP32_BYTES  # SDPA output and its log-sum-exp
        if s.fused_qkv:
            # SDPA saves v, a view of the fused qkv output: its q and k parts stay alive too.
            attn += (s.q_dim + s.kv_dim) * c
        # the boolean mask turned into an additive one per layer (an ALiBi mask is one float
        # tensor for the whole model, counted once)
        per_seq_sq = c if mask and not s.alibi else 0
    if s.qk_norm:
        # Per-head RMSNorm of queries and keys (Qwen3, Gemma 3): the fp32 copies and the
        # normalized tensors cast back, and one rsqrt per head.
        attn += (s.q_dim + s.kv_dim) * (FP32_BYTES + c) + (s.heads + s.kv_heads) * FP32_BYTES
    if s.moe:
        k = s.experts_per_tok
        mlp = k * (2 * s.hidden + 4 * s.expert_ffn) * c + 4 * s.shared_ffn * c
    else:
        mlp = _MLP_SAVED[s.mlp_kind] * s.ffn * c
    if lora:
        # Frozen linears save no inputs: the MLP keeps gate, up and act(gate) for the
        # gradient flowing to its input; each adapter keeps an fp32 copy of its input and
        # its rank-r hidden state.
        if s.mlp_kind == "gated" and not s.moe:
            mlp = 3 * s.ffn * c
        targets = _lora_targets(s, w)
        adapters = (
            sum(s.lora_dims[t][0] * LORA_DTYPE_BYTES for t in targets)
            + len(targets) * w.lora_rank * LORA_DTYPE_BYTES
        )
        norms = s.norms_per_layer * _norm_saved(s, b, 1, frozen=True)
        per_token = attn + mlp + adapters + norms
    else:
        norms = (
            _norm_saved(s, b, 3, frozen=False)
            + _norm_saved(s, b, 2, frozen=False)
            + (s.norms_per_layer - 2) * _norm_saved(s, b, 0, frozen=False)
        )
        per_token = attn + mlp + norms
    return per_token, per_seq_sq


def _optimizer_state_bytes(params: int, opt: Optimizer, state: int) -> int:
    if opt is Optimizer.adamw:
        return params * ADAM_STATES * state
    if opt is Optimizer.adamw_8bit:
        per_state = params * EIGHT_BIT_STATE_BYTES + math.ceil(params / EIGHT_BIT_BLOCK) * 4
        return ADAM_STATES * per_state
    if opt in (Optimizer.sgd_momentum, Optimizer.lion):
        return params * MOMENTUM_STATES * state
    if opt is Optimizer.adafactor:
        # Factored second moment: a row and a column vector per matrix, about 2 sqrt(n) per
        # n-element matrix; bounded here by 1 % of the parameters plus one vector per layer.
        return math.ceil(params * state / 100)
    return 0


def _optimizer_step_temp(largest: int, opt: Optimizer, state: int) -> int:
    """Temporaries of the single-tensor (for-loop) step on the largest trainable tensor:
    Adam's sqrt(v) and its bias-corrected quotient; Lion and Adafactor one update tensor."""
    if opt is Optimizer.adamw:
        return 2 * _round(largest * state)
    if opt in (Optimizer.lion, Optimizer.adafactor):
        return _round(largest * state)
    return 0


@dataclass(frozen=True)
class _Shard:
    """Divides each term among GPUs as the strategy does."""

    gpus: int
    strategy: Parallel
    tp: int = 1

    def weights(self, n: int) -> int:
        if self.strategy in (Parallel.tp, Parallel.pp, Parallel.zero3):
            return math.ceil(n / self.gpus)
        return n

    def kv(self, n: int) -> int:
        if self.strategy in (Parallel.tp, Parallel.pp):
            return math.ceil(n / self.gpus)
        return n

    def grads(self, n: int) -> int:
        if self.strategy in (Parallel.zero2, Parallel.zero3):
            return math.ceil(n / self.gpus)
        return n

    def states(self, n: int) -> int:
        if self.strategy in (Parallel.zero1, Parallel.zero2, Parallel.zero3):
            return math.ceil(n / self.gpus)
        return n


def _training_terms(arch: Architecture, s: _Shape, w: Workload, shard: _Shard) -> _Result:
    b = _precision_bytes(w.precision)
    c = b.compute
    n = w.tokens
    tr = _trainable(s, w)
    lora = w.method in (Method.lora, Method.qlora)

    # Weights: the model in its dtype; a QLoRA base in its 4-bit format.
    if w.method is Method.qlora:
        weights = _weight_bytes(s, w, 2)
    elif lora:
        weights = s.params * 2 if b.cast else math.ceil(s.params * b.weight)
    else:
        weights = math.ceil(s.params * b.weight)
    weights = shard.weights(weights)
    cast = 0
    if b.cast and not lora:
        # autocast's 16-bit copy of every linear weight (and the output head), held for backward
        cast = (s.linear_params + s.vocab * s.hidden) * b.cast
    adapters = tr.adapter_params * LORA_DTYPE_BYTES

    grad_bytes = LORA_DTYPE_BYTES if lora else b.grad
    state_bytes = LORA_DTYPE_BYTES if lora else b.state
    trainable = tr.adapter_params if lora else tr.params
    grads = shard.grads(trainable * grad_bytes)
    states = (
        0
        if w.offload_optimizer
        else shard.states(_optimizer_state_bytes(trainable, w.optimizer, state_bytes))
    )
    largest = (
        max(w.lora_rank * max(*s.lora_dims[t]) for t in _lora_targets(s, w))
        if lora
        else s.largest_tensor
    )
    step_temp = (
        0 if w.offload_optimizer else _optimizer_step_temp(largest, w.optimizer, state_bytes)
    )

    # Activations saved for backward.
    layers = tr.layers_with_grad
    masked = _masked_layers(s, w, layers)
    per_token, per_seq_sq = _layer_saved(s, b, w, mask=masked > 0)
    layer_bytes = _round(n * per_token) + _round(w.batch * w.seq * w.seq * per_seq_sq)
    unmasked_bytes = layer_bytes
    if 0 < masked < layers:
        plain_token, plain_seq_sq = _layer_saved(s, b, w, mask=False)
        unmasked_bytes = _round(n * plain_token) + _round(w.batch * w.seq * w.seq * plain_seq_sq)
    if w.grad_checkpointing:
        # Each layer keeps only its input; one layer's activations are rebuilt during backward.
        saved = layers * _round(n * s.hidden * c)
    else:
        saved = masked * layer_bytes + (layers - masked) * unmasked_bytes
    final_norm = _norm_saved(s, b, 1, frozen=lora)
    saved += _round(n * final_norm)
    if s.alibi:
        # ALiBi's per-head float mask, saved by every layer's attention: one tensor.
        saved += _round(w.batch * s.heads * w.seq * w.seq * c)
    if b.residual == 4 and not s.layernorm:
        saved += _round(n * s.hidden * b.residual)  # the embedding output, kept by the first norm
    saved = math.ceil(saved / shard.tp)

    # Logits: the model returns them in the compute dtype and the caller holds them through
    # backward; the loss upcasts to fp32 and log-softmax keeps its fp32 output; the start of
    # backward adds the loss's gradient and log-softmax's (both fp32).
    logits_dtype = c
    held = _round(n * s.vocab * logits_dtype)
    log_softmax = _round(n * s.vocab * FP32_BYTES)
    loss_grads = 2 * _round(n * s.vocab * FP32_BYTES)
    if s.softcap:
        # Gemma-2 soft-caps the final logits (tanh(x / 30) x 30): tanh's output is saved.
        log_softmax += _round(n * s.vocab * c)

    base = weights + adapters
    start = base + states + cast + saved + held + log_softmax + loss_grads
    tied_accumulate = 0
    if tr.embedding_trainable and s.tied:
        # The tied embedding's two gradients (output head, input lookup) are summed at the end.
        tied_accumulate = 2 * _round(s.vocab * s.hidden * b.grad)
    end = base + states + grads + held + shard.grads(tied_accumulate)
    # Backward through the first layer: nearly every gradient exists while that layer's saved
    # (with checkpointing: recomputed) activations are still alive.
    one_layer = math.ceil(max(layer_bytes, unmasked_bytes) / shard.tp)
    first_layer = base + states + grads + held + one_layer
    step = base + states + grads + step_temp

    moment = "start of backward"
    peak = start
    for name, value in (
        ("end of backward", end),
        ("backward of the first layer", first_layer),
        ("optimizer step", step),
    ):
        if value > peak:
            moment, peak = name, value
    weights_term = weights + (cast if moment == "start of backward" else 0)
    optimizer_term = states + (step_temp if moment == "optimizer step" else 0)
    if moment == "start of backward":
        activations_term, logits_term, grads_term = saved, held + log_softmax + loss_grads, 0
    else:
        activations_term = one_layer if moment == "backward of the first layer" else 0
        logits_term = 0 if moment == "optimizer step" else held
        grads_term = grads + (shard.grads(tied_accumulate) if moment == "end of backward" else 0)

    def explain() -> list[Term]:
        terms = [
            Term(
                "weights",
                weights_term,
                "params x bytes per weight"
                + (" + autocast's 16-bit copy of the linear weights" if cast else ""),
                {"params": s.params, "bytes_per_weight": b.weight, "cast_bytes": cast},
            ),
            Term(
                "optimizer",
                optimizer_term,
                f"{w.optimizer.value} states x trainable params x state bytes"
                + (" + the step's temporaries" if moment == "optimizer step" else ""),
                {"trainable": trainable, "state_bytes": state_bytes, "step_temp": step_temp},
            ),
            Term(
                "adapters",
                adapters,
                "LoRA A and B (rank x (in + out) per target) x 4 bytes",
                {"adapter_params": tr.adapter_params, "rank": w.lora_rank},
            ),
        ]
        if moment == "start of backward":
            return [
                *terms,
                Term(
                    "activations",
                    activations_term,
                    "layers x tokens x saved bytes per token (+ batch x seq^2 mask per layer)",
                    {
                        "layers": layers,
                        "tokens": n,
                        "bytes_per_token_layer": per_token,
                        "mask_bytes_per_seq_sq": per_seq_sq,
                        "masked_layers": masked,
                    },
                ),
                Term(
                    "logits",
                    logits_term,
                    "tokens x vocab x (bytes + 4 log-softmax + 8 loss gradients)",
                    {"tokens": n, "vocab": s.vocab, "bytes": logits_dtype},
                ),
            ]
        terms.append(
            Term(
                "gradients",
                grads_term,
                "trainable params x gradient bytes",
                {"trainable": trainable, "grad_bytes": grad_bytes},
            )
        )
        if logits_term:
            terms.append(
                Term(
                    "logits",
                    logits_term,
                    "tokens x vocab x bytes (held by the caller)",
                    {"tokens": n, "vocab": s.vocab},
                )
            )
        if activations_term:
            terms.append(
                Term(
                    "activations",
                    activations_term,
                    "tokens x saved bytes per token of one layer (+ its mask)",
                    {"tokens": n, "bytes_per_token_layer": per_token},
                )
            )
        return terms

    components = (
        weights_term,
        0,
        activations_term,
        logits_term,
        grads_term,
        optimizer_term,
        adapters,
    )
    return components, moment, explain


# --- entry point ----------------------------------------------------------------------------


def valid_tp_counts(arch: Architecture, limit: int = 64) -> tuple[int, ...]:
    """GPU counts tensor parallelism can split this model over: they divide both head counts."""
    return tuple(
        n
        for n in range(1, limit + 1)
        if arch.num_attention_heads % n == 0 and arch.num_key_value_heads % n == 0
    )


def estimate(
    arch: Architecture, workload: Workload, *, overhead: RuntimeOverhead | None = None
) -> Estimate:
    """Peak memory per GPU of `workload` on a model of architecture `arch`."""
    s = _shape(arch)
    strategy = workload.strategy
    notes: list[str] = []
    valid = None
    tp = 1
    if workload.gpus > 1 and strategy is Parallel.tp:
        valid = valid_tp_counts(arch)
        if workload.gpus not in valid:
            raise InvalidValueError(
                f"tensor parallelism over {workload.gpus} GPUs needs the count to divide "
                f"{arch.num_attention_heads} attention and {arch.num_key_value_heads} KV heads; "
                "valid counts: " + ", ".join(str(v) for v in valid if v <= 16)
            )
        tp = workload.gpus
    if workload.gpus > 1 and strategy is Parallel.pp and workload.gpus > arch.num_hidden_layers:
        raise InvalidValueError(
            f"pipeline parallelism cannot split {arch.num_hidden_layers} layers over "
            f"{workload.gpus} GPUs"
        )
    shard = _Shard(workload.gpus, strategy, tp)
    if workload.stage is Stage.inference:
        tensor, moment, explain_tensors = _inference_terms(arch, s, workload, shard)
    else:
        tensor, moment, explain_tensors = _training_terms(arch, s, workload, shard)
    tensor_bytes = sum(tensor)
    ov = _DEFAULT_OVERHEAD if overhead is None else overhead
    runtime = ov.bytes_for(tensor_bytes)

    def explain() -> tuple[Term, ...]:
        return (
            *explain_tensors(),
            Term(
                "runtime_overhead",
                runtime,
                f"{ov.runtime.value} context + allocator reserve x tensor peak",
                {
                    "context": ov.context_bytes,
                    "reserve_fraction": ov.allocator_reserve_fraction,
                },
            ),
        )

    return Estimate(
        workload=workload,
        params=s.params,
        gpus=workload.gpus,
        peak_moment=moment,
        rule_of_thumb_bytes=rule_of_thumb(
            s.params,
            workload,
            # A: one hidden-size activation per token per layer, the rule's usual reading.
            activations_per_sample=workload.seq * s.hidden * s.layers,
        ),
        per_gpu_bytes=tensor_bytes + runtime,
        component_bytes=(*tensor, runtime),
        _explain=explain,
        valid_gpu_counts=valid,
        notes=tuple(notes),
    )
