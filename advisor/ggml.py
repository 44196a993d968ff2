"""ggml's weight types and llama.cpp's per-tensor quantization rules, as data.

Pure and dependency-free below the workload (a `WeightFormat` carries `QuantRules`). A GGUF
file type such as Q4_K_M is a mix: llama.cpp's quantizer gives each tensor a type by its role,
its layer and the model's shape (`llama_tensor_get_type` in src/llama-quant.cpp); the catalog
stores each file type's rules as data and advisor/gguf.py applies them to a model's tensors.

Source of the mechanisms: ggml-org/llama.cpp src/llama-quant.cpp at commit 007dbbf3
(`tensor_allows_quantization`, `tensor_type_fallback`, `llama_tensor_get_type_impl`,
`llama_ftype_get_default_type`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from advisor.errors import InvalidValueError


class _Name(StrEnum):
    """A StrEnum hashed as its value, in C: every member's name is its value (tested), so the
    hash is Enum's own (`hash(name)`) at a fraction of the cost; the weighing of GGUF files
    keys its dicts by these members thousands of times per command."""

    __hash__ = str.__hash__


class GGMLType(_Name):
    """ggml tensor types a GGUF file stores weights in (lower case of ggml's names)."""

    f32 = "f32"
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"
    q6_k = "q6_k"
    q5_1 = "q5_1"
    q5_0 = "q5_0"
    q5_k = "q5_k"
    q4_1 = "q4_1"
    q4_0 = "q4_0"
    q4_k = "q4_k"
    iq4_nl = "iq4_nl"
    iq4_xs = "iq4_xs"
    mxfp4 = "mxfp4"
    q3_k = "q3_k"
    iq3_s = "iq3_s"
    iq3_xxs = "iq3_xxs"
    q2_k = "q2_k"
    iq2_s = "iq2_s"
    iq2_xs = "iq2_xs"
    iq2_xxs = "iq2_xxs"
    tq2_0 = "tq2_0"
    iq1_m = "iq1_m"
    tq1_0 = "tq1_0"
    iq1_s = "iq1_s"


class Block(NamedTuple):
    """A ggml type's storage: `weights` per block in `nbytes`; `fallback`: the type llama.cpp's
    quantizer uses instead when a row is not a whole number of blocks (`tensor_type_fallback`;
    None: none defined, the row must fit)."""

    weights: int
    nbytes: int
    fallback: GGMLType | None = None

    @property
    def bits_per_weight(self) -> float:
        return self.nbytes * 8 / self.weights


# Block size and bytes per block of each type: GGML_QUANT_SIZES in gguf-py gguf/constants.py
# (gguf 0.19.0 on PyPI, ggml-org/llama.cpp); tests/test_gguf.py checks every row against the
# installed package. QK_K = 256. Fallbacks: llama-quant.cpp `tensor_type_fallback` at 007dbbf3.
GGML_BLOCKS: Mapping[GGMLType, Block] = MappingProxyType(
    {
        GGMLType.f32: Block(1, 4),
        GGMLType.f16: Block(1, 2),
        GGMLType.bf16: Block(1, 2),
        GGMLType.q8_0: Block(32, 34),
        GGMLType.q6_k: Block(256, 210, GGMLType.q8_0),
        GGMLType.q5_1: Block(32, 24),
        GGMLType.q5_0: Block(32, 22),
        GGMLType.q5_k: Block(256, 176, GGMLType.q5_1),
        GGMLType.q4_1: Block(32, 20),
        GGMLType.q4_0: Block(32, 18),
        GGMLType.q4_k: Block(256, 144, GGMLType.q5_0),
        GGMLType.iq4_nl: Block(32, 18),
        GGMLType.iq4_xs: Block(256, 136, GGMLType.iq4_nl),
        GGMLType.mxfp4: Block(32, 17),
        GGMLType.q3_k: Block(256, 110, GGMLType.q4_0),
        GGMLType.iq3_s: Block(256, 110, GGMLType.iq4_nl),
        GGMLType.iq3_xxs: Block(256, 98, GGMLType.iq4_nl),
        GGMLType.q2_k: Block(256, 84, GGMLType.q4_0),
        GGMLType.iq2_s: Block(256, 82, GGMLType.iq4_nl),
        GGMLType.iq2_xs: Block(256, 74, GGMLType.iq4_nl),
        GGMLType.iq2_xxs: Block(256, 66, GGMLType.iq4_nl),
        GGMLType.tq2_0: Block(256, 66, GGMLType.q4_0),
        GGMLType.iq1_m: Block(256, 56, GGMLType.iq4_nl),
        GGMLType.tq1_0: Block(256, 54, GGMLType.q4_0),
        GGMLType.iq1_s: Block(256, 50, GGMLType.iq4_nl),
    }
)
# The type a tensor falls back to when not even the fallback's block divides its rows
# ("must use F16 due to unusual shape", tensor_type_fallback).
LAST_RESORT = GGMLType.f16
# Unquantized floats: the quantizer never changes a tensor stored in one of these unless the
# file type is itself quantized (`ggml_is_quantized(default_type)`).
FLOAT_TYPES = frozenset({GGMLType.f32, GGMLType.f16, GGMLType.bf16})


def tensor_nbytes(kind: GGMLType, elements: int, row: int) -> int:
    """Bytes of a tensor of `elements` values in rows of `row` (ggml's ne[0]) stored as `kind`:
    whole blocks per row, as `ggml_row_size` counts them."""
    block = GGML_BLOCKS[kind]
    if row <= 0 or elements % row or row % block.weights:
        raise InvalidValueError(
            f"a row of {row} values is not a whole number of {kind.value} blocks "
            f"({block.weights} values)"
        )
    return elements // block.weights * block.nbytes


class Role(_Name):
    """A tensor's role as llama.cpp's quantizer sees it (`tensor_get_category`).

    attn_v covers the fused attn_qkv and MLA's attn_kv_b (`category_is_attn_v`); `other` is any
    other quantizable matrix (MLA's low-rank projections, ...); `vector` and `kept` are never
    quantized (norms and biases, stored F32; routers and position tables, see `kept_type`)."""

    token_embd = "token_embd"
    output = "output"
    attn_q = "attn_q"
    attn_k = "attn_k"
    attn_v = "attn_v"
    attn_output = "attn_output"
    ffn_gate = "ffn_gate"
    ffn_up = "ffn_up"
    ffn_down = "ffn_down"
    other = "other"
    vector = "vector"
    kept = "kept"


QUANTIZABLE_ROLES = tuple(r for r in Role if r not in (Role.vector, Role.kept))


class Tensor(NamedTuple):
    """One tensor of a GGUF file: its name, role, layer (None outside the blocks), values per
    row (ggml's ne[0], the input width of a matrix), value count and experts (ne[2])."""

    name: str
    role: Role
    layer: int | None
    row: int
    elements: int
    experts: int = 1
    kept_type: GGMLType = GGMLType.f32  # the type a never-quantized tensor stays in


class When(_Name):
    """Conditions llama.cpp's rules test; a rule holds when all of its conditions hold.

    i: the tensor's index (its layer for the FFN of an MoE model, else its rank among the
    tensors of its role), n: the layers (for attn_v: the attn_v tensors)."""

    more_bits = "more_bits"  # use_more_bits: i < n/8 or i >= 7n/8 or (i - n/8) % 3 == 2
    first_eighth = "first_eighth"  # i < n/8
    first_sixteenth = "first_sixteenth"  # i < n/16
    first_two = "first_two"  # i < 2
    first_four = "first_four"  # i < 4
    middle = "middle"  # n/8 <= i < 7n/8
    gqa_4 = "gqa_4"  # n_head / n_head_kv >= 4
    experts_4 = "experts_4"  # n_expert >= 4
    experts_8 = "experts_8"  # n_expert == 8 (Mixtral)
    type_70b = "type_70b"  # llama.cpp's LLM_TYPE_70B: a Llama or Qwen2 of 80 layers
    falcon = "falcon"
    not_falcon = "not_falcon"
    imatrix = "imatrix"  # quantized with an importance matrix
    no_imatrix = "no_imatrix"
    misaligned = "misaligned"  # the row is not a whole number of the file's base blocks
    expert_tensor = "expert_tensor"  # a 3-D tensor of stacked experts (ne[2] > 1)


class Rule(NamedTuple):
    kind: GGMLType
    when: frozenset[When] = frozenset()


@dataclass(frozen=True)
class QuantRules:
    """A GGUF file type as llama.cpp's quantizer builds it: the base type of every quantizable
    tensor, and per role an ordered list of rules (the first that holds gives the type).
    `imatrix`: whether files of this type are made with an importance matrix."""

    base: GGMLType
    rules: tuple[tuple[Role, tuple[Rule, ...]], ...] = ()
    imatrix: bool = False

    def __post_init__(self) -> None:
        # Hashed once: `advisor.gguf` keys its memo of answers by the rules, per tensor group.
        object.__setattr__(self, "_hash", hash((self.base, self.rules, self.imatrix)))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[no-any-return,attr-defined]

    def for_role(self, role: Role) -> tuple[Rule, ...]:
        for r, rules in self.rules:
            if r is role:
                return rules
        return ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuantRules:
        """Rules from the catalog's JSON: {"base": "q4_k", "imatrix": false, "rules":
        {"attn_v": [{"type": "q6_k", "when": ["more_bits"]}, ...], ...}}."""
        try:
            base = GGMLType(data["base"])
            imatrix = data.get("imatrix", False)
            if not isinstance(imatrix, bool):
                raise InvalidValueError("'imatrix' must be true or false")
            roles: list[tuple[Role, tuple[Rule, ...]]] = []
            for role_name, entries in dict(data.get("rules", {})).items():
                role = Role(role_name)
                if role not in QUANTIZABLE_ROLES:
                    raise InvalidValueError(f"role {role_name!r} is never quantized")
                roles.append(
                    (
                        role,
                        tuple(
                            Rule(GGMLType(e["type"]), frozenset(When(c) for c in e.get("when", ())))
                            for e in entries
                        ),
                    )
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, InvalidValueError):
                raise
            raise InvalidValueError(f"invalid GGUF tensor rules: {exc}") from None
        unknown = set(data) - {"base", "imatrix", "rules"}
        if unknown:
            raise InvalidValueError(f"invalid GGUF tensor rules: unknown keys {sorted(unknown)}")
        return cls(base, tuple(roles), imatrix)

    def to_json(self) -> dict[str, Any]:
        return {
            "base": self.base.value,
            "imatrix": self.imatrix,
            "rules": {
                role.value: [
                    {"type": r.kind.value, "when": sorted(c.value for c in r.when)} for r in rules
                ]
                for role, rules in self.rules
            },
        }

    def summary(self) -> str:
        """One line: the base type and which roles get which other types."""
        parts = [self.base.value.upper()]
        for role, rules in self.rules:
            kinds = sorted({r.kind.value.upper() for r in rules} - {self.base.value.upper()})
            if kinds:
                parts.append(f"{role.value} {'/'.join(kinds)}")
        return ", ".join(parts)


class GGUFWeights(NamedTuple):
    """The weights of a GGUF file: total bytes, the token embedding and the output layer's
    bytes (llama.cpp places them apart), and bytes per ggml type."""

    total: int
    token_embd: int
    output: int
    by_type: tuple[tuple[str, int], ...]  # ggml type names (a file may hold any)

    def bits_per_weight(self, params: int) -> float:
        return self.total * 8 / params


def weigh(assigned: Sequence[tuple[Tensor, GGMLType]]) -> GGUFWeights:
    return weigh_groups((t.role, kind, t.elements, t.row) for t, kind in assigned)


def weigh_groups(groups: Iterable[tuple[Role, GGMLType, int, int]]) -> GGUFWeights:
    """The weights of groups of tensors, each (role, type, values of them all, values per row
    of each). The token embedding and the output layer are single tensors, weighed alone."""
    by_type: dict[GGMLType, int] = {}
    embd = output = 0
    for role, kind, values, row in groups:
        n = tensor_nbytes(kind, values, row)
        by_type[kind] = by_type.get(kind, 0) + n
        if role is Role.token_embd:
            embd = n
        elif role is Role.output:
            output = n
    return GGUFWeights(
        total=sum(by_type.values()),
        token_embd=embd,
        output=output,
        by_type=tuple(sorted(((k.value, n) for k, n in by_type.items()), key=lambda kv: -kv[1])),
    )
