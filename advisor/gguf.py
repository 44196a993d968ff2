"""The tensors a model of a known architecture has in a GGUF file, and the type llama.cpp's
quantizer gives each under a file type's rules (advisor/ggml.py): a GGUF file's weights are the
sum of each tensor's bytes in its type.

Pure: no CLI, rendering, database or `gguf` package imports (advisor/gguf_file.py reads real
files). Tensor names and layouts: gguf-py/gguf/constants.py (TENSOR_NAMES) and
convert_hf_to_gguf.py, ggml-org/llama.cpp; the rules' mechanisms: src/llama-quant.cpp at
commit 007dbbf3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from advisor.arch import Architecture, count_params
from advisor.enums import ModelType
from advisor.errors import InvalidValueError
from advisor.ggml import (
    FLOAT_TYPES,
    GGML_BLOCKS,
    LAST_RESORT,
    GGMLType,
    GGUFWeights,
    QuantRules,
    Role,
    Tensor,
    When,
    weigh,
)
from advisor.traits import MLPKind, ParamLayout

# --- the tensors of an architecture --------------------------------------------------------


@dataclass(frozen=True)
class GGUFArch:
    """How llama.cpp names and lays out a model type: its GGUF architecture (None: llama.cpp
    has none), gate and up fused into one ffn_up of twice the width (Phi-3: src/llama-model.cpp
    LLM_ARCH_PHI3), and whether llama.cpp runs its sliding-window layers as such (`swa`:
    src/llama-model.cpp sets `hparams.swa_type` for Gemma 2, Gemma 3 and gpt-oss; Mistral and
    Qwen2 files run every layer over the whole context)."""

    name: str | None
    fused_gate_up: bool = False
    swa: bool = False  # llama.cpp gives its sliding-window layers a small cache of their own


# Model type -> GGUF `general.architecture`, as convert_hf_to_gguf.py writes it
# (ggml-org/llama.cpp; Mistral and Mixtral convert to `llama`, DeepSeek-V3 to `deepseek2`).
GGUF_ARCHS: Mapping[ModelType, GGUFArch] = MappingProxyType(
    {
        ModelType.llama: GGUFArch("llama"),
        ModelType.mistral: GGUFArch("llama"),
        ModelType.mixtral: GGUFArch("llama"),
        ModelType.qwen2: GGUFArch("qwen2"),
        ModelType.qwen3: GGUFArch("qwen3"),
        ModelType.qwen3_moe: GGUFArch("qwen3moe"),
        ModelType.gemma: GGUFArch("gemma"),
        ModelType.gemma2: GGUFArch("gemma2", swa=True),
        ModelType.gemma3_text: GGUFArch("gemma3", swa=True),
        ModelType.phi3: GGUFArch("phi3", fused_gate_up=True),
        ModelType.gpt2: GGUFArch("gpt2"),
        ModelType.opt: GGUFArch(None),
        ModelType.falcon: GGUFArch("falcon"),
        ModelType.gpt_neox: GGUFArch("gptneox"),
        ModelType.bloom: GGUFArch("bloom"),
        ModelType.deepseek_v3: GGUFArch("deepseek2"),
        ModelType.gpt_oss: GGUFArch("gpt-oss", swa=True),
    }
)
# Layers of the models llama.cpp types as LLM_TYPE_70B (src/llama-model.cpp: `case 80:` for
# LLM_ARCH_LLAMA and LLM_ARCH_QWEN2), whose attn_v gets more bits.
TYPE_70B_LAYERS = 80
TYPE_70B_ARCHS = frozenset({"llama", "qwen2"})
# llama.cpp's literals in llama_tensor_get_type_impl: attn_v of the first 2 (Q3_K_M) and first
# 4 (Q4_K_S) layers; `n_gqa() >= 4`; `n_expert >= 4`; `n_expert == 8` (Mixtral-style).
FIRST_FEW_V = (2, 4)
GQA_SHARED = 4
MANY_EXPERTS = 4
MIXTRAL_EXPERTS = 8


def _matrix(name: str, role: Role, layer: int | None, n_in: int, n_out: int) -> Tensor:
    return Tensor(name, role, layer, n_in, n_in * n_out)


def _experts(name: str, role: Role, layer: int, n_in: int, n_out: int, n: int) -> Tensor:
    return Tensor(name, role, layer, n_in, n_in * n_out * n, experts=n)


def _attention(arch: Architecture, i: int) -> list[Tensor]:
    h, d = arch.hidden_size, arch.head_dim
    q, kv = arch.num_attention_heads * d, arch.num_key_value_heads * d
    p = f"blk.{i}."
    if arch.traits.layout is ParamLayout.deepseek:
        assert arch.kv_lora_rank is not None and arch.qk_nope_head_dim is not None
        assert arch.qk_rope_head_dim is not None and arch.v_head_dim is not None
        heads, rank = arch.num_attention_heads, arch.kv_lora_rank
        qk = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        out: list[Tensor] = []
        if arch.q_lora_rank is not None:
            out += [
                _matrix(p + "attn_q_a.weight", Role.other, i, h, arch.q_lora_rank),
                _matrix(p + "attn_q_b.weight", Role.other, i, arch.q_lora_rank, heads * qk),
            ]
        else:
            out.append(_matrix(p + "attn_q.weight", Role.attn_q, i, h, heads * qk))
        # convert_hf_to_gguf.py splits kv_b into per-head k_b (transposed) and v_b.
        return [
            *out,
            _matrix(p + "attn_kv_a_mqa.weight", Role.other, i, h, rank + arch.qk_rope_head_dim),
            _experts(p + "attn_k_b.weight", Role.other, i, arch.qk_nope_head_dim, rank, heads),
            _experts(p + "attn_v_b.weight", Role.other, i, rank, arch.v_head_dim, heads),
            _matrix(p + "attn_output.weight", Role.attn_output, i, heads * arch.v_head_dim, h),
        ]
    fused = arch.traits.fused_qkv_views or arch.traits.layout in (
        ParamLayout.fused_qkv_gelu,
        ParamLayout.falcon,
    )
    if fused:
        qkv = [_matrix(p + "attn_qkv.weight", Role.attn_v, i, h, q + 2 * kv)]
    else:
        qkv = [
            _matrix(p + "attn_q.weight", Role.attn_q, i, h, q),
            _matrix(p + "attn_k.weight", Role.attn_k, i, h, kv),
            _matrix(p + "attn_v.weight", Role.attn_v, i, h, kv),
        ]
    return [*qkv, _matrix(p + "attn_output.weight", Role.attn_output, i, q, h)]


def _ffn(arch: Architecture, i: int) -> list[Tensor]:
    h, p = arch.hidden_size, f"blk.{i}."
    layout = arch.traits.layout
    dense = not arch.traits.moe or (
        layout is ParamLayout.deepseek and i < (arch.first_k_dense_replace or 0)
    )
    if dense:
        f = arch.intermediate_size
        if arch.traits.mlp is not MLPKind.gated:
            return [
                _matrix(p + "ffn_up.weight", Role.ffn_up, i, h, f),
                _matrix(p + "ffn_down.weight", Role.ffn_down, i, f, h),
            ]
        if GGUF_ARCHS[arch.model_type].fused_gate_up:
            return [
                _matrix(p + "ffn_up.weight", Role.ffn_up, i, h, 2 * f),
                _matrix(p + "ffn_down.weight", Role.ffn_down, i, f, h),
            ]
        return [
            _matrix(p + "ffn_gate.weight", Role.ffn_gate, i, h, f),
            _matrix(p + "ffn_up.weight", Role.ffn_up, i, h, f),
            _matrix(p + "ffn_down.weight", Role.ffn_down, i, f, h),
        ]
    assert arch.num_experts is not None
    n, f = arch.num_experts, arch.moe_intermediate_size or arch.intermediate_size
    out = [
        Tensor(p + "ffn_gate_inp.weight", Role.kept, i, h, h * n),
        _experts(p + "ffn_gate_exps.weight", Role.ffn_gate, i, h, f, n),
        _experts(p + "ffn_up_exps.weight", Role.ffn_up, i, h, f, n),
        _experts(p + "ffn_down_exps.weight", Role.ffn_down, i, f, h, n),
    ]
    if arch.n_shared_experts:
        s = f * arch.n_shared_experts
        out += [
            _matrix(p + "ffn_gate_shexp.weight", Role.ffn_gate, i, h, s),
            _matrix(p + "ffn_up_shexp.weight", Role.ffn_up, i, h, s),
            _matrix(p + "ffn_down_shexp.weight", Role.ffn_down, i, s, h),
        ]
    return out


@functools.lru_cache(maxsize=1024)
def gguf_tensors(arch: Architecture) -> tuple[Tensor, ...]:
    """The tensors of `arch` in a GGUF file, in file order (layer by layer, as llama.cpp's
    loader lists them). Matrices are listed one by one; every vector (norms, biases, routing
    biases, attention sinks) is summed into one F32 `vector` entry at the end, so the values
    add up to `count_params(arch).total` exactly."""
    h, v = arch.hidden_size, arch.vocab_size
    counts = count_params(arch)
    width = int(arch.option("word_embed_proj_dim", h) or h)
    tensors = [_matrix("token_embd.weight", Role.token_embd, None, width, v)]
    listed = v * width
    if arch.traits.position_table_offset is not None:
        rows = arch.max_position_embeddings + arch.traits.position_table_offset
        tensors.append(
            Tensor("position_embd.weight", Role.kept, None, h, rows * h, 1, GGMLType.f16)
        )
        listed += rows * h
    if width != h:  # OPT's projections in and out of the embedding width
        tensors.append(
            Tensor("token_embd_proj.weight", Role.kept, None, width, 2 * width * h, 1, GGMLType.f16)
        )
        listed += 2 * width * h
    for i in range(arch.num_hidden_layers):
        matrices = _attention(arch, i) + _ffn(arch, i)
        tensors += matrices
        listed += sum(t.elements for t in matrices)
    if not arch.tie_word_embeddings:
        tensors.append(_matrix("output.weight", Role.output, None, width, v))
        listed += v * width
    vectors = counts.total - listed
    if vectors < 0:
        raise InvalidValueError(f"the tensors of this {arch.model_type.value} do not add up")
    if vectors:
        tensors.append(Tensor("vectors (norms, biases)", Role.vector, None, 1, vectors))
    return tuple(tensors)


# --- the rules applied ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    n_layers: int
    n_attn_v: int
    gqa: float
    experts: int
    falcon: bool
    type_70b: bool
    tied: bool


def _context(arch: Architecture, tensors: Sequence[Tensor]) -> _Context:
    name = GGUF_ARCHS[arch.model_type].name
    return _Context(
        n_layers=arch.num_hidden_layers,
        n_attn_v=sum(1 for t in tensors if t.role is Role.attn_v),
        gqa=arch.num_attention_heads / arch.num_key_value_heads,
        experts=arch.num_experts or 0,
        falcon=name == "falcon",
        type_70b=name in TYPE_70B_ARCHS and arch.num_hidden_layers == TYPE_70B_LAYERS,
        tied=not any(t.role is Role.output for t in tensors),
    )


def _more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


_Test = Callable[[Tensor, int, int, _Context, QuantRules], bool]
# Each condition of the rules as a test of (tensor, i, n, model, rules); every When has one.
_TESTS: Mapping[When, _Test] = MappingProxyType(
    {
        When.more_bits: lambda t, i, n, c, r: _more_bits(i, n),
        When.first_eighth: lambda t, i, n, c, r: i < n // 8,
        When.first_sixteenth: lambda t, i, n, c, r: i < n // 16,
        When.first_two: lambda t, i, n, c, r: i < FIRST_FEW_V[0],
        When.first_four: lambda t, i, n, c, r: i < FIRST_FEW_V[1],
        When.middle: lambda t, i, n, c, r: n // 8 <= i < 7 * n // 8,
        When.gqa_4: lambda t, i, n, c, r: c.gqa >= GQA_SHARED,
        When.experts_4: lambda t, i, n, c, r: c.experts >= MANY_EXPERTS,
        When.experts_8: lambda t, i, n, c, r: c.experts == MIXTRAL_EXPERTS,
        When.type_70b: lambda t, i, n, c, r: c.type_70b,
        When.falcon: lambda t, i, n, c, r: c.falcon,
        When.not_falcon: lambda t, i, n, c, r: not c.falcon,
        When.imatrix: lambda t, i, n, c, r: r.imatrix,
        When.no_imatrix: lambda t, i, n, c, r: not r.imatrix,
        When.misaligned: lambda t, i, n, c, r: t.row % GGML_BLOCKS[r.base].weights != 0,
        When.expert_tensor: lambda t, i, n, c, r: t.experts > 1,
    }
)


def _fallback(kind: GGMLType, row: int) -> GGMLType:
    if row % GGML_BLOCKS[kind].weights == 0:
        return kind
    fallback = GGML_BLOCKS[kind].fallback
    if fallback is None or row % GGML_BLOCKS[fallback].weights:
        return LAST_RESORT
    return fallback


def assign_types(
    arch: Architecture, rules: QuantRules, tensors: Sequence[Tensor] | None = None
) -> tuple[tuple[Tensor, GGMLType], ...]:
    """Each tensor of `arch` with the type llama.cpp's quantizer gives it under `rules`."""
    tensors = gguf_tensors(arch) if tensors is None else tensors
    ctx = _context(arch, tensors)
    quantized = rules.base not in FLOAT_TYPES
    seen: dict[Role, int] = {}
    out: list[tuple[Tensor, GGMLType]] = []
    for t in tensors:
        if t.role in (Role.vector, Role.kept):
            out.append((t, t.kept_type))
            continue
        rank = seen.get(t.role, 0)
        seen[t.role] = rank + 1
        if not quantized:
            out.append((t, rules.base))
            continue
        role = Role.output if (t.role is Role.token_embd and ctx.tied) else t.role
        if role is Role.attn_v:
            i, n = rank, ctx.n_attn_v
        else:
            i = t.layer if (t.layer is not None and ctx.experts > 1) else rank
            n = ctx.n_layers
        kind = rules.base
        for rule in rules.for_role(role):
            if all(_TESTS[c](t, i, n, ctx, rules) for c in rule.when):
                kind = rule.kind
                break
        out.append((t, _fallback(kind, t.row)))
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def gguf_weights(arch: Architecture, rules: QuantRules) -> GGUFWeights:
    """The bytes of a GGUF file of `arch` quantized by `rules` (tensor data only)."""
    return weigh(assign_types(arch, rules))
