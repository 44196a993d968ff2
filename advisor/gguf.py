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
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from advisor.arch import Architecture, count_params, layer_kinds
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
    weigh_groups,
)
from advisor.traits import MLPKind, ParamLayout

# --- the tensors of an architecture --------------------------------------------------------


class GGUFArch(NamedTuple):
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


class _Parts(NamedTuple):
    """The tensors of a GGUF file in three parts: those before the blocks (embeddings), each
    run of alike blocks as (its first block's matrices, first index, count: `layer_kinds`),
    those after (the output layer), and the values of every vector, summed."""

    before: tuple[Tensor, ...]
    runs: tuple[tuple[tuple[Tensor, ...], int, int], ...]
    after: tuple[Tensor, ...]
    vectors: int


def _layer_matrices(arch: Architecture, i: int) -> tuple[Tensor, ...]:
    return tuple(_attention(arch, i) + _ffn(arch, i))


@functools.lru_cache(maxsize=1024)
def _parts(arch: Architecture) -> _Parts:
    h, v = arch.hidden_size, arch.vocab_size
    width = int(arch.option("word_embed_proj_dim", h) or h)
    before = [_matrix("token_embd.weight", Role.token_embd, None, width, v)]
    if arch.traits.position_table_offset is not None:
        rows = arch.max_position_embeddings + arch.traits.position_table_offset
        before.append(Tensor("position_embd.weight", Role.kept, None, h, rows * h, 1, GGMLType.f16))
    if width != h:  # OPT's projections in and out of the embedding width
        before.append(
            Tensor("token_embd_proj.weight", Role.kept, None, width, 2 * width * h, 1, GGMLType.f16)
        )
    after = (
        [] if arch.tie_word_embeddings else [_matrix("output.weight", Role.output, None, width, v)]
    )
    runs = tuple((_layer_matrices(arch, first), first, n) for first, n in layer_kinds(arch))
    listed = sum(t.elements for t in (*before, *after))
    listed += sum(n * sum(t.elements for t in matrices) for matrices, _, n in runs)
    vectors = count_params(arch).total - listed
    if vectors < 0:
        raise InvalidValueError(f"the tensors of this {arch.model_type.value} do not add up")
    return _Parts(tuple(before), runs, tuple(after), vectors)


@functools.lru_cache(maxsize=1024)
def gguf_tensors(arch: Architecture) -> tuple[Tensor, ...]:
    """The tensors of `arch` in a GGUF file, in file order (layer by layer, as llama.cpp's
    loader lists them). Matrices are listed one by one; every vector (norms, biases, routing
    biases, attention sinks) is summed into one F32 `vector` entry at the end, so the values
    add up to `count_params(arch).total` exactly."""
    parts = _parts(arch)
    tensors = list(parts.before)
    for i in range(arch.num_hidden_layers):
        tensors += _layer_matrices(arch, i)
    tensors += parts.after
    if parts.vectors:
        tensors.append(Tensor("vectors (norms, biases)", Role.vector, None, 1, parts.vectors))
    return tuple(tensors)


# --- the rules applied ---------------------------------------------------------------------


class _Context(NamedTuple):
    n_layers: int
    n_attn_v: int
    gqa: float
    experts: int
    falcon: bool
    type_70b: bool
    tied: bool
    model_tests: tuple[bool, ...] = ()  # which of `_MODEL_TESTS` hold (`_context_of`)


def _context(arch: Architecture, tensors: Sequence[Tensor]) -> _Context:
    return _context_of(
        arch,
        n_attn_v=sum(1 for t in tensors if t.role is Role.attn_v),
        tied=not any(t.role is Role.output for t in tensors),
    )


def _context_of(arch: Architecture, *, n_attn_v: int, tied: bool) -> _Context:
    name = GGUF_ARCHS[arch.model_type].name
    ctx = _Context(
        n_layers=arch.num_hidden_layers,
        n_attn_v=n_attn_v,
        gqa=arch.num_attention_heads / arch.num_key_value_heads,
        experts=arch.num_experts or 0,
        falcon=name == "falcon",
        type_70b=name in TYPE_70B_ARCHS and arch.num_hidden_layers == TYPE_70B_LAYERS,
        tied=tied,
    )
    probe = Tensor("", Role.other, None, 1, 1)
    tests = tuple(_TESTS[c](probe, 0, 0, ctx, _NO_RULES) for c in _MODEL_TESTS)
    return ctx._replace(model_tests=tests)


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


