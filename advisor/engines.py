"""The inference engines: one entry per `Engine`, holding what sets each one's memory.

Pure: it imports only enums, errors, units and workload. The estimator reads `ENGINES` for the terms
(`advisor.estimator._inference_terms` dispatches on the engine), the policy for the default
engine of a weight format, the CLI only passes the choice in. Every entry is complete (no
field has a default) and `tests/test_engines.py` checks that every `Engine`, and every
`QuantKind` for every engine, has one.

Sources (read at a named commit; facts only, no code copied):
- llama.cpp, ggml-org/llama.cpp at 4c7103b96d720ea6057eec6ac11a49727f9ecd43:
  src/llama-context.cpp (n_ctx padded to 256; the worst-case graph reserved with
  n_tokens = min(n_ctx, n_ubatch) tokens, as many outputs, over a full KV cache; flash
  attention `auto` turns on; a quantized V cache needs flash attention), src/llama-model.cpp
  (the input embedding stays on the CPU), ggml/src/ggml-alloc.c (one buffer per backend
  sized to the graph's peak of live tensors, in-place ops reuse their input).
- llama.cpp's backend context (`LLAMA_CPP_BACKEND_CONTEXT`): its own memory breakdown, printed
  on exit since ggml-org/llama.cpp PR #15860 (total = free + model + context + compute +
  "unaccounted"), read on a CUDA card and on Apple silicon.
- vLLM, vllm-project/vllm: the worker's `determine_num_available_blocks` / memory profiling
  (PR #10511: total memory x gpu_memory_utilization, minus weights, the profile run's
  activation peak and non-torch memory, is the KV cache), block size 16.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from advisor.enums import Engine, QuantKind, Vendor
from advisor.errors import InvalidValueError
from advisor.units import MIB
from advisor.workload import KVDtype, Serving, WeightFormat

# What users type for an engine that runs another: Ollama and LM Studio run llama.cpp.
ENGINE_ALIASES: Mapping[str, Engine] = MappingProxyType(
    {"ollama": Engine.llama_cpp, "lm-studio": Engine.llama_cpp, "llama-cpp": Engine.llama_cpp}
)
# A float format at fewer bits than this is an FP8/FP4 checkpoint, which vLLM serves.
FLOAT_16_BITS = 16


class BackendContext(NamedTuple):
    """What an engine's GPU backend holds on a card beyond the tensors it sizes (driver
    context, kernels, library handles, scratch pools), in bytes. `measured` False: no public
    measurement for this backend was found and `basis` names the stand-in."""

    context_bytes: int
    measured: bool
    basis: str


# llama.cpp on CUDA: what a llama.cpp process holds on a card beyond its model, KV and compute
# buffers (the CUDA context with ggml's kernels, cuBLAS handles, ggml's CUDA pool). llama.cpp's
# own breakdown (ggml-org/llama.cpp PR #15860, JohannesGaessler's example: three RTX 4090s, all
# layers offloaded) reads 451, 456 and 456 MiB "unaccounted" (total - free - model - context -
# compute); the largest is charged. PR #20595 puts the CUDA primary context alone at 120-550 MB
# depending on the GPU, PyTorch's 1343 MiB carries its own kernel library on top.
LLAMA_CPP_CUDA_CONTEXT_BYTES = 456 * MIB
# llama.cpp on Metal: the breakdown reads "Unaccounted: 0" on an M1 Max (ggml-org/llama.cpp
# PR #22673, a tester's baseline run without MTP): nothing beyond the buffers, as for PyTorch's
# MPS (the working-set limit is the card's capacity).
LLAMA_CPP_METAL_CONTEXT_BYTES = 0
# llama.cpp on ROCm (HIP) and SYCL (Intel): no published breakdown of an idle card was found
# (the ROCm ones in llama.cpp issues come from `--fit` trial allocations, with negative
# "unaccounted"); the CUDA figure stands in, flagged unmeasured.
LLAMA_CPP_STAND_IN_CONTEXT_BYTES = LLAMA_CPP_CUDA_CONTEXT_BYTES
_LLAMA_CPP_STAND_IN = BackendContext(
    context_bytes=LLAMA_CPP_STAND_IN_CONTEXT_BYTES,
    measured=False,
    basis="no published llama.cpp breakdown for this backend; llama.cpp's CUDA figure stands in",
)
LLAMA_CPP_BACKEND_CONTEXT: Mapping[Vendor, BackendContext] = MappingProxyType(
    {
        Vendor.nvidia: BackendContext(
            context_bytes=LLAMA_CPP_CUDA_CONTEXT_BYTES,
            measured=True,
            basis="llama.cpp's memory breakdown, 'unaccounted' on RTX 4090s "
            "(ggml-org/llama.cpp#15860)",
        ),
        Vendor.amd: _LLAMA_CPP_STAND_IN,
        Vendor.apple: BackendContext(
            context_bytes=LLAMA_CPP_METAL_CONTEXT_BYTES,
            measured=True,
            basis="llama.cpp's memory breakdown, 'unaccounted' 0 on an M1 Max "
            "(ggml-org/llama.cpp#22673)",
        ),
        Vendor.intel: _LLAMA_CPP_STAND_IN,
    }
)


class EngineTraits(NamedTuple):
    """How one engine allocates: the formats it runs (the others refused, with the reason),
    its KV-cache dtypes and default, whether PyTorch's caching allocator adds its reserve,
    whether a preallocated share of the card bounds it, and whether layers can stay in
    system RAM."""

    engine: Engine
    runs: frozenset[QuantKind]
    refused: Mapping[QuantKind, str]
    kv_dtypes: frozenset[KVDtype]
    default_kv_dtype: KVDtype | None  # None: the compute dtype
    allocator_reserve: bool  # PyTorch's caching allocator (the 5 % reserve) applies
    preallocates: bool  # the engine takes gpu_memory_utilization of the card up front
    layer_offload: bool  # layers can stay in system RAM (llama.cpp -ngl)
    vendors: frozenset[Vendor]  # the GPU vendors it has a backend for
    # Its own backend's context per vendor; None: it runs on PyTorch, whose runtime overhead
    # (`advisor.estimator.OVERHEAD_BY_VENDOR`) applies.
    backend_context: Mapping[Vendor, BackendContext] | None
    source: str


_NOT_LLAMA_CPP = (
    "llama.cpp runs GGUF files only (its own k-quants and i-quants, F16/BF16/F32); "
    "{kind} checkpoints cannot be loaded: pick a GGUF format or --engine vllm/transformers"
)

ENGINES: Mapping[Engine, EngineTraits] = MappingProxyType(
    {
        Engine.transformers: EngineTraits(
            engine=Engine.transformers,
            runs=frozenset(QuantKind),
            refused=MappingProxyType({}),
            kv_dtypes=frozenset(KVDtype),
            default_kv_dtype=None,
            allocator_reserve=True,
            preallocates=False,
            layer_offload=False,
            vendors=frozenset(Vendor),  # PyTorch's CUDA, ROCm, MPS and XPU devices
            backend_context=None,
            source="Hugging Face transformers on PyTorch (docs/estimates.md)",
        ),
        Engine.vllm: EngineTraits(
            engine=Engine.vllm,
            runs=frozenset(QuantKind) - {QuantKind.gguf},
            refused=MappingProxyType(
                {
                    QuantKind.gguf: "GGUF on vLLM is experimental (single-file models only, "
                    "slower than llama.cpp) and not sized here: use --engine llama.cpp"
                }
            ),
            kv_dtypes=frozenset({KVDtype.bf16, KVDtype.fp16, KVDtype.fp32, KVDtype.fp8}),
            default_kv_dtype=None,
            allocator_reserve=False,
            preallocates=True,
            layer_offload=False,
            # vLLM's GPU platforms are CUDA, ROCm and Intel XPU; on Apple silicon it builds for
            # the CPU only (vllm docs, getting_started/installation: "GPU" lists NVIDIA CUDA,
            # AMD ROCm, Intel XPU; "CPU" lists Apple silicon), with no Metal backend.
            vendors=frozenset({Vendor.nvidia, Vendor.amd, Vendor.intel}),
            backend_context=None,  # PyTorch's context (vLLM's workers run on it)
            source="vllm-project/vllm worker memory profiling (PR #10511), block size 16",
        ),
        Engine.llama_cpp: EngineTraits(
            engine=Engine.llama_cpp,
            runs=frozenset({QuantKind.gguf, QuantKind.float}),
            refused=MappingProxyType(
                {
                    kind: _NOT_LLAMA_CPP.format(kind=kind.value.upper())
                    for kind in (
                        QuantKind.integer,
                        QuantKind.bitsandbytes,
                        QuantKind.gptq,
                        QuantKind.awq,
                    )
                }
            ),
            kv_dtypes=frozenset(
                {KVDtype.fp16, KVDtype.bf16, KVDtype.fp32, KVDtype.q8_0, KVDtype.q4_0}
            ),
            default_kv_dtype=KVDtype.fp16,
            allocator_reserve=False,
            preallocates=False,
            layer_offload=True,
            vendors=frozenset(Vendor),  # CUDA, HIP (ROCm), Metal, SYCL/Vulkan backends
            backend_context=LLAMA_CPP_BACKEND_CONTEXT,
            source="ggml-org/llama.cpp at 4c7103b9 (src/llama-context.cpp, ggml-alloc.c)",
        ),
    }
)

# Quantized KV-cache types llama.cpp can only use with flash attention (a quantized V cache
# is refused without it: src/llama-context.cpp).
FLASH_ATTENTION_KV = frozenset({KVDtype.q8_0, KVDtype.q4_0})


# llama.cpp's own spelling of its KV-cache types (`--cache-type-k f16`, ggml_type names).
LLAMA_CPP_KV_NAMES: Mapping[KVDtype, str] = MappingProxyType(
    {KVDtype.fp16: "f16", KVDtype.fp32: "f32", KVDtype.bf16: "bf16"}
)
# What users may type for a KV dtype besides its name: llama.cpp's spellings.
KV_DTYPE_ALIASES: Mapping[str, KVDtype] = MappingProxyType(
    {name: kv for kv, name in LLAMA_CPP_KV_NAMES.items() if name != kv.value}
)


def parse_kv_dtype(text: str) -> KVDtype:
    """A KV-cache dtype by its name or llama.cpp's (`f16` is fp16, `f32` fp32)."""
    name = text.strip().lower()
    if name in KV_DTYPE_ALIASES:
        return KV_DTYPE_ALIASES[name]
    try:
        return KVDtype(name)
    except ValueError:
        choices = ", ".join([*(k.value for k in KVDtype), *KV_DTYPE_ALIASES])
        raise InvalidValueError(f"unknown KV-cache dtype {text!r}; choose {choices}") from None


