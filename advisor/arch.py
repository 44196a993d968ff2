"""A language model's architecture, and its parameter count computed from it.

Pure: no database, CLI or rendering imports. The field names are Hugging Face config.json
names, so a catalog row, a config file and the estimator speak the same language.

The counts follow the module layout of each `model_type` in Hugging Face transformers (which
projections carry biases, how many norms a layer has, whether positions are learned), as the
type's entry in `advisor/traits.py` states it; they reproduce the published exact counts of
the bundled models (see tests/test_bundled_data.py).

This module is also the one reader of config.json: `load_hf_config` (a file),
`architecture_from_hf_config` and `native_dtype_from_hf_config` (multimodal wrappers read
through their `text_config`), used by the catalog's and the CLI's config paths, the
estimator's callers and `advisor trace`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from advisor.enums import AttentionKind, ModelType
from advisor.errors import InvalidValueError
from advisor.traits import (
    TRAITS,
    KVHeads,
    ModelTraits,
    Norm,
    ParamLayout,
    SlidingLayers,
    model_type_of,
    multimodal_wrappers,
)

# LayerNorm has a weight and a bias per channel; RMSNorm only a weight.
LAYERNORM_PARAMS_PER_CHANNEL = 2
RMSNORM_PARAMS_PER_CHANNEL = 1


def _hashable(value: Any) -> Any:
    """A JSON value as a hashable one (lists as tuples, objects as sorted item tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


class ArchOptions(Mapping[str, Any]):
    """Config options that change the layout (`arch_options`): an immutable, hashable mapping."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._items: dict[str, Any] = dict(items or {})
        self._hash = hash(frozenset((k, _hashable(v)) for k, v in self._items.items()))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ArchOptions):
            return self._hash == other._hash and self._items == other._items
        return isinstance(other, Mapping) and self._items == dict(other)

    def __repr__(self) -> str:
        return f"ArchOptions({self._items!r})"


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """What the memory of a decoder-only transformer depends on. Immutable and hashable (the
    estimator caches its derived sizes per architecture); `arch_options` may be given as any
    mapping and is kept as an `ArchOptions`."""

    model_type: ModelType
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    num_experts: int | None = None
    num_experts_per_tok: int | None = None
    n_shared_experts: int | None = None
    moe_intermediate_size: int | None = None
    first_k_dense_replace: int | None = None
    sliding_window: int | None = None
    num_sliding_layers: int | None = None
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_nope_head_dim: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    arch_options: Mapping[str, Any] = field(default_factory=ArchOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.arch_options, ArchOptions):
            object.__setattr__(self, "arch_options", ArchOptions(self.arch_options))
        validate(self)
        # Hashed once: the estimator looks its sizes up by architecture on every call.
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, f) for f in _FIELD_NAMES)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return,attr-defined]

    @property
    def traits(self) -> ModelTraits:
        return TRAITS[self.model_type]

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None

    @property
    def attention_kind(self) -> AttentionKind:
        if self.kv_lora_rank is not None:
            return AttentionKind.mla
        if self.num_key_value_heads == self.num_attention_heads:
            return AttentionKind.mha
        if self.num_key_value_heads == 1:
            return AttentionKind.mqa
        return AttentionKind.gqa

    def option(self, name: str, default: Any) -> Any:
        return self.arch_options.get(name, default)


_FIELD_NAMES = tuple(f.name for f in fields(Architecture))


class ParamCount(NamedTuple):
    """Parameters by where they live; `total` is what a checkpoint holds."""

    embedding: int
    output_head: int
    layers: int
    final_norm: int
    active: int

    @property
    def total(self) -> int:
        return self.embedding + self.output_head + self.layers + self.final_norm


# --- bounds: the largest value each size may take ------------------------------------------
# Checked before any count, loop or allocation (count_params loops over the layers), so a
# typed or fuzzed 10^19 is one line instead of a hang or a MemoryError. Each bound is far
# above every published model (largest figures from the models' config.json files on the
# Hugging Face Hub, as of 2025) and far below what makes the arithmetic or a loop costly.
# Layers: the deepest published decoders have about 128 (Llama 3.1 405B: 126); 4,096 keeps
# count_params' per-layer loop under a millisecond's work per architecture.
MAX_LAYERS = 4_096
# Widths (hidden, FFN, MLA ranks, head dims): the widest published hidden size is 25,600
# (PaLM-class), the widest FFN under 10^5 (Llama 3.1 405B: 53,248); 2^24 leaves ample room.
MAX_WIDTH = 2**24
# Heads: published models have at most a few hundred (Llama 3.1 405B: 128).
MAX_HEADS = 65_536
# Vocabulary: the largest published tokenizers have about 2.6 * 10^5 tokens (Gemma 3:
# 262,208); 2^24 is 64 times that.
MAX_VOCAB = 2**24
# Trained context: the longest published is 10^7 tokens (Llama 4 Scout); 2^30 is 100 times.
MAX_POSITIONS = 2**30
# Routed experts per layer: the most published is 384 (Kimi K2); 65,536 is far above.
MAX_EXPERTS = 65_536

_UPPER_BOUNDS: Mapping[str, int] = MappingProxyType(
    {
        "num_hidden_layers": MAX_LAYERS,
        "hidden_size": MAX_WIDTH,
        "num_attention_heads": MAX_HEADS,
        "num_key_value_heads": MAX_HEADS,
        "head_dim": MAX_WIDTH,
        "intermediate_size": MAX_WIDTH,
        "vocab_size": MAX_VOCAB,
        "max_position_embeddings": MAX_POSITIONS,
        "num_experts": MAX_EXPERTS,
        "num_experts_per_tok": MAX_EXPERTS,
        "n_shared_experts": MAX_EXPERTS,
        "moe_intermediate_size": MAX_WIDTH,
        "first_k_dense_replace": MAX_LAYERS,
        "sliding_window": MAX_POSITIONS,
        "num_sliding_layers": MAX_LAYERS,
        "q_lora_rank": MAX_WIDTH,
        "kv_lora_rank": MAX_WIDTH,
        "qk_nope_head_dim": MAX_WIDTH,
        "qk_rope_head_dim": MAX_WIDTH,
        "v_head_dim": MAX_WIDTH,
    }
)


def upper_bound(name: str) -> int:
    """The largest value the architecture field `name` may take."""
    return _UPPER_BOUNDS[name]


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise InvalidValueError(f"{name} must be a positive integer, got {value}")


def _within_bounds(arch: Architecture) -> None:
    for name, bound in _UPPER_BOUNDS.items():
        value = getattr(arch, name)
        if value is not None and value > bound:
            raise InvalidValueError(f"{name} must be at most {bound:,}, got {_short(value)}")


def _short(value: int) -> str:
    """An integer for a one-line message: its digits, or its size beyond 64 bits (str() of a
    huge integer is slow, and refused past 4,300 digits)."""
    return str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"


_POSITIVE_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "sliding_window",
    "num_sliding_layers",
    "q_lora_rank",
    "kv_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
)


def validate(arch: Architecture) -> None:
    """Reject architectures that cannot exist; raise InvalidValueError naming the field."""
    for name in _POSITIVE_FIELDS:
        _positive(name, getattr(arch, name))
    _within_bounds(arch)
    for name in ("n_shared_experts", "first_k_dense_replace"):
        value = getattr(arch, name)
        if value is not None and value < 0:
            raise InvalidValueError(f"{name} must not be negative, got {value}")
    if arch.hidden_size % arch.num_attention_heads:
        raise InvalidValueError(
            f"num_attention_heads ({arch.num_attention_heads}) must divide hidden_size "
            f"({arch.hidden_size})"
        )
    if arch.num_attention_heads % arch.num_key_value_heads:
        raise InvalidValueError(
            f"num_key_value_heads ({arch.num_key_value_heads}) must divide "
            f"num_attention_heads ({arch.num_attention_heads})"
        )
    _validate_experts(arch)
    _validate_layers(arch)
    _validate_mla(arch)


def _validate_experts(arch: Architecture) -> None:
    if (arch.num_experts is None) != (arch.num_experts_per_tok is None):
        raise InvalidValueError("num_experts and num_experts_per_tok must be given together")
    moe = arch.traits.moe
    if moe and arch.num_experts is None:
        raise InvalidValueError(f"model_type {arch.model_type.value} needs num_experts")
    if not moe and arch.num_experts is not None:
        raise InvalidValueError(
            f"model_type {arch.model_type.value} has no experts; num_experts must be empty"
        )
    if (
        arch.num_experts is not None
        and arch.num_experts_per_tok is not None
        and arch.num_experts_per_tok > arch.num_experts
    ):
        raise InvalidValueError(
            f"num_experts_per_tok ({arch.num_experts_per_tok}) exceeds num_experts "
            f"({arch.num_experts})"
        )


def _validate_layers(arch: Architecture) -> None:
    if arch.first_k_dense_replace is not None and (
        arch.first_k_dense_replace > arch.num_hidden_layers
    ):
        raise InvalidValueError("first_k_dense_replace exceeds num_hidden_layers")
    if arch.num_sliding_layers is not None:
        if arch.sliding_window is None:
            raise InvalidValueError("num_sliding_layers needs sliding_window")
        if arch.num_sliding_layers > arch.num_hidden_layers:
            raise InvalidValueError(
                f"num_sliding_layers ({arch.num_sliding_layers}) exceeds num_hidden_layers "
                f"({arch.num_hidden_layers})"
            )


def _validate_mla(arch: Architecture) -> None:
    mla = (arch.kv_lora_rank, arch.qk_nope_head_dim, arch.qk_rope_head_dim, arch.v_head_dim)
    if any(v is not None for v in mla) and any(v is None for v in mla):
        raise InvalidValueError(
            "MLA needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim together"
        )
    if arch.traits.mla and arch.kv_lora_rank is None:
        raise InvalidValueError(
            f"model_type {arch.model_type.value} needs the MLA fields (kv_lora_rank …)"
        )


# --- parameter counting --------------------------------------------------------------------


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _gated_mlp(hidden: int, inner: int, bias: bool = False) -> int:
    """gate, up (hidden → inner) and down (inner → hidden), as SwiGLU/GeGLU MLPs have."""
    return 2 * _linear(hidden, inner, bias) + _linear(inner, hidden, bias)


def _plain_mlp(hidden: int, inner: int, bias: bool) -> int:
    """up (hidden → inner) and down (inner → hidden), as GELU MLPs have."""
    return _linear(hidden, inner, bias) + _linear(inner, hidden, bias)


class ProjectionBiases(NamedTuple):
    """Which of a decoder layer's dense projections carry a bias: the query/key/value ones,
    the attention output, the MLP's. A biased linear runs as one `addmm` (bias added in the
    product), an unbiased one as `mm`."""

    qkv: bool
    out: bool
    mlp: bool


def projection_biases(arch: Architecture) -> ProjectionBiases:
    """The layer's biases by layout, from the config's switches with each model type's
    default (routed experts are counted without: their products are not plain linears)."""
    layout = arch.traits.layout
    if layout is ParamLayout.dense_gated:
        attention_bias = bool(arch.option("attention_bias", False))
        return ProjectionBiases(
            attention_bias or arch.traits.qkv_bias,
            attention_bias,
            bool(arch.option("mlp_bias", False)),
        )
    if layout is ParamLayout.gpt_oss:
        return ProjectionBiases(qkv=True, out=True, mlp=False)
    if layout is ParamLayout.fused_qkv_gelu:
        return ProjectionBiases(qkv=True, out=True, mlp=True)
    if layout is ParamLayout.gpt_neox:
        attention_bias = bool(arch.option("attention_bias", True))
        return ProjectionBiases(attention_bias, attention_bias, mlp=True)
    if layout is ParamLayout.opt:
        bias = bool(arch.option("enable_bias", True))
        return ProjectionBiases(bias, bias, bias)
    if layout is ParamLayout.falcon:
        bias = bool(arch.option("bias", False))
        return ProjectionBiases(bias, bias, bias)
    return ProjectionBiases(qkv=False, out=False, mlp=False)  # MoE and MLA layouts


def _attention(arch: Architecture, *, qkv_bias: bool, out_bias: bool) -> int:
    h, d = arch.hidden_size, arch.head_dim
    q = arch.num_attention_heads * d
    kv = arch.num_key_value_heads * d
    return _linear(h, q, qkv_bias) + 2 * _linear(h, kv, qkv_bias) + _linear(q, h, out_bias)


def _qk_norm(arch: Architecture) -> int:
    """Per-head RMSNorm of queries and keys (q_norm, k_norm), where the type has them."""
    return 2 * arch.head_dim * RMSNORM_PARAMS_PER_CHANNEL if arch.traits.qk_norm else 0


def _mla_attention(arch: Architecture) -> int:
    """DeepSeek multi-head latent attention: low-rank query and key/value projections."""
    assert arch.kv_lora_rank is not None and arch.qk_nope_head_dim is not None
    assert arch.qk_rope_head_dim is not None and arch.v_head_dim is not None
    h, heads = arch.hidden_size, arch.num_attention_heads
    qk_head = arch.qk_nope_head_dim + arch.qk_rope_head_dim
    if arch.q_lora_rank is not None:
        query = (
            h * arch.q_lora_rank
            + arch.q_lora_rank * RMSNORM_PARAMS_PER_CHANNEL
            + arch.q_lora_rank * heads * qk_head
        )
    else:
        query = h * heads * qk_head
    key_value = (
        h * (arch.kv_lora_rank + arch.qk_rope_head_dim)
        + arch.kv_lora_rank * RMSNORM_PARAMS_PER_CHANNEL
        + arch.kv_lora_rank * heads * (arch.qk_nope_head_dim + arch.v_head_dim)
    )
    return query + key_value + heads * arch.v_head_dim * h


class _Layer(NamedTuple):
    """One decoder layer: parameters always used, and the routed experts' share of them."""

    total: int
    inactive_experts: int = 0


