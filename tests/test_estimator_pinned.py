"""Tensor bytes pinned: every estimator term but the runtime overhead, byte for byte.

The estimator's tensor terms are calibrated against traced peaks; refactoring the code must not
move them. `tests/data/pinned_tensor_bytes.json` holds, for the calibration and held-out cases,
the tiny trace configs and every bundled catalog model at a grid of workloads, each tensor
component in integer bytes (the runtime overhead is left out: it is a per-runtime figure that
may change on its own). An estimate the workload cannot have is pinned as its error text.

Regenerate only for a deliberate change of the estimator's mechanisms, and say so in the commit:

    .venv/bin/python tests/test_estimator_pinned.py
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from advisor.arch import Architecture, architecture_from_hf_config
from advisor.enums import ModelType
from advisor.errors import InvalidValueError
from advisor.estimator import COMPONENTS, RuntimeOverhead, estimate
from advisor.workload import (
    KVDtype,
    Method,
    Optimizer,
    Parallel,
    Precision,
    Stage,
    WeightFormat,
    Workload,
)
from support import workload_from_flags

ROOT = Path(__file__).parents[1]
DATA = ROOT / "tests" / "data"
PINNED = DATA / "pinned_tensor_bytes.json"
MODELS = ROOT / "catalog" / "data" / "models"
NO_OVERHEAD = RuntimeOverhead(context_bytes=0, allocator_reserve_fraction=0)
TENSOR_COMPONENTS = tuple(name for name in COMPONENTS if name != "runtime_overhead")

# The bundled formats' measured bits (catalog/data/quants.json), fixed here so that the pin
# tests the code, not the data.
INT4 = WeightFormat(slug="int4", bits_per_weight=4.156, scope="linear")
Q4_K_M = WeightFormat(slug="q4_k_m", bits_per_weight=4.9, scope="all")
NF4_DQ = WeightFormat(slug="nf4-dq", bits_per_weight=4.127, scope="linear")

_INFERENCE = Workload(stage=Stage.inference)
_FINETUNE = Workload(stage=Stage.finetune, batch=4, seq=2048)
_PRETRAIN = Workload(stage=Stage.pretrain, precision=Precision.mixed_bf16, batch=8, seq=4096)
WORKLOADS: dict[str, Workload] = {
    "inf-bf16-b1-s2048": _INFERENCE,
    "inf-bf16-b8-s8192": dataclasses.replace(_INFERENCE, batch=8, seq=8192),
    "inf-bf16-b1-s32768": dataclasses.replace(_INFERENCE, seq=32768),
    "inf-fp32-b2-s1024": dataclasses.replace(_INFERENCE, precision=Precision.fp32, batch=2),
    "inf-int4-b1-s4096": dataclasses.replace(_INFERENCE, weight_format=INT4, seq=4096),
    "inf-q4km-b4-s16384": dataclasses.replace(_INFERENCE, weight_format=Q4_K_M, batch=4, seq=16384),
    "inf-q4km-kvq8-b1-s8192": dataclasses.replace(
        _INFERENCE, weight_format=Q4_K_M, kv_dtype=KVDtype.q8_0, seq=8192
    ),
    "inf-fp8-kvfp8-b2-s4096": dataclasses.replace(
        _INFERENCE, precision=Precision.fp8, kv_dtype=KVDtype.fp8, batch=2, seq=4096
    ),
    "inf-tp2-b1-s4096": dataclasses.replace(_INFERENCE, gpus=2, seq=4096),
    "inf-tp8-b4-s8192": dataclasses.replace(_INFERENCE, gpus=8, batch=4, seq=8192),
    "inf-pp4-b1-s4096": dataclasses.replace(_INFERENCE, gpus=4, parallel=Parallel.pp, seq=4096),
    "ft-full-bf16": _FINETUNE,
    "ft-full-mixed-ckpt": dataclasses.replace(
        _FINETUNE, precision=Precision.mixed_bf16, grad_checkpointing=True
    ),
    "ft-full-adamw8bit-zero3x8": dataclasses.replace(
        _FINETUNE, optimizer=Optimizer.adamw_8bit, gpus=8
    ),
    "ft-full-sgd-zero2x4": dataclasses.replace(
        _FINETUNE, optimizer=Optimizer.sgd_momentum, gpus=4, parallel=Parallel.zero2
    ),
    "ft-full-adafactor-offload": dataclasses.replace(
        _FINETUNE, optimizer=Optimizer.adafactor, offload_optimizer=True, seq=1024
    ),
    "ft-full-lion-zero1x2": dataclasses.replace(
        _FINETUNE, optimizer=Optimizer.lion, gpus=2, parallel=Parallel.zero1
    ),
    "ft-lora-attn": dataclasses.replace(_FINETUNE, method=Method.lora),
    "ft-lora-all-r64-ckpt": dataclasses.replace(
        _FINETUNE,
        method=Method.lora,
        lora_rank=64,
        lora_targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        grad_checkpointing=True,
    ),
    "ft-lora-mlp": dataclasses.replace(
        _FINETUNE, method=Method.lora, lora_targets=("gate_proj", "up_proj", "down_proj")
    ),
    "ft-qlora-nf4": dataclasses.replace(_FINETUNE, method=Method.qlora, weight_format=NF4_DQ),
    "ft-freeze-2": dataclasses.replace(_FINETUNE, method=Method.freeze, trainable_layers=2),
    "pt-mixed-b8-s4096": _PRETRAIN,
    "pt-mixed-zero3x8-ckpt": dataclasses.replace(_PRETRAIN, gpus=8, grad_checkpointing=True),
    "pt-fp32-ddp2-b2-s1024": dataclasses.replace(
        _PRETRAIN, precision=Precision.fp32, gpus=2, parallel=Parallel.ddp, batch=2, seq=1024
    ),
    "pt-fp8-b4-s2048": dataclasses.replace(_PRETRAIN, precision=Precision.fp8, batch=4, seq=2048),
}

ARCH_FIELDS = tuple(
    f.name for f in dataclasses.fields(Architecture) if f.name not in ("model_type", "arch_options")
)


def _catalog_architectures() -> Iterator[tuple[str, Architecture]]:
    for path in sorted(MODELS.glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8"))["models"]:
            yield (
                f"catalog:{row['slug']}",
                Architecture(
                    model_type=ModelType(row["model_type"]),
                    arch_options=dict(row.get("arch_options") or {}),
                    **{name: row.get(name) for name in ARCH_FIELDS},
                ),
            )


def _cases() -> Iterator[tuple[str, Architecture, Workload]]:
    """(case id, architecture, workload) of every pinned estimate."""
    for line in (DATA / "calibration" / "traced.jsonl").read_text().splitlines():
        if line:
            case = json.loads(line)
            config = json.loads((DATA / "configs" / Path(case["config"]).name).read_text())
            yield (
                f"calibration:{case['id']}",
                architecture_from_hf_config(config),
                workload_from_flags(case["advisor_estimate_flags"]),
            )
    for line in (DATA / "heldout" / "traced.jsonl").read_text().splitlines():
        if line:
            case = json.loads(line)
            workload = dict(case["workload"])
            workload["stage"] = Stage(workload["stage"])
            if "precision" in workload:
                workload["precision"] = Precision(workload["precision"])
            yield (
                f"heldout:{case['model']}:{case['id']}",
                architecture_from_hf_config(case["config"]),
                Workload(**workload),
            )
    models = [
        (f"trace:{path.stem}", architecture_from_hf_config(json.loads(path.read_text())))
        for path in sorted((DATA / "trace").glob("tiny-*.json"))
    ]
    models += list(_catalog_architectures())
    for name, arch in models:
        for workload_id, shape in WORKLOADS.items():
            yield f"{name}:{workload_id}", arch, shape


def _pin(arch: Architecture, workload: Workload) -> list[Any]:
    """[params, peak moment, *tensor components in TENSOR_COMPONENTS order] or [error]."""
    try:
        result = estimate(arch, workload, overhead=NO_OVERHEAD)
    except InvalidValueError as error:
        return [str(error)]
    components = result.components
    return [result.params, result.peak_moment, *(components[n] for n in TENSOR_COMPONENTS)]


def compute() -> dict[str, list[Any]]:
    return {case_id: _pin(arch, workload) for case_id, arch, workload in _cases()}


def _read() -> dict[str, list[Any]]:
    content = json.loads(PINNED.read_text())
    assert content["components"] == list(TENSOR_COMPONENTS)
    cases: dict[str, list[Any]] = content["cases"]
    return cases


def _write(cases: dict[str, list[Any]]) -> None:
    """One case per line, so that a deliberate change shows as a readable diff."""
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(cases.items())]
    PINNED.write_text(
        '{"components": '
        + json.dumps(list(TENSOR_COMPONENTS))
        + ',\n"cases": {\n'
        + ",\n".join(lines)
        + "\n}}\n"
    )


def test_tensor_bytes_unchanged() -> None:
    """Every pinned case gives exactly the pinned tensor bytes (or the pinned error)."""
    pinned = _read()
    now = compute()
    assert sorted(now) == sorted(pinned)
    changed = [case for case in pinned if now[case] != pinned[case]]
    assert not changed, f"{len(changed)} cases changed, first: {changed[0]}: " + (
        f"{pinned[changed[0]]} -> {now[changed[0]]}"
    )


def test_pin_covers_every_model_type_and_workload_kind() -> None:
    """The pin exercises every model type, and the grid holds estimates, not only errors."""
    pinned = _read()
    types = {arch.model_type for _, arch, _ in _cases()}
    assert types == set(ModelType)
    errors = sum(1 for value in pinned.values() if len(value) == 1)
    assert errors < len(pinned) // 10


if __name__ == "__main__":
    _write(compute())
    sys.stdout.write(f"wrote {PINNED}\n")
