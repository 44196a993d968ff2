"""Every model type's traits, in one table: what the config reader, the parameter count, the
estimator and the trace need to know about a Hugging Face `model_type`.

Pure: no CLI, rendering or database imports. Each `ModelType` has one complete `ModelTraits`
entry (no field has a default; tests/test_arch.py checks that every member has one), and no
consumer falls back on a default for a type it does not know. The facts are read off each
type's modeling and configuration files in Hugging Face transformers (5.x) and checked against
models traced with `advisor trace` (tests/test_trace.py); tests/test_estimator_pinned.py holds
the estimator's bytes fixed. docs/architecture.md says how to add a type.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from advisor.enums import ModelType
from advisor.workload import ATTENTION_TARGETS, MLP_TARGETS

# PEFT's names for the projections of a Llama-style block (advisor/workload.py's LoRA targets).
ALL_PROJECTIONS = (*ATTENTION_TARGETS, *MLP_TARGETS)


class ParamLayout(StrEnum):
    """How a decoder layer's parameters are laid out (advisor/arch.py counts each layout)."""

    dense_gated = "dense_gated"  # separate q/k/v/o, gate/up/down (Llama and its kin)
    moe_gated = "moe_gated"  # Llama-style attention, routed gated experts (Mixtral, Qwen3-MoE)
    gpt_oss = "gpt_oss"  # biased attention with sinks, biased routed experts
    deepseek = "deepseek"  # multi-head latent attention, dense then routed + shared experts
    fused_qkv_gelu = "fused_qkv_gelu"  # one biased qkv linear, biased GELU MLP (GPT-2, BLOOM)
    gpt_neox = "gpt_neox"  # fused query_key_value (bias optional), biased GELU MLP
    opt = "opt"  # separate biased q/k/v/out, ReLU fc1/fc2
    falcon = "falcon"  # fused multi-query qkv, parallel blocks, layouts chosen by options


class MLPKind(StrEnum):
    """The MLP's activation as the saved-activation formulas see it."""

    gated = "gated"  # SwiGLU/GeGLU: act(gate) * up
    gelu_new = "gelu_new"  # GPT-2's tanh GELU written out in Python
    relu = "relu"
    gelu = "gelu"  # exact GELU (one kernel)


class Norm(StrEnum):
    rms = "rms"  # RMSNorm: a weight per channel
    layer = "layer"  # LayerNorm: a weight and a bias per channel


class AttentionKernel(StrEnum):
    """What transformers runs when a model is built with `attn_implementation="sdpa"`."""

    sdpa = "sdpa"  # PyTorch's fused SDPA kernels
    eager = "eager"  # no SDPA path: `eager_attention_forward` materializes the scores
    math = "math"  # SDPA's math kernel (fp32 scores): PyTorch's choice for mqa_math_fallback
    # FlashAttention-2 (`attn_implementation="flash_attention_2"`, asked with --attention
    # flash): fused, grouped KV heads and sliding windows native, the padding mask taken as
    # sequence lengths (unpadded), so no seq x seq tensor at all.
    flash = "flash"


class KVHeads(StrEnum):
    """How config.json states the key/value heads."""

    config = "config"  # num_key_value_heads, else one per query head
    mha = "mha"  # always one per query head
    falcon = "falcon"  # num_kv_heads with the new decoder layout, else multi_query: 1


class SlidingLayers(StrEnum):
    """Which layers use the sliding window when config.json has no `layer_types` list."""

    every = "every"
    alternate = "alternate"  # even-indexed layers (the first included) are local
    pattern = "pattern"  # every `sliding_window_pattern`-th layer is global


class ConfigNames(NamedTuple):
    """The type's own config.json names, as the trace writes them (the reader also accepts the
    usual synonyms: n_layer, n_embd, n_head …). None: the type's config has no such field."""

    layers: str
    hidden: str
    heads: str
    kv_heads: str | None
    head_dim: str | None
    ffn: str | None
    positions: str | None
    experts: str | None