def _expert_ffn(arch: Architecture) -> int:
    return arch.moe_intermediate_size or arch.intermediate_size


def _moe_block(arch: Architecture, *, router_bias: bool, expert_bias: bool) -> _Layer:
    assert arch.num_experts is not None and arch.num_experts_per_tok is not None
    h = arch.hidden_size
    expert = _gated_mlp(h, _expert_ffn(arch), expert_bias)
    router = _linear(h, arch.num_experts, router_bias)
    shared = (
        _gated_mlp(h, _expert_ffn(arch) * arch.n_shared_experts, False)
        if (arch.n_shared_experts)
        else 0
    )
    experts = arch.num_experts * expert
    inactive = (arch.num_experts - arch.num_experts_per_tok) * expert
    return _Layer(router + experts + shared, inactive)


def _norms(arch: Architecture) -> int:
    """The layer's norms: `norms_per_layer` of the type's kind."""
    per_channel = (
        LAYERNORM_PARAMS_PER_CHANNEL
        if arch.traits.norm is Norm.layer
        else RMSNORM_PARAMS_PER_CHANNEL
    )
    return arch.traits.norms_per_layer * per_channel * arch.hidden_size


def _dense_gated_layer(arch: Architecture, index: int) -> _Layer:
    biases = projection_biases(arch)
    attn = _attention(arch, qkv_bias=biases.qkv, out_bias=biases.out) + _qk_norm(arch)
    mlp = _gated_mlp(arch.hidden_size, arch.intermediate_size, biases.mlp)
    return _Layer(attn + _norms(arch) + mlp)


