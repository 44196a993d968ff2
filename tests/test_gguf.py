"""GGUF weights tensor by tensor: ggml's blocks, llama.cpp's per-tensor rules, published sizes."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from advisor.arch import Architecture, count_params
from advisor.enums import ModelType
from advisor.errors import InvalidValueError
from advisor.ggml import GGML_BLOCKS, GGMLType, QuantRules, Role, When
from advisor.gguf import GGUF_ARCHS, assign_types, gguf_tensors, gguf_weights
from catalog import bundled
from catalog.rules import architecture_of

SIZES = Path(__file__).parent / "data" / "gguf_sizes.jsonl"
UNIT_BYTES = {"GiB": 2**30, "GB": 10**9}
# A published figure is rounded to its last digit: the truth lies within half a unit of it.
ROUNDING = 0.005
# A file on the Hub also holds its metadata (tokenizer vocabulary and merges, chat template):
# at most 16 MB for a 128k-token vocabulary (llama.cpp's metadata for Llama 3 is about 8 MB).
METADATA_ALLOWANCE = 16 * 10**6


def _bundled() -> tuple[dict[str, Architecture], dict[str, dict[str, Any]]]:
    data = bundled.load()
    models = {m.slug: architecture_of(m.model_dump()) for m in data.models}
    quants = {q.slug: q.model_dump() for q in data.quants}
    return models, quants


MODELS, QUANTS = _bundled()
RECORDS = [json.loads(line) for line in SIZES.read_text(encoding="utf-8").splitlines()]


def _rules(slug: str, imatrix: bool | None = None) -> QuantRules:
    if slug == "f16":
        return QuantRules(GGMLType.f16)
    rules = QuantRules.from_json(QUANTS[slug]["gguf_rules"])
    return rules if imatrix is None else replace(rules, imatrix=imatrix)


def _estimate(record: dict[str, Any]) -> int:
    return gguf_weights(MODELS[record["model"]], _rules(record["format"], record["imatrix"])).total


def test_block_sizes_match_gguf_package() -> None:
    """Every ggml type's block size and bytes per block equal gguf-py's GGML_QUANT_SIZES."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    for kind, block in GGML_BLOCKS.items():
        theirs = GGML_QUANT_SIZES[GGMLQuantizationType[kind.value.upper()]]
        assert (block.weights, block.nbytes) == theirs, kind


def test_fallbacks_have_smaller_blocks() -> None:
    """A fallback type has a block that divides more rows (32 values) than the type's own."""
    for kind, block in GGML_BLOCKS.items():
        if block.fallback is not None:
            assert GGML_BLOCKS[block.fallback].weights < block.weights, kind


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_tensors_add_up_to_the_parameter_count(slug: str) -> None:
    """The GGUF tensors listed for every bundled model hold exactly its parameters."""
    arch = MODELS[slug]
    assert sum(t.elements for t in gguf_tensors(arch)) == count_params(arch).total


def test_every_model_type_has_a_gguf_architecture() -> None:
    """Every model type says what llama.cpp calls it (or that llama.cpp has no such type)."""
    assert set(GGUF_ARCHS) == set(ModelType)
    assert GGUF_ARCHS[ModelType.opt].name is None


@pytest.mark.parametrize("record", RECORDS, ids=[r["id"] for r in RECORDS])
def test_published_size(record: dict[str, Any]) -> None:
    """The rules applied to the model give the published size within its rounding (and, for a
    whole file, its metadata)."""
    unit = UNIT_BYTES[record["unit"]]
    published = record["value"] * unit
    low = published - ROUNDING * unit
    high = published + ROUNDING * unit
    if record["what"].startswith("file size"):
        low -= METADATA_ALLOWANCE
    assert low <= _estimate(record) <= high


def test_published_sizes_median_and_worst() -> None:
    """Across the published records: median error under 0.2 %, worst under 0.3 % (the goal is
    1 % and 5 %)."""
    errors = [abs(_estimate(r) / (r["value"] * UNIT_BYTES[r["unit"]]) - 1) for r in RECORDS]
    assert statistics.median(errors) < 0.002
    assert max(errors) < 0.003


