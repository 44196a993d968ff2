"""A GGUF file read for what sizes it: the architecture from its metadata, every tensor's type
and bytes from its tensor table.

The `gguf` package (llama.cpp's gguf-py) is imported inside `read_gguf` only, so nothing else
pays for it. Metadata keys: gguf-py/gguf/constants.py `Keys` (`{arch}.block_count`,
`{arch}.attention.head_count_kv`, ...), ggml-org/llama.cpp. The metadata is translated into the
Hugging Face config names `advisor.arch.architecture_from_hf_config` reads, so one reader
decides every default (sliding layers, MoE fields, tied embeddings).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.arch import Architecture, architecture_from_hf_config, count_params
from advisor.enums import ModelType, QuantKind
from advisor.errors import InvalidValueError
from advisor.ggml import GGUFWeights
from advisor.gguf import GGUF_ARCHS
from advisor.workload import WeightFormat

# The four bytes every GGUF file starts with (gguf-py constants.py GGUF_MAGIC, "GGUF").
GGUF_MAGIC = b"GGUF"
# Model types by GGUF architecture; `llama` with experts is Mixtral's layout.
_TYPES: Mapping[str, ModelType] = {
    arch.name: t
    for t, arch in GGUF_ARCHS.items()
    if arch.name is not None and t not in (ModelType.mistral, ModelType.mixtral)
}
# The Hugging Face config name of each model type's routed-expert count.
_EXPERT_KEY: Mapping[ModelType, str] = {
    ModelType.mixtral: "num_local_experts",
    ModelType.gpt_oss: "num_local_experts",
    ModelType.qwen3_moe: "num_experts",
    ModelType.deepseek_v3: "n_routed_experts",
}


@dataclass(frozen=True)
class GGUFModel:
    """What a GGUF file says: a label (its `general.name`, else the file name), the
    architecture, and its weights byte for byte as a weight format."""

    label: str
    arch: Architecture
    weight_format: WeightFormat


def _scalar(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return None
    value = field.contents()
    if isinstance(value, list):  # a per-layer array (e.g. head counts): the largest
        numbers = [v for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
        return max(numbers) if numbers else None
    return value


def _config(reader: Any, arch_name: str, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """The file's metadata under Hugging Face config.json names."""

    def key(name: str) -> Any:
        return _scalar(reader, f"{arch_name}.{name}")

    model_type = _TYPES.get(arch_name)
    if model_type is None:
        known = ", ".join(sorted(_TYPES))
        raise InvalidValueError(
            f"GGUF architecture {arch_name!r} is not one advisor knows (known: {known})"
        )
    experts = key("expert_count") or 0
    if model_type is ModelType.llama and experts:
        model_type = ModelType.mixtral
    embd = tensors.get("token_embd.weight")
    if embd is None:
        raise InvalidValueError("the GGUF file has no token_embd.weight tensor")
    ffn = key("feed_forward_length")
    config: dict[str, Any] = {
        "model_type": model_type.value,
        "num_hidden_layers": key("block_count"),
        "hidden_size": key("embedding_length"),
        "num_attention_heads": key("attention.head_count"),
        "num_key_value_heads": key("attention.head_count_kv"),
        "head_dim": key("attention.key_length"),
        "intermediate_size": ffn,
        "n_inner": ffn,
        "ffn_hidden_size": ffn,
        "vocab_size": int(embd.shape[1]),
        "max_position_embeddings": key("context_length"),
        "seq_length": key("context_length"),
        "tie_word_embeddings": "output.weight" not in tensors,
        "sliding_window": key("attention.sliding_window"),
    }
    if experts:
        config[_EXPERT_KEY.get(model_type, "num_experts")] = experts
        config["num_experts_per_tok"] = key("expert_used_count")
        config["moe_intermediate_size"] = key("expert_feed_forward_length")
        config["n_shared_experts"] = key("expert_shared_count")
        config["first_k_dense_replace"] = key("leading_dense_block_count")
    if model_type is ModelType.deepseek_v3:
        rope = key("rope.dimension_count")
        qk = key("attention.key_length_mla") or key("attention.key_length")
        value = key("attention.value_length_mla") or key("attention.value_length")
        config |= {
            "q_lora_rank": key("attention.q_lora_rank"),
            "kv_lora_rank": key("attention.kv_lora_rank"),
            "qk_rope_head_dim": rope,
            "qk_nope_head_dim": None if qk is None or rope is None else qk - rope,
            "v_head_dim": value,
            "head_dim": value,
        }
    return {name: v for name, v in config.items() if v is not None}


def read_gguf(path: Path) -> GGUFModel:
    """Read `path`'s header: InvalidValueError (exit 2) for a file that is not GGUF, is
    truncated (gguf's reader maps every tensor, so a short file fails there), or holds an
    architecture advisor does not know."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except OSError as error:
        raise InvalidValueError(f"{path}: cannot read: {error.strerror or error}") from None
    if magic != GGUF_MAGIC:
        raise InvalidValueError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    gguf = importlib.import_module("gguf")
    try:
        reader = gguf.GGUFReader(str(path))
        tensors = {t.name: t for t in reader.tensors}
        arch_name = _scalar(reader, "general.architecture")
        name = _scalar(reader, "general.name")
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as e:
        raise InvalidValueError(f"{path}: truncated or corrupt GGUF file ({e})") from None
    if not isinstance(arch_name, str):
        raise InvalidValueError(f"{path}: the GGUF file names no general.architecture")
    try:
        arch = architecture_from_hf_config(_config(reader, arch_name, tensors))
    except InvalidValueError as error:
        raise InvalidValueError(f"{path}: {error}") from None
    weights = _weigh(tensors)
    label = name if isinstance(name, str) and name.strip() else path.stem
    fmt = WeightFormat.of_checkpoint(
        path.name, exact_bytes=weights.total, params=count_params(arch).total
    )
    return GGUFModel(
        label=label,
        arch=arch,
        weight_format=WeightFormat(
            slug=fmt.slug,
            bits_per_weight=fmt.bits_per_weight,
            scope="all",
            kind=QuantKind.gguf,
            exact_bytes=weights.total,
            gguf=weights,
        ),
    )


def _weigh(tensors: Mapping[str, Any]) -> GGUFWeights:
    by_type: dict[str, int] = {}
    for t in tensors.values():
        kind = t.tensor_type.name.lower()
        by_type[kind] = by_type.get(kind, 0) + int(t.n_bytes)
    embd = tensors["token_embd.weight"]
    output = tensors.get("output.weight")
    return GGUFWeights(
        total=sum(by_type.values()),
        token_embd=int(embd.n_bytes),
        output=int(output.n_bytes) if output is not None else 0,
        by_type=tuple(sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))),
    )