def _moe_gated_layer(arch: Architecture, index: int) -> _Layer:
    attn = _attention(arch, qkv_bias=False, out_bias=False) + _qk_norm(arch)
    moe = _moe_block(arch, router_bias=False, expert_bias=False)
    return _Layer(attn + _norms(arch) + moe.total, moe.inactive_experts)


def _gpt_oss_layer(arch: Architecture, index: int) -> _Layer:
    attn = _attention(arch, qkv_bias=True, out_bias=True)
    sinks = arch.num_attention_heads  # one learned attention-sink logit per head
    moe = _moe_block(arch, router_bias=True, expert_bias=True)
    return _Layer(attn + sinks + _norms(arch) + moe.total, moe.inactive_experts)


def _deepseek_layer(arch: Architecture, index: int) -> _Layer:
    attn = _mla_attention(arch)
    if index < (arch.first_k_dense_replace or 0):
        return _Layer(attn + _norms(arch) + _gated_mlp(arch.hidden_size, arch.intermediate_size))
    moe = _moe_block(arch, router_bias=False, expert_bias=False)
    assert arch.num_experts is not None
    # noaux_tc routing keeps a per-expert score-correction bias beside the router.
    correction = arch.num_experts if arch.option("topk_method", "noaux_tc") == "noaux_tc" else 0
    return _Layer(attn + _norms(arch) + moe.total + correction, moe.inactive_experts)