def _types(slug: str, fmt: str) -> dict[str, GGMLType]:
    return {t.name: kind for t, kind in assign_types(MODELS[slug], _rules(fmt))}


def test_q4_k_m_on_llama_3_1_8b() -> None:
    """Q4_K_M: Q6_K output, Q6_K attn_v and ffn_down where use_more_bits holds (layers 0-3,
    28-31 and every third between), Q4_K elsewhere, F32 norms."""
    types = _types("llama-3.1-8b", "q4_k_m")
    assert types["output.weight"] is GGMLType.q6_k
    assert types["token_embd.weight"] is GGMLType.q4_k
    more = [i for i in range(32) if types[f"blk.{i}.attn_v.weight"] is GGMLType.q6_k]
    assert more == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    assert [i for i in range(32) if types[f"blk.{i}.ffn_down.weight"] is GGMLType.q6_k] == more
    assert types["blk.5.attn_q.weight"] is GGMLType.q4_k
    assert types["vectors (norms, biases)"] is GGMLType.f32


def test_small_model_rows_fall_back() -> None:
    """SmolLM2-135M's rows of 576 values are no whole number of 256-value blocks: Q4_K falls
    back to Q5_0, and the tied embedding (the output's rules) to Q8_0."""
    types = _types("smollm2-135m", "q4_k_m")
    assert types["token_embd.weight"] is GGMLType.q8_0
    assert types["blk.4.attn_q.weight"] is GGMLType.q5_0
    assert types["blk.4.ffn_down.weight"] is GGMLType.q4_k  # rows of 1,536 = 6 blocks
    bpw = gguf_weights(MODELS["smollm2-135m"], _rules("q4_k_m")).bits_per_weight(
        count_params(MODELS["smollm2-135m"]).total
    )
    assert 6.1 < bpw < 6.2  # against 4.89 on Llama-3.1-8B


def test_70b_attn_v_gets_q5_k() -> None:
    """An 80-layer Llama is llama.cpp's 70B type: attn_v in Q3_K or Q4_K becomes Q5_K."""
    types = _types("llama-3.1-70b", "q3_k_s")
    assert {types[f"blk.{i}.attn_v.weight"] for i in range(80)} == {GGMLType.q5_k}
    assert _types("llama-3.1-8b", "q3_k_s")["blk.0.attn_v.weight"] is GGMLType.q3_k


def test_mixtral_attention_in_q8_0() -> None:
    """Eight experts: attn_v and attn_k in Q8_0 (llama.cpp trades ~128 MB for it)."""
    types = _types("mixtral-8x7b", "q4_k_m")
    assert types["blk.0.attn_v.weight"] is GGMLType.q8_0
    assert types["blk.0.attn_k.weight"] is GGMLType.q8_0
    assert types["blk.0.ffn_gate_inp.weight"] is GGMLType.f32


def test_mxfp4_moe_on_gpt_oss() -> None:
    """MXFP4_MOE: the stacked experts in MXFP4, every other matrix in Q8_0, so gpt-oss-20b
    weighs between its experts' MXFP4 bytes and all of it in Q8_0."""
    types = _types("gpt-oss-20b", "mxfp4_moe")
    assert types["blk.0.ffn_down_exps.weight"] is GGMLType.mxfp4
    assert types["blk.0.attn_q.weight"] is GGMLType.q8_0
    assert types["output.weight"] is GGMLType.q8_0
    arch = MODELS["gpt-oss-20b"]
    weights = gguf_weights(arch, _rules("mxfp4_moe"))
    params = count_params(arch).total
    assert dict(weights.by_type)[GGMLType.mxfp4] < weights.total < params * 8.5 / 8
    assert 4.25 < weights.bits_per_weight(params) < 5


