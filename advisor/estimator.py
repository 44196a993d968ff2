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

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import NamedTuple

from advisor.arch import (
    LAYERNORM_PARAMS_PER_CHANNEL,
    RMSNORM_PARAMS_PER_CHANNEL,
    Architecture,
    ParamCount,
    count_params,
    projection_biases,
)
from advisor.engines import ENGINES, check, kv_dtype_name
from advisor.enums import AttentionKind, Engine, Vendor
from advisor.errors import InvalidValueError
from advisor.ggml import GGUFWeights
from advisor.gguf import GGUF_ARCHS, gguf_weights
from advisor.traits import ALL_PROJECTIONS, AttentionKernel, MLPKind, ModelTraits, Norm
from advisor.units import GIB, MIB
from advisor.workload import (
    ALL_LINEAR,
    ZERO_STRATEGIES,
    Attention,
    Checkpointing,
    KVDtype,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Parallel,
    Precision,
    Stage,
    TrainingOffload,
    WeightFormat,
    Workload,
)

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
FP32_BYTES = 4
BF16_BYTES = 2
# bitsandbytes' optimizers (bitsandbytes-foundation/bitsandbytes at 51294d90,
# bitsandbytes/optim/optimizer.py `Optimizer2State.init_state`, `get_state_buffer`, `step`):
# 8-bit states are one byte per value with one fp32 absmax per block of 256 values
# (`blocks = n // 256`, block-wise by default); a tensor under `min_8bit_size` = 4096 values
# keeps both states in fp32; the 32-bit optimizers keep fp32 states whatever the weights' dtype.
EIGHT_BIT_STATE_BYTES = 1
EIGHT_BIT_BLOCK = 256
EIGHT_BIT_MIN_SIZE = 4096
# Paged optimizers allocate a state with `F.get_paged` (CUDA unified memory, outside PyTorch's
# allocator, evicted to host RAM under memory pressure) when its tensor has at least 1e5
# values (`p.numel() < 1e5` stays an ordinary GPU tensor); the step prefetches one tensor's
# states (`prefetch_state`) and synchronizes before the next, so at the peak the GPU holds the
# small tensors' states, the absmax blocks and one paged tensor's states being updated.
PAGED_MIN_SIZE = 100_000
# The update kernels (`optimizer_update_8bit_blockwise`, `optimizer_update_32bit`) work in
# place: a bitsandbytes step makes no temporary beyond the gradient it reads.
# Adafactor as Hugging Face Trainer runs it (`optim="adafactor"`: transformers/optimization.py
# `Adafactor.step`, default `beta1=None`: no first moment): a matrix keeps a row and a column
# vector of its second moment, a vector the full moment, all in fp32 (`.to(grad)` after a
# 16-bit gradient is upcast). The step holds on one tensor: the fp32 gradient (a copy when
# the gradient is 16-bit), `update = grad**2 + eps`, and its replacement from
# `_approx_sq_grad` (made before the old one is freed).
ADAFACTOR_STEP_FP32_COPIES = 2
# A tied embedding's gradient is the sum of two: the output head's and the embedding
# lookup's (autograd sums the two before AccumulateGrad stores them).
TIED_GRADIENTS = 2
# LoRA adapters by dtype: PEFT creates them in fp32; bf16 when cast (QLoRA's recipe).
ADAPTER_BYTES: Mapping[LoraDtype, int] = MappingProxyType(
    {LoraDtype.fp32: FP32_BYTES, LoraDtype.bf16: BF16_BYTES}
)
# Parameters offloaded with `--offload optimizer+params` (ZeRO-Infinity's CPU offload,
# DeepSpeed ZeRO-3 `offload_param`, FSDP `CPUOffload(offload_params=True)`) are brought to
# the GPU one unit at a time (a decoder layer, or the embedding or head) with the next one
# prefetched (FSDP's `forward_prefetch`/backward prefetch, DeepSpeed's prefetch bucket), so
# the GPU holds two units' 16-bit parameters and one unit's gradients.
OFFLOAD_GATHERED_UNITS = 2
OFFLOAD_GRADIENT_UNITS = 1
# Offloaded checkpointing (Unsloth's `Unsloth_Offloaded_Gradient_Checkpointer`,
# unsloth/models/_utils.py): each layer's input is copied to host memory as the forward moves
# on, and copied back for that layer's backward; the GPU holds the one in transit.
OFFLOAD_GPU_LAYER_INPUTS = 1
# torchtune's `CEWithChunkedOutputLoss` (torchtune/modules/loss/ce_chunked_output_loss.py):
# the output projection runs on 8 chunks of tokens and each chunk is upcast to fp32 on its own
# (`num_output_chunks: int = 8`, the value every torchtune recipe keeps).
CHUNKED_LOSS_CHUNKS = 8
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
_VENDOR_BY_RUNTIME: Mapping[Runtime, Vendor] = MappingProxyType(
    {ov.runtime: vendor for vendor, ov in OVERHEAD_BY_VENDOR.items()}
)


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
    # Host (CPU) memory the workload keeps per GPU: offloaded checkpoints and offloaded
    # optimizer states; 0 when nothing is offloaded.
    host_bytes: int = 0

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


# _RECORDS: the records an estimate builds on its way (these components, a stage's peak, the
# training state …) are slotted, mutable dataclasses that never leave the estimator, built
# from locals named as their fields, in field order: a frozen dataclass or keyword arguments
# cost several times more to build, and sweeps build millions of estimates.
@dataclass(slots=True)
class Components:
    """The tensor terms at the peak, bytes per GPU (the runtime overhead is added on top)."""

    weights: int
    kv_cache: int
    activations: int
    logits: int
    gradients: int
    optimizer: int
    adapters: int

    def in_order(self) -> tuple[int, ...]:
        """The bytes in COMPONENTS order, without the runtime overhead."""
        return (
            self.weights,
            self.kv_cache,
            self.activations,
            self.logits,
            self.gradients,
            self.optimizer,
            self.adapters,
        )


@dataclass(slots=True)  # see _RECORDS
class _Peak:
    """A stage's tensor terms at its peak, the moment, and the builder of their explanation
    (called only when `Estimate.terms` is read)."""

    components: Components
    moment: str
    explain: Callable[[], list[Term]]
    host: int = 0  # bytes kept in host memory (offloaded checkpoints and optimizer states)


# --- the architecture as the estimator sees it -------------------------------------------------

# Saved tensors of the MLP activation in training, in units of tokens x intermediate size:
# SwiGLU keeps gate, up, act(gate) and their product; GPT-2's tanh GELU written out in Python
# keeps its input, tanh, 1 + tanh, 0.5x and the output; OPT's ReLU keeps only its output;
# exact GELU keeps its input and output.
_MLP_SAVED: Mapping[MLPKind, int] = MappingProxyType(
    {
        MLPKind.gated: 4,
        MLPKind.gelu_new: 5,
        MLPKind.relu: 1,
        MLPKind.gelu: 2,
    }
)
# Live tensors at the peak of an inference MLP, in tokens x intermediate size: act(gate), up
# and their product; GPT-2's Python GELU holds four; a plain MLP its input and output.
_MLP_INFERENCE_LIVE: Mapping[MLPKind, int] = MappingProxyType(
    {
        MLPKind.gated: 3,
        MLPKind.gelu_new: 4,
        MLPKind.relu: 2,
        MLPKind.gelu: 2,
    }
)
# What a frozen MLP under LoRA keeps for the gradient flowing to its input (tokens x
# intermediate size): a frozen down projection saves no input, so SwiGLU keeps gate, up and
# act(gate); GPT-2's Python GELU its input, tanh, 1 + tanh and 0.5x; exact GELU its input;
# ReLU its output (which a bf16 adapter on the down projection then shares).
_LORA_MLP_SAVED: Mapping[MLPKind, int] = MappingProxyType(
    {
        MLPKind.gated: 3,
        MLPKind.gelu_new: 4,
        MLPKind.relu: 1,
        MLPKind.gelu: 1,
    }
)
# Saved per token and expert by a routed MLP in training: the expert's input and output
# (hidden size each) and gate, up, act(gate) and their product (expert width each).
MOE_SAVED_HIDDEN = 2
MOE_SAVED_FFN = 4
# Live per token and expert at the peak of a routed inference MLP: the gated tensors and the
# expert's input (the same reading as MOE_SAVED_FFN).
MOE_INFERENCE_LIVE_FFN = 4
# Hidden-size tensors alive across an inference MLP: the embedding output the model keeps,
# the residual, the attention output added to it and the normalized MLP input; LayerNorm
# models (GPT-2, OPT …) also keep the attention projection's output.
INFERENCE_HIDDEN_LIVE = 4
INFERENCE_HIDDEN_LIVE_LAYERNORM = 5
# Bytes per batch x head x seq^2 alive at the attention peak of an eager forward: the scores
# in the compute dtype, and softmax(dtype=float32)'s fp32 copy of its input and fp32 output
# (the copy is skipped when the scores are already fp32).
EAGER_SOFTMAX_FP32_BYTES = FP32_BYTES
# A boolean mask is 1 byte per element; SDPA's math kernel adds it as an fp32 additive mask.
BOOL_BYTES = 1
# Gemma-2 alternates full and sliding-window layers and builds one additive mask for each kind.
EAGER_MASKS = 2
# The rotary embedding's cos and sin tables, seq x head_dim each, built once per forward.
ROTARY_TABLES = 2
# The caches hold the sizes of this many distinct architectures (a sweep uses a few hundred).
_SHAPE_CACHE_SIZE = 4096


class _Shape(NamedTuple):
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
    mlp_kind: MLPKind
    layernorm: bool
    rope: bool
    norms_per_layer: int
    qk_norm: bool
    learned_positions: bool
    attention: AttentionKernel  # the attention path transformers takes under SDPA
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
    arch: Architecture  # what the sizes were derived from (a GGUF file type weighs its tensors)
    qkv_linear: bool  # q, k and v come out of one linear layer


class _Attention(NamedTuple):
    """Query and K/V widths, K/V elements cached per token and layer, and the kernel."""

    q_dim: int
    kv_dim: int
    kv_cache: int
    kernel: AttentionKernel
    alibi: bool


def _attention_shape(arch: Architecture, traits: ModelTraits) -> _Attention:
    q_dim = arch.num_attention_heads * arch.head_dim
    kv_dim = arch.num_key_value_heads * arch.head_dim
    kv_cache = 2 * kv_dim
    if arch.attention_kind is AttentionKind.mla:
        assert arch.qk_nope_head_dim is not None and arch.qk_rope_head_dim is not None
        assert arch.v_head_dim is not None
        # transformers caches the decompressed keys and values per head (not the latent).
        qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        kv_cache = arch.num_attention_heads * (qk + arch.v_head_dim)
        q_dim = kv_dim = arch.num_attention_heads * qk
    kernel = traits.attention
    alibi = bool(traits.alibi_option and arch.option(traits.alibi_option, False))
    if traits.kv_broadcast_option and arch.option(traits.kv_broadcast_option, False):
        # Falcon's new decoder layout broadcasts its KV heads to every query head before
        # caching them (modeling_falcon `_split_heads`, `num_kv_heads = num_heads`).
        kv_cache = 2 * q_dim
    elif traits.mqa_math_fallback and arch.num_key_value_heads < arch.num_attention_heads:
        # Multi-query keys and values reach SDPA with one head and no `enable_gqa`: no
        # fused kernel takes that, so PyTorch runs its math kernel.
        kernel = AttentionKernel.math
    return _Attention(q_dim, kv_dim, kv_cache, kernel, alibi)


def _lora_dims(
    arch: Architecture, traits: ModelTraits, q_dim: int, kv_dim: int
) -> Mapping[str, tuple[int, int]]:
    """(in, out) of each projection LoRA can adapt, among those the model type has."""
    h, f = arch.hidden_size, arch.intermediate_size
    dims = {
        "q_proj": (h, q_dim),
        "k_proj": (h, kv_dim),
        "v_proj": (h, kv_dim),
        "o_proj": (q_dim, h),
        "gate_proj": (h, f),
        "up_proj": (h, f),
        "down_proj": (f, h),
    }
    return MappingProxyType(
        {name: dims[name] for name in ALL_PROJECTIONS if name in traits.lora_targets}
    )