def _fused_qkv_gelu_layer(arch: Architecture, index: int) -> _Layer:
    h, f = arch.hidden_size, arch.intermediate_size
    attn = _linear(h, 3 * h, True) + _linear(h, h, True)
    return _Layer(_norms(arch) + attn + _plain_mlp(h, f, True))


def _gpt_neox_layer(arch: Architecture, index: int) -> _Layer:
    h, f = arch.hidden_size, arch.intermediate_size
    biases = projection_biases(arch)
    attn = _linear(h, 3 * h, biases.qkv) + _linear(h, h, biases.out)
    return _Layer(_norms(arch) + attn + _plain_mlp(h, f, biases.mlp))


def _opt_layer(arch: Architecture, index: int) -> _Layer:
    h, f = arch.hidden_size, arch.intermediate_size
    bias = projection_biases(arch).mlp
    return _Layer(_norms(arch) + 4 * _linear(h, h, bias) + _plain_mlp(h, f, bias))


def _falcon_layer(arch: Architecture, index: int) -> _Layer:
    h, f = arch.hidden_size, arch.intermediate_size
    ln = LAYERNORM_PARAMS_PER_CHANNEL * h
    bias = projection_biases(arch).mlp
    qkv_out = (arch.num_attention_heads + 2 * arch.num_key_value_heads) * arch.head_dim
    attn = _linear(h, qkv_out, bias) + _linear(h, h, bias)
    # Norms per block by layout: the new decoder has num_ln_in_parallel_attn (2 when unset),
    # the parallel one input_layernorm only, the sequential one two.
    if arch.option("new_decoder_architecture", False):
        norms = int(arch.option("num_ln_in_parallel_attn", 2) or 2) * ln
    elif arch.option("parallel_attn", True):
        norms = ln
    else:
        norms = 2 * ln
    return _Layer(attn + norms + _plain_mlp(h, f, bias))