class ModelTraits(NamedTuple):
    """One model type. Field groups: reading config.json, counting parameters, the estimator's
    mechanisms, LoRA, and the trace's config."""

    # --- config.json ---------------------------------------------------------------------
    hf_aliases: tuple[str, ...]  # other model_type spellings read as this type
    multimodal_wrappers: tuple[str, ...]  # wrapper model_types whose text_config is this type
    names: ConfigNames
    kv_heads: KVHeads
    ffn_keys: tuple[str, ...]  # where the MLP width is read from
    ffn_default_ratio: int | None  # width = ratio x hidden when the config has none
    positions_keys: tuple[str, ...]
    positions_default: int | None  # when the config states no context length
    tie_default: bool  # tie_word_embeddings when the config leaves it out
    option_keys: tuple[str, ...]  # config fields kept in arch_options (they change the layout)
    sliding_layers: SlidingLayers
    # --- parameters ------------------------------------------------------------------------
    layout: ParamLayout
    norm: Norm
    norms_per_layer: int
    qkv_bias: bool  # q, k, v biased whatever attention_bias says (other layouts: their options)
    qk_norm: bool  # per-head RMSNorm of queries and keys
    moe: bool  # routed experts (the config must give num_experts)
    experts_use_intermediate_size: bool  # an expert's width is intermediate_size
    mla: bool  # multi-head latent attention (the config must give the MLA fields)
    position_table_offset: int | None  # learned position rows beyond the context; None: none
    embedding_norm: bool  # a norm right after the token embedding
    # --- the estimator's mechanisms ---------------------------------------------------------
    mlp: MLPKind
    rotary: bool  # rotary position embeddings (cos/sin tables per forward)
    attention: AttentionKernel  # under attn_implementation="sdpa" (asked for eager, all are)
    mqa_math_fallback: bool  # fewer K/V heads reach SDPA without enable_gqa: the math kernel
    alibi_option: str | None  # the option that swaps rotary embeddings for ALiBi
    kv_broadcast_option: str | None  # the option under which K/V are cached per query head
    softcap: bool  # attention and final logits soft-capped (tanh saved)
    fp32_norm: bool  # RMSNorm keeps its normalized tensor in fp32
    always_mask: bool  # a causal mask is materialized even when none is needed
    fused_qkv_views: bool  # q, k, v are views of one projection output (v keeps it alive)
    qkv_linear: bool  # q, k and v come out of one linear layer (all-linear LoRA adapts it once)
    # --- LoRA -------------------------------------------------------------------------------
    lora_targets: tuple[str, ...]  # PEFT projection names the type has, in ALL_PROJECTIONS order
    # --- the trace's config -----------------------------------------------------------------
    clears_window: bool  # the config class defaults a window: write none explicitly
    window_flag: bool  # the config switches its window with use_sliding_window
    trace_moe_fields: tuple[str, ...]  # Architecture fields written as they are
    trace_fixed: tuple[tuple[str, Any], ...]  # config values the layout needs


# Llama's config.json names; the trace writes these for every type that shares them.
_LLAMA_NAMES = ConfigNames(
    layers="num_hidden_layers",
    hidden="hidden_size",
    heads="num_attention_heads",
    kv_heads="num_key_value_heads",
    head_dim="head_dim",
    ffn="intermediate_size",
    positions="max_position_embeddings",
    experts=None,
)
_POSITIONS = ("max_position_embeddings", "n_positions", "n_ctx")
_INTERMEDIATE = ("intermediate_size",)
# GPT-2, Falcon and BLOOM read their MLP width from n_inner / ffn_hidden_size, else 4 x hidden
# (GPT2Config n_inner=None, FalconConfig ffn_hidden_size=None, BLOOM's fixed 4h).
_FOUR_H = ("n_inner", "ffn_hidden_size")
DEFAULT_MLP_RATIO = 4
# BloomConfig has no context length field (ALiBi); 2048 is its training length (BLOOM paper).
BLOOM_DEFAULT_POSITIONS = 2048

# The two base entries, spelled out in full; every other entry states how it differs.
LLAMA = ModelTraits(
    hf_aliases=(),
    multimodal_wrappers=("llava",),
    names=_LLAMA_NAMES,
    kv_heads=KVHeads.config,
    ffn_keys=_INTERMEDIATE,
    ffn_default_ratio=None,
    positions_keys=_POSITIONS,
    positions_default=None,
    tie_default=False,
    option_keys=("attention_bias", "mlp_bias"),
    sliding_layers=SlidingLayers.every,
    layout=ParamLayout.dense_gated,
    norm=Norm.rms,
    norms_per_layer=2,
    qkv_bias=False,
    qk_norm=False,
    moe=False,
    experts_use_intermediate_size=False,
    mla=False,
    position_table_offset=None,
    embedding_norm=False,
    mlp=MLPKind.gated,
    rotary=True,
    attention=AttentionKernel.sdpa,
    mqa_math_fallback=False,
    alibi_option=None,
    kv_broadcast_option=None,
    softcap=False,
    fp32_norm=False,
    always_mask=False,
    fused_qkv_views=False,
    qkv_linear=False,
    lora_targets=ALL_PROJECTIONS,
    clears_window=False,
    window_flag=False,
    trace_moe_fields=(),
    trace_fixed=(),
)
GPT2 = ModelTraits(
    hf_aliases=(),
    multimodal_wrappers=(),
    names=ConfigNames(
        layers="n_layer",
        hidden="n_embd",
        heads="n_head",
        kv_heads=None,
        head_dim=None,
        ffn="n_inner",
        positions="n_positions",
        experts=None,
    ),
    kv_heads=KVHeads.mha,
    ffn_keys=_FOUR_H,
    ffn_default_ratio=DEFAULT_MLP_RATIO,
    positions_keys=_POSITIONS,
    positions_default=None,
    tie_default=True,
    option_keys=(),
    sliding_layers=SlidingLayers.every,
    layout=ParamLayout.fused_qkv_gelu,
    norm=Norm.layer,
    norms_per_layer=2,
    qkv_bias=True,
    qk_norm=False,
    moe=False,
    experts_use_intermediate_size=False,
    mla=False,
    position_table_offset=0,  # wpe: one learned row per position
    embedding_norm=False,
    mlp=MLPKind.gelu_new,
    rotary=False,
    attention=AttentionKernel.sdpa,
    mqa_math_fallback=False,
    alibi_option=None,
    kv_broadcast_option=None,
    softcap=False,
    fp32_norm=False,
    always_mask=False,
    fused_qkv_views=False,
    qkv_linear=True,  # c_attn (a Conv1D); GPT-NeoX, Falcon, BLOOM: query_key_value
    # Sized with the Llama projection names; PEFT calls GPT-2's fused module c_attn (and
    # BLOOM's, GPT-NeoX's and Falcon's query_key_value): not traced with PEFT here.
    lora_targets=ALL_PROJECTIONS,
    clears_window=False,
    window_flag=False,
    trace_moe_fields=(),
    trace_fixed=(),
)

