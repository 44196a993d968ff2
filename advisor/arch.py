"""A language model's architecture, and its parameter count computed from it.

Pure: no database, CLI or rendering imports. The field names are Hugging Face config.json
names, so a catalog row, a config file and the estimator speak the same language.

The counts follow the module layout of each `model_type` in Hugging Face transformers (which
projections carry biases, how many norms a layer has, whether positions are learned); they
reproduce the published exact counts of the bundled models (see tests/test_bundled_data.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from advisor.enums import AttentionKind, ModelType
from advisor.errors import InvalidValueError

# LayerNorm has a weight and a bias per channel; RMSNorm only a weight.
LAYERNORM_PARAMS_PER_CHANNEL = 2
RMSNORM_PARAMS_PER_CHANNEL = 1
# OPT's learned position table has 2 extra rows: positions start at an offset of 2
# (transformers `OPTLearnedPositionalEmbedding.offset`).
OPT_POSITION_OFFSET = 2
# GPT-2, GPT-NeoX, Falcon and BLOOM size their MLP at 4 x hidden unless the config says otherwise.
DEFAULT_MLP_RATIO = 4

_DENSE_GATED = {
    ModelType.llama,
    ModelType.mistral,
    ModelType.qwen2,
    ModelType.qwen3,
    ModelType.gemma,
    ModelType.gemma2,
    ModelType.gemma3_text,
    ModelType.phi3,
}
MOE_TYPES = frozenset(
    {ModelType.mixtral, ModelType.qwen3_moe, ModelType.deepseek_v3, ModelType.gpt_oss}
)


@dataclass(frozen=True, kw_only=True)
class Architecture:
    """What the memory of a decoder-only transformer depends on."""

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
    arch_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        validate(self)

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


@dataclass(frozen=True)
class ParamCount:
    """Parameters by where they live; `total` is what a checkpoint holds."""

    embedding: int
    output_head: int
    layers: int
    final_norm: int
    active: int

    @property
    def total(self) -> int:
        return self.embedding + self.output_head + self.layers + self.final_norm


def _positive(name: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise InvalidValueError(f"{name} must be a positive integer, got {value}")


def validate(arch: Architecture) -> None:
    """Reject architectures that cannot exist; raise InvalidValueError naming the field."""
    for name in (
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
    ):
        _positive(name, getattr(arch, name))
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
    moe_fields = (arch.num_experts, arch.num_experts_per_tok)
    if (moe_fields[0] is None) != (moe_fields[1] is None):
        raise InvalidValueError("num_experts and num_experts_per_tok must be given together")
    if arch.model_type in MOE_TYPES and arch.num_experts is None:
        raise InvalidValueError(f"model_type {arch.model_type.value} needs num_experts")
    if arch.model_type not in MOE_TYPES and arch.num_experts is not None:
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
    mla = (arch.kv_lora_rank, arch.qk_nope_head_dim, arch.qk_rope_head_dim, arch.v_head_dim)
    if any(v is not None for v in mla) and any(v is None for v in mla):
        raise InvalidValueError(
            "MLA needs kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim together"
        )
    if arch.model_type is ModelType.deepseek_v3 and arch.kv_lora_rank is None:
        raise InvalidValueError("model_type deepseek_v3 needs the MLA fields (kv_lora_rank …)")


# --- parameter counting --------------------------------------------------------------------


def _linear(n_in: int, n_out: int, bias: bool) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _gated_mlp(hidden: int, inner: int, bias: bool = False) -> int:
    """gate, up (hidden → inner) and down (inner → hidden), as SwiGLU/GeGLU MLPs have."""
    return 2 * _linear(hidden, inner, bias) + _linear(inner, hidden, bias)


def _plain_mlp(hidden: int, inner: int, bias: bool) -> int:
    """up (hidden → inner) and down (inner → hidden), as GELU MLPs have."""
    return _linear(hidden, inner, bias) + _linear(inner, hidden, bias)


def _attention(arch: Architecture, *, qkv_bias: bool, out_bias: bool) -> int:
    h, d = arch.hidden_size, arch.head_dim
    q = arch.num_attention_heads * d
    kv = arch.num_key_value_heads * d
    return _linear(h, q, qkv_bias) + 2 * _linear(h, kv, qkv_bias) + _linear(q, h, out_bias)


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


@dataclass(frozen=True)
class _Layer:
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


def _layer(arch: Architecture, index: int) -> _Layer:
    t = arch.model_type
    h, f = arch.hidden_size, arch.intermediate_size
    rms = RMSNORM_PARAMS_PER_CHANNEL * h
    ln = LAYERNORM_PARAMS_PER_CHANNEL * h

    if t in _DENSE_GATED:
        attention_bias = bool(arch.option("attention_bias", False))
        qkv_bias = attention_bias or t is ModelType.qwen2
        attn = _attention(arch, qkv_bias=qkv_bias, out_bias=attention_bias)
        if t in (ModelType.qwen3, ModelType.gemma3_text):
            attn += 2 * arch.head_dim * RMSNORM_PARAMS_PER_CHANNEL  # q_norm and k_norm
        norms = 4 * rms if t in (ModelType.gemma2, ModelType.gemma3_text) else 2 * rms
        mlp = _gated_mlp(h, f, bool(arch.option("mlp_bias", False)))
        return _Layer(attn + norms + mlp)

    if t in (ModelType.mixtral, ModelType.qwen3_moe):
        attn = _attention(arch, qkv_bias=False, out_bias=False)
        if t is ModelType.qwen3_moe:
            attn += 2 * arch.head_dim * RMSNORM_PARAMS_PER_CHANNEL
        moe = _moe_block(arch, router_bias=False, expert_bias=False)
        return _Layer(attn + 2 * rms + moe.total, moe.inactive_experts)

    if t is ModelType.gpt_oss:
        attn = _attention(arch, qkv_bias=True, out_bias=True)
        sinks = arch.num_attention_heads  # one learned attention-sink logit per head
        moe = _moe_block(arch, router_bias=True, expert_bias=True)
        return _Layer(attn + sinks + 2 * rms + moe.total, moe.inactive_experts)

    if t is ModelType.deepseek_v3:
        attn = _mla_attention(arch)
        if index < (arch.first_k_dense_replace or 0):
            return _Layer(attn + 2 * rms + _gated_mlp(h, f))
        moe = _moe_block(arch, router_bias=False, expert_bias=False)
        assert arch.num_experts is not None
        # noaux_tc routing keeps a per-expert score-correction bias beside the router.
        correction = arch.num_experts if arch.option("topk_method", "noaux_tc") == "noaux_tc" else 0
        return _Layer(attn + 2 * rms + moe.total + correction, moe.inactive_experts)

    if t in (ModelType.gpt2, ModelType.bloom):
        return _Layer(
            2 * ln + _linear(h, 3 * h, True) + _linear(h, h, True) + _plain_mlp(h, f, True)
        )

    if t is ModelType.gpt_neox:
        bias = bool(arch.option("attention_bias", True))
        attn = _linear(h, 3 * h, bias) + _linear(h, h, bias)
        return _Layer(2 * ln + attn + _plain_mlp(h, f, True))

    if t is ModelType.opt:
        bias = bool(arch.option("enable_bias", True))
        attn = 4 * _linear(h, h, bias)
        return _Layer(2 * ln + attn + _plain_mlp(h, f, bias))

    if t is ModelType.falcon:
        bias = bool(arch.option("bias", False))
        new_arch = bool(arch.option("new_decoder_architecture", False))
        qkv_out = (arch.num_attention_heads + 2 * arch.num_key_value_heads) * arch.head_dim
        attn = _linear(h, qkv_out, bias) + _linear(h, h, bias)
        if new_arch:
            norms = int(arch.option("num_ln_in_parallel_attn", 2) or 2) * ln
        elif bool(arch.option("parallel_attn", True)):
            norms = ln
        else:
            norms = 2 * ln
        return _Layer(attn + norms + _plain_mlp(h, f, bias))

    raise InvalidValueError(f"unsupported model_type {t.value}")  # pragma: no cover


def _embeddings(arch: Architecture) -> tuple[int, int, int]:
    """(input embeddings with position tables and projections, output head, final norm)."""
    t, h, v = arch.model_type, arch.hidden_size, arch.vocab_size
    head = 0 if arch.tie_word_embeddings else v * h
    rms = RMSNORM_PARAMS_PER_CHANNEL * h
    ln = LAYERNORM_PARAMS_PER_CHANNEL * h
    if t is ModelType.gpt2:
        return v * h + arch.max_position_embeddings * h, head, ln
    if t is ModelType.opt:
        width = int(arch.option("word_embed_proj_dim", h) or h)
        projections = 2 * width * h if width != h else 0  # project_in and project_out
        positions = (arch.max_position_embeddings + OPT_POSITION_OFFSET) * h
        head = 0 if arch.tie_word_embeddings else v * width
        final = (
            ln
            if (
                arch.option("do_layer_norm_before", True)
                and not arch.option("_remove_final_layer_norm", False)
            )
            else 0
        )
        return v * width + positions + projections, head, final
    if t is ModelType.bloom:
        return v * h + ln, head, ln  # word_embeddings_layernorm sits after the embedding
    if t in (ModelType.gpt_neox, ModelType.falcon):
        return v * h, head, ln
    return v * h, head, rms


def count_params(arch: Architecture) -> ParamCount:
    """Exact parameter count of `arch`, with the share each token activates (MoE)."""
    layers = [_layer(arch, i) for i in range(arch.num_hidden_layers)]
    embedding, head, final_norm = _embeddings(arch)
    layer_total = sum(layer.total for layer in layers)
    inactive = sum(layer.inactive_experts for layer in layers)
    total = embedding + head + layer_total + final_norm
    return ParamCount(
        embedding=embedding,
        output_head=head,
        layers=layer_total,
        final_norm=final_norm,
        active=total - inactive,
    )


# --- Hugging Face config.json -------------------------------------------------------------

# Option keys kept from a config because they change the layout or the count.
_OPTION_KEYS: dict[ModelType, tuple[str, ...]] = {
    ModelType.llama: ("attention_bias", "mlp_bias"),
    ModelType.mistral: (),
    ModelType.phi3: ("partial_rotary_factor",),
    ModelType.gpt_neox: ("attention_bias", "rotary_pct", "use_parallel_residual"),
    ModelType.opt: (
        "word_embed_proj_dim",
        "do_layer_norm_before",
        "_remove_final_layer_norm",
        "enable_bias",
    ),
    ModelType.falcon: (
        "new_decoder_architecture",
        "parallel_attn",
        "bias",
        "multi_query",
        "num_ln_in_parallel_attn",
        "alibi",
    ),
    ModelType.deepseek_v3: ("topk_method",),
}
_DEFAULT_OPTIONS: dict[str, Any] = {
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
}
_TYPE_ALIASES = {
    "gemma3": ModelType.gemma3_text,
    "RefinedWebModel": ModelType.falcon,
    "RefinedWeb": ModelType.falcon,
    "kimi_k2": ModelType.deepseek_v3,
}


def _first(config: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if config.get(name) is not None:
            return config[name]
    return None


def _required(config: Mapping[str, Any], *names: str) -> int:
    value = _first(config, *names)
    if value is None:
        raise InvalidValueError(f"config.json is missing required field {names[0]!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValueError(f"config.json field {names[0]!r} must be an integer, got {value!r}")
    return value


def _optional_int(config: Mapping[str, Any], *names: str) -> int | None:
    value = _first(config, *names)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidValueError(f"config.json field {names[0]!r} must be an integer, got {value!r}")
    return value


def _sliding(config: Mapping[str, Any], t: ModelType, layers: int) -> tuple[int | None, int | None]:
    """(window, number of layers using it) as transformers applies them."""
    window = _optional_int(config, "sliding_window")
    if window is None or config.get("use_sliding_window") is False:
        return None, None
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        count = sum(1 for kind in layer_types if kind == "sliding_attention")
        return (window, count) if count else (None, None)
    if t is ModelType.gemma2:
        return window, layers // 2 + layers % 2  # even-indexed layers are local
    if t is ModelType.gemma3_text:
        pattern = int(config.get("sliding_window_pattern", 6))
        return window, layers - layers // pattern
    if t is ModelType.gpt_oss:
        return window, layers // 2 + layers % 2
    return window, layers


def architecture_from_hf_config(config: Mapping[str, Any]) -> Architecture:
    """Read a Hugging Face config.json (as a dict) into an Architecture.

    Raises InvalidValueError naming the missing or invalid field; multimodal configs are read
    through their `text_config`.
    """
    raw_type = config.get("model_type")
    if raw_type in ("gemma3", "mistral3", "llava") and isinstance(config.get("text_config"), dict):
        return architecture_from_hf_config(config["text_config"])
    if raw_type is None:
        raise InvalidValueError("config.json is missing required field 'model_type'")
    try:
        t = _TYPE_ALIASES.get(str(raw_type)) or ModelType(str(raw_type))
    except ValueError:
        supported = ", ".join(m.value for m in ModelType)
        raise InvalidValueError(
            f"model_type {raw_type!r} is not supported (supported: {supported})"
        ) from None

    layers = _required(config, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _required(config, "hidden_size", "n_embd", "d_model")
    heads = _required(config, "num_attention_heads", "n_head", "num_heads")
    if t is ModelType.falcon:
        new_arch = bool(config.get("new_decoder_architecture", False))
        multi_query = bool(config.get("multi_query", True))
        kv_heads = _optional_int(config, "num_kv_heads") if new_arch else None
        if kv_heads is None:
            kv_heads = 1 if (multi_query and not new_arch) else heads
    elif t in (ModelType.gpt2, ModelType.opt, ModelType.bloom, ModelType.gpt_neox):
        kv_heads = heads
    else:
        kv_heads = _optional_int(config, "num_key_value_heads") or heads
    head_dim = _optional_int(config, "head_dim") or hidden // heads if heads else 0
    if t is ModelType.deepseek_v3:
        head_dim = _optional_int(config, "v_head_dim") or head_dim
    if t in (ModelType.gpt2, ModelType.falcon, ModelType.bloom):
        intermediate = _optional_int(config, "n_inner", "ffn_hidden_size") or (
            DEFAULT_MLP_RATIO * hidden
        )
    elif t is ModelType.opt:
        intermediate = _required(config, "ffn_dim")
    else:
        intermediate = _required(config, "intermediate_size")
    vocab = _required(config, "vocab_size")
    if t is ModelType.bloom:
        max_positions = _optional_int(config, "seq_length", "max_position_embeddings") or 2048
    else:
        max_positions = _required(config, "max_position_embeddings", "n_positions", "n_ctx")
    tie_default = t in (
        ModelType.gpt2,
        ModelType.opt,
        ModelType.bloom,
        ModelType.falcon,
        ModelType.gemma,
        ModelType.gemma2,
        ModelType.gemma3_text,
    )
    tie = config.get("tie_word_embeddings", tie_default)

    num_experts = _optional_int(config, "num_local_experts", "n_routed_experts", "num_experts")
    if t not in MOE_TYPES:
        num_experts = None
    experts_per_tok = _optional_int(config, "num_experts_per_tok", "experts_per_token")
    moe_ffn = _optional_int(config, "moe_intermediate_size") if num_experts else None
    if t is ModelType.mixtral or t is ModelType.gpt_oss:
        moe_ffn = intermediate
    window, sliding_layers = _sliding(config, t, layers)

    options = {
        key: config[key]
        for key in _OPTION_KEYS.get(t, ())
        if key in config and config[key] != _DEFAULT_OPTIONS.get(key)
    }
    if options.get("word_embed_proj_dim") == hidden:  # OPT's default: the hidden size
        del options["word_embed_proj_dim"]
    return Architecture(
        model_type=t,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position_embeddings=max_positions,
        tie_word_embeddings=bool(tie),
        num_experts=num_experts,
        num_experts_per_tok=experts_per_tok if num_experts else None,
        n_shared_experts=_optional_int(config, "n_shared_experts") if num_experts else None,
        moe_intermediate_size=moe_ffn,
        first_k_dense_replace=_optional_int(config, "first_k_dense_replace")
        if num_experts
        else None,
        sliding_window=window,
        num_sliding_layers=sliding_layers,
        q_lora_rank=_optional_int(config, "q_lora_rank") if t is ModelType.deepseek_v3 else None,
        kv_lora_rank=_optional_int(config, "kv_lora_rank") if t is ModelType.deepseek_v3 else None,
        qk_nope_head_dim=_optional_int(config, "qk_nope_head_dim")
        if t is ModelType.deepseek_v3
        else None,
        qk_rope_head_dim=_optional_int(config, "qk_rope_head_dim")
        if t is ModelType.deepseek_v3
        else None,
        v_head_dim=_optional_int(config, "v_head_dim") if t is ModelType.deepseek_v3 else None,
        arch_options=MappingProxyType(options),
    )


def native_dtype_from_hf_config(config: Mapping[str, Any]) -> str:
    """The checkpoint's dtype (`torch_dtype`, or `dtype` in newer configs); bfloat16 if unset."""
    if config.get("model_type") in ("gemma3", "mistral3") and isinstance(
        config.get("text_config"), dict
    ):
        inner = native_dtype_from_hf_config(config["text_config"])
        return str(config.get("torch_dtype") or config.get("dtype") or inner)
    return str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