_LAYER_PARAMS: Mapping[ParamLayout, Callable[[Architecture, int], _Layer]] = MappingProxyType(
    {
        ParamLayout.dense_gated: _dense_gated_layer,
        ParamLayout.moe_gated: _moe_gated_layer,
        ParamLayout.gpt_oss: _gpt_oss_layer,
        ParamLayout.deepseek: _deepseek_layer,
        ParamLayout.fused_qkv_gelu: _fused_qkv_gelu_layer,
        ParamLayout.gpt_neox: _gpt_neox_layer,
        ParamLayout.opt: _opt_layer,
        ParamLayout.falcon: _falcon_layer,
    }
)


def _final_norm(arch: Architecture) -> int:
    if arch.traits.layout is ParamLayout.opt and (
        not arch.option("do_layer_norm_before", True)
        or arch.option("_remove_final_layer_norm", False)
    ):
        return 0  # OPT-350m normalizes after each block and has no final norm
    per_channel = (
        LAYERNORM_PARAMS_PER_CHANNEL
        if arch.traits.norm is Norm.layer
        else RMSNORM_PARAMS_PER_CHANNEL
    )
    return per_channel * arch.hidden_size


def _embeddings(arch: Architecture) -> tuple[int, int, int]:
    """(input embeddings with position tables, norms and projections, output head, final norm)."""
    traits, h, v = arch.traits, arch.hidden_size, arch.vocab_size
    # OPT's word_embed_proj_dim: embeddings of another width, projected in and out.
    width = int(arch.option("word_embed_proj_dim", h) or h)
    projections = 2 * width * h if width != h else 0
    head = 0 if arch.tie_word_embeddings else v * width
    embedding = v * width + projections
    if traits.position_table_offset is not None:
        embedding += (arch.max_position_embeddings + traits.position_table_offset) * h
    if traits.embedding_norm:
        embedding += LAYERNORM_PARAMS_PER_CHANNEL * h
    return embedding, head, _final_norm(arch)


def layer_kinds(arch: Architecture) -> tuple[tuple[int, int], ...]:
    """The distinct layers of `arch` as (index of the first such layer, how many there are),
    in order. A layer's parameters depend on its index only in DeepSeek's layout (the first
    `first_k_dense_replace` layers are dense, the rest MoE); every other layout repeats one
    layer. `tests/test_arch.py` checks the count against a layer-by-layer sum."""
    layers = arch.num_hidden_layers
    if arch.traits.layout is ParamLayout.deepseek:
        dense = min(arch.first_k_dense_replace or 0, layers)
        return tuple((first, n) for first, n in ((0, dense), (dense, layers - dense)) if n)
    return ((0, layers),)


