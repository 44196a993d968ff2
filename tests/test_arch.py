"""Parameter counts from the architecture, and reading config.json files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from advisor.arch import (
    Architecture,
    ArchOptions,
    architecture_from_hf_config,
    count_params,
    load_hf_config,
    native_dtype_from_hf_config,
)
from advisor.enums import AttentionKind, ModelType
from advisor.errors import InvalidValueError
from advisor.traits import (
    ALL_PROJECTIONS,
    TRAITS,
    ConfigNames,
    MLPKind,
    ModelTraits,
    ParamLayout,
    model_type_of,
)

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


# --- the traits table ------------------------------------------------------------------------


def test_every_model_type_has_a_complete_traits_entry() -> None:
    """TRAITS has exactly one entry per ModelType: a member added without one fails here."""
    assert set(TRAITS) == set(ModelType)
    assert all(isinstance(entry, ModelTraits) for entry in TRAITS.values())


def test_traits_fields_have_no_defaults() -> None:
    """An entry must state every trait: ModelTraits and ConfigNames give no field a default."""
    for cls in (ModelTraits, ConfigNames):
        assert cls._field_defaults == {}, cls.__name__
    partial: dict[str, Any] = {name: None for name in ModelTraits._fields if name != "mlp"}
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'mlp'"):
        ModelTraits(**partial)


def test_every_layout_is_counted() -> None:
    """Each ParamLayout has its counting function, each MLPKind its activation factors, each
    component its field."""
    from advisor import arch as arch_module
    from advisor import estimator, speed

    assert set(arch_module._LAYER_PARAMS) == set(ParamLayout)
    assert set(estimator._MLP_SAVED) == set(MLPKind)
    assert set(estimator._MLP_INFERENCE_LIVE) == set(MLPKind)
    # Training speed's element-wise traffic of the activation, eager and compiled.
    assert set(speed.EAGER_ACTIVATION_BYTES) == set(MLPKind)
    assert set(speed.COMPILED_ACTIVATION_BYTES) == set(MLPKind)
    # Components are built positionally (estimator._RECORDS): their fields follow COMPONENTS.
    names = [f.name for f in dataclasses.fields(estimator.Components)]
    assert [*names, "runtime_overhead"] == list(estimator.COMPONENTS)


@pytest.mark.parametrize("model_type", list(ModelType), ids=str)
def test_traits_entries_are_consistent(model_type: ModelType) -> None:
    """LoRA targets are PEFT names in canonical order; options have a default to compare
    with; a routed-experts layout says moe; the trace's names are read back; aliases resolve
    to the type."""
    from advisor.arch import _DEFAULT_OPTIONS

    entry = TRAITS[model_type]
    assert entry.lora_targets == tuple(p for p in ALL_PROJECTIONS if p in entry.lora_targets)
    assert entry.lora_targets
    assert set(entry.option_keys) <= set(_DEFAULT_OPTIONS)
    assert entry.moe == (
        entry.layout in (ParamLayout.moe_gated, ParamLayout.gpt_oss, ParamLayout.deepseek)
    )
    assert entry.mla == (entry.layout is ParamLayout.deepseek)
    # What the trace writes, the reader reads back (or the type has a default for it).
    assert entry.names.ffn in (*entry.ffn_keys, None)
    assert entry.names.ffn is not None or entry.ffn_default_ratio is not None
    assert entry.names.positions in (*entry.positions_keys, None)
    assert entry.names.positions is not None or entry.positions_default is not None
    assert (entry.names.experts is not None) == entry.moe
    for alias in entry.hf_aliases:
        assert model_type_of(alias) is model_type
    assert model_type_of(model_type.value) is model_type


def test_unknown_type_has_no_traits() -> None:
    """No fallback: a model_type without an entry is not read as some default type."""
    assert model_type_of("mamba") is None
    with pytest.raises(KeyError):
        TRAITS["mamba"]  # type: ignore[index]


def test_multimodal_wrapper_is_read_through_text_config() -> None:
    """A Gemma 3 multimodal config is read through its text_config, and its dtype too."""
    text = {**_config("llama-3.2-1b"), "model_type": "gemma3_text", "torch_dtype": "float16"}
    wrapped = {"model_type": "gemma3", "text_config": text}
    arch = architecture_from_hf_config(wrapped)
    assert arch.model_type is ModelType.gemma3_text
    assert arch == architecture_from_hf_config(text)
    assert native_dtype_from_hf_config(wrapped) == "float16"
    assert native_dtype_from_hf_config({**wrapped, "torch_dtype": "bfloat16"}) == "bfloat16"


# --- one reader of config.json files ---------------------------------------------------------


def test_load_hf_config_reads_a_file(tmp_path: Path) -> None:
    """A config.json file is read into the dict the reader takes."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(_config("gpt2")))
    assert load_hf_config(path) == _config("gpt2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{path}: no such file"),
        (
            "{",
            "{path}: malformed JSON at line 1 column 2: Expecting property name enclosed in "
            "double quotes",
        ),
        ("[1]", "{path}: a config.json must hold a JSON object"),
    ],
)
def test_load_hf_config_faults(tmp_path: Path, content: str | None, message: str) -> None:
    """A missing, malformed or non-object file is one error naming the file."""
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidValueError) as error:
        load_hf_config(path)
    assert str(error.value) == message.format(path=path)


# --- a hashable Architecture -----------------------------------------------------------------


def test_architecture_is_hashable_and_immutable() -> None:
    """Equal architectures hash alike (options given as any mapping); options are read-only."""
    a = _llama(arch_options={"attention_bias": True})
    b = _llama(arch_options=MappingProxyType({"attention_bias": True}))
    assert a == b and hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != _llama() and hash(a) != hash(_llama())
    with pytest.raises(TypeError):
        a.arch_options["attention_bias"] = False  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.hidden_size = 128  # type: ignore[misc]
    assert isinstance(a.arch_options, ArchOptions) and dict(a.arch_options) == {
        "attention_bias": True
    }


def test_counting_each_distinct_layer_once_equals_the_layer_by_layer_sum() -> None:
    """`count_params` counts each distinct layer once (`layer_kinds`): on every bundled model
    (DeepSeek's dense-then-MoE layers among them) it equals summing every layer."""
    from advisor import arch as arch_module
    from catalog.bundled import load

    archs = [row.architecture() for row in load().models]
    assert any(a.traits.layout is ParamLayout.deepseek for a in archs)
    for arch in archs:
        layer = arch_module._LAYER_PARAMS[arch.traits.layout]
        every = [layer(arch, i) for i in range(arch.num_hidden_layers)]
        counted = count_params(arch)
        assert counted.layers == sum(one.total for one in every), arch
        inactive = sum(one.inactive_experts for one in every)
        assert counted.active == counted.total - inactive, arch
    deepseek = next(a for a in archs if a.traits.layout is ParamLayout.deepseek)
    assert deepseek.first_k_dense_replace and arch_module.layer_kinds(deepseek) == (
        (0, deepseek.first_k_dense_replace),
        (
            deepseek.first_k_dense_replace,
            deepseek.num_hidden_layers - deepseek.first_k_dense_replace,
        ),
    )