def test_rules_round_trip_and_summary() -> None:
    """The catalog's JSON reads back to the same rules; the summary names the bumped types."""
    rules = _rules("q4_k_m")
    assert QuantRules.from_json(rules.to_json()) == rules
    assert rules.summary() == (
        "Q4_K, output Q6_K/Q8_0, attn_v Q5_K/Q6_K/Q8_0, attn_k Q8_0, ffn_down Q5_K/Q6_K, "
        "attn_output Q5_K"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"base": "q9_k"}, "invalid GGUF tensor rules: 'q9_k' is not a valid GGMLType"),
        ({"base": "q4_k", "imatrix": "yes"}, "'imatrix' must be true or false"),
        (
            {"base": "q4_k", "rules": {"vector": [{"type": "q8_0"}]}},
            "role 'vector' is never quantized",
        ),
        (
            {"base": "q4_k", "rules": {"attn_v": [{"type": "q8_0", "when": ["often"]}]}},
            "invalid GGUF tensor rules: 'often' is not a valid When",
        ),
        ({"base": "q4_k", "extra": 1}, "invalid GGUF tensor rules: unknown keys ['extra']"),
    ],
)
def test_bad_rules_refused(data: dict[str, Any], message: str) -> None:
    """Malformed rules are one clear error."""
    with pytest.raises(InvalidValueError) as caught:
        QuantRules.from_json(data)
    assert str(caught.value) == message


def test_every_condition_has_a_test() -> None:
    """Every condition the rules may name is evaluated (no condition silently holds)."""
    from advisor.gguf import _TESTS

    assert set(_TESTS) == set(When)
    assert Role.vector not in [role for role, _ in _rules("q4_k_m").rules]


def test_every_condition_is_keyed() -> None:
    """Each condition reads one of: the position, the model, the tensor's shape, the rules;
    the memo key (`_rule_key`) carries the first three and the memo is per rules, so a
    condition in none of these lists could be answered from another tensor's entry."""
    from advisor.gguf import _MODEL_TESTS, _POSITION_TESTS, _RULES_TESTS, _TENSOR_TESTS

    listed = [*_POSITION_TESTS, *_MODEL_TESTS, *_TENSOR_TESTS, *_RULES_TESTS]
    assert sorted(listed) == sorted(When)


def test_rows_are_keyed_by_their_remainder() -> None:
    """Every block width divides the period the memo keys rows by."""
    from advisor.gguf import ROW_PERIOD

    assert ROW_PERIOD == 256
    assert all(ROW_PERIOD % block.weights == 0 for block in GGML_BLOCKS.values())


@pytest.mark.parametrize("kind", [GGMLType, Role, When])
def test_ggml_names_hash_as_their_values(kind: type[StrEnum]) -> None:
    """These enums hash as str (C speed); that equals Enum's hash because names are values."""
    for member in kind:
        assert member.name == member.value
        assert hash(member) == hash(member.value)


def test_memo_shared_across_models_gives_each_its_own_bytes() -> None:
    """One memo of rule answers serves every model (tensors alike in what the conditions read
    share an entry): weighing all bundled models in one go, in two orders, gives each exactly
    its tensor-by-tensor bytes."""
    from advisor import gguf
    from advisor.ggml import weigh

    formats = [fmt for fmt, row in QUANTS.items() if row.get("gguf_rules") is not None]
    expected = {
        (fmt, slug): weigh(assign_types(MODELS[slug], _rules(fmt)))
        for fmt in formats
        for slug in MODELS
    }
    for order in (sorted(MODELS), sorted(MODELS, reverse=True)):
        gguf._TYPE_MEMO.clear()
        gguf.gguf_weights.cache_clear()
        for fmt in formats:
            rules = _rules(fmt)
            for slug in order:
                assert gguf_weights(MODELS[slug], rules) == expected[fmt, slug], (fmt, slug)


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_grouped_weighing_equals_tensor_by_tensor(slug: str) -> None:
    """`gguf_weights` weighs classes of tensors typed alike (`_classes`): for every bundled
    model and every GGUF file type, with and without an importance matrix, it gives exactly
    what weighing each tensor in its assigned type gives."""
    from advisor.ggml import weigh

    arch = MODELS[slug]
    for fmt, row in QUANTS.items():
        if row.get("gguf_rules") is None:
            continue
        for imatrix in (False, True):
            rules = _rules(fmt, imatrix)
            assert gguf_weights(arch, rules) == weigh(assign_types(arch, rules)), (fmt, imatrix)