@functools.lru_cache(maxsize=_SHAPE_CACHE_SIZE)
def _shape(arch: Architecture) -> _Shape:
    """The sizes of `arch`, computed once per distinct architecture (sweeps reuse them)."""
    traits = arch.traits
    counts = count_params(arch)
    h = arch.hidden_size
    attention = _attention_shape(arch, traits)
    expert_ffn = arch.moe_intermediate_size or arch.intermediate_size
    mlp_matrix = (expert_ffn if traits.moe else arch.intermediate_size) * h
    largest = max(arch.vocab_size * h, mlp_matrix * (2 if traits.moe else 1), attention.q_dim * h)
    layernorm = traits.norm is Norm.layer
    per_channel = LAYERNORM_PARAMS_PER_CHANNEL if layernorm else RMSNORM_PARAMS_PER_CHANNEL
    norm_params = arch.num_hidden_layers * traits.norms_per_layer * h * per_channel
    return _Shape(
        layers=arch.num_hidden_layers,
        hidden=h,
        heads=arch.num_attention_heads,
        kv_heads=arch.num_key_value_heads,
        head_dim=arch.head_dim,
        q_dim=attention.q_dim,
        kv_dim=attention.kv_dim,
        ffn=arch.intermediate_size,
        vocab=arch.vocab_size,
        tied=arch.tie_word_embeddings,
        moe=traits.moe,
        experts_per_tok=arch.num_experts_per_tok or 0,
        expert_ffn=expert_ffn,
        shared_ffn=expert_ffn * (arch.n_shared_experts or 0),
        mlp_kind=traits.mlp,
        layernorm=layernorm,
        rope=traits.rotary and not attention.alibi,  # ALiBi replaces rotary embeddings
        norms_per_layer=traits.norms_per_layer,
        qk_norm=traits.qk_norm,
        learned_positions=traits.position_table_offset is not None,
        attention=attention.kernel,
        softcap=traits.softcap,
        fp32_norm=traits.fp32_norm,
        alibi=attention.alibi,
        always_mask=traits.always_mask,
        sliding_window=arch.sliding_window,
        sliding_layers=(
            0
            if arch.sliding_window is None
            else (arch.num_sliding_layers or arch.num_hidden_layers)
        ),
        fused_qkv=traits.fused_qkv_views,
        kv_cache_per_token_layer=attention.kv_cache,
        counts=counts,
        params=counts.total,
        largest_tensor=largest,
        linear_params=counts.layers - norm_params,
        lora_dims=_lora_dims(arch, traits, attention.q_dim, attention.kv_dim),
        arch=arch,
        qkv_linear=traits.qkv_linear,
    )


@functools.lru_cache(maxsize=_SHAPE_CACHE_SIZE)
def _shape_with(arch: Architecture, attention: Attention | None) -> _Shape:
    """The sizes of `arch` with the attention kernel `--attention` asks for.

    sdpa (or nothing asked): the model's own path under transformers' sdpa setting (Gemma-2
    stays eager, Falcon multi-query math). eager: `eager_attention_forward`, the seq x seq
    scores materialized. flash: FlashAttention-2, which takes grouped KV heads, sliding
    windows and ALiBi slopes natively and a padding mask as sequence lengths, so the model
    builds no mask tensor.
    """
    s = _shape(arch)
    if attention is None or attention is Attention.sdpa:
        return s
    if attention is Attention.eager:
        return s._replace(attention=AttentionKernel.eager)
    return s._replace(attention=AttentionKernel.flash, always_mask=False, alibi=False)


def _lora_targets(s: _Shape, w: Workload) -> tuple[str, ...]:
    """The workload's LoRA targets that exist in the model (PEFT skips the others); with
    `all-linear`, every linear layer of the block (`_all_linear_dims`)."""
    if w.lora_targets == (ALL_LINEAR,):
        return tuple(_all_linear_dims(s))
    found = tuple(t for t in w.lora_targets if t in s.lora_dims)
    if not found:
        raise InvalidValueError(
            "none of the LoRA targets " + ",".join(w.lora_targets) + " exist in this model; "
            "it has " + ",".join(s.lora_dims)
        )
    return found


def _target_dims(s: _Shape, w: Workload) -> Mapping[str, tuple[int, int]]:
    """(in, out) of each adapted projection, by the names `_lora_targets` gives."""
    if w.lora_targets == (ALL_LINEAR,):
        return _all_linear_dims(s)
    return {t: s.lora_dims[t] for t in _lora_targets(s, w)}


def _all_linear_dims(s: _Shape) -> dict[str, tuple[int, int]]:
    """(in, out) of every `nn.Linear` (GPT-2's `Conv1D`) of a block: what PEFT's
    `target_modules="all-linear"` adapts (peft/tuners/tuners_utils.py
    `_maybe_include_all_linear_layers`: every linear layer but the output head).

    Fused projections count as one (Phi-3's qkv_proj and gate_up_proj, GPT-NeoX's
    query_key_value); GPT-2, Falcon and BLOOM's fused query_key_value have the same sizes as
    separate q, k and v. A routed MLP's experts are 3-D parameters in transformers 5
    (`MixtralExperts.gate_up_proj`), not linear layers, and its router a plain parameter:
    PEFT adapts the attention and any shared expert's MLP only.
    """
    h = s.hidden
    dims = (
        {"qkv": (h, s.q_dim + 2 * s.kv_dim)}
        if s.qkv_linear
        else {"q_proj": (h, s.q_dim), "k_proj": (h, s.kv_dim), "v_proj": (h, s.kv_dim)}
    )
    dims["o_proj"] = (s.q_dim, h)
    if s.moe:
        if s.shared_ffn:
            dims.update(
                shared_gate=(h, s.shared_ffn),
                shared_up=(h, s.shared_ffn),
                shared_down=(s.shared_ffn, h),
            )
    elif s.mlp_kind is MLPKind.gated and s.fused_qkv:
        dims.update(gate_up=(h, 2 * s.ffn), down_proj=(s.ffn, h))
    elif s.mlp_kind is MLPKind.gated:
        dims.update(gate_proj=(h, s.ffn), up_proj=(h, s.ffn), down_proj=(s.ffn, h))
    else:
        dims.update(up_proj=(h, s.ffn), down_proj=(s.ffn, h))
    return dims


