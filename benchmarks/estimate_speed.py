"""Estimates per second, in process: every bundled model x a sweep of workloads.

Run: python benchmarks/estimate_speed.py   (prints figures; not a test)
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from importlib.resources import files

from advisor.arch import Architecture
from advisor.enums import ModelType
from advisor.estimator import estimate
from advisor.workload import Method, Precision, Stage, Workload

ARCH_FIELDS = (
    "num_hidden_layers hidden_size num_attention_heads num_key_value_heads head_dim "
    "intermediate_size vocab_size max_position_embeddings tie_word_embeddings num_experts "
    "num_experts_per_tok n_shared_experts moe_intermediate_size first_k_dense_replace "
    "sliding_window num_sliding_layers q_lora_rank kv_lora_rank qk_nope_head_dim "
    "qk_rope_head_dim v_head_dim"
).split()


def bundled_architectures() -> list[Architecture]:
    archs = []
    for item in files("catalog.data").joinpath("models").iterdir():
        if not item.name.endswith(".json"):
            continue
        for row in json.loads(item.read_text(encoding="utf-8"))["models"]:
            archs.append(
                Architecture(
                    model_type=ModelType(row["model_type"]),
                    arch_options=row.get("arch_options") or {},
                    **{name: row.get(name) for name in ARCH_FIELDS},
                )
            )
    return archs


def main() -> None:
    archs = bundled_architectures()
    workloads = (
        [
            Workload(stage=Stage.inference, batch=b, seq=s)
            for b, s in itertools.product((1, 8), (2048, 8192))
        ]
        + [
            Workload(stage=Stage.finetune, method=m, batch=4, seq=2048)
            for m in (Method.full, Method.lora)
        ]
        + [Workload(stage=Stage.pretrain, precision=Precision.mixed_bf16, batch=8, seq=4096)]
    )
    pairs = [(a, w) for a in archs for w in workloads]
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for arch, workload in pairs:
            estimate(arch, workload)
        elapsed = time.perf_counter() - start
        best = max(best, len(pairs) / elapsed)
    print(f"{len(archs)} models x {len(workloads)} workloads = {len(pairs)} estimates")
    print(f"best of 5: {best:,.0f} estimates per second")

    # What a fit sweep does per point: vary the workload (validated again), then estimate.
    base = workloads[-1]
    best_sweep = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for arch, workload in pairs:
            estimate(arch, dataclasses.replace(base, batch=workload.batch, seq=workload.seq))
        best_sweep = max(best_sweep, len(pairs) / (time.perf_counter() - start))
    print(f"with dataclasses.replace of the workload: {best_sweep:,.0f} per second")

    # Reading the explanation (formulas and inputs), as `--explain` and the trace do.
    start = time.perf_counter()
    for arch, workload in pairs:
        estimate(arch, workload).terms  # noqa: B018
    explained = len(pairs) / (time.perf_counter() - start)
    print(f"with every term explained: {explained:,.0f} per second")


if __name__ == "__main__":
    main()