# Mistral, Qwen2/3: the config class defaults a sliding window, so the trace clears it when
# the architecture has none; Qwen switches it with use_sliding_window.
MISTRAL = LLAMA._replace(multimodal_wrappers=("mistral3",), option_keys=(), clears_window=True)
QWEN2 = MISTRAL._replace(multimodal_wrappers=(), qkv_bias=True, window_flag=True)
QWEN3 = QWEN2._replace(qkv_bias=False, qk_norm=True)
# Gemma's RMSNorm scales by (1 + weight) in fp32 and keeps that fp32 tensor for backward.
GEMMA = LLAMA._replace(multimodal_wrappers=(), option_keys=(), tie_default=True, fp32_norm=True)
# Gemma-2: input, post-attention, pre- and post-feedforward norms; soft-capped attention and
# logits, which transformers runs only with eager attention; alternating sliding layers.
GEMMA2 = GEMMA._replace(
    norms_per_layer=4,
    sliding_layers=SlidingLayers.alternate,
    softcap=True,
    attention=AttentionKernel.eager,
)
# Gemma 3 (text): Gemma-2's norms with q/k norms instead of soft-capping, SDPA, a global layer
# every `sliding_window_pattern` layers; `gemma3` is the multimodal wrapper (and a bare one).
GEMMA3_TEXT = GEMMA._replace(
    hf_aliases=("gemma3",),
    multimodal_wrappers=("gemma3",),
    norms_per_layer=4,
    qk_norm=True,
    sliding_layers=SlidingLayers.pattern,
)
# Phi-3 fuses q/k/v into qkv_proj (q, k and v are views of its output) and gate/up into
# gate_up_proj: PEFT finds only o_proj and down_proj under the Llama names.
PHI3 = LLAMA._replace(
    multimodal_wrappers=(),
    option_keys=("partial_rotary_factor",),
    fused_qkv_views=True,
    qkv_linear=True,
    lora_targets=("o_proj", "down_proj"),
)
MIXTRAL = MISTRAL._replace(
    multimodal_wrappers=(),
    clears_window=False,
    names=_LLAMA_NAMES._replace(experts="num_local_experts"),
    layout=ParamLayout.moe_gated,
    moe=True,
    experts_use_intermediate_size=True,
)
QWEN3_MOE = QWEN3._replace(
    names=_LLAMA_NAMES._replace(experts="num_experts"),
    layout=ParamLayout.moe_gated,
    moe=True,
    trace_moe_fields=("moe_intermediate_size",),
    # every layer sparse (Qwen3MoeConfig's mlp_only_layers / decoder_sparse_step)
    trace_fixed=(("decoder_sparse_step", 1), ("mlp_only_layers", ())),
)
GPT_OSS = LLAMA._replace(
    multimodal_wrappers=(),
    names=_LLAMA_NAMES._replace(experts="num_local_experts"),
    option_keys=(),
    sliding_layers=SlidingLayers.alternate,
    layout=ParamLayout.gpt_oss,
    moe=True,
    experts_use_intermediate_size=True,
)
DEEPSEEK_V3 = LLAMA._replace(
    hf_aliases=("kimi_k2",),
    multimodal_wrappers=(),
    names=_LLAMA_NAMES._replace(experts="n_routed_experts"),
    option_keys=("topk_method",),
    layout=ParamLayout.deepseek,
    moe=True,
    mla=True,
    trace_moe_fields=(
        "n_shared_experts",
        "moe_intermediate_size",
        "first_k_dense_replace",
        "q_lora_rank",
        "kv_lora_rank",
        "qk_nope_head_dim",
        "qk_rope_head_dim",
        "v_head_dim",
    ),
)
# BLOOM: ALiBi (no rotary tables; its bias is not modelled as a mask), an embedding LayerNorm.
BLOOM = GPT2._replace(
    names=GPT2.names._replace(hidden="hidden_size", ffn=None, positions=None),
    positions_keys=("seq_length", "max_position_embeddings"),
    positions_default=BLOOM_DEFAULT_POSITIONS,
    position_table_offset=None,
    embedding_norm=True,
    mlp=MLPKind.gelu,
)
OPT = GPT2._replace(
    names=_LLAMA_NAMES._replace(kv_heads=None, head_dim=None, ffn="ffn_dim"),
    ffn_keys=("ffn_dim",),
    ffn_default_ratio=None,
    option_keys=(
        "word_embed_proj_dim",
        "do_layer_norm_before",
        "_remove_final_layer_norm",
        "enable_bias",
    ),
    layout=ParamLayout.opt,
    qkv_bias=False,
    position_table_offset=2,  # OPTLearnedPositionalEmbedding starts positions at offset 2
    mlp=MLPKind.relu,
    qkv_linear=False,
    lora_targets=("q_proj", "k_proj", "v_proj"),  # its output is out_proj, its MLP fc1/fc2
)
GPT_NEOX = GPT2._replace(
    names=_LLAMA_NAMES._replace(kv_heads=None, head_dim=None),
    ffn_keys=_INTERMEDIATE,
    ffn_default_ratio=None,
    tie_default=False,
    option_keys=("attention_bias", "rotary_pct", "use_parallel_residual"),
    layout=ParamLayout.gpt_neox,
    qkv_bias=False,
    position_table_offset=None,
    mlp=MLPKind.gelu,
    rotary=True,
    fused_qkv_views=True,  # q, k and v are views of query_key_value's output
)
# Falcon: multi-query attention reaches SDPA with one K/V head and no enable_gqa, which only
# the math kernel takes; the new decoder layout caches K/V per query head; the RW models use
# ALiBi; the causal mask is always built.
FALCON = GPT2._replace(
    hf_aliases=("RefinedWebModel", "RefinedWeb"),
    names=_LLAMA_NAMES._replace(kv_heads="num_kv_heads", head_dim=None, ffn="ffn_hidden_size"),
    kv_heads=KVHeads.falcon,
    option_keys=(
        "new_decoder_architecture",
        "parallel_attn",
        "bias",
        "multi_query",
        "num_ln_in_parallel_attn",
        "alibi",
    ),
    layout=ParamLayout.falcon,
    qkv_bias=False,
    position_table_offset=None,
    mlp=MLPKind.gelu,
    rotary=True,
    mqa_math_fallback=True,
    alibi_option="alibi",
    kv_broadcast_option="new_decoder_architecture",
    always_mask=True,
)