def _round(n: float) -> int:
    """Bytes of one allocation, rounded up to the allocator's granule."""
    whole = math.ceil(n)
    return -(-whole // ALLOCATION_GRANULE) * ALLOCATION_GRANULE


# --- precision ------------------------------------------------------------------------------


class _Bytes(NamedTuple):
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
    if fmt.exact_bytes is not None:
        return fmt.exact_bytes
    if fmt.rules is not None:
        return gguf_weights(s.arch, fmt.rules).total
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
    if s.attention is AttentionKernel.eager:
        upcast = EAGER_SOFTMAX_FP32_BYTES if c != FP32_BYTES else 0
        return _round(score_elements * c) + _round(score_elements * (upcast + FP32_BYTES))
    if s.attention is AttentionKernel.math:
        # PyTorch's math SDPA kernel upcasts 16-bit queries, keys and values to fp32
        # (`_scaled_dot_product_attention_math`, `allow_fp16_bf16_reduction_math_sdp` off by
        # default) and holds the fp32 scores and their fp32 softmax; the boolean mask is
        # added as an fp32 one
        mask = _round(score_elements // s.heads * FP32_BYTES) if s.always_mask else 0
        return 2 * _round(score_elements * FP32_BYTES) + mask
    return 0


def _model_masks(s: _Shape, batch: int, seq: int, c: int) -> int:
    """Masks the model builds once per forward, batch x (heads x) seq x seq."""
    total = 0
    sliding = s.sliding_window is not None and seq >= s.sliding_window
    if s.always_mask or (sliding and s.attention is AttentionKernel.sdpa):
        # Falcon's materialized causal mask; a sliding window's boolean mask once the context
        # reaches the window (SDPA's is_causal cannot express it).
        total += _round(batch * seq * seq * BOOL_BYTES)
    if s.alibi:
        # ALiBi: the causal mask rebuilt as a float mask per head with the biases folded in.
        total += _round(batch * s.heads * seq * seq * c)
    if s.attention is AttentionKernel.eager:
        # Gemma-2's full and sliding-window additive masks, in the compute dtype.
        total += EAGER_MASKS * _round(batch * seq * seq * c)
    return total


@dataclass(slots=True)  # see _RECORDS
class _InferenceActivations:
    bytes: int
    live_per_token: int  # the larger of the MLP's and the attention's live elements per token
    scores: int
    masks: int


def _inference_activations(s: _Shape, w: Workload, shard: _Shard, c: int) -> _InferenceActivations:
    """The forward pass's peak inside one layer, the hidden states kept across it, the
    model's masks and position tables."""
    n = w.batch * w.seq
    ffn_live = (
        s.experts_per_tok * (MOE_INFERENCE_LIVE_FFN * s.expert_ffn + s.hidden)
        if s.moe
        else _MLP_INFERENCE_LIVE[s.mlp_kind] * s.ffn
    )
    attn_live = 2 * s.q_dim + s.kv_cache_per_token_layer
    scores = _scores_live(s, w.batch * s.heads * w.seq * w.seq, c)
    masks = _model_masks(s, w.batch, w.seq, c)
    hidden = (INFERENCE_HIDDEN_LIVE_LAYERNORM if s.layernorm else INFERENCE_HIDDEN_LIVE) * s.hidden
    layer_peak = max(_round(n * ffn_live * c), _round(n * attn_live * c) + scores)
    act = math.ceil(layer_peak / shard.tp) + _round(n * hidden * c) + masks
    if s.rope:
        act += ROTARY_TABLES * _round(w.seq * s.head_dim * c)
    if s.learned_positions:
        act += _round(w.seq * s.hidden * c)  # the position embeddings of the context
    return _InferenceActivations(act, max(ffn_live, attn_live), scores, masks)


def _inference_terms(arch: Architecture, s: _Shape, w: Workload, shard: _Shard) -> _Peak:
    engine = w.serving.engine
    if engine is Engine.llama_cpp:
        return _llama_cpp_terms(arch, s, w, shard)
    if engine is Engine.vllm:
        return _vllm_terms(s, w, shard)
    return _transformers_terms(arch, s, w, shard)


def _transformers_terms(arch: Architecture, s: _Shape, w: Workload, shard: _Shard) -> _Peak:
    b = _PRECISION_BYTES[w.precision]
    # fp8 inference computes in 16 bit on fp8-stored weights.
    c = 2 if w.precision is Precision.fp8 or b.compute == 2 else b.compute
    default_weight = 1.0 if w.precision is Precision.fp8 else b.weight
    weights = shard.weights(_weight_bytes(s, w, default_weight))
    kv_elem = _kv_element_bytes(w, c)
    cached = _cached_tokens(arch, w.seq)
    kv = shard.kv(math.ceil(w.batch * cached * s.kv_cache_per_token_layer * kv_elem))
    act = _inference_activations(s, w, shard, c)
    logits = _round(w.batch * s.vocab * c) + _round(w.batch * s.vocab * FP32_BYTES)
    grads = optimizer = adapters = 0
    components = Components(weights, kv, act.bytes, logits, grads, optimizer, adapters)
    explain = functools.partial(
        _explain_inference, s, w, components, act, default_weight, cached, kv_elem, c
    )
    return _Peak(components, "forward pass over the context", explain)


def _explain_inference(
    s: _Shape,
    w: Workload,
    bytes_: Components,
    act: _InferenceActivations,
    default_weight: float,
    cached: int,
    kv_elem: float,
    c: int,
) -> list[Term]:
    return [
        Term(
            "weights",
            bytes_.weights,
            "params x bytes per weight" + (" (linear layers quantized)" if w.weight_format else ""),
            {
                "params": s.params,
                "bytes_per_weight": (
                    w.weight_format.bits_per_weight / 8 if w.weight_format else default_weight
                ),
            },
        ),
        Term(
            "kv_cache",
            bytes_.kv_cache,
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
            bytes_.activations,
            "the larger of the MLP peak and the attention peak (its seq x seq scores"
            " on eager/math paths) + 4 hidden states per token + the model's masks",
            {
                "tokens": w.batch * w.seq,
                "live_per_token": act.live_per_token,
                "attention_path": s.attention.value,
                "scores": act.scores,
                "masks": act.masks,
                "hidden": s.hidden,
                "bytes": c,
            },
        ),
        Term(
            "logits",
            bytes_.logits,
            "batch x vocab x (bytes + 4): last position's logits and their fp32 copy",
            {"batch": w.batch, "vocab": s.vocab},
        ),
    ]


# --- llama.cpp ------------------------------------------------------------------------------

# llama.cpp pads the context to a multiple of 256 KV cells (src/llama-context.cpp,
# `GGML_PAD(cparams.n_ctx, 256)`, ggml-org/llama.cpp at 4c7103b9).
LLAMA_CPP_CTX_PAD = 256
# ggml computes every intermediate tensor in fp32.
GGML_F32_BYTES = FP32_BYTES
# The KQ mask: fp16 for the flash-attention kernel, fp32 for the soft-max path.
LLAMA_CPP_MASK_BYTES_FA = 2
LLAMA_CPP_MASK_BYTES = FP32_BYTES
# Hidden-size fp32 tensors alive beside the attention: the layer's input (the residual), the
# normed input and the attention output; beside the MLP: the residual and the normed input;
# beside the output matmul: the final norm's output (ggml-alloc frees every tensor after its
# last consumer and runs soft-max, norms and element-wise ops in place).
LLAMA_CPP_ATTN_HIDDEN_LIVE = 3
LLAMA_CPP_FFN_HIDDEN_LIVE = 2
LLAMA_CPP_OUT_HIDDEN_LIVE = 1
# The MLP's fp32 intermediates alive at once: gate and up (SwiGLU's product runs in place).
LLAMA_CPP_FFN_LIVE = 2


class LlamaCppLayout(NamedTuple):
    """Where llama.cpp puts a model's bytes, for a split between GPU and system RAM.

    `host_embedding`: the input embedding, always in system RAM (src/llama-model.cpp keeps
    the input layer on the CPU); `layer_weights` and `layer_kv`: one repeating layer's
    weights and KV cache; `output_weights`: the output layer (the embedding duplicated when
    tied), llama.cpp's last offloadable layer; `compute`: the GPU's compute buffer.
    """

    layers: int
    host_embedding: int
    layer_weights: int
    layer_kv: int
    output_weights: int
    compute: int

    @property
    def total_layers(self) -> int:
        """What llama.cpp's `-ngl` counts: the repeating layers and the output layer."""
        return self.layers + 1

    def gpu_bytes(self, gpu_layers: int) -> int:
        """Tensor bytes on the GPU with `gpu_layers` of `total_layers` there."""
        repeating = min(gpu_layers, self.layers)
        output = self.output_weights if gpu_layers > self.layers else 0
        return repeating * (self.layer_weights + self.layer_kv) + output + self.compute

    def host_bytes(self, gpu_layers: int) -> int:
        """System RAM for the rest: the embedding, the CPU layers with their KV cache."""
        cpu = self.layers - min(gpu_layers, self.layers)
        output = 0 if gpu_layers > self.layers else self.output_weights
        return self.host_embedding + cpu * (self.layer_weights + self.layer_kv) + output


def _llama_cpp_context(w: Workload) -> int:
    """KV cells llama.cpp allocates: the context of every parallel sequence, padded."""
    cells = w.batch * w.seq
    return -(-cells // LLAMA_CPP_CTX_PAD) * LLAMA_CPP_CTX_PAD


def _llama_cpp_kv_cells(s: _Shape, w: Workload) -> tuple[int, int, int]:
    """(full-context layers, sliding-window layers, cells of a sliding-window layer).

    llama.cpp keeps a second, smaller cache for the sliding-window layers of the types it
    runs as such: min(n_ctx, pad(n_swa + n_ubatch, 256)) cells per sequence
    (src/llama-kv-cache-iswa.cpp `size_swa`; the full-size cache only with `--swa-full`, off
    by default: common/common.h `swa_full = false`), ggml-org/llama.cpp at 007dbbf3."""
    n_kv = _llama_cpp_context(w)
    window = s.arch.sliding_window
    if window is None or not GGUF_ARCHS[s.arch.model_type].swa or not s.sliding_layers:
        return s.layers, 0, n_kv
    per_seq = -(-(window + w.serving.ubatch) // LLAMA_CPP_CTX_PAD) * LLAMA_CPP_CTX_PAD
    return s.layers - s.sliding_layers, s.sliding_layers, min(n_kv, w.batch * per_seq)


def _llama_cpp_kv_per_token_layer(s: _Shape) -> int:
    """K and V elements llama.cpp caches per token and layer. Multi-head latent attention
    (DeepSeek) caches the compressed latent and the rotary key, kv_lora_rank + rope dims,
    as K, and V as a view of it (src/llama-model.cpp deepseek2: `n_embd_head_k_mla`; the log
    prints "V (f16): 0.00 MiB"); every other type its K and V heads."""
    a = s.arch
    if a.kv_lora_rank is not None and a.qk_rope_head_dim is not None:
        return a.kv_lora_rank + a.qk_rope_head_dim
    return s.kv_cache_per_token_layer


def _llama_cpp_compute(s: _Shape, w: Workload, n_kv: int) -> int:
    """The compute buffer: the peak of live fp32 tensors of the worst-case graph, one
    micro-batch of min(n_ctx, n_ubatch) tokens, every one an output, over a full KV cache."""
    n = min(n_kv, w.serving.ubatch)
    f = GGML_F32_BYTES
    output = n * (s.vocab + LLAMA_CPP_OUT_HIDDEN_LIVE * s.hidden) * f
    ffn_width = s.experts_per_tok * s.expert_ffn if s.moe else s.ffn
    ffn = n * (LLAMA_CPP_FFN_LIVE * ffn_width + LLAMA_CPP_FFN_HIDDEN_LIVE * s.hidden) * f
    hidden = n * LLAMA_CPP_ATTN_HIDDEN_LIVE * s.hidden * f
    if w.serving.flash_attention:
        # The fused kernel never materializes the scores: the mask and its output remain.
        attention = n * n_kv * LLAMA_CPP_MASK_BYTES_FA + n * s.q_dim * f + hidden
    else:
        # KQ (n_kv x n_tokens x heads, fp32; soft-max in place) and the fp32 mask.
        attention = n * n_kv * (s.heads * f + LLAMA_CPP_MASK_BYTES) + hidden
    return max(output, ffn, attention)


def _gguf_split(s: _Shape, fmt: WeightFormat | None) -> GGUFWeights | None:
    """A GGUF file's tensors weighed: the file's own, or its file type's rules applied."""
    if fmt is None:
        return None
    if fmt.gguf is not None:
        return fmt.gguf
    if fmt.rules is not None and fmt.exact_bytes is None:
        return gguf_weights(s.arch, fmt.rules)
    return None


def llama_cpp_layout(arch: Architecture, w: Workload) -> LlamaCppLayout:
    """The bytes llama.cpp places for `w` on a model of `arch` (one GPU)."""
    s = _shape(arch)
    b = _PRECISION_BYTES[w.precision]
    fmt = w.weight_format
    total = _weight_bytes(s, w, b.weight)
    tensors = _gguf_split(s, fmt)
    if tensors is not None:
        # The token embedding and output layer in the types the file gives them.
        embedding = tensors.token_embd
        output = embedding if s.tied else tensors.output
    else:
        per_weight = fmt.bits_per_weight / 8 if fmt is not None and fmt.scope == "all" else 2
        if fmt is None:
            per_weight = b.weight
        embedding = math.ceil(s.vocab * s.hidden * per_weight)
        output = embedding if s.tied else math.ceil(s.counts.output_head * per_weight)
    layers_total = total - embedding - (0 if s.tied else output)
    n_kv = _llama_cpp_context(w)
    full, sliding, swa_cells = _llama_cpp_kv_cells(s, w)
    kv_elem = KV_BYTES_PER_ELEMENT[w.kv_dtype or KVDtype.fp16]
    cells = full * n_kv + sliding * swa_cells  # cells over all layers
    return LlamaCppLayout(
        layers=s.layers,
        host_embedding=embedding,
        layer_weights=math.ceil(layers_total / s.layers),
        layer_kv=math.ceil(cells * _llama_cpp_kv_per_token_layer(s) * kv_elem / s.layers),
        output_weights=output,
        compute=_llama_cpp_compute(s, w, n_kv),
    )


def _llama_cpp_terms(arch: Architecture, s: _Shape, w: Workload, shard: _Shard) -> _Peak:
    """Every layer on the GPU (llama.cpp's `-ngl` at its maximum); layers split over several
    GPUs by rows of layers (llama.cpp's default `--split-mode layer`)."""
    layout = llama_cpp_layout(arch, w)
    weights = shard.weights(layout.layers * layout.layer_weights + layout.output_weights)
    kv = shard.kv(layout.layers * layout.layer_kv)
    components = Components(weights, kv, layout.compute, 0, 0, 0, 0)
    explain = functools.partial(_explain_llama_cpp, s, w, layout, components)
    return _Peak(components, "llama.cpp worst-case graph (one micro-batch)", explain)


def _explain_llama_cpp(
    s: _Shape, w: Workload, layout: LlamaCppLayout, bytes_: Components
) -> list[Term]:
    kv_dtype = w.kv_dtype or KVDtype.fp16
    return [
        Term(
            "weights",
            bytes_.weights,
            "the GGUF file's layers and output layer; the input embedding stays in system RAM",
            {"host_embedding": layout.host_embedding, "output_layer": layout.output_weights},
        ),
        Term(
            "kv_cache",
            bytes_.kv_cache,
            "layers x n_ctx (padded to 256) x (K + V elements per token) x bytes; "
            "sliding-window layers hold min(n_ctx, window + n_ubatch) cells",
            {
                "layers": layout.layers,
                "n_ctx": _llama_cpp_context(w),
                "sliding_layers": _llama_cpp_kv_cells(s, w)[1],
                "sliding_cells": _llama_cpp_kv_cells(s, w)[2],
                "kv_elements_per_token": _llama_cpp_kv_per_token_layer(s),
                "kv_dtype": kv_dtype_name(Engine.llama_cpp, kv_dtype),
            },
        ),
        Term(
            "activations",
            bytes_.activations,
            "compute buffer: the largest of the output (logits), attention and MLP phases of "
            "one micro-batch, fp32",
            {
                "n_ubatch": w.serving.ubatch,
                "flash_attention": str(w.serving.flash_attention),
                "vocab": s.vocab,
            },
        ),
    ]


# --- vLLM -----------------------------------------------------------------------------------

# vLLM stores the KV cache in blocks of 16 tokens (CacheConfig block_size default).
VLLM_BLOCK_TOKENS = 16
# Per-element bytes of the sampler in the profile run, beside the logits in the compute dtype:
# their fp32 copy and the fp32 probabilities (one row per scheduled sequence).
VLLM_SAMPLER_FP32_COPIES = 2
# Memory CUDA graph capture takes: 0.21 GiB for Llama-3.2-1B in vLLM's own log
# ("Graph capturing finished in 14 secs, took 0.21 GiB", vllm-project/vllm PR #11349).
VLLM_CUDA_GRAPH_BYTES = round(0.21 * GIB)


def _vllm_kv_per_seq(s: _Shape, w: Workload, c: int) -> float:
    """KV bytes of one sequence of the context, in whole blocks."""
    blocks = -(-w.seq // VLLM_BLOCK_TOKENS)
    per_token = s.layers * s.kv_cache_per_token_layer * _kv_element_bytes(w, c)
    return blocks * VLLM_BLOCK_TOKENS * per_token


def _vllm_terms(s: _Shape, w: Workload, shard: _Shard) -> _Peak:
    """The KV cache of `batch` sequences of the context, the weights, and the profile run's
    peak: a forward pass over max_num_batched_tokens tokens and the sampler over max_num_seqs
    rows."""
    b = _PRECISION_BYTES[w.precision]
    c = 2 if w.precision is Precision.fp8 or b.compute == 2 else b.compute
    default_weight = 1.0 if w.precision is Precision.fp8 else b.weight
    weights = shard.weights(_weight_bytes(s, w, default_weight))
    kv = shard.kv(math.ceil(w.batch * _vllm_kv_per_seq(s, w, c)))
    n = w.serving.max_batched_tokens
    ffn_live = (
        s.experts_per_tok * (MOE_INFERENCE_LIVE_FFN * s.expert_ffn + s.hidden)
        if s.moe
        else _MLP_INFERENCE_LIVE[s.mlp_kind] * s.ffn
    )
    attn_live = 2 * s.q_dim + s.kv_cache_per_token_layer
    layer_peak = _round(n * max(ffn_live, attn_live) * c)
    act = math.ceil(layer_peak / shard.tp) + _round(n * INFERENCE_HIDDEN_LIVE * s.hidden * c)
    rows = w.serving.max_seqs
    logits = _round(rows * s.vocab * c) + VLLM_SAMPLER_FP32_COPIES * _round(
        rows * s.vocab * FP32_BYTES
    )
    components = Components(weights, kv, act, logits, 0, 0, 0)
    explain = functools.partial(_explain_vllm, s, w, components, c)
    return _Peak(components, "vLLM profile run + KV cache for the context", explain)


def _explain_vllm(s: _Shape, w: Workload, bytes_: Components, c: int) -> list[Term]:
    return [
        Term(
            "weights",
            bytes_.weights,
            "params x bytes per weight" + (" (linear layers quantized)" if w.weight_format else ""),
            {"params": s.params},
        ),
        Term(
            "kv_cache",
            bytes_.kv_cache,
            "batch x blocks of 16 tokens covering the context x layers x KV elements x bytes",
            {"batch": w.batch, "seq": w.seq, "block_tokens": VLLM_BLOCK_TOKENS},
        ),
        Term(
            "activations",
            bytes_.activations,
            "profile run: max_num_batched_tokens x (the larger of the MLP and attention "
            "peaks + 4 hidden states) x bytes",
            {"max_num_batched_tokens": w.serving.max_batched_tokens, "bytes": c},
        ),
        Term(
            "logits",
            bytes_.logits,
            "profile run's sampler: max_num_seqs x vocab x (bytes + 8)",
            {"max_num_seqs": w.serving.max_seqs, "vocab": s.vocab},
        ),
    ]


class KVPool(NamedTuple):
    """vLLM's KV cache on one card: the blocks left once the rest is placed, and how many
    sequences of the context they hold (vLLM's "Maximum concurrency for N tokens per
    request")."""

    pool_bytes: int
    blocks: int
    tokens: int
    max_concurrency: float


def vllm_kv_pool(est: Estimate, budget: int) -> KVPool:
    """The KV pool of a vLLM estimate on a card whose engine budget is `budget` bytes
    (gpu_memory_utilization x the card): the budget less everything but the KV cache."""
    w = est.workload
    blocks_per_seq = -(-w.seq // VLLM_BLOCK_TOKENS)
    kv = est.components["kv_cache"]
    block_bytes = kv / (w.batch * blocks_per_seq)
    pool = max(0, budget - (est.per_gpu_bytes - kv))
    blocks = math.floor(pool / block_bytes)
    tokens = blocks * VLLM_BLOCK_TOKENS
    return KVPool(pool_bytes=pool, blocks=blocks, tokens=tokens, max_concurrency=tokens / w.seq)


# --- training -------------------------------------------------------------------------------


@dataclass(slots=True)  # see _RECORDS
class _Trainable:
    params: int  # trainable parameters of the base model
    adapter_params: int
    layers_with_grad: int  # layers whose activations are saved for backward
    embedding_trainable: bool


def _lora_params(s: _Shape, w: Workload) -> int:
    """A and B of every adapted projection; DoRA adds a magnitude vector (one value per
    output feature: PEFT's `lora_magnitude_vector`)."""
    dims = _target_dims(s, w).values()
    per_layer = sum(w.lora_rank * (i + o) for i, o in dims)
    if w.method is Method.dora:
        per_layer += sum(o for _, o in dims)
    return per_layer * s.layers


def _trainable(s: _Shape, w: Workload) -> _Trainable:
    if w.adapters:
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
    if s.attention is AttentionKernel.flash:
        return 0  # FlashAttention-2 takes the padding as sequence lengths, windows natively
    if w.with_attention_mask or s.always_mask:
        return layers
    if s.sliding_window and w.seq >= s.sliding_window:
        return min(s.sliding_layers, layers)
    return 0


def _attention_saved(s: _Shape, c: int, mask: bool) -> tuple[float, float]:
    """(bytes per token, bytes per batch x seq^2) one layer's attention saves for backward."""
    # Keys and values reach the kernel expanded to every query head when a mask is given.
    kv = s.q_dim if mask and s.kv_heads < s.heads else s.kv_dim
    if s.attention is AttentionKernel.eager:
        # q, the keys and values expanded to every head by `repeat_kv` (the matmuls save
        # them), the output before o_proj; per head: the soft-capped logits' tanh, softmax's
        # fp32 output and its cast back that multiplies the values.
        kv = s.q_dim if s.kv_heads < s.heads else s.kv_dim
        attn = (2 * s.q_dim + 2 * kv) * c
        score = (c if s.softcap else 0) + FP32_BYTES + c
        per_seq_sq = s.heads * score
    elif s.attention is AttentionKernel.math:
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
    return attn, per_seq_sq


def _mlp_saved(s: _Shape, c: int, lora: bool) -> int:
    """Bytes per token one layer's MLP saves for backward."""
    if s.moe:
        k = s.experts_per_tok
        return (
            k * (MOE_SAVED_HIDDEN * s.hidden + MOE_SAVED_FFN * s.expert_ffn) * c
            + MOE_SAVED_FFN * s.shared_ffn * c
        )
    if lora:
        return _LORA_MLP_SAVED[s.mlp_kind] * s.ffn * c  # frozen linears save no inputs
    return _MLP_SAVED[s.mlp_kind] * s.ffn * c


def _layer_saved(s: _Shape, b: _Bytes, w: Workload, mask: bool) -> tuple[float, float]:
    """(bytes per token, bytes per batch x seq^2) one layer saves for backward; `mask`: its
    attention gets a mask tensor."""
    lora = w.adapters
    attn, per_seq_sq = _attention_saved(s, b.compute, mask)
    mlp = _mlp_saved(s, b.compute, lora)
    if lora:
        norms = s.norms_per_layer * _norm_saved(s, b, 1, frozen=True)
        return attn + mlp + _adapters_saved(s, w, b.compute) + norms, per_seq_sq
    norms = (
        _norm_saved(s, b, 3, frozen=False)
        + _norm_saved(s, b, 2, frozen=False)
        + (s.norms_per_layer - 2) * _norm_saved(s, b, 0, frozen=False)
    )
    return attn + mlp + norms, per_seq_sq


# The input each PEFT projection's adapter reads, by the tensor it shares with the others:
# q, k and v read the attention norm's output, gate and up the MLP norm's; o_proj reads the
# attention output and down_proj the MLP's product (transformers' Llama-style blocks).
_ADAPTER_INPUT: Mapping[str, str] = MappingProxyType(
    {
        "q_proj": "attention input",
        "k_proj": "attention input",
        "v_proj": "attention input",
        "qkv": "attention input",
        "o_proj": "attention output",
        "gate_proj": "mlp input",
        "up_proj": "mlp input",
        "gate_up": "mlp input",
        "down_proj": "mlp product",
        "shared_gate": "mlp input",
        "shared_up": "mlp input",
        "shared_down": "shared expert product",
    }
)


def _adapters_saved(s: _Shape, w: Workload, c: int) -> int:
    """Bytes per token one layer's adapters save for backward (PEFT's `Linear.forward`).

    lora_A saves its input: in the adapter dtype, a copy per adapter when that differs from
    the compute dtype (`_cast_input_dtype`: fp32 adapters on a 16-bit base), else the
    projection's own input, one per distinct tensor (q, k, v share theirs). lora_B saves the
    rank-r hidden state. DoRA (`DoraLinearLayer.forward`) also keeps the base projection's
    output (compute dtype) and the adapter's output (adapter dtype) for the magnitude's
    products: out x (c + a) per adapted projection.
    """
    a = ADAPTER_BYTES[w.adapter_dtype]
    dims = _target_dims(s, w)
    if a == c:
        shared = {_ADAPTER_INPUT[t]: fan_in for t, (fan_in, _) in dims.items()}
        if s.mlp_kind is MLPKind.relu:
            shared.pop("mlp product", None)  # ReLU already saves its output
        inputs = sum(shared.values()) * a
    else:
        inputs = sum(fan_in for fan_in, _ in dims.values()) * a
    saved = inputs + len(dims) * w.lora_rank * a
    if w.method is Method.dora:
        saved += sum(fan_out for _, fan_out in dims.values()) * (c + a)
    return saved


@dataclass(slots=True)  # see _RECORDS
class _OptimizerMemory:
    """An optimizer's states by where they live, and its step's temporaries on the GPU."""

    gpu: int  # states on the GPU through the step (in PyTorch's allocator)
    paged: int  # bitsandbytes paged states (unified memory, spilled to host under pressure)
    step_temp: int  # the step's temporaries (a paged optimizer: one tensor's prefetched states)


def _param_tensors(s: _Shape, w: Workload) -> list[tuple[int, int, int]]:
    """The trainable tensors as (rows, cols, count), cols 0 for a vector: what per-tensor
    optimizer rules (bitsandbytes' size thresholds, Adafactor's factoring) read.

    Adapters: A (r x in) and B (out x r) per target and layer, and DoRA's magnitude vector.
    Full and freeze: the embedding and head (V x h), each trained layer's projections and
    MLP matrices (a routed MLP's experts as expert-width matrices) and the rest of its
    parameters as hidden-size vectors (norms, biases).
    """
    if w.adapters:
        tensors: list[tuple[int, int, int]] = []
        for fan_in, fan_out in _target_dims(s, w).values():
            tensors += [(w.lora_rank, fan_in, s.layers), (fan_out, w.lora_rank, s.layers)]
            if w.method is Method.dora:
                tensors.append((fan_out, 0, s.layers))
        return tensors
    layers = s.layers if w.trainable_layers is None else min(w.trainable_layers, s.layers)
    tensors = [(rows, cols, count * layers) for rows, cols, count in _layer_tensors(s)]
    head = s.counts.output_head
    if w.method is Method.full:
        tensors.append((s.vocab, s.hidden, 1))
        extra = s.counts.embedding - s.vocab * s.hidden  # a learned position table
        if extra > 0:
            tensors.append((extra // s.hidden, s.hidden, 1))
    if head:
        tensors.append((s.vocab, s.hidden, 1))
    if s.counts.final_norm:
        tensors.append((s.counts.final_norm, 0, 1))
    return tensors


def _layer_tensors(s: _Shape) -> list[tuple[int, int, int]]:
    """One decoder layer's tensors as (rows, cols, count): see `_param_tensors`."""
    h = s.hidden
    per_layer = s.counts.layers // s.layers
    mats = [(s.q_dim + 2 * s.kv_dim, h, 1)] if s.fused_qkv else [(s.q_dim, h, 1), (s.kv_dim, h, 2)]
    mats.append((h, s.q_dim, 1))
    if s.moe:
        attention = sum(r * c * n for r, c, n in mats)
        mats.append((s.expert_ffn, h, max(0, per_layer - attention) // (s.expert_ffn * h)))
    elif s.mlp_kind is MLPKind.gated:
        mats += [(2 * s.ffn, h, 1)] if s.fused_qkv else [(s.ffn, h, 2)]
        mats.append((h, s.ffn, 1))
    else:
        mats += [(s.ffn, h, 1), (h, s.ffn, 1)]
    rest = per_layer - sum(r * c * n for r, c, n in mats)
    if rest < 0:  # a layout these shapes do not describe (MLA): hidden-size rows instead
        mats, rest = [(per_layer // h, h, 1)], per_layer % h
    vectors = [(h, 0, rest // h)] if rest >= h else []
    if rest % h:
        vectors.append((rest % h, 0, 1))
    return mats + vectors


def _bnb_states(
    tensors: list[tuple[int, int, int]], opt: Optimizer
) -> tuple[_OptimizerMemory, int]:
    """bitsandbytes' AdamW states (8-bit or 32-bit, paged or not), and the largest paged
    tensor's states (the step prefetches one tensor's at a time)."""
    paged_kind = opt in (Optimizer.paged_adamw_8bit, Optimizer.paged_adamw_32bit)
    gpu = paged = biggest = 0
    for rows, cols, count in tensors:
        n = rows * cols if cols else rows
        if opt is Optimizer.paged_adamw_32bit or n < EIGHT_BIT_MIN_SIZE:
            states, absmax = ADAM_STATES * n * FP32_BYTES, 0
        else:
            states = ADAM_STATES * n * EIGHT_BIT_STATE_BYTES
            absmax = ADAM_STATES * -(-n // EIGHT_BIT_BLOCK) * FP32_BYTES
        if paged_kind and n >= PAGED_MIN_SIZE:
            paged += count * states
            gpu += count * absmax
            biggest = max(biggest, states)
        else:
            gpu += count * (states + absmax)
    return _OptimizerMemory(gpu, paged, 0), biggest


def _optimizer_memory(
    s: _Shape, w: Workload, trainable: int, state: int, grad: int, largest: int
) -> _OptimizerMemory:
    """The states of `w.optimizer` over `trainable` parameters (`state` bytes each where the
    optimizer keeps the parameters' dtype) and the step's temporaries on the `largest`
    trainable tensor: PyTorch's single-tensor AdamW makes sqrt(v) and its bias-corrected
    quotient; Lion one update tensor; Adafactor its fp32 buffers (see the constants)."""
    opt = w.optimizer
    if opt is Optimizer.adamw:
        return _OptimizerMemory(trainable * ADAM_STATES * state, 0, 2 * _round(largest * state))
    if opt in (Optimizer.adamw_8bit, Optimizer.paged_adamw_8bit, Optimizer.paged_adamw_32bit):
        memory, biggest_paged = _bnb_states(_param_tensors(s, w), opt)
        memory.step_temp = _round(biggest_paged)
        return memory
    if opt is Optimizer.adafactor:
        states = sum(
            count * (rows + cols if cols else rows) for rows, cols, count in _param_tensors(s, w)
        )
        copies = ADAFACTOR_STEP_FP32_COPIES + (1 if grad < FP32_BYTES else 0)
        return _OptimizerMemory(states * FP32_BYTES, 0, copies * _round(largest * FP32_BYTES))
    if opt is Optimizer.lion:
        return _OptimizerMemory(trainable * MOMENTUM_STATES * state, 0, _round(largest * state))
    if opt is Optimizer.sgd_momentum:
        return _OptimizerMemory(trainable * MOMENTUM_STATES * state, 0, 0)
    return _OptimizerMemory(0, 0, 0)


@dataclass(slots=True)  # see _RECORDS
class _Shard:
    """Divides each term among GPUs as the strategy does.

    Inference (tp, pp): weights and KV cache over `gpus`, per-layer activations over `tp`.
    Training: each GPU holds a slice of the model, `num / den` of its parameters (its pipeline
    stage's parameters over the tensor-parallel degree `tp`), and ZeRO shards that slice's
    weights (stage 3), gradients (2, 3) and optimizer states (1, 2, 3) over `ranks` GPUs (the
    data-parallel x context-parallel ranks: torchtitan's `dp_shard_cp` mesh). A pipeline
    card holds `stage_layers` layers in `chunks` stages (2 under an interleaved schedule) and
    `in_flight` micro-batches' activations of one such stage; `first` and `last` say whether
    it holds the embedding and the output head (and so the loss).
    """

    gpus: int
    strategy: Parallel
    tp: int = 1
    num: int = 1
    den: int = 1
    ranks: int = 1
    cp: int = 1
    pp: int = 1
    stage_layers: int = 0
    in_flight: int = 1
    chunks: int = 1
    first: bool = True
    last: bool = True

    def slice(self, n: int) -> int:
        """This GPU's slice of `n` bytes of the whole model, before ZeRO sharding."""
        if self.num == self.den:
            return n
        return -(-n * self.num // self.den)

    def weights(self, n: int) -> int:
        if self.strategy in (Parallel.tp, Parallel.pp):
            return math.ceil(n / self.gpus)
        n = self.slice(n)
        if self.strategy is Parallel.zero3:
            return math.ceil(n / self.ranks)
        return n

    def spread(self, n: int, sharded: bool) -> int:
        """`n` bytes of one tensor split over the tensor-parallel GPUs, and over the ZeRO
        ranks when `sharded`."""
        return math.ceil(n / (self.tp * (self.ranks if sharded else 1)))

    def kv(self, n: int) -> int:
        if self.strategy in (Parallel.tp, Parallel.pp):
            return math.ceil(n / self.gpus)
        return n

    def grads(self, n: int) -> int:
        n = self.slice(n)
        if self.strategy in (Parallel.zero2, Parallel.zero3):
            return math.ceil(n / self.ranks)
        return n

    def states(self, n: int) -> int:
        n = self.slice(n)
        if self.strategy in ZERO_STRATEGIES:
            return math.ceil(n / self.ranks)
        return n


# Context parallelism splits each sequence into 2 x cp chunks, each GPU taking one from the
# head and one from the tail so causal attention's work is balanced: the sequence must divide
# evenly (PyTorch `_HeadTailLoadBalancer`: `assert seq_length % (cp_world_size * 2) == 0`,
# torch/distributed/tensor/experimental/_load_balancer.py).
CP_SEQ_CHUNKS = 2
# Valid tensor-parallel degrees listed in an error: up to 64, beyond any one machine.
MAX_TP_SHOWN = 64
# Norm outputs all-gathered over the tensor-parallel GPUs per layer and saved whole: the
# attention's input (to q/k/v) and the MLP's (to gate/up), torchtitan's `apply_tp` plan
# (`PrepareModuleInput(desired_input_layouts=Replicate())`).
TP_GATHERED_INPUTS = 2
# FSDP2 blocks gathered at once besides the root: in forward, the last block (torchtitan's
# `reshard_after_forward=False` for it) at the start of backward; in backward, the block
# running and the one prefetched (FSDP2's implicit backward prefetch), torchtitan
# torchtitan/parallelisms/parallelize_llama.py `apply_fsdp` at ba24697 (2024-12-19).
FSDP_FORWARD_BLOCKS = 1
FSDP_BACKWARD_BLOCKS = 2


# The moments a training step can peak at (see the module docstring).
START_OF_BACKWARD = "start of backward"
END_OF_BACKWARD = "end of backward"
FIRST_LAYER_BACKWARD = "backward of the first layer"
OPTIMIZER_STEP = "optimizer step"
# --optimizer-in-backward: the first parameter's step (the output head's, in a full
# fine-tune) runs while every saved activation, the held logits and autocast's weight
# copies are alive; the estimate charges it with the largest tensor's gradient and step.
STEP_IN_BACKWARD = "optimizer step in backward"


@dataclass(slots=True)  # see _RECORDS
class _TrainingState:
    """Bytes per GPU of the weights, gradients and optimizer of a training step."""

    weights: int
    cast: int  # autocast's 16-bit copy of the linear weights, held for backward
    adapters: int
    trainable: int  # parameters the optimizer updates
    grad_bytes: int
    grads: int
    state_bytes: int
    states: int
    step_temp: int  # the optimizer step's temporaries
    tied_accumulate: int  # the tied embedding's two gradients summed at the end of backward
    host: int  # optimizer states (and offloaded weights and gradients) in host memory
    step_in_backward: bool  # --optimizer-in-backward: the steps run during backward
    # ZeRO-3/FSDP during backward: the units gathered (weights) and the unsharded gradients
    # with the reduce-scatter buffer of the unit being reduced (gradients); 0 otherwise.
    gathered: int = 0
    reduce: int = 0
    reduce_end: int = 0  # the root unit's, at the end of backward


@dataclass(slots=True)  # see _RECORDS
class _Saved:
    """Activations saved for backward, bytes per GPU."""

    total: int  # every layer's, at the start of backward
    one_layer: int  # one layer's (recomputed with checkpointing), during its backward
    layers: int
    masked: int  # layers whose attention gets a mask tensor
    per_token: float
    per_seq_sq: float
    host: int  # checkpoints offloaded to host memory


@dataclass(slots=True)  # see _RECORDS
class _TrainingLogits:
    held: int  # the model's logits, held by the caller through backward
    log_softmax: int  # what the loss keeps for backward (unfused: its fp32 log-softmax output)
    loss_grads: int  # the loss's gradients at the start of backward (fused: one chunk's logits)
    dtype_bytes: int


def _training_weights(s: _Shape, w: Workload, b: _Bytes) -> int:
    """The model in its dtype; a QLoRA base in its 4-bit format."""
    if w.method is Method.qlora:
        return _weight_bytes(s, w, 2)
    if w.adapters and b.cast:
        return s.params * 2
    return math.ceil(s.params * b.weight)


def _largest_trainable(s: _Shape, w: Workload) -> int:
    """Values of the largest trainable tensor (an adapter's A or B, else the largest matrix)."""
    if w.adapters:
        return max(w.lora_rank * max(dims) for dims in _target_dims(s, w).values())
    return s.largest_tensor


def _training_state(
    s: _Shape, w: Workload, shard: _Shard, b: _Bytes, tr: _Trainable
) -> _TrainingState:
    lora = w.adapters
    adapter_bytes = ADAPTER_BYTES[w.adapter_dtype] if lora else 0
    grad_bytes = adapter_bytes if lora else b.grad
    state_bytes = adapter_bytes if lora else b.state
    trainable = tr.adapter_params if lora else tr.params
    largest = _largest_trainable(s, w)
    memory = _optimizer_memory(s, w, trainable, state_bytes, grad_bytes, largest)
    states = shard.states(memory.gpu)
    step_temp = memory.step_temp
    host = shard.states(memory.paged)
    tied_accumulate = 0
    if tr.embedding_trainable and s.tied:
        # The output head's and the embedding's gradients of the tied matrix, summed at the
        # end of backward; the sum becomes .grad, or, when gradients accumulate, is one more
        # buffer added into the gradient held from the earlier micro-batches.
        buffers = TIED_GRADIENTS + (1 if w.accumulates else 0)
        tied_accumulate = shard.grads(buffers * _round(s.vocab * s.hidden * b.grad))
    weights = shard.weights(_training_weights(s, w, b))
    cast = _autocast_copy(s, w, b, shard) if b.cast and not lora else 0
    adapters = tr.adapter_params * adapter_bytes
    grads = shard.grads(trainable * grad_bytes)
    if w.optimizer_in_backward:
        # torchtune's `register_optim_in_bwd_hooks`: each parameter's step runs in its
        # post-accumulate-grad hook and frees its gradient, so one gradient (at most the
        # largest tensor's) exists at a time, beside that step's temporaries.
        grads = _round(largest * grad_bytes)
    if w.offload is not TrainingOffload.none:
        host = shard.states(memory.gpu + memory.paged)
        states = step_temp = 0  # the step runs on the CPU (DeepSpeedCPUAdam)
        if cast:
            # ZeRO-Offload keeps the fp32 master weights and gradients with the optimizer on
            # the host; the GPU runs the 16-bit model and reduces 16-bit gradients.
            host += shard.states(math.ceil(trainable * (b.weight + b.grad)))
            weights = shard.weights(s.params * b.cast)
            grads = shard.grads(trainable * b.cast)
            cast = 0
    if w.offload is TrainingOffload.optimizer_params:
        weights, grads, moved = _offloaded_params(s, w, shard, b, trainable, weights, grads)
        host += moved
    return _TrainingState(
        weights,
        cast,
        adapters,
        trainable,
        grad_bytes,
        grads,
        state_bytes,
        states,
        step_temp,
        tied_accumulate,
        host,
        w.optimizer_in_backward,
    )


def _offloaded_params(
    s: _Shape, w: Workload, shard: _Shard, b: _Bytes, trainable: int, weights: int, grads: int
) -> tuple[int, int, int]:
    """GPU weights, GPU gradients and the host bytes they leave for, with parameters offloaded
    (FSDP's layout: the host holds each parameter once, in its stored dtype, fp32 under mixed
    precision, where the previous step already counted it with the optimizer; DeepSpeed also
    keeps a 16-bit partition there). The GPU gathers `OFFLOAD_GATHERED_UNITS` units (a layer,
    or the embedding or head when larger) and holds one unit's gradients."""
    unit = max(s.counts.layers // s.layers, s.vocab * s.hidden)
    stored = _training_weights(s, w, b)
    per_weight = b.cast or stored / s.params  # gathered in the compute dtype (QLoRA: 4-bit)
    mixed = bool(b.cast) and not w.adapters
    moved = 0 if mixed else weights
    gpu_weights = OFFLOAD_GATHERED_UNITS * _round(unit * per_weight)
    if w.adapters:
        return gpu_weights, grads, moved  # the adapters' gradients stay (a few MB)
    if not mixed:
        moved += grads
    gpu_grads = OFFLOAD_GRADIENT_UNITS * _round(min(unit, trainable) * (b.cast or b.grad))
    return gpu_weights, gpu_grads, moved


def _autocast_copy(s: _Shape, w: Workload, b: _Bytes, shard: _Shard) -> int:
    """The 16-bit working copies of the weights held for backward: every linear weight's and
    the output head's. Autocast's cache of casted weights is emptied when the forward leaves
    its autocast region; after that only the copies autograd saved for backward live, and a
    checkpointed layer saves none (its forward reruns, casts and all, in backward): then only
    the output head's stays."""
    if _autocast_checkpointed(w):
        return shard.slice(s.vocab * s.hidden * b.cast)
    return shard.slice((s.linear_params + s.vocab * s.hidden) * b.cast)


def _autocast_checkpointed(w: Workload) -> bool:
    """Mixed precision by autocast (fp32 weights and residual stream; FSDP's bf16 parameters
    under ZeRO-3 are not autocast) with the layers checkpointed."""
    return (
        w.precision in (Precision.mixed_bf16, Precision.mixed_fp16)
        and w.strategy is not Parallel.zero3
        and w.checkpointing in (Checkpointing.full, Checkpointing.selective, Checkpointing.offload)
    )


def _saved_activations(s: _Shape, w: Workload, shard: _Shard, b: _Bytes, layers: int) -> _Saved:
    n = w.tokens
    masked = _masked_layers(s, w, layers)
    per_token, per_seq_sq = _layer_saved(s, b, w, mask=masked > 0)
    layer_bytes = _round(n * per_token) + _round(w.batch * w.seq * w.seq * per_seq_sq)
    unmasked_bytes = layer_bytes
    if 0 < masked < layers:
        plain_token, plain_seq_sq = _layer_saved(s, b, w, mask=False)
        unmasked_bytes = _round(n * plain_token) + _round(w.batch * w.seq * w.seq * plain_seq_sq)
    # A checkpointed layer keeps its input, the residual stream: fp32 under autocast (fp32
    # weights: the embedding output and every residual add stay fp32), else the compute dtype.
    autocast = _autocast_checkpointed(w)
    layer_input = _round(n * s.hidden * (b.residual if autocast else b.compute))
    host = 0
    if w.checkpointing is Checkpointing.full:
        # Each layer keeps only its input; one layer's activations are rebuilt during backward.
        saved = layers * layer_input
    elif w.checkpointing is Checkpointing.selective:
        saved = layers * (layer_input + _round(n * _selective_saved(s, w, b.compute)))
    elif w.checkpointing is Checkpointing.offload:
        saved = OFFLOAD_GPU_LAYER_INPUTS * layer_input
        host = math.ceil(layers * layer_input / shard.tp)
    else:
        saved = masked * layer_bytes + (layers - masked) * unmasked_bytes
    saved += _round(n * _norm_saved(s, b, 1, frozen=w.adapters))  # the final norm
    if s.alibi:
        # ALiBi's per-head float mask, saved by every layer's attention: one tensor.
        saved += _round(w.batch * s.heads * w.seq * w.seq * b.compute)
    if b.residual == FP32_BYTES and not s.layernorm and not autocast:
        # The embedding output, kept by the first norm (checkpointed: the first layer's input).
        saved += _round(n * s.hidden * b.residual)
    total = math.ceil(saved / shard.tp)
    # Backward through the first layer: nearly every gradient exists while that layer's saved
    # (with checkpointing: recomputed) activations are still alive.
    one_layer = math.ceil(max(layer_bytes, unmasked_bytes) / shard.tp)
    return _Saved(total, one_layer, layers, masked, per_token, per_seq_sq, host)


def _gather_units(s: _Shape, w: Workload, shard: _Shard, b: _Bytes, state: _TrainingState) -> None:
    """ZeRO-3 as FSDP2 runs it (torchtitan's `apply_fsdp`): every transformer block is one
    unit and the root (embedding, final norm, output head) another; a unit's weights are
    all-gathered in the working dtype (`MixedPrecisionPolicy.param_dtype`) just before use and
    freed after (`reshard_after_forward=True`), except the root (FSDP2's `FSDPState._lazy_init`
    never reshards the root after forward) and the last block (torchtitan keeps it: backward
    needs it at once). In backward the next block is prefetched while one runs; a unit's
    unsharded gradients are copied into a reduce-scatter buffer in the gradient dtype
    (`reduce_dtype`), the root's only at the end of backward, so the output head's gradient
    stays unsharded through it. With pipeline parallelism torchtitan keeps every unit of the
    stage gathered (`reshard_after_forward=False`) and its gradients unsharded until the last
    micro-batch. Replaces autocast's working copy."""
    lora = w.method in (Method.lora, Method.qlora)
    per_weight = _training_weights(s, w, b) / s.params if lora else b.compute
    block = s.counts.layers // s.layers
    root = s.params - s.counts.layers
    if shard.pp > 1:
        state.cast = state.gathered = shard.slice(math.ceil(s.params * per_weight))
    else:
        state.cast = math.ceil((root + FSDP_FORWARD_BLOCKS * block) * per_weight / shard.tp)
        state.gathered = math.ceil((root + FSDP_BACKWARD_BLOCKS * block) * per_weight / shard.tp)
    if lora:
        return  # the adapters' gradients are the only ones reduced, already counted
    if shard.pp > 1:
        # The pipeline schedule reduces only after the last micro-batch (PyTorch's
        # `backward_maybe_with_nosync`): the stage's unsharded gradients accumulate through
        # the step, upcast to the reduce dtype (FSDP2 `to_accumulated_grad_if_needed`).
        state.reduce = state.reduce_end = shard.slice(s.params * b.grad)
        return
    head = s.counts.output_head if shard.last else 0
    # Backward through the blocks: the head's gradient, a block's and its reduce-scatter input.
    state.reduce = math.ceil(((head + block) * b.compute + block * b.grad) / shard.tp)
    # End of backward: the root's gradients and their reduce-scatter input.
    state.reduce_end = math.ceil(root * (b.compute + b.grad) / shard.tp)


def _split_saved(s: _Shape, w: Workload, shard: _Shard, b: _Bytes, saved: _Saved) -> None:
    """Tensor and pipeline parallelism on what a GPU saves (Korthikanti et al. 2022).

    With sequence parallelism every saved tensor is split over the tensor-parallel GPUs
    (already divided by `tp`), except that PyTorch's DTensor plan saves, in each layer without
    recomputation, the two all-gathered norm outputs that feed the column-parallel q/k/v and
    gate/up projections at their full size (Megatron-LM gathers them again in backward
    instead). A first pipeline stage under 1F1B holds `pp` micro-batches' activations at the
    start of its first backward, and the other micro-batches' while that backward runs; under
    an interleaved schedule each in-flight micro-batch holds one of the card's `chunks`
    stages."""
    if shard.tp > 1 and w.checkpointing is Checkpointing.none:
        gathered = _round(w.tokens * TP_GATHERED_INPUTS * s.hidden * b.compute)
        extra = gathered - math.ceil(gathered / shard.tp)
        saved.total += saved.layers * extra
        saved.one_layer += extra
    stage = -(-saved.total // shard.chunks)
    saved.one_layer += (shard.in_flight - 1) * stage
    saved.total = shard.in_flight * stage


class _Product(NamedTuple):
    """One matrix product of a layer's forward: its output's bytes per token, the weights it
    multiplies, and whether it runs as `aten.mm` (an unbiased linear) rather than `addmm` (a
    biased one)."""

    out_bytes: int
    params: int
    mm: bool


def _matmul_outputs(s: _Shape, w: Workload, c: int) -> tuple[_Product, ...]:
    """Each matrix product of one layer's forward, in order: the q, k, v projections (one
    fused product in Phi-3 and GPT-NeoX), the attention output projection, then the MLP's
    products (gate and up fused in Phi-3), expert by expert for a routed MLP. A LoRA-adapted
    projection is followed by its A and B products, in the adapter dtype (PEFT's
    `Linear.forward`: base layer, then lora_B(lora_A(x))), both unbiased."""
    gated = s.mlp_kind is MLPKind.gated
    h = s.hidden
    named: list[tuple[str, int, int]]  # name, input width, output width
    if s.fused_qkv:
        named = [("qkv", h, s.q_dim + 2 * s.kv_dim), ("o_proj", s.q_dim, h)]
    else:
        named = [("q_proj", h, s.q_dim), ("k_proj", h, s.kv_dim), ("v_proj", h, s.kv_dim)]
        named.append(("o_proj", s.q_dim, h))
    if s.moe:
        expert = [("expert", h, s.expert_ffn)] * 2 + [("expert", s.expert_ffn, h)]
        named += expert * s.experts_per_tok
        if s.shared_ffn:
            named += [("shared", h, s.shared_ffn)] * 2 + [("shared", s.shared_ffn, h)]
    elif gated and s.fused_qkv:
        named += [("gate_up", h, 2 * s.ffn), ("down_proj", s.ffn, h)]
    elif gated:
        named += [("gate_proj", h, s.ffn), ("up_proj", h, s.ffn), ("down_proj", s.ffn, h)]
    else:
        named += [("up_proj", h, s.ffn), ("down_proj", s.ffn, h)]
    adapted = set(_lora_targets(s, w)) if w.adapters else set()
    a = ADAPTER_BYTES[w.adapter_dtype] if adapted else 0
    biases = projection_biases(s.arch)
    attention = {"q_proj", "k_proj", "v_proj", "qkv"}
    products: list[_Product] = []
    for name, width_in, width in named:
        if name in attention:
            biased = biases.qkv
        elif name == "o_proj":
            biased = biases.out
        else:
            biased = biases.mlp and name not in ("expert", "shared")
        products.append(_Product(width * c, width_in * width, not biased))
        if name in adapted:
            rank = w.lora_rank
            products += [
                _Product(rank * a, width_in * rank, True),
                _Product(width * a, rank * width, True),
            ]
    return tuple(products)


def _selective_split(s: _Shape, w: Workload, c: int) -> tuple[int, int]:
    """torchtitan's per-op policy over one layer's products: (bytes per token of the outputs
    it saves, weights of the products it recomputes in backward). `mm` outputs are saved on
    odd counts (1st, 3rd, ...) and recomputed on even ones; a biased projection runs as
    `addmm`, which the policy neither saves nor counts, so it is recomputed."""
    saved = recomputed = 0
    count = 0
    for product in _matmul_outputs(s, w, c):
        if product.mm:
            count += 1
            if count % 2:
                saved += product.out_bytes
                continue
        recomputed += product.params
    return saved, recomputed


def _selective_saved(s: _Shape, w: Workload, c: int) -> int:
    """Bytes per token one layer keeps under torchtitan's per-op selective checkpointing
    (`_apply_op_sac`, torchtitan/distributed/activation_checkpoint.py): the outputs of the
    1st, 3rd, 5th ... matrix product of the layer (`mm` is saved on odd counts and recomputed
    on even ones) and the fused attention kernel's output with its fp32 log-sum-exp per head.
    A biased projection runs as `addmm`, which the policy neither saves nor counts."""
    saved = _selective_split(s, w, c)[0]
    if s.attention is not AttentionKernel.eager:
        saved += s.q_dim * c + s.heads * FP32_BYTES
    return saved


def fused_loss_chunk_tokens(tokens: int, hidden: int, vocab: int) -> int:
    """Tokens per chunk of Liger's fused linear cross-entropy
    (liger_kernel/ops/fused_linear_cross_entropy.py, `fused_linear_cross_entropy_forward`):
    the next power of two of tokens / ceil(vocab / hidden), so that a chunk's logits are about
    the size of the hidden states."""
    inc_factor = -(-vocab // hidden)
    per_chunk = -(-tokens // inc_factor)
    return 1 << (per_chunk - 1).bit_length()


def _training_logits(s: _Shape, w: Workload, c: int, head_grad: int) -> _TrainingLogits:
    """The loss's memory around the start of backward, by implementation.

    unfused: the model returns its logits in the compute dtype and the caller holds them
    through backward; the loss upcasts to fp32 and log-softmax keeps its fp32 output; the start
    of backward adds the loss's gradient and log-softmax's (both fp32).
    chunked: torchtune's recipes free the logits once the loss is computed (`del logits`,
    recipes/full_finetune_single_device.py `_loss_step`); each chunk's fp32 log-softmax is
    saved, and backward holds one chunk's two fp32 gradients at a time.
    fused: no logits are held; the forward computes the gradient of the hidden states (kept
    for backward, compute dtype) and, when the head trains, of its weight (`head_grad`), one
    chunk of logits at a time (counted at the peak as `loss_grads`).
    """
    n = w.tokens
    if w.loss is Loss.fused:
        chunk = fused_loss_chunk_tokens(n, s.hidden, s.vocab)
        kept = _round(n * s.hidden * c) + head_grad
        return _TrainingLogits(0, kept, _round(chunk * s.vocab * c), c)
    if w.loss is Loss.chunked:
        chunk = -(-n // CHUNKED_LOSS_CHUNKS)
        chunks = -(-n // chunk)
        last = n - (chunks - 1) * chunk
        one = _round(chunk * s.vocab * FP32_BYTES)
        log_softmax = (chunks - 1) * one + _round(last * s.vocab * FP32_BYTES)
        if s.softcap:
            log_softmax += (chunks - 1) * _round(chunk * s.vocab * c) + _round(last * s.vocab * c)
        # Backward takes the chunks one at a time, each freeing its saved log-softmax once
        # its two fp32 gradients exist. A trained head's per-chunk weight gradients are summed
        # in place: the second chunk's is made (two head-sized buffers) after two chunks'
        # log-softmax are freed, which two chunk-sized gradients stand in for.
        first = 2 * one + head_grad
        second = 2 * head_grad if chunks > 1 else first
        return _TrainingLogits(0, log_softmax, max(first, second), c)
    log_softmax = _round(n * s.vocab * FP32_BYTES)
    if s.softcap:
        # Gemma-2 soft-caps the final logits (tanh(x / 30) x 30): tanh's output is saved.
        log_softmax += _round(n * s.vocab * c)
    held = _round(n * s.vocab * c)
    loss_grads = 2 * _round(n * s.vocab * FP32_BYTES)
    return _TrainingLogits(held, log_softmax, loss_grads, c)


def _training_peak(state: _TrainingState, saved: _Saved, logits: _TrainingLogits, held: int) -> str:
    """The moment with the most bytes alive (the earliest one on a tie); `held`: gradients
    of earlier micro-batches alive at the start of backward (gradient accumulation)."""
    base = state.weights + state.adapters + state.states
    with_grads = base + state.grads
    end = with_grads + logits.held + state.tied_accumulate + state.gathered + state.reduce_end
    first_layer = with_grads + logits.held + saved.one_layer + state.gathered + state.reduce
    candidates = (
        (
            START_OF_BACKWARD,
            base
            + held
            + state.cast
            + saved.total
            + logits.held
            + logits.log_softmax
            + logits.loss_grads,
        ),
        (END_OF_BACKWARD, end),
        (FIRST_LAYER_BACKWARD, first_layer),
        (OPTIMIZER_STEP, with_grads + state.step_temp)
        if not state.step_in_backward
        else (
            STEP_IN_BACKWARD,
            with_grads + state.step_temp + state.cast + saved.total + logits.held,
        ),
    )
    moment, peak = candidates[0]
    for name, value in candidates[1:]:
        if value > peak:
            moment, peak = name, value
    return moment


def _training_components(
    moment: str, state: _TrainingState, saved: _Saved, logits: _TrainingLogits, held: int
) -> Components:
    """What is alive at `moment`, term by term."""
    start = moment == START_OF_BACKWARD
    if start:
        activations, logit_bytes, grads = (
            saved.total,
            logits.held + logits.log_softmax + logits.loss_grads,
            held,
        )
    elif moment == STEP_IN_BACKWARD:
        activations, logit_bytes, grads = saved.total, logits.held, state.grads
    else:
        activations = saved.one_layer if moment == FIRST_LAYER_BACKWARD else 0
        logit_bytes = 0 if moment == OPTIMIZER_STEP else logits.held
        grads = state.grads + (state.tied_accumulate if moment == END_OF_BACKWARD else 0)
    in_backward = moment in (END_OF_BACKWARD, FIRST_LAYER_BACKWARD)
    if in_backward:
        grads += state.reduce_end if moment == END_OF_BACKWARD else state.reduce
    cast = start or moment == STEP_IN_BACKWARD
    weights = state.weights + (state.cast if cast else state.gathered if in_backward else 0)
    stepping = moment in (OPTIMIZER_STEP, STEP_IN_BACKWARD)
    optimizer = state.states + (state.step_temp if stepping else 0)
    kv_cache = 0
    return Components(weights, kv_cache, activations, logit_bytes, grads, optimizer, state.adapters)


def _training_terms(arch: Architecture, s: _Shape, w: Workload, shard: _Shard) -> _Peak:
    b = _PRECISION_BYTES[w.precision]
    tr = _trainable(s, w)
    state = _training_state(s, w, shard, b, tr)
    # With parameters offloaded, `_offloaded_params` already holds the gathered units.
    if shard.strategy is Parallel.zero3 and w.offload is not TrainingOffload.optimizer_params:
        _gather_units(s, w, shard, b, state)
    # Context parallelism: each GPU runs its 1/cp of every sequence's tokens.
    local = w if shard.cp == 1 else dataclasses.replace(w, seq=w.seq // shard.cp)
    saved = _saved_activations(s, local, shard, b, min(tr.layers_with_grad, shard.stage_layers))
    _split_saved(s, local, shard, b, saved)
    head_grad = (
        shard.spread(
            _round(s.vocab * s.hidden * b.grad), shard.strategy in (Parallel.zero2, Parallel.zero3)
        )
        if w.method in (Method.full, Method.freeze) and shard.last  # the output head trains
        else 0
    )
    if not shard.last:
        logits = _TrainingLogits(0, 0, 0, b.compute)  # the loss runs on the last stage
    elif shard.tp > 1:
        # Loss parallelism (torchtitan's default with tensor parallelism): each GPU computes
        # the loss over its share of the vocabulary, the logits never gathered.
        local_vocab = s._replace(vocab=-(-s.vocab // shard.tp))
        logits = _training_logits(local_vocab, local, b.compute, head_grad)
    else:
        logits = _training_logits(s, local, b.compute, head_grad)
    # Gradient accumulation: from the second micro-batch on, its forward and backward run
    # with the earlier micro-batches' gradients held (Hugging Face Trainer and Accelerate
    # zero the gradients only after the optimizer step; DDP's no_sync keeps them local,
    # ZeRO-2/3 keep each card's reduced shard, the `grads` term's size).
    held = state.grads if w.accumulates else 0
    moment = _training_peak(state, saved, logits, held)
    components = _training_components(moment, state, saved, logits, held)
    explain = functools.partial(
        _explain_training, s, w, b, tr, state, saved, logits, moment, components
    )
    host = saved.host + state.host
    return _Peak(components, moment, explain, host)


def _working_copy_words(w: Workload, state: _TrainingState) -> str:
    """How the weights term adds the working copy: FSDP's gathered units under ZeRO-3,
    autocast's 16-bit copy otherwise."""
    if w.strategy is Parallel.zero3:
        return " / ZeRO ranks + FSDP's gathered units (the root and one or two blocks)"
    return " + autocast's 16-bit copy of the linear weights" if state.cast else ""


def _explain_training(
    s: _Shape,
    w: Workload,
    b: _Bytes,
    tr: _Trainable,
    state: _TrainingState,
    saved: _Saved,
    logits: _TrainingLogits,
    moment: str,
    bytes_: Components,
) -> list[Term]:
    terms = [
        Term(
            "weights",
            bytes_.weights,
            "params x bytes per weight" + _working_copy_words(w, state),
            {
                "params": s.params,
                "bytes_per_weight": b.weight,
                "cast_bytes": state.cast,
                "gathered_bytes": state.gathered,
            },
        ),
        Term(
            "optimizer",
            bytes_.optimizer,
            f"{w.optimizer.value} states x trainable params x state bytes"
            + (" + the step's temporaries" if moment in (OPTIMIZER_STEP, STEP_IN_BACKWARD) else ""),
            {
                "trainable": state.trainable,
                "state_bytes": state.state_bytes,
                "step_temp": state.step_temp,
            },
        ),
        Term(
            "adapters",
            bytes_.adapters,
            "LoRA A and B (rank x (in + out) per target"
            + (", + DoRA's magnitude (out)" if w.method is Method.dora else "")
            + ") x adapter bytes",
            {
                "adapter_params": tr.adapter_params,
                "rank": w.lora_rank,
                "adapter_dtype": w.adapter_dtype.value if w.adapters else "none",
            },
        ),
    ]
    if moment == START_OF_BACKWARD:
        return [*terms, *_explain_start_of_backward(s, w, saved, logits, bytes_)]
    return [*terms, *_explain_after_backward(s, w, state, saved, bytes_, moment)]


def _explain_after_backward(
    s: _Shape, w: Workload, state: _TrainingState, saved: _Saved, bytes_: Components, moment: str
) -> list[Term]:
    terms = [
        Term(
            "gradients",
            bytes_.gradients,
            "trainable params x gradient bytes",
            {"trainable": state.trainable, "grad_bytes": state.grad_bytes},
        )
    ]
    if bytes_.logits:
        terms.append(
            Term(
                "logits",
                bytes_.logits,
                "tokens x vocab x bytes (held by the caller)",
                {"tokens": w.tokens, "vocab": s.vocab},
            )
        )
    if bytes_.activations:
        terms.append(
            Term(
                "activations",
                bytes_.activations,
                (
                    "every layer's saved activations (the step runs in backward)"
                    if moment == STEP_IN_BACKWARD
                    else "tokens x saved bytes per token of one layer (+ its mask)"
                ),
                {"tokens": w.tokens, "bytes_per_token_layer": saved.per_token},
            )
        )
    return terms


def _explain_start_of_backward(
    s: _Shape, w: Workload, saved: _Saved, logits: _TrainingLogits, bytes_: Components
) -> list[Term]:
    held = []
    if bytes_.gradients:
        held.append(
            Term(
                "gradients",
                bytes_.gradients,
                "the earlier micro-batches' gradients, held through gradient accumulation",
                {"microbatches": w.step_microbatches},
            )
        )
    return [
        *held,
        Term(
            "activations",
            bytes_.activations,
            "layers x tokens x saved bytes per token (+ batch x seq^2 mask per layer)",
            {
                "layers": saved.layers,
                "tokens": w.tokens,
                "bytes_per_token_layer": saved.per_token,
                "mask_bytes_per_seq_sq": saved.per_seq_sq,
                "masked_layers": saved.masked,
            },
        ),
        Term(
            "logits",
            bytes_.logits,
            "tokens x vocab x (bytes + 4 log-softmax + 8 loss gradients)",
            {"tokens": w.tokens, "vocab": s.vocab, "bytes": logits.dtype_bytes},
        ),
    ]


# --- entry point ----------------------------------------------------------------------------


def valid_tp_counts(arch: Architecture, limit: int = 64) -> tuple[int, ...]:
    """GPU counts tensor parallelism can split this model over: they divide both head counts."""
    return tuple(
        n
        for n in range(1, limit + 1)
        if arch.num_attention_heads % n == 0 and arch.num_key_value_heads % n == 0
    )


def _sharding(
    arch: Architecture, workload: Workload
) -> tuple[tuple[_Shard, ...], tuple[int, ...] | None]:
    """How the workload's strategy divides the terms (training with pipeline stages: the
    first and the last stage, the two that can peak), and the valid tensor-parallel counts
    (when tensor parallelism is asked for); InvalidValueError for a split that cannot be."""
    strategy = workload.strategy
    if workload.training:
        return _training_shards(arch, workload), None
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
    return (_Shard(workload.gpus, strategy, tp),), valid


def degrees_conflict(arch: Architecture, w: Workload) -> str:
    """Why the model cannot be split by the workload's training degrees ('' when it can):
    tensor parallelism must divide both head counts, a pipeline stage holds a layer at least,
    and context parallelism needs a fused attention kernel and a sequence in 2 x cp chunks."""
    tp, pp, cp = w.tensor_parallel, w.pipeline_parallel, w.context_parallel
    if tp > 1 and (arch.num_attention_heads % tp or arch.num_key_value_heads % tp):
        valid = ", ".join(str(v) for v in valid_tp_counts(arch) if v <= MAX_TP_SHOWN)
        return (
            f"--parallel tp:{tp} must divide the model's {arch.num_attention_heads} attention "
            f"and {arch.num_key_value_heads} KV heads; valid degrees: {valid}"
        )
    if pp > arch.num_hidden_layers:
        return (
            f"--parallel pp:{pp} exceeds the model's {arch.num_hidden_layers} layers "
            "(a pipeline stage holds at least one)"
        )
    stages = pp * w.stages_per_card
    if stages > arch.num_hidden_layers:
        return (
            f"--pp-schedule {w.pp_schedule.value} with --parallel pp:{pp} makes {stages} "
            f"stages, more than the model's {arch.num_hidden_layers} layers (a stage holds at "
            "least one)"
        )
    kernel = _shape(arch).attention
    if cp > 1 and kernel in (AttentionKernel.eager, AttentionKernel.math):
        return (
            f"--parallel cp:{cp}: context parallelism runs SDPA's fused kernels as ring "
            f"attention; this model's attention runs the {kernel.value} path"
        )
    if cp > 1 and w.seq % (CP_SEQ_CHUNKS * cp):
        return (
            f"--parallel cp:{cp} needs --seq divisible by {CP_SEQ_CHUNKS * cp} "
            f"({CP_SEQ_CHUNKS} x cp load-balanced chunks), got {w.seq:,}"
        )
    return ""


def _training_shards(arch: Architecture, w: Workload) -> tuple[_Shard, ...]:
    """The training slice of each GPU: the whole model over one GPU or data parallelism;
    with pipeline parallelism the first card (the embedding, and the most micro-batches in
    flight) and the last (the final norm, the output head and the loss)."""
    s = _shape(arch)
    conflict = degrees_conflict(arch, w)
    if conflict:
        raise InvalidValueError(conflict)
    tp, pp, cp = w.tensor_parallel, w.pipeline_parallel, w.context_parallel
    ranks = w.gpus // (tp * pp)
    strategy = w.strategy
    whole = _Shard(w.gpus, strategy, tp, num=1, den=tp, ranks=ranks, cp=cp)
    if pp == 1:
        return (dataclasses.replace(whole, stage_layers=s.layers),)
    per_layer = s.counts.layers // s.layers
    stage_layers = -(-s.layers // pp)
    stage = stage_layers * per_layer
    # A tied embedding is the output head too: the last stage keeps its own copy.
    head = s.counts.output_head + s.counts.final_norm + (s.counts.embedding if s.tied else 0)
    split = dataclasses.replace(whole, den=s.params * tp, pp=pp, stage_layers=stage_layers)
    chunks = w.stages_per_card
    split = dataclasses.replace(split, chunks=chunks)
    first = dataclasses.replace(
        split, num=s.counts.embedding + stage, in_flight=_in_flight(w, 0), first=True, last=False
    )
    last = dataclasses.replace(
        split, num=stage + head, in_flight=_in_flight(w, pp - 1), first=False, last=True
    )
    return first, last


def _in_flight(w: Workload, rank: int) -> int:
    """Micro-batch stages whose activations pipeline rank `rank` holds when its first backward
    starts: its warm-up forwards and one more. 1F1B warms up with pp - 1 - rank forwards
    (PyTorch's Schedule1F1B: min(n_microbatches, num_stages - stage_index) before the first
    backward); the interleaved schedule with (v - 1) x pp + 2 (pp - 1 - rank) of its v-fold
    smaller stages (ScheduleInterleaved1F1B get_rank_warmup_ops); neither more than the
    step's micro-batches hold."""
    pp, chunks, microbatches = w.pipeline_parallel, w.stages_per_card, w.step_microbatches
    if chunks == 1:
        warmup = pp - 1 - rank
    else:
        warmup = (chunks - 1) * pp + 2 * (pp - 1 - rank)
    return min(warmup + 1, microbatches * chunks)


@functools.lru_cache(maxsize=64)
def engine_overhead(ov: RuntimeOverhead, engine: Engine) -> RuntimeOverhead:
    """The runtime overhead under `engine`: llama.cpp's ggml buffers and vLLM's one KV
    allocation are sized exactly, so PyTorch's caching-allocator reserve applies only to
    transformers. The context is PyTorch's for the vendor, except where the engine runs its
    own backend (llama.cpp: `ENGINES[...].backend_context`) and `ov` is that vendor's PyTorch
    default; an overhead of your own (a measurement) is kept as given."""
    traits = ENGINES[engine]
    vendor = _VENDOR_BY_RUNTIME[ov.runtime]
    if traits.backend_context is not None and ov == OVERHEAD_BY_VENDOR[vendor]:
        backend = traits.backend_context[vendor]
        ov = dataclasses.replace(
            ov, context_bytes=backend.context_bytes, measured=backend.measured, basis=backend.basis
        )
    if traits.allocator_reserve:
        return ov
    return dataclasses.replace(ov, allocator_reserve_fraction=0.0)


def _check_trainable_layers(arch: Architecture, workload: Workload) -> None:
    """--method freeze trains the top layers: never more than the model has."""
    layers = workload.trainable_layers
    if layers is not None and layers > arch.num_hidden_layers:
        raise InvalidValueError(
            f"trainable-layers ({layers}) exceeds the model's {arch.num_hidden_layers} layers"
        )


def estimate(
    arch: Architecture, workload: Workload, *, overhead: RuntimeOverhead | None = None
) -> Estimate:
    """Peak memory per GPU of `workload` on a model of architecture `arch`."""
    _check_trainable_layers(arch, workload)
    s = _shape_with(arch, workload.attention)
    shards, valid = _sharding(arch, workload)
    engine = workload.serving.engine
    if workload.stage is Stage.inference:
        if engine is not Engine.transformers:
            check(workload.serving, workload.weight_format, workload.kv_dtype)
        peak = _inference_terms(arch, s, workload, shards[0])
    else:
        # Pipeline stages differ: the GPU that needs the most sets the need per GPU.
        peak = max(
            (_training_terms(arch, s, workload, shard) for shard in shards),
            key=lambda p: sum(p.components.in_order()),
        )
    tensor = peak.components.in_order()
    tensor_bytes = sum(tensor)
    ov = engine_overhead(_DEFAULT_OVERHEAD if overhead is None else overhead, engine)
    graphs = VLLM_CUDA_GRAPH_BYTES if engine is Engine.vllm else 0
    runtime = ov.bytes_for(tensor_bytes) + graphs

    def explain() -> tuple[Term, ...]:
        return (
            *peak.explain(),
            Term(
                "runtime_overhead",
                runtime,
                f"{ov.runtime.value} context + allocator reserve x tensor peak"
                + (" + CUDA graphs" if graphs else ""),
                {
                    "context": ov.context_bytes,
                    "reserve_fraction": ov.allocator_reserve_fraction,
                    "cuda_graphs": graphs,
                },
            ),
        )

    return Estimate(
        workload=workload,
        params=s.params,
        gpus=workload.gpus,
        peak_moment=peak.moment,
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
        host_bytes=peak.host,
    )


# --- what a token reads and multiplies (advisor.speed) -----------------------------------------


class Traffic(NamedTuple):
    """The sizes the speed model reads off a model and a workload, whole model (not per card).

    `weight_bytes`: every weight in the workload's format (the estimator's weight term on one
    card); `lookup_params`: the input embedding, read one row per token (0 when tied: the
    output head reads the whole matrix); `routed_params`: every routed expert's weights (0 for
    a dense model), of which a token reads `experts_per_token / experts`; `matmul_params`: the
    weights one token multiplies (the active layers and the output head; the embedding lookup
    is no multiplication); `kv_bytes_per_token`: K and V of one token over every layer in the
    workload's KV dtype (llama.cpp: its F16 default); `attention_width`: query heads x head
    dimension, the width of QK^T and AV per layer.

    What training's element-wise kernels move per token (advisor.speed): `kv_width` (keys or
    values of one layer), `ffn` (the MLP's intermediate width one token goes through: routed
    experts per token and shared experts for MoE), `vocab`, the norms per layer and their kind,
    the MLP's activation, rotary embeddings, and `scores_materialized`: the attention path
    writes the seq x seq scores (eager or SDPA's math kernel) instead of a fused kernel."""

    params: int
    weight_bytes: int
    lookup_params: int
    routed_params: int
    experts: int
    experts_per_token: int
    matmul_params: int
    head_params: int
    layers: int
    hidden: int
    attention_width: int
    heads: int
    kv_bytes_per_token: float
    query_groups: int  # query heads per KV head (1 for MLA: its latent is never repeated)
    sliding_window: int | None
    sliding_layers: int
    kv_width: int
    ffn: int
    vocab: int
    norms_per_layer: int
    layernorm: bool
    mlp_kind: MLPKind
    rope: bool
    scores_materialized: bool
    # Training: the parameters the optimizer updates (the adapters under LoRA) and the bytes
    # one optimizer step moves per such parameter (`_step_bytes_per_param`; 0 for inference).
    trainable_params: int = 0
    step_bytes_per_param: float = 0.0
    # Weights whose products torchtitan's per-op selective checkpointing recomputes in
    # backward, every layer (`_selective_split`); 0 unless it is asked.
    selective_recomputed_params: int = 0


# The optimizer step as the calibrated stacks run it: one fused kernel per group of tensors
# (torchtitan's default `optimizer.implementation = "fused"`; nanoGPT's `fused=True` when
# available), which reads each parameter, gradient and state once and writes the parameter and
# the states once (PyTorch's `_fused_adamw`). PyTorch's foreach path, one kernel per operation,
# moves about 2.5 times that (not modelled: there is no option for it).
PARAMETER_PASSES = 2  # read and write
STATE_PASSES = 2  # read and write
GRADIENT_READS = 1
# Gradient clipping by global norm, on by default in Hugging Face Trainer (max_grad_norm 1.0),
# torchtitan (training.max_norm 1.0) and nanoGPT (grad_clip 1.0): PyTorch's clip_grad_norm_
# reads every gradient for the norm, then scales them all in place (read and write) whatever
# the norm, to avoid a host sync (torch.nn.utils.clip_grad_norm_, `_foreach_mul_`).
CLIP_GRADIENT_PASSES = 3
# bitsandbytes' 8-bit states: one byte per value plus one fp32 absmax per 256-value block.
EIGHT_BIT_STATE_TRAFFIC = EIGHT_BIT_STATE_BYTES + FP32_BYTES / EIGHT_BIT_BLOCK


def _step_bytes_per_param(w: Workload) -> float:
    """Bytes one optimizer step moves per trainable parameter: the parameter read and written,
    its gradient read, each state read and written, and the gradient clipping's passes.
    Adapters (LoRA, QLoRA, DoRA) are their own dtype, their gradients and states too (the
    states follow the parameters' dtype, as in `_training_state`). Adafactor's factored states
    are negligible; its step writes and reads `ADAFACTOR_STEP_FP32_COPIES` fp32 temporaries."""
    if not w.training:
        return 0.0
    b = _PRECISION_BYTES[w.precision]
    param, grad, state = float(b.weight), float(b.grad), float(b.state)
    if w.adapters:
        param = grad = state = float(ADAPTER_BYTES[w.adapter_dtype])
    opt = w.optimizer
    states: float
    if opt is Optimizer.adamw:
        states = ADAM_STATES * state
    elif opt in (Optimizer.adamw_8bit, Optimizer.paged_adamw_8bit):
        states = ADAM_STATES * EIGHT_BIT_STATE_TRAFFIC
    elif opt is Optimizer.paged_adamw_32bit:
        states = ADAM_STATES * FP32_BYTES
    elif opt in (Optimizer.sgd_momentum, Optimizer.lion):
        states = MOMENTUM_STATES * state
    elif opt is Optimizer.adafactor:
        states = ADAFACTOR_STEP_FP32_COPIES * FP32_BYTES
    else:
        states = 0.0
    return (
        PARAMETER_PASSES * param
        + (GRADIENT_READS + CLIP_GRADIENT_PASSES) * grad
        + STATE_PASSES * states
    )


def traffic(arch: Architecture, workload: Workload) -> Traffic:
    """What `workload` reads and multiplies per token on a model of `arch`."""
    s = _shape(arch)
    b = _PRECISION_BYTES[workload.precision]
    counts = s.counts
    inactive = counts.total - counts.active
    experts = arch.num_experts or 0
    per_token = arch.num_experts_per_tok or 0
    routed = inactive * experts // (experts - per_token) if inactive and experts > per_token else 0
    kv_dtype = workload.kv_dtype
    if kv_dtype is None and workload.serving.engine is Engine.llama_cpp:
        kv_dtype = KVDtype.fp16
    kv_elem = KV_BYTES_PER_ELEMENT[kv_dtype] if kv_dtype is not None else float(b.compute)
    return Traffic(
        params=s.params,
        weight_bytes=_weight_bytes(s, workload, b.weight),
        lookup_params=0 if s.tied else s.vocab * s.hidden,
        routed_params=routed,
        experts=experts,
        experts_per_token=per_token,
        matmul_params=counts.active - counts.embedding - counts.output_head + s.vocab * s.hidden,
        head_params=s.vocab * s.hidden,
        layers=s.layers,
        hidden=s.hidden,
        attention_width=s.q_dim,
        heads=s.heads,
        kv_bytes_per_token=s.kv_cache_per_token_layer * s.layers * kv_elem,
        query_groups=1 if arch.kv_lora_rank is not None else s.heads // max(s.kv_heads, 1),
        sliding_window=s.sliding_window,
        sliding_layers=s.sliding_layers,
        kv_width=s.kv_dim,
        ffn=s.experts_per_tok * s.expert_ffn + s.shared_ffn if s.moe else s.ffn,
        vocab=s.vocab,
        norms_per_layer=s.norms_per_layer,
        layernorm=s.layernorm,
        mlp_kind=s.mlp_kind,
        rope=s.rope,
        scores_materialized=_shape_with(arch, workload.attention).attention
        in (AttentionKernel.eager, AttentionKernel.math),
        trainable_params=_optimized_params(s, workload),
        step_bytes_per_param=_step_bytes_per_param(workload),
        selective_recomputed_params=(
            s.layers * _selective_split(s, workload, b.compute)[1]
            if workload.training and workload.checkpointing is Checkpointing.selective
            else 0
        ),
    )


def _optimized_params(s: _Shape, w: Workload) -> int:
    """The parameters the optimizer steps (the adapters under LoRA); 0 for inference."""
    if not w.training:
        return 0
    tr = _trainable(s, w)
    return tr.adapter_params if w.adapters else tr.params
