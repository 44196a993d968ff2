"""CPU offload: how much of a model llama.cpp can keep on one GPU when all of it does not fit.

Pure: no CLI, rendering or database imports. llama.cpp's `-ngl N` (Ollama picks N itself)
puts the first N of the model's offloadable layers on the GPU, each with its share of the KV
cache, and leaves the rest, the input embedding included, in system RAM
(`advisor.estimator.LlamaCppLayout`). `split` finds the largest N whose GPU bytes, with the
compute buffer and the backend's context, fit the card.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from advisor.arch import Architecture
from advisor.engines import ENGINES
from advisor.estimator import RuntimeOverhead, engine_overhead, llama_cpp_layout
from advisor.workload import Workload


class Verdict(StrEnum):
    """`fits`: everything on the GPU; `partial`: some layers on the GPU, the rest in system
    RAM (slower, never counted as fitting); `no`: not even one layer fits."""

    fits = "fits"
    partial = "partial"
    no = "no"


class Offload(NamedTuple):
    """A split between one GPU and system RAM: layers on the GPU out of llama.cpp's count
    (the repeating layers and the output layer), what the GPU then holds (tensors and the
    backend's context) and the system RAM the rest needs."""

    gpu_layers: int
    total_layers: int
    gpu_bytes: int
    host_bytes: int


def split(
    arch: Architecture, workload: Workload, overhead: RuntimeOverhead, budget: int
) -> Offload | None:
    """The most layers of `workload` (llama.cpp, one GPU) that fit in `budget` bytes with the
    rest in system RAM; None when the engine cannot offload or not one layer fits. `overhead`
    is the vendor's; the engine's own backend context replaces its context
    (`advisor.estimator.engine_overhead`)."""
    if not ENGINES[workload.serving.engine].layer_offload or workload.gpus != 1:
        return None
    layout = llama_cpp_layout(arch, workload)
    context = engine_overhead(overhead, workload.serving.engine).context_bytes
    fitting = [
        n for n in range(1, layout.total_layers + 1) if layout.gpu_bytes(n) + context <= budget
    ]
    if not fitting:
        return None
    n = fitting[-1]
    return Offload(
        gpu_layers=n,
        total_layers=layout.total_layers,
        gpu_bytes=layout.gpu_bytes(n) + context,
        host_bytes=layout.host_bytes(n),
    )