# The rules and model passed to the position tests, which read only (i, n).
_NO_RULES = QuantRules(GGMLType.f32)
_NO_CONTEXT = _Context(0, 0, 0.0, 0, falcon=False, type_70b=False, tied=False)


def _fallback(kind: GGMLType, row: int) -> GGMLType:
    if row % GGML_BLOCKS[kind].weights == 0:
        return kind
    fallback = GGML_BLOCKS[kind].fallback
    if fallback is None or row % GGML_BLOCKS[fallback].weights:
        return LAST_RESORT
    return fallback


def _position(t: Tensor, rank: int, ctx: _Context, layer: int | None = None) -> tuple[int, int]:
    """(i, n) of a quantizable tensor for the rules: the rank among attn_v tensors over their
    count, else its layer (`layer`, else the tensor's: an MoE model's FFN) or its rank among
    its role, over the layers."""
    if t.role is Role.attn_v:
        return rank, ctx.n_attn_v
    at = t.layer if layer is None else layer
    return (at if (at is not None and ctx.experts > 1) else rank), ctx.n_layers


def _rule_key(
    t: Tensor, i: int, n: int, ctx: _Context, positional: bool = True
) -> tuple[object, ...]:
    """Everything the rules' conditions read of a quantizable tensor at position (i, n) of a
    model, each only through what the conditions test: the role as the rules see it, the row
    by its remainder over `ROW_PERIOD`, whether it stacks experts, the position tests' and the
    model tests' results. Tensors of other models alike in these get the same type. Not
    `positional`: the role's rules test no position, which the key then leaves out."""
    role = _rules_role(t, ctx)
    where = _where(i, n) if positional else None
    return (role, t.row % ROW_PERIOD, t.experts > 1, where, ctx.model_tests)


def _rules_role(t: Tensor, ctx: _Context) -> Role:
    """The role whose rules type `t`: a tied token embedding is the output layer's matrix."""
    return Role.output if (t.role is Role.token_embd and ctx.tied) else t.role


def _rules_type(t: Tensor, i: int, n: int, ctx: _Context, rules: QuantRules) -> GGMLType:
    """The type llama.cpp's quantizer gives the quantizable tensor `t` at position (i, n):
    the rules run as written (no memo; `assign_types`, the reference, uses this)."""
    if rules.base in FLOAT_TYPES:
        return rules.base
    role = _rules_role(t, ctx)
    kind = rules.base
    for rule in rules.for_role(role):
        if all(_TESTS[c](t, i, n, ctx, rules) for c in rule.when):
            kind = rule.kind
            break
    return _fallback(kind, t.row)


def _type_of(
    t: Tensor, i: int, n: int, ctx: _Context, rules: QuantRules, key: tuple[object, ...]
) -> GGMLType:
    """`_rules_type`, memoized per rules by the tensor's `_rule_key`."""
    memo = _TYPE_MEMO.setdefault(rules, {})
    found = memo.get(key)
    if found is None:
        found = memo[key] = _rules_type(t, i, n, ctx, rules)
    return found


# `_type_of`'s answers per file type's rules, by what its conditions read (`_rule_key`: a few
# hundred entries per rules at most), so a format's rules are run once per kind of tensor.
_TYPE_MEMO: dict[QuantRules, dict[tuple[object, ...], GGMLType]] = {}


