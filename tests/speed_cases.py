"""The published speed figures (`tests/data/speed.jsonl`, a copy of
../shared/calibration/speed.jsonl) as advisor workloads, and the prediction for each.

Shared by tests/test_speed_calibration.py (a bound per case) and benchmarks/speed_table.py
(the table in docs/estimates.md). A record is expressed when its model, weight format, card
and settings map onto the catalog and the workload options; the others come back with the
reason they cannot be.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from advisor.arch import Architecture
from advisor.enums import Engine, Market, Vendor
from advisor.speed import Compute, speed
from advisor.workload import (
    INTERLEAVED_STAGES_PER_CARD,
    Attention,
    Checkpointing,
    Float8Scaling,
    Parallel,
    PipelineSchedule,
    Precision,
    Serving,
    Stage,
    WeightFormat,
    Workload,
)
from catalog.bundled import load
from catalog.rules import architecture_of

SPEED_RECORDS = Path(__file__).parent / "data" / "speed.jsonl"

# The records' model names → catalog slugs.
MODELS: Mapping[str, str] = {
    "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "meta-llama/Meta-Llama-3-70B": "llama-3-70b",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "meta-llama/Llama-3.1-70B": "llama-3.1-70b",
    "meta-llama/Llama-3.1-405B": "llama-3.1-405b",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2.5-0.5b",
    "Qwen/Qwen2.5-1.5B-Instruct": "qwen2.5-1.5b",
    "Qwen/Qwen2.5-3B-Instruct": "qwen2.5-3b",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b",
    "Qwen/Qwen2.5-14B-Instruct": "qwen2.5-14b",
    "Qwen/Qwen2.5-32B-Instruct": "qwen2.5-32b",
    "Qwen/Qwen2.5-72B-Instruct": "qwen2.5-72b",
    "meta-llama/Llama-3.1-8B (assumed; doc says 'Dense Models', table from torchao mx_formats "
    "Llama3 8B benchmark)": "llama-3.1-8b",
    "meta-llama/Llama-3.1-8B (torchtitan llama3 8B)": "llama-3.1-8b",
    "openai-community/gpt2 (124M, trained from scratch)": "gpt2",
    "GPT-2 124M architecture (n_layer 12, n_head 12, n_embd 768)": "gpt2",
}
# The records' card names → catalog slugs (the card as the record describes it; a record
# whose card the catalog does not hold is not expressed).
GPUS: Mapping[str, str] = {
    "NVIDIA A100 80GB": "a100-sxm4-80gb",
    "NVIDIA GeForce RTX 3070 8GB": "rtx3070",
    "NVIDIA GeForce RTX 3080 10GB": "rtx3080-10gb",
    "NVIDIA GeForce RTX 3080 Ti 12GB": "rtx3080ti",
    "NVIDIA GeForce RTX 3090 24GB": "rtx3090",
    "NVIDIA GeForce RTX 4070 Ti 12GB": "rtx4070ti",
    "NVIDIA GeForce RTX 4080 16GB": "rtx4080",
    "NVIDIA GeForce RTX 4090 24GB": "rtx4090",
    "NVIDIA RTX A6000 48GB": "rtx-a6000",
    "NVIDIA RTX 6000 Ada Generation 48GB": "rtx-6000-ada",
    "NVIDIA RTX 4000 Ada Generation 20GB": "rtx-4000-ada",
    "NVIDIA RTX 5000 Ada Generation 32GB": "rtx-5000-ada",
    "NVIDIA A40 48GB": "a40",
    "NVIDIA L40S 48GB": "l40s",
    "NVIDIA A100 PCIe 80GB": "a100-pcie-80gb",
    "NVIDIA A100 SXM 80GB": "a100-sxm4-80gb",
    "NVIDIA H100 PCIe 80GB": "h100-pcie-80gb",
    # The catalog has the 8-core M1 only: its 2.6 TFLOPS is 8/7 of this 7-core GPU's (the
    # bandwidth is the same), so the M1's prefill cases are predicted that much high.
    "Apple M1 (7-core GPU, 8GB)": "m1-16gb",
    "Apple M1 Max (32-core GPU, 64GB)": "m1-max-64gb",
    "Apple M2 Ultra (76-core GPU, 192GB)": "m2-ultra-192gb",
    "Apple M3 Max (40-core GPU, 64GB)": "m3-max-128gb",
    "NVIDIA A100 40GB": "a100-sxm4-40gb",
    "NVIDIA A100 (40GB assumed; GPU not named in the sentence)": "a100-sxm4-40gb",
    "NVIDIA H100 SXM (HBM2e 96GB variant, 500W power limit, Grand Teton)": "h100-sxm5-80gb",
    "NVIDIA H200 (8 per host, NVLink; 400Gb/s CX-7 per GPU)": "h200-sxm",
    "NVIDIA B200 (power limited)": "b200",
}
# Cards the records describe more closely than the catalog entry they map to: torchtitan's
# H100s are the 96 GB HBM2e part with "2.4 TB/sec peak memory bandwidth" at a 500 W limit
# (pytorch/torchtitan benchmarks/llama3_h100_202412_torchtitan.md and
# asyncTP_llama3_h100_2025-06_torchtitan.md, "Hardware"); its peak TFLOPS "is between SXM and
# NVL, and we don't know its exact value" (footnote 2), so the SXM figure stays.
RECORDED_BANDWIDTH: Mapping[str, int] = {
    "NVIDIA H100 SXM (HBM2e 96GB variant, 500W power limit, Grand Teton)": 2_400_000_000_000,
}
# Software versions whose attention writes the seq x seq scores: nanoGPT's model.py at
# 5a725d90 (2022-12-30) computes `att = (q @ k.transpose(-2, -1)) * scale`, masks it, softmaxes
# it and multiplies V (PyTorch 2.0's fused SDPA came to nanoGPT later; checked in the repo).
# Its GELU there is `@torch.jit.script`-ed (one fused kernel even without torch.compile), which
# the catalog's gpt2 (transformers' NewGELUActivation, eight kernels eager) does not express:
# the eager prediction counts 32 bytes per MLP element more than that run moved.
EAGER_ATTENTION_VERSIONS = ("commit 5a725d90",)
# The records' weight formats → (catalog format, or None for the model's 16-bit dtype).
QUANTS: Mapping[str, str | None] = {
    "Q4_K_M": "q4_k_m",
    "F16": None,
    "BF16": None,
    "GPTQ-Int4": "gptq-4bit-g128",
    "GPTQ-Int8": "gptq-8bit-g128",
    "AWQ": "awq-4bit",
    "BF16 (mixed precision)": None,
    "None (bfloat16)": None,
    "BF16 autocast": None,
    "BF16 autocast (train.py default dtype)": None,
    "BF16 + Float8 linears": "fp8",
    "BF16 + Float8 linears (FSDP float8 all-gather)": "fp8",
    "float8 tensorwise": "fp8",
    "float8 rowwise": "fp8",
}
ENGINES: Mapping[str, Engine] = {
    "llama.cpp": Engine.llama_cpp,
    "vllm": Engine.vllm,
    "transformers": Engine.transformers,
}
# Kinds the speed model predicts, and what each compares.
PREDICTED = ("decode", "prefill", "e2e_generate", "train_tokens_per_s")


@dataclass(frozen=True)
class Case:
    """One record, expressed or not (`reason` says why not)."""

    id: str
    kind: str
    model: str
    quant: str
    gpu: str
    gpus: int
    measured: float
    predicted: float | None
    reason: str = ""

    @property
    def ratio(self) -> float:
        assert self.predicted is not None
        return self.predicted / self.measured

    @property
    def error(self) -> float:
        """Absolute relative error of the prediction."""
        return abs(self.ratio - 1)


@cache
def _bundled() -> tuple[dict[str, Architecture], dict[str, Any], dict[str, WeightFormat]]:
    data = load()
    archs = {m.slug: architecture_of(m.model_dump()) for m in data.models}
    gpus = {g.slug: g for g in data.gpus}
    quants = {
        q.slug: WeightFormat(
            slug=q.slug, bits_per_weight=q.bits_per_weight, scope=q.scope.value, kind=q.kind
        )
        for q in data.quants
    }
    return archs, gpus, quants


def compute_of(slug: str) -> Compute:
    """A bundled card's speed figures."""
    g = _bundled()[1][slug]
    return Compute(
        name=g.name,
        vendor=Vendor(g.vendor),
        market=Market(g.market),
        bandwidth_bytes_per_s=g.bandwidth_bytes_per_s,
        fp16_tflops=g.fp16_tflops,
        fp8_tflops=g.fp8_tflops,
        int8_tops=g.int8_tops,
        interconnect_bytes_per_s=g.interconnect_bytes_per_s,
        price_per_hour=g.cloud_price_per_hour_usd,
    )


