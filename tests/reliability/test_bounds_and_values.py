"""Bounds before work, and values refused rather than swallowed (issue 17): every count and
size a user can type has an upper bound checked before any loop, and values that cannot be
valid (inf, NaN, integers beyond 64 bits, a non-boolean flag, zero KV heads, a bad Gemma-3
pattern, nested JSON) are one line with exit 2, never a hang, a MemoryError or a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor.arch import (
    MAX_LAYERS,
    Architecture,
    architecture_from_hf_config,
    count_params,
    load_hf_config,
)
from advisor.errors import InvalidValueError

pytestmark = pytest.mark.reliability
Fixture = Callable[..., Any]
CONFIGS = Path(__file__).parent.parent / "data" / "configs"
LLAMA = json.loads((CONFIGS / "llama-3.2-1b.json").read_text(encoding="utf-8"))
# A Gemma 3 text config, as google/gemma-3-1b-it publishes it (the fields the reader uses).
GEMMA3 = {
    "model_type": "gemma3_text",
    "num_hidden_layers": 26,
    "hidden_size": 1152,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 256,
    "intermediate_size": 6912,
    "vocab_size": 262144,
    "max_position_embeddings": 32768,
    "sliding_window": 512,
    "sliding_window_pattern": 6,
}
BEYOND_64_BITS = 2**64
FINETUNE = ("estimate", "--model", "llama-3.2-1b", "--stage", "finetune")
LORA = (*FINETUNE, "--method", "lora")
FREEZE = (*FINETUNE, "--method", "freeze")


def _config(tmp_path: Path, base: dict[str, Any], **changes: Any) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**base, **changes}), encoding="utf-8")
    return str(path)


# --- typed counts and sizes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("fit", "--model", "llama-3.2-1b", "--max-gpus", "1000000000"),
            "error: max-gpus must be at most 4,096, got 1000000000\n",
        ),
        (
            ("fit", "--model", "llama-3.2-1b", "--stage", "finetune", "--max-gpus", "1000000000"),
            "error: max-gpus must be at most 4,096, got 1000000000\n",
        ),
        (
            ("fit", "--model", "llama-3.2-1b", "--count", "1000000000"),
            "error: count must be at most 4,096, got 1000000000\n",
        ),
        (
            ("which-models", "--gpu", "rtx4090", "--count", "1000000000"),
            "error: count must be at most 4,096, got 1000000000\n",
        ),
        (
            ("estimate", "--model", "llama-3.2-1b", "--gpus", "1000000000"),
            "error: gpus must be at most 131,072, got 1000000000\n",
        ),
        (
            ("estimate", "--model", "llama-3.2-1b", "--batch", str(2**21)),
            "error: batch must be at most 1,048,576, got 2097152\n",
        ),
        (
            ("estimate", "--model", "llama-3.2-1b", "--seq", str(10**19)),
            "error: seq must be at most 1,073,741,824, got 10000000000000000000\n",
        ),
        (
            ("estimate", "--model", "llama-3.2-1b", "--seq", str(10**40)),
            "error: seq must be at most 1,073,741,824, got an integer of 133 bits\n",
        ),
        (
            ("which-models", "--gpu", "rtx4090", "--context", str(2**31)),
            "error: seq must be at most 1,073,741,824, got 2147483648\n",
        ),
        (
            (*LORA, "--lora-rank", str(2**25)),
            "error: lora-rank must be at most 16,777,216, got 33554432\n",
        ),
        (
            (*FREEZE, "--trainable-layers", "17"),
            "error: trainable-layers (17) exceeds the model's 16 layers\n",
        ),
        (
            (*FREEZE, "--trainable-layers", str(10**19)),
            "error: trainable-layers must be at most 4,096, got 10000000000000000000\n",
        ),
    ],
)
def test_counts_beyond_their_bound(
    ready_catalog: Path, cli: Fixture, args: tuple[str, ...], message: str
) -> None:
    """Issue 17: `fit --max-gpus 10^9` hung, `which-models --count 10^9` hung. Each count now
    has its bound, checked first: one line, exit 2."""
    result = cli(*args)
    assert (result.exit_code, result.stderr, result.traceback) == (2, message, None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_hidden_layers", 10**9, "num_hidden_layers must be at most 4,096, got 1000000000"),
        ("hidden_size", 2**30, "hidden_size must be at most 16,777,216, got 1073741824"),
        ("vocab_size", 2**40, "vocab_size must be at most 16,777,216, got 1099511627776"),
        (
            "intermediate_size",
            BEYOND_64_BITS,
            "intermediate_size must be at most 16,777,216, got an integer of 65 bits",
        ),
        ("num_attention_heads", 2**20, "num_attention_heads must be at most 65,536"),
    ],
)
def test_config_sizes_beyond_their_bound(
    ready_catalog: Path, cli: Fixture, tmp_path: Path, field: str, value: int, message: str
) -> None:
    """Issue 17: a config with num_hidden_layers 10^9 hung estimate, fit and `add model`. Every
    size of a config has a bound, checked before the per-layer count."""
    path = _config(tmp_path, LLAMA, **{field: value})
    for args in (
        ("estimate", "--model", path),
        ("fit", "--model", path),
        ("catalog", "add", "model", "--from-config", path, "--slug", "x", "--family", "llama"),
    ):
        result = cli(*args)
        assert (result.exit_code, result.traceback) == (2, None), (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1


def test_catalog_update_beyond_bounds(ready_catalog: Path, cli: Fixture) -> None:
    """Issue 17: `catalog update model … --num-hidden-layers 10^19` ended in MemoryError after
    64 s; a memory beyond 64 bits was an OverflowError. Now one line each, nothing changed."""
    before = cli("catalog", "show", "model", "llama-3.2-1b").stdout
    cases = [
        (("model", "llama-3.2-1b", "--num-hidden-layers", str(10**19)), "num_hidden_layers"),
        (("gpu", "rtx4090", "--memory", "99999999999999999999GiB"), "at most 8 EiB"),
    ]
    for args, needle in cases:
        result = cli("catalog", "update", *args)
        assert (result.exit_code, result.traceback) == (2, None), result.stderr
        assert needle in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert cli("catalog", "show", "model", "llama-3.2-1b").stdout == before


# --- values that must be refused ----------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "Infinity", "nan", "-inf"])
@pytest.mark.parametrize("option", ["--fp16-tflops", "--cloud-price"])
def test_infinite_and_nan_numbers_refused(
    ready_catalog: Path, cli: Fixture, option: str, value: str
) -> None:
    """Issue 17: `inf` TFLOPS and prices were stored, and export then wrote invalid JSON.
    Now refused in one line; the export stays valid JSON."""
    result = cli("catalog", "update", "gpu", "rtx4090", option, value)
    assert (result.exit_code, result.traceback) == (2, None), result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    exported = cli("catalog", "export", "--kind", "gpus")
    assert exported.exit_code == 0
    json.loads(exported.stdout, parse_constant=lambda name: pytest.fail(name))


@pytest.mark.parametrize(
    ("base", "changes", "message"),
    [
        (
            LLAMA,
            {"tie_word_embeddings": "no"},
            "config.json field 'tie_word_embeddings' must be true or false, got 'no'",
        ),
        (
            LLAMA,
            {"num_key_value_heads": 0},
            "num_key_value_heads must be a positive integer, got 0",
        ),
        (
            GEMMA3,
            {"sliding_window_pattern": 0},
            "config.json field 'sliding_window_pattern' must be between 1 and 4,096, got 0",
        ),
        (
            GEMMA3,
            {"sliding_window_pattern": "six"},
            "config.json field 'sliding_window_pattern' must be an integer, got 'six'",
        ),
        (
            LLAMA,
            {"attention_bias": "yes"},
            "config.json field 'attention_bias' must be true or false, got 'yes'",
        ),
        (
            LLAMA,
            {"hidden_size": 2048.0},
            "config.json field 'hidden_size' must be an integer, got 2048.0",
        ),
        (
            LLAMA,
            {"model_type": ["llama"]},
            "model_type a JSON array is not supported",
        ),
    ],
)
def test_config_values_refused(base: dict[str, Any], changes: dict[str, Any], message: str) -> None:
    """Issue 17: "no" read as true, 0 KV heads read as multi-head, a Gemma-3 pattern of 0 or
    "six" a ZeroDivisionError/ValueError. Each is now refused, naming the field."""
    with pytest.raises(InvalidValueError) as raised:
        architecture_from_hf_config({**base, **changes})
    assert str(raised.value).startswith(message)


def test_gemma3_pattern_read(tmp_path: Path) -> None:
    """The pattern the checks guard is still read: 26 layers, one global in six → 22 local."""
    assert architecture_from_hf_config(GEMMA3).num_sliding_layers == 26 - 26 // 6
    assert (
        architecture_from_hf_config({**GEMMA3, "tie_word_embeddings": False}).tie_word_embeddings
        is False
    )


def test_deeply_nested_config(tmp_path: Path, ready_catalog: Path, cli: Fixture) -> None:
    """Issue 17: deeply nested JSON in a config was a RecursionError traceback."""
    path = tmp_path / "deep.json"
    path.write_text('{"model_type": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(InvalidValueError, match="nested too deeply"):
        load_hf_config(path)
    result = cli("estimate", "--model", str(path))
    assert (result.exit_code, result.traceback) == (2, None)
    assert result.stderr == f"error: {path}: JSON nested too deeply to be a config.json\n"


def test_huge_integer_literal_in_config(tmp_path: Path) -> None:
    """A 5,000-digit integer (past Python's int_max_str_digits) is one line, not ValueError."""
    path = tmp_path / "big.json"
    path.write_text('{"num_hidden_layers": ' + "9" * 5000 + "}", encoding="utf-8")
    with pytest.raises(InvalidValueError) as raised:
        load_hf_config(path)
    assert "\n" not in str(raised.value) and str(raised.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("fit", "--model", "llama-3.2-1b", "--gpu", "rtx4090", "--all"),
            "error: --all considers every card and --gpu names the cards: give one\n",
        ),
        (
            ("estimate", "--model", "llama-3.2-1b", "--trainable-layers", "2"),
            "error: --trainable-layers applies to --method freeze\n",
        ),
        (
            ("catalog", "gpus", "--min-memory", ""),
            "error: invalid --min-memory '': write a number and a unit, e.g. 24GiB or 24GB\n",
        ),
    ],
)
def test_options_that_do_not_apply(
    ready_catalog: Path, cli: Fixture, args: tuple[str, ...], message: str
) -> None:
    """Issue 17: options that do not apply were ignored silently; now one line, exit 2."""
    result = cli(*args)
    assert (result.exit_code, result.stderr, result.traceback) == (2, message, None)