def assign_types(
    arch: Architecture, rules: QuantRules, tensors: Sequence[Tensor] | None = None
) -> tuple[tuple[Tensor, GGMLType], ...]:
    """Each tensor of `arch` with the type llama.cpp's quantizer gives it under `rules`."""
    tensors = gguf_tensors(arch) if tensors is None else tensors
    ctx = _context(arch, tensors)
    seen: dict[Role, int] = {}
    out: list[tuple[Tensor, GGMLType]] = []
    for t in tensors:
        if t.role in (Role.vector, Role.kept):
            out.append((t, t.kept_type))
            continue
        rank = seen.get(t.role, 0)
        seen[t.role] = rank + 1
        out.append((t, _rules_type(t, *_position(t, rank, ctx), ctx, rules)))
    return tuple(out)


# The conditions that read a tensor's position (i, n); two tensors alike in everything else
# whose positions pass the same of these get the same type (`_classes`).
_POSITION_TESTS = (
    When.more_bits,
    When.first_eighth,
    When.first_sixteenth,
    When.first_two,
    When.first_four,
    When.middle,
)


# The conditions that read the model only (not the tensor, its position or the rules).
_MODEL_TESTS = (
    When.gqa_4,
    When.experts_4,
    When.experts_8,
    When.type_70b,
    When.falcon,
    When.not_falcon,
)
# The conditions that read the tensor's shape, and those that read the rules.
_TENSOR_TESTS = (When.misaligned, When.expert_tensor)
_RULES_TESTS = (When.imatrix, When.no_imatrix)
# Every ggml block width divides this, so a row's remainder by it decides every divisibility
# test the quantizer makes (`When.misaligned`, `_fallback`).
ROW_PERIOD = math.lcm(*(block.weights for block in GGML_BLOCKS.values()))


# What the position tests are given besides (i, n): they read no tensor, model or rules.
_PROBE = Tensor("", Role.other, None, 1, 1)
_POSITION_FNS = tuple(_TESTS[c] for c in _POSITION_TESTS)


@functools.lru_cache(maxsize=65536)
def _where(i: int, n: int) -> tuple[bool, ...]:
    """Which of the position tests (i, n) passes."""
    return tuple([test(_PROBE, i, n, _NO_CONTEXT, _NO_RULES) for test in _POSITION_FNS])


@functools.lru_cache(maxsize=1024)
def _position_roles(rules: QuantRules) -> frozenset[Role]:
    """The roles whose rules under `rules` test a tensor's position (none for a float file)."""
    if rules.base in FLOAT_TYPES:
        return frozenset()
    return frozenset(
        role
        for role, entries in rules.rules
        if any(c in _POSITION_TESTS for rule in entries for c in rule.when)
    )


class _Class(NamedTuple):
    """Tensors of a model that every file type gives one type (same role, row width, experts
    and position tests; never-quantized ones: the same kept type): `tensor` is the first of
    them, at position (i, n); `key` its `_rule_key` (None: never quantized); `values` the
    values of them all (their bytes are linear in it once a type's blocks divide a row)."""

    tensor: Tensor
    i: int
    n: int
    key: tuple[object, ...] | None
    values: int


def _tally(
    found: dict[tuple[object, ...], list[Any]],
    t: Tensor,
    i: int,
    n: int,
    times: int,
    ctx: _Context,
    positional: bool = True,
) -> None:
    """Add `times` tensors like `t` at position (i, n) to their class in `found`."""
    key: tuple[object, ...] | None
    ident: tuple[object, ...]
    if t.role in (Role.vector, Role.kept):
        key, ident = None, (t.role, t.kept_type, t.row)
    else:
        key = _rule_key(t, i, n, ctx, positional)
        ident = (t.role, t.row, *key)
    entry = found.get(ident)
    if entry is None:
        found[ident] = [t, i, n, key, times * t.elements]
    else:
        entry[4] += times * t.elements


@functools.lru_cache(maxsize=4096)
def _position_counts(
    start: int, step: int, count: int, n: int
) -> tuple[tuple[tuple[bool, ...], int, int], ...]:
    """Over the positions i = start + j·step (j < count) of n: each distinct result of the
    position tests, the first i giving it, and how many give it."""
    out: dict[tuple[bool, ...], list[int]] = {}
    for i in range(start, start + count * step, step):
        entry = out.setdefault(_where(i, n), [i, 0])
        entry[1] += 1
    return tuple((where, i, times) for where, (i, times) in out.items())


