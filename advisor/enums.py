"""Closed sets of values shared by the catalog, the estimator and the CLI.

Kept free of heavy imports: the CLI builds its options from these at start-up.
"""

from __future__ import annotations

from enum import StrEnum


class Vendor(StrEnum):
    nvidia = "nvidia"
    amd = "amd"
    intel = "intel"
    apple = "apple"


class Market(StrEnum):
    consumer = "consumer"
    laptop = "laptop"
    workstation = "workstation"
    datacenter = "datacenter"
    unified_memory = "unified-memory"


class LinkKind(StrEnum):
    """How cards in one machine reach each other: none (one device per machine), the PCIe bus
    (through the host), or a vendor's GPU-to-GPU link (NVLink/NVSwitch, AMD Infinity Fabric,
    Intel Xe Link, or Gaudi's on-chip RoCE Ethernet)."""

    none = "none"
    pcie = "pcie"
    nvlink = "nvlink"
    infinity_fabric = "infinity-fabric"
    xe_link = "xe-link"
    ethernet = "ethernet"


class FamilyKind(StrEnum):
    dense = "dense"
    moe = "moe"


class AttentionKind(StrEnum):
    """MHA: one KV head per query head; GQA: groups share a KV head; MQA: one KV head;
    MLA: keys and values compressed into a shared latent (DeepSeek-V2/V3)."""

    mha = "mha"
    gqa = "gqa"
    mqa = "mqa"
    mla = "mla"


class ModelType(StrEnum):
    """Hugging Face `model_type` values whose layer structure the project knows."""

    llama = "llama"
    mistral = "mistral"
    mixtral = "mixtral"
    qwen2 = "qwen2"
    qwen3 = "qwen3"
    qwen3_moe = "qwen3_moe"
    gemma = "gemma"
    gemma2 = "gemma2"
    gemma3_text = "gemma3_text"
    phi3 = "phi3"
    gpt2 = "gpt2"
    opt = "opt"
    falcon = "falcon"
    gpt_neox = "gpt_neox"
    bloom = "bloom"
    deepseek_v3 = "deepseek_v3"
    gpt_oss = "gpt_oss"


class QuantKind(StrEnum):
    """Where a weight format comes from."""

    float = "float"
    integer = "integer"
    gguf = "gguf"
    bitsandbytes = "bitsandbytes"
    gptq = "gptq"
    awq = "awq"


class QuantScope(StrEnum):
    """What the bits per weight cover.

    `all`: every parameter (a GGUF file's measured size over its parameter count, embeddings
    included). `linear`: only the linear layers of the transformer blocks; embeddings, the
    output head and norms stay at 16 bit (bitsandbytes, GPTQ, AWQ as transformers loads them).
    """

    all = "all"
    linear = "linear"


class QuantAppliesTo(StrEnum):
    weights = "weights"
    kv_cache = "kv-cache"
    both = "weights+kv-cache"


class Engine(StrEnum):
    """The inference engine that serves the model, which sets how memory is allocated:
    Hugging Face transformers on PyTorch, vLLM (paged KV cache in a preallocated share of the
    card), llama.cpp (ggml buffers; Ollama and LM Studio run it)."""

    transformers = "transformers"
    vllm = "vllm"
    llama_cpp = "llama.cpp"