TRAITS: Mapping[ModelType, ModelTraits] = MappingProxyType(
    {
        ModelType.llama: LLAMA,
        ModelType.mistral: MISTRAL,
        ModelType.mixtral: MIXTRAL,
        ModelType.qwen2: QWEN2,
        ModelType.qwen3: QWEN3,
        ModelType.qwen3_moe: QWEN3_MOE,
        ModelType.gemma: GEMMA,
        ModelType.gemma2: GEMMA2,
        ModelType.gemma3_text: GEMMA3_TEXT,
        ModelType.phi3: PHI3,
        ModelType.gpt2: GPT2,
        ModelType.opt: OPT,
        ModelType.falcon: FALCON,
        ModelType.gpt_neox: GPT_NEOX,
        ModelType.bloom: BLOOM,
        ModelType.deepseek_v3: DEEPSEEK_V3,
        ModelType.gpt_oss: GPT_OSS,
    }
)


def traits(model_type: ModelType) -> ModelTraits:
    """The traits of `model_type` (every member has an entry: tests/test_arch.py)."""
    return TRAITS[model_type]


def multimodal_wrappers() -> frozenset[str]:
    """model_types whose config.json holds the language model in `text_config`."""
    return frozenset(w for entry in TRAITS.values() for w in entry.multimodal_wrappers)


def model_type_of(raw: str) -> ModelType | None:
    """The ModelType a config's model_type names (its own value or an alias), or None."""
    for model_type, entry in TRAITS.items():
        if raw == model_type.value or raw in entry.hf_aliases:
            return model_type
    return None