def _add_run(
    matrices: Sequence[Tensor],
    first: int,
    count: int,
    ctx: _Context,
    seen: dict[Role, int],
    found: dict[tuple[object, ...], list[Any]],
    positional: frozenset[Role],
) -> None:
    """`count` blocks alike from block `first` on, grouped as block-by-block adding would: the
    m-th of a role's k tensors in a block has rank seen + j·k + m in the run's j-th block.
    A role whose rules test no position (not in `positional`) is one class for the run."""
    per_block: dict[Role, int] = {}
    for t in matrices:
        per_block[t.role] = per_block.get(t.role, 0) + 1
    nth: dict[Role, int] = {}
    for t in matrices:
        m = nth.get(t.role, 0)
        nth[t.role] = m + 1
        k, base = per_block[t.role], seen.get(t.role, 0)
        if t.role is Role.attn_v:
            start, step, n = base + m, k, ctx.n_attn_v
        elif ctx.experts > 1:
            start, step, n = first, 1, ctx.n_layers
        else:
            start, step, n = base + m, k, ctx.n_layers
        if t.role not in positional:
            _tally(found, t, start, n, count, ctx, positional=False)
            continue
        for _, i, times in _position_counts(start, step, count, n):
            _tally(found, t, i, n, times, ctx)
    for role, k in per_block.items():
        seen[role] = seen.get(role, 0) + k * count


@functools.lru_cache(maxsize=1024)
def _classes(
    arch: Architecture, positional: frozenset[Role]
) -> tuple[_Context, tuple[_Class, ...]]:
    """The tensors of `arch` as classes that rules testing positions only for the roles in
    `positional` (`_position_roles`) type alike (`_Class`), so that weighing a file type
    costs a few dozen rule checks instead of one per tensor (`gguf_weights`; `assign_types`
    gives the same bytes, tested). Runs of identical blocks are counted, not walked
    (`_add_run`); classes are listed in the order their first tensor comes in the file, so
    types are met, and ties between them sorted, as tensor by tensor."""
    parts = _parts(arch)
    ctx = _context_of(
        arch,
        n_attn_v=sum(n * sum(1 for t in m if t.role is Role.attn_v) for m, _, n in parts.runs)
        + sum(1 for t in (*parts.before, *parts.after) if t.role is Role.attn_v),
        tied=not any(t.role is Role.output for t in parts.after),
    )
    seen: dict[Role, int] = {}
    found: dict[tuple[object, ...], list[Any]] = {}

    def add(t: Tensor, layer: int | None) -> None:
        i = n = 0
        if t.role not in (Role.vector, Role.kept):
            rank = seen.get(t.role, 0)
            seen[t.role] = rank + 1
            i, n = _position(t, rank, ctx, layer)
        _tally(found, t, i, n, 1, ctx, positional=_rules_role(t, ctx) in positional)

    for t in parts.before:
        add(t, None)
    for matrices, first, count in parts.runs:
        _add_run(matrices, first, count, ctx, seen, found, positional)
    for t in parts.after:
        add(t, None)
    if parts.vectors:
        add(Tensor("vectors (norms, biases)", Role.vector, None, 1, parts.vectors), None)
    return ctx, tuple(_Class(*entry) for entry in found.values())


@functools.lru_cache(maxsize=4096)
def gguf_weights(arch: Architecture, rules: QuantRules) -> GGUFWeights:
    """The bytes of a GGUF file of `arch` quantized by `rules` (tensor data only): each class
    of tensors typed alike (`_classes`) in its type, as `weigh(assign_types(arch, rules))`
    gives."""
    ctx, classes = _classes(arch, _position_roles(rules))
    memo = _TYPE_MEMO.setdefault(rules, {})
    return weigh_groups(
        (
            c.tensor.role,
            c.tensor.kept_type
            if c.key is None
            else (memo.get(c.key) or _type_of(c.tensor, c.i, c.n, ctx, rules, c.key)),
            c.values,
            c.tensor.row,
        )
        for c in classes
    )
