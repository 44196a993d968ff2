"""Parameter counts from the architecture, and reading config.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from advisor.arch import Architecture, architecture_from_hf_config, count_params
from advisor.enums import AttentionKind, ModelType
from advisor.errors import InvalidValueError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "calibration"
CONFIGS = Path(__file__).resolve().parent / "data" / "configs"


def _config(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((CONFIGS / f"{name}.json").read_text())
    return loaded


@pytest.mark.parametrize(
    ("name", "total", "active", "attention"),
    [
        ("llama-2-7b", 6_738_415_616, 6_738_415_616, AttentionKind.mha),
        ("llama-3-8b", 8_030_261_248, 8_030_261_248, AttentionKind.gqa),
        ("llama-3.2-1b", 1_235_814_400, 1_235_814_400, AttentionKind.gqa),
        ("mixtral-8x7b", 46_702_792_704, 12_879_925_248, AttentionKind.gqa),
        ("qwen2.5-0.5b", 494_032_768, 494_032_768, AttentionKind.gqa),
        ("gpt2", 124_439_808, 124_439_808, AttentionKind.mha),
        ("opt-1.3b", 1_315_758_080, 1_315_758_080, AttentionKind.mha),
    ],
)
def test_counts_match_published(
    name: str, total: int, active: int, attention: AttentionKind
) -> None:
    """Counts from config.json equal the published exact counts (keras-hub presets, model cards)."""
    arch = architecture_from_hf_config(_config(name))
    counted = count_params(arch)
    assert (counted.total, counted.active, arch.attention_kind) == (total, active, attention)


@pytest.mark.skipif(not (SHARED / "traced.jsonl").exists(), reason="needs ../shared/calibration")
def test_counts_match_traced_models() -> None:
    """Every calibration model's count equals the parameters PyTorch really built."""
    for line in (SHARED / "traced.jsonl").read_text().splitlines():
        case = json.loads(line)
        config = (
            json.loads((SHARED / case["config"]).read_text())
            if isinstance(case["config"], str)
            else case["config"]
        )
        assert count_params(architecture_from_hf_config(config)).total == case["params"], case["id"]


def test_config_missing_field_is_named() -> None:
    """A config.json without a required field says which one."""
    config = _config("llama-2-7b")
    del config["intermediate_size"]
    with pytest.raises(InvalidValueError) as error:
        architecture_from_hf_config(config)
    assert str(error.value) == "config.json is missing required field 'intermediate_size'"


def test_config_unknown_model_type() -> None:
    """An architecture the project cannot lay out is refused by name."""
    with pytest.raises(InvalidValueError) as error:
        architecture_from_hf_config({"model_type": "mamba"})
    assert str(error.value).startswith("model_type 'mamba' is not supported (supported: llama,")


def _llama(**changes: object) -> Architecture:
    fields: dict[str, object] = {
        "model_type": ModelType.llama,
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "intermediate_size": 128,
        "vocab_size": 100,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    }
    fields.update(changes)
    return Architecture(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_attention_heads": 5}, "num_attention_heads (5) must divide hidden_size (64)"),
        ({"num_key_value_heads": 3}, "num_key_value_heads (3) must divide num_attention_heads (4)"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer, got 0"),
        ({"num_experts": 8}, "num_experts and num_experts_per_tok must be given together"),
        ({"num_sliding_layers": 2}, "num_sliding_layers needs sliding_window"),
    ],
)
def test_impossible_architectures_rejected(changes: dict[str, object], message: str) -> None:
    """Architectures that cannot exist are rejected with the reason."""
    with pytest.raises(InvalidValueError) as error:
        _llama(**changes)
    assert str(error.value) == message


def test_tiny_llama_count_by_hand() -> None:
    """A tiny llama counted by hand: embeddings, 2 x (attention + MLP + 2 norms), norm, head."""
    per_layer = (64 * 64 + 2 * 64 * 32 + 64 * 64) + 3 * 64 * 128 + 2 * 64
    assert count_params(_llama()).total == 100 * 64 + 2 * per_layer + 64 + 100 * 64


@given(layers=st.integers(1, 64), extra=st.integers(1, 16))
def test_more_layers_never_fewer_params(layers: int, extra: int) -> None:
    """Adding layers never lowers the count."""
    assert (
        count_params(_llama(num_hidden_layers=layers + extra)).total
        > count_params(_llama(num_hidden_layers=layers)).total
    )