def kv_dtype_name(engine: Engine, kv: KVDtype) -> str:
    """A KV dtype as the engine spells it (llama.cpp: f16, f32)."""
    if engine is Engine.llama_cpp:
        return LLAMA_CPP_KV_NAMES.get(kv, kv.value)
    return kv.value


def parse_engine(text: str) -> tuple[Engine, str | None]:
    """The engine a user typed, and a note when it was an alias (None otherwise)."""
    name = text.strip().lower()
    for engine in Engine:
        if name == engine.value:
            return engine, None
    if name in ENGINE_ALIASES:
        engine = ENGINE_ALIASES[name]
        return engine, f"{name} runs {engine.value}: sizing {engine.value}"
    choices = ", ".join(e.value for e in Engine)
    aliases = ", ".join(ENGINE_ALIASES)
    raise InvalidValueError(f"unknown engine {text!r}; choose {choices} (aliases: {aliases})")


def default_engine(fmt: WeightFormat | None) -> Engine:
    """The engine a weight format is usually served with: GGUF files by llama.cpp; GPTQ,
    AWQ, 4-bit integer and FP8/FP4 checkpoints by vLLM; 16-bit weights and bitsandbytes by
    transformers."""
    if fmt is None or fmt.kind is None:
        return Engine.transformers
    if fmt.kind is QuantKind.gguf:
        return Engine.llama_cpp
    if fmt.kind in (QuantKind.gptq, QuantKind.awq, QuantKind.integer):
        return Engine.vllm
    if fmt.kind is QuantKind.float and fmt.bits_per_weight < FLOAT_16_BITS:
        return Engine.vllm
    return Engine.transformers