def count_params(arch: Architecture) -> ParamCount:
    """Exact parameter count of `arch`, with the share each token activates (MoE): each
    distinct layer counted once and multiplied by how many there are (`layer_kinds`)."""
    layer_params = _LAYER_PARAMS[arch.traits.layout]
    kinds = [(layer_params(arch, first), n) for first, n in layer_kinds(arch)]
    embedding, head, final_norm = _embeddings(arch)
    layer_total = sum(layer.total * n for layer, n in kinds)
    inactive = sum(layer.inactive_experts * n for layer, n in kinds)
    total = embedding + head + layer_total + final_norm
    return ParamCount(
        embedding=embedding,
        output_head=head,
        layers=layer_total,
        final_norm=final_norm,
        active=total - inactive,
    )


# --- Hugging Face config.json: the one reader ----------------------------------------------

# The usual spellings of the common fields across model types (GPT-2's n_layer, T5-style
# num_layers …); the first one a config holds is read.
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers")
_HIDDEN = ("hidden_size", "n_embd", "d_model")
_HEADS = ("num_attention_heads", "n_head", "num_heads")
_EXPERTS = ("num_local_experts", "n_routed_experts", "num_experts")
_MLA_FIELDS = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
# Gemma 3's default: one global layer after every five local ones (Gemma3TextConfig).
GEMMA3_SLIDING_PATTERN = 6
# An option is kept in arch_options only when the config gives it a value other than this
# (the value the layout code assumes when the option is absent).
_DEFAULT_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {
        "attention_bias": False,
        "mlp_bias": False,
        "partial_rotary_factor": 1.0,
        "rotary_pct": 1.0,
        "use_parallel_residual": True,
        "do_layer_norm_before": True,
        "_remove_final_layer_norm": False,
        "enable_bias": True,
        "new_decoder_architecture": False,
        "parallel_attn": True,
        "bias": False,
        "multi_query": True,
        "alibi": False,
        "num_ln_in_parallel_attn": None,
        "topk_method": "noaux_tc",
        "word_embed_proj_dim": None,  # OPT's default, the hidden size, is dropped below
    }
)


def load_hf_config(path: Path) -> dict[str, Any]:
    """Read a config.json file into a dict; InvalidValueError names the file and the fault."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidValueError(f"{path}: no such file") from None
    except OSError as error:
        raise InvalidValueError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidValueError(f"{path}: not a UTF-8 text file") from None
    except json.JSONDecodeError as error:
        raise InvalidValueError(
            f"{path}: malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise InvalidValueError(f"{path}: JSON nested too deeply to be a config.json") from None
    except ValueError as error:  # an integer of more than 4,300 digits (int_max_str_digits)
        raise InvalidValueError(f"{path}: {error}".split("; use")[0]) from None
    if not isinstance(content, dict):
        raise InvalidValueError(f"{path}: a config.json must hold a JSON object")
    return content


def hf_text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's config: a multimodal wrapper's `text_config`, else `config`."""
    inner = config.get("text_config")
    outer_type = config.get("model_type")
    if (
        isinstance(outer_type, str)
        and outer_type in multimodal_wrappers()
        and isinstance(inner, dict)
    ):
        return inner
    return config