def records() -> list[dict[str, Any]]:
    with SPEED_RECORDS.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _checkpointing(text: str) -> Checkpointing:
    text = text.lower()
    if "full" in text:
        return Checkpointing.full
    if "selective" in text or "sac" in text:
        return Checkpointing.selective
    return Checkpointing.none


def _inference(r: dict[str, Any], arch: Architecture, fmt: WeightFormat | None) -> Case:
    engine = ENGINES[r["engine"]]
    kind = r["kind"]
    gpus = r["gpu_count"]
    parallel = None
    if gpus > 1:
        # llama.cpp splits layers by default; transformers' device_map="auto" places layers
        # on cards one after the other; vLLM runs tensor parallelism.
        parallel = Parallel.tp if engine is Engine.vllm else Parallel.pp
    prompt = r["input_tokens"] or 0
    output = r["output_tokens"] or 0
    precision = Precision.fp16 if r["quant"] == "F16" else Precision.bf16
    base = Workload(
        stage=Stage.inference,
        precision=precision,
        weight_format=fmt,
        batch=1,
        seq=max(prompt, 1),
        gpus=gpus,
        parallel=parallel,
        # llama-bench of 2024 ran without flash attention unless -fa 1 was given.
        serving=Serving(engine=engine, flash_attention=engine is not Engine.llama_cpp),
    )
    compute = compute_of(GPUS[r["gpu"]])
    if kind == "prefill":
        s = speed(arch, base, compute)
        return _case(r, s.prefill_tokens_per_s, _lacks(s.missing))
    if kind == "decode":
        # llama-bench's tg test generates `output` tokens from an empty context: the KV read
        # grows from 0 to `output`; its mean is at half.
        s = speed(arch, replace(base, seq=max(output // 2, 1)), compute)
        return _case(r, s.decode_tokens_per_s, _lacks(s.missing))
    # e2e_generate: output tokens over the whole generate call, prefill included; the decode
    # steps read a KV cache growing from the prompt to prompt + output (mean at the middle).
    prefill = speed(arch, base, compute).time_to_first_token_s if prompt > 1 else 0.0
    s = speed(arch, replace(base, seq=prompt + output // 2), compute)
    if prefill is None or s.decode_tokens_per_s is None:
        return _case(r, None, _lacks(s.missing))
    return _case(r, output / (prefill + output / s.decode_tokens_per_s))


def _training(r: dict[str, Any], arch: Architecture, fmt: WeightFormat | None) -> Case:
    settings = r["settings"]
    seq = _int(r["input_tokens"]) or settings.get("seq_len") or settings.get("block_size")
    if not isinstance(seq, int):
        return _skip(r, "sequence length not stated")
    parallelism = str(r.get("parallelism", ""))
    if "CP 2" in parallelism or "CP 4" in parallelism or "CP 8" in parallelism:
        return _skip(r, "context parallelism (ring attention) is not in the speed model")
    per_gpu = "/GPU" in r["unit"] or r["gpu_count"] == 1
    if not per_gpu:
        return _skip(r, "per-GPU or total not stated")
    precision = Precision.fp8 if fmt is not None else Precision.mixed_bf16
    scaling = Float8Scaling.rowwise if "rowwise" in r["quant"] else Float8Scaling.tensorwise
    # Tensor and pipeline parallelism as the record states them, on the record's cards (FSDP
    # is ZeRO-3: each card steps its shard of the optimizer; DDP steps all of it); the
    # figure per card is the record's per-GPU figure. A pipeline runs
    # torchtitan's default micro-batch count (one per stage: the records state none), so
    # each micro-batch holds the local batch over that count.
    tp = 8 if "TP 8" in parallelism else 1
    pp = 8 if "PP 8" in parallelism else 1
    schedule = (
        PipelineSchedule.interleaved
        if "Interleaved" in str(settings.get("pp_schedule", ""))
        else PipelineSchedule.one_f_one_b
    )
    batch = _micro_batch(r)
    microbatches = None
    accumulated = str(r.get("batch") or "").split("grad-accum ", 1)
    if len(accumulated) == 2:
        # nanoGPT's train.py divides gradient_accumulation_steps over the DDP ranks.
        microbatches = int(accumulated[1].split()[0]) // r["gpu_count"]
    if pp > 1:
        stages = pp * (
            INTERLEAVED_STAGES_PER_CARD if schedule is PipelineSchedule.interleaved else 1
        )
        batch //= stages
    compiled = settings.get("torch_compile", settings.get("compile")) is True
    eager_scores = any(v in str(r.get("engine_version", "")) for v in EAGER_ATTENTION_VERSIONS)
    w = Workload(
        stage=Stage.pretrain,
        precision=precision,
        batch=batch,
        seq=seq,
        checkpointing=_checkpointing(
            str(settings.get("activation_checkpointing", "none")) + str(r.get("parallelism", ""))
        ),
        gpus=r["gpu_count"],
        parallel=Parallel.zero3 if "FSDP" in parallelism else Parallel.ddp,
        tensor_parallel=tp,
        pipeline_parallel=pp,
        pp_schedule=schedule,
        microbatches=microbatches,
        fp8_scaling=scaling if precision is Precision.fp8 else Float8Scaling.tensorwise,
        compile=compiled,
        attention=Attention.eager if eager_scores else None,
    )
    compute = compute_of(GPUS[r["gpu"]])
    if r["gpu"] in RECORDED_BANDWIDTH:
        compute = compute._replace(bandwidth_bytes_per_s=RECORDED_BANDWIDTH[r["gpu"]])
    s = speed(arch, w, compute)
    rate = None if s.train_tokens_per_s is None else s.train_tokens_per_s / r["gpu_count"]
    return _case(r, rate, _lacks(s.missing))


def _micro_batch(r: dict[str, Any]) -> int:
    """Sequences per card per step as the record states them ("local 2", "8 x 1024 tokens");
    1 when not stated."""
    text = str(r.get("batch") or "")
    for word in ("local ", "micro "):
        if word in text:
            return int(text.split(word, 1)[1].split()[0].rstrip(","))
    head = text.split(" x ", 1)[0]
    return int(head) if head.isdigit() else 1


def _lacks(missing: tuple[str, ...]) -> str:
    return f"the catalog card has no {' or '.join(missing)}" if missing else ""


def _case(r: dict[str, Any], predicted: float | None, reason: str = "") -> Case:
    return Case(
        id=r["id"],
        kind=r["kind"],
        model=r["model"],
        quant=r["quant"],
        gpu=r["gpu"],
        gpus=r["gpu_count"] if isinstance(r["gpu_count"], int) else 0,
        measured=float(r["value"]),
        predicted=predicted,
        reason="" if predicted is not None else reason or "a figure the card lacks",
    )


def _skip(r: dict[str, Any], reason: str) -> Case:
    return _case(r, None, reason)


def express(r: dict[str, Any]) -> Case:
    """The prediction for one record, or why there is none."""
    archs, gpus, quants = _bundled()
    if r["kind"] not in PREDICTED:
        return _skip(r, f"kind {r['kind']} (a percentage, not a throughput)")
    if not str(r["unit"]).startswith("tokens/s"):
        return _skip(r, f"unit {r['unit']}")
    slug = MODELS.get(r["model"])
    if slug is None or slug not in archs:
        return _skip(r, "model not in the catalog (Llama 4 Scout, a randomly initialised Qwen3-8B)")
    if r["quant"] not in QUANTS:
        return _skip(r, f"format {r['quant']} (no catalog format: MX/NV FP4/FP8 block formats)")
    card = GPUS.get(r["gpu"])
    if card is None or card not in gpus:
        return _skip(r, "card not in the catalog")
    if not isinstance(r["gpu_count"], int):
        return _skip(r, "card count not stated")
    quant = QUANTS[r["quant"]]
    fmt = None if quant is None else quants[quant]
    if r["kind"] == "train_tokens_per_s":
        return _training(r, archs[slug], fmt)
    if r["engine"] not in ENGINES:
        return _skip(r, f"engine {r['engine']}")
    return _inference(r, archs[slug], fmt)


def cases() -> list[Case]:
    return [express(r) for r in records()]


def summary(expressed: list[Case]) -> dict[str, tuple[int, float, float]]:
    """Per kind: cases, median error, worst ratio (the larger of over and under)."""
    out = {}
    for kind in PREDICTED:
        mine = [c for c in expressed if c.kind == kind and c.predicted is not None]
        if mine:
            worst = max(max(c.ratio, 1 / c.ratio) for c in mine)
            out[kind] = (len(mine), statistics.median(c.error for c in mine), worst)
    return out


def log_ratio(c: Case) -> float:
    return abs(math.log(c.ratio))