def check(serving: Serving, fmt: WeightFormat | None, kv_dtype: KVDtype | None) -> None:
    """Refuse a format or KV dtype the engine cannot run (InvalidValueError, exit 2)."""
    traits = ENGINES[serving.engine]
    if fmt is not None and fmt.kind is not None and fmt.kind not in traits.runs:
        raise InvalidValueError(f"{fmt.slug}: {traits.refused[fmt.kind]}")
    if kv_dtype is not None and kv_dtype not in traits.kv_dtypes:
        allowed = ", ".join(sorted(k.value for k in traits.kv_dtypes))
        raise InvalidValueError(
            f"--kv-dtype {kv_dtype_name(serving.engine, kv_dtype)} is not a "
            f"{serving.engine.value} KV cache type; "
            f"choose {allowed}"
        )
    if (
        serving.engine is Engine.llama_cpp
        and kv_dtype in FLASH_ATTENTION_KV
        and not serving.flash_attention
    ):
        raise InvalidValueError(
            f"llama.cpp's {kv_dtype.value if kv_dtype else ''} KV cache needs flash attention "
            "(-fa on); drop --no-flash-attn"
        )


def card_refusal(engine: Engine, vendor: Vendor, card: str) -> str | None:
    """Why `engine` cannot run on `card` (a `vendor` GPU), or None when it can."""
    if vendor in ENGINES[engine].vendors:
        return None
    if engine is Engine.vllm and vendor is Vendor.apple:
        return (
            f"vLLM has no Metal backend: it runs on {card} only on the CPU; "
            "use --engine llama.cpp (or ollama) on Apple silicon"
        )
    return f"{engine.value} has no backend for {vendor.value} GPUs such as {card}"


def budget_bytes(capacity: int, serving: Serving) -> int:
    """What the engine may use of a card of `capacity` bytes: vLLM its
    gpu_memory_utilization share (the rest is left to others), the others all of it."""
    if ENGINES[serving.engine].preallocates:
        return math.floor(capacity * serving.gpu_memory_utilization)
    return capacity