def _first(config: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return None


# How much of a config value a message quotes, so a message stays one short line.
QUOTED_VALUE_CHARS = 60


def quoted(value: Any) -> str:
    """`value` as a message quotes it: its repr, cut at QUOTED_VALUE_CHARS characters, without
    descending into deeply nested lists or objects (their repr would recurse)."""
    if isinstance(value, list | dict):
        return f"a JSON {'array' if isinstance(value, list) else 'object'}"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= QUOTED_VALUE_CHARS else text[: QUOTED_VALUE_CHARS - 1] + "…"


def _optional_int(config: Mapping[str, Any], names: tuple[str, ...]) -> int | None:
    value = _first(config, names)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValueError(
            f"config.json field {names[0]!r} must be an integer, got {quoted(value)}"
        )
    return value


def _optional_bool(config: Mapping[str, Any], name: str) -> bool | None:
    value = config.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidValueError(
            f"config.json field {name!r} must be true or false, got {quoted(value)}"
        )
    return value


def _required(config: Mapping[str, Any], names: tuple[str, ...]) -> int:
    value = _optional_int(config, names)
    if value is None:
        raise InvalidValueError(f"config.json is missing required field {names[0]!r}")
    return value


def _model_type(config: Mapping[str, Any]) -> ModelType:
    raw_type = config.get("model_type")
    if raw_type is None:
        raise InvalidValueError("config.json is missing required field 'model_type'")
    found = model_type_of(raw_type) if isinstance(raw_type, str) else None
    if found is None:
        supported = ", ".join(m.value for m in ModelType)
        raise InvalidValueError(
            f"model_type {quoted(raw_type)} is not supported (supported: {supported})"
        )
    return found


def _sliding(
    config: Mapping[str, Any], traits: ModelTraits, layers: int
) -> tuple[int | None, int | None]:
    """(window, number of layers using it) as transformers applies them."""
    window = _optional_int(config, ("sliding_window",))
    if window is None or _optional_bool(config, "use_sliding_window") is False:
        return None, None
    layer_types = config.get("layer_types")
    if layer_types is not None and not isinstance(layer_types, list):
        raise InvalidValueError(
            f"config.json field 'layer_types' must be a list, got {quoted(layer_types)}"
        )
    if layer_types and len(layer_types) != layers:
        raise InvalidValueError(
            f"config.json field 'layer_types' lists {len(layer_types)} layers; "
            f"num_hidden_layers is {layers}"
        )
    if layer_types:
        count = sum(1 for kind in layer_types if kind == "sliding_attention")
        return (window, count) if count else (None, None)
    if traits.sliding_layers is SlidingLayers.alternate:
        return window, layers // 2 + layers % 2
    if traits.sliding_layers is SlidingLayers.pattern:
        pattern = _optional_int(config, ("sliding_window_pattern",))
        if pattern is None:
            pattern = GEMMA3_SLIDING_PATTERN
        if not 1 <= pattern <= MAX_LAYERS:
            raise InvalidValueError(
                f"config.json field 'sliding_window_pattern' must be between 1 and "
                f"{MAX_LAYERS:,}, got {quoted(pattern)}"
            )
        return window, layers - layers // pattern
    return window, layers


def _kv_heads(config: Mapping[str, Any], traits: ModelTraits, heads: int) -> int:
    if traits.kv_heads is KVHeads.mha:
        return heads
    if traits.kv_heads is KVHeads.falcon:
        # Falcon: num_kv_heads only in the new decoder layout; else multi_query means one.
        new_arch = bool(_optional_bool(config, "new_decoder_architecture"))
        kv_heads = _optional_int(config, ("num_kv_heads",)) if new_arch else None
        if kv_heads is None:
            multi_query = _optional_bool(config, "multi_query")
            kv_heads = 1 if (multi_query is not False and not new_arch) else heads
        return kv_heads
    # Absent means one KV head per query head; 0 is kept, and refused by validate().
    kv_heads = _optional_int(config, ("num_key_value_heads",))
    return heads if kv_heads is None else kv_heads


def _sizes(config: Mapping[str, Any], traits: ModelTraits) -> dict[str, Any]:
    """The dense sizes every type has."""
    layers = _required(config, _LAYERS)
    hidden = _required(config, _HIDDEN)
    heads = _required(config, _HEADS)
    if layers > MAX_LAYERS:  # before anything counts layers (layer_types, sliding layers)
        raise InvalidValueError(
            f"num_hidden_layers must be at most {MAX_LAYERS:,}, got {quoted(layers)}"
        )
    head_dim = _optional_int(config, ("head_dim",))
    if head_dim is None:
        head_dim = hidden // heads if heads > 0 else 0
    if traits.mla:
        head_dim = _optional_int(config, ("v_head_dim",)) or head_dim
    if traits.ffn_default_ratio is not None:
        ffn = _optional_int(config, traits.ffn_keys) or traits.ffn_default_ratio * hidden
    else:
        ffn = _required(config, traits.ffn_keys)
    if traits.positions_default is not None:
        positions = _optional_int(config, traits.positions_keys) or traits.positions_default
    else:
        positions = _required(config, traits.positions_keys)
    return {
        "num_hidden_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "num_key_value_heads": _kv_heads(config, traits, heads),
        "head_dim": head_dim,
        "intermediate_size": ffn,
        "vocab_size": _required(config, ("vocab_size",)),
        "max_position_embeddings": positions,
        "tie_word_embeddings": _bool_or(config, "tie_word_embeddings", traits.tie_default),
    }


def _bool_or(config: Mapping[str, Any], name: str, default: bool) -> bool:
    value = _optional_bool(config, name)
    return default if value is None else value


def _experts(config: Mapping[str, Any], traits: ModelTraits, ffn: int) -> dict[str, Any]:
    num_experts = _optional_int(config, _EXPERTS) if traits.moe else None
    if not num_experts:
        return {} if num_experts is None else {"num_experts": num_experts}  # 0: refused later
    return {
        "num_experts": num_experts,
        "num_experts_per_tok": _optional_int(config, ("num_experts_per_tok", "experts_per_token")),
        "n_shared_experts": _optional_int(config, ("n_shared_experts",)),
        "moe_intermediate_size": ffn
        if traits.experts_use_intermediate_size
        else _optional_int(config, ("moe_intermediate_size",)),
        "first_k_dense_replace": _optional_int(config, ("first_k_dense_replace",)),
    }


# The JSON type each layout option must have (read by the layer functions above).
_OPTION_TYPES: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {
        "partial_rotary_factor": (int, float),
        "rotary_pct": (int, float),
        "num_ln_in_parallel_attn": (int,),
        "word_embed_proj_dim": (int,),
        "topk_method": (str,),
    }
)