def test_alias_beyond_the_name_cap(ready_catalog: Path, cli: Fixture) -> None:
    """Issue 17: a 10,000-character alias was stored where names are capped at 128."""
    result = cli("catalog", "update", "gpu", "rtx4090", "--add-alias", "a" * 10_000)
    assert (result.exit_code, result.traceback) == (2, None), result.stderr
    assert "has 10,000 characters; names are capped at 128" in result.stderr
    assert result.stderr.count("\n") == 1 and len(result.stderr) < 300


# --- the config reader, fuzzed -----------------------------------------------------------

_JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = sorted({*LLAMA, *GEMMA3, "text_config", "layer_types", "num_local_experts"})


@st.composite
def _configs(draw: st.DrawFn) -> dict[str, Any]:
    """A real config with some fields replaced by any JSON value, or any JSON object at all
    (load_hf_config refuses a file that holds no object before the reader sees it)."""
    if draw(st.booleans()):
        keys = st.sampled_from(_FIELDS) | st.text(max_size=8)
        return draw(st.dictionaries(keys, _JSON, max_size=8))
    base = dict(draw(st.sampled_from([LLAMA, GEMMA3])))
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=4)):
        base[name] = draw(_JSON | st.integers(min_value=0, max_value=MAX_LAYERS * 2))
    return base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_configs())
def test_config_reader_fuzz(config: dict[str, Any]) -> None:
    """Any JSON object of any shape: an Architecture whose parameters count, or one
    InvalidValueError line. Never another exception."""
    try:
        arch = architecture_from_hf_config(config)
    except InvalidValueError as error:
        assert "\n" not in str(error) and len(str(error)) < 400
    else:
        assert isinstance(arch, Architecture) and count_params(arch).total > 0


@pytest.mark.parametrize("content", ["[]", "7", '"text"', "null"])
def test_config_file_without_an_object(tmp_path: Path, content: str) -> None:
    """A config.json holding no JSON object is refused by the reader in one line."""
    path = tmp_path / "config.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidValueError, match=r"a config\.json must hold a JSON object"):
        load_hf_config(path)