def _check_option(key: str, value: Any) -> None:
    """Refuse an option value of the wrong type or out of range (booleans unless listed)."""
    types = _OPTION_TYPES.get(key, (bool,))
    if value is None and key in ("num_ln_in_parallel_attn", "word_embed_proj_dim"):
        return
    wrong = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
    if not wrong and isinstance(value, float) and not math.isfinite(value):
        wrong = True
    if not wrong and isinstance(value, int) and not isinstance(value, bool) and int in types:
        wrong = not 0 <= value <= MAX_WIDTH
    if not wrong and isinstance(value, str):
        wrong = len(value) > QUOTED_VALUE_CHARS
    if wrong:
        kind = " or ".join(
            {bool: "true or false", int: "a number", float: "a number", str: "a short text"}[t]
            for t in dict.fromkeys(t if t is not float else int for t in types)
        )
        raise InvalidValueError(f"config.json field {key!r} must be {kind}, got {quoted(value)}")


def _options(config: Mapping[str, Any], traits: ModelTraits, hidden: int) -> dict[str, Any]:
    for key in traits.option_keys:
        if key in config:
            _check_option(key, config[key])
    options = {
        key: config[key]
        for key in traits.option_keys
        if key in config and config[key] != _DEFAULT_OPTIONS.get(key)
    }
    if options.get("word_embed_proj_dim") == hidden:  # OPT's default: the hidden size
        del options["word_embed_proj_dim"]
    return options


def architecture_from_hf_config(config: Mapping[str, Any]) -> Architecture:
    """Read a Hugging Face config.json (as a dict) into an Architecture.

    Raises InvalidValueError naming the missing or invalid field; multimodal configs are read
    through their `text_config`.
    """
    config = hf_text_config(config)
    t = _model_type(config)
    traits = TRAITS[t]
    sizes = _sizes(config, traits)
    window, sliding_layers = _sliding(config, traits, sizes["num_hidden_layers"])
    mla: dict[str, Any] = (
        {name: _optional_int(config, (name,)) for name in _MLA_FIELDS} if traits.mla else {}
    )
    return Architecture(
        model_type=t,
        **sizes,
        **_experts(config, traits, sizes["intermediate_size"]),
        sliding_window=window,
        num_sliding_layers=sliding_layers,
        **mla,
        arch_options=_options(config, traits, sizes["hidden_size"]),
    )


def native_dtype_from_hf_config(config: Mapping[str, Any]) -> str:
    """The checkpoint's dtype (`torch_dtype`, or `dtype` in newer configs; a multimodal
    wrapper's own, else its text model's); bfloat16 if unset."""
    inner = hf_text_config(config)
    fallback = native_dtype_from_hf_config(inner) if inner is not config else "bfloat16"
    value = config.get("torch_dtype") or config.get("dtype") or fallback
    if not isinstance(value, str):
        raise InvalidValueError(
            f"config.json field 'torch_dtype' must be a text, got {quoted(value)}"
        )
    return value
