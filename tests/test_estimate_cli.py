"""`advisor estimate`: JSON shape, the table, and its errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("ready_catalog")
CONFIGS = Path(__file__).parent / "data" / "configs"


def test_json_is_stable(run: Run) -> None:
    """Every documented key, defaults filled in, components that add up."""
    result = run("estimate", "--model", "llama-2-7b", "--stage", "inference", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert list(data) == [
        "model",
        "params",
        "workload",
        "gpus",
        "per_gpu_bytes",
        "host_bytes",
        "tensor_bytes",
        "overhead_bytes",
        "total_bytes",
        "components",
        "rule_of_thumb_bytes",
        "peak_moment",
        "gpu",
        "speed",
        "mixed_precision",
    ]
    assert data["gpu"] is None
    assert all(value is None for key, value in data["speed"].items() if key != "inputs")
    assert data["mixed_precision"] is None  # inference keeps no master weights
    assert data["model"] == "llama-2-7b"
    assert data["params"] == 6738415616
    assert data["workload"]["seq"] == 4096  # min(4096, the model's 4096)
    assert data["workload"]["parallel"] == "tp"
    assert list(data["components"]) == [
        "weights",
        "kv_cache",
        "activations",
        "logits",
        "gradients",
        "optimizer",
        "adapters",
        "runtime_overhead",
    ]
    assert sum(data["components"].values()) == data["per_gpu_bytes"] == data["total_bytes"]
    assert data["components"]["weights"] == 6738415616 * 2
    # 32 layers x 4096 tokens x (K + V: 2 x 4096) x 2 bytes
    assert data["components"]["kv_cache"] == 32 * 4096 * 2 * 4096 * 2
    assert data["rule_of_thumb_bytes"] == 6738415616 * 2
    assert data["per_gpu_bytes"] == data["tensor_bytes"] + data["overhead_bytes"]
    assert data["overhead_bytes"] == data["components"]["runtime_overhead"]


def test_fine_tuning_has_no_rule_of_thumb(run: Run) -> None:
    """The seed gives a rule for inference and pretraining only: none for fine-tuning."""
    args = ("estimate", "--model", "llama-2-7b", "--stage", "finetune", "--method", "qlora")
    data = json.loads(run(*args, "--quant", "nf4", "--json").stdout)
    assert data["rule_of_thumb_bytes"] is None
    table = run(*args, "--quant", "nf4")
    assert table.exit_code == 0, table.stderr
    assert "rule of thumb" not in table.stdout
    pretrain = json.loads(
        run(
            "estimate", "--model", "qwen2.5-0.5b", "--stage", "pretrain", "--recipe", "none",
            "--json",
        ).stdout
    )  # fmt: skip
    params, hidden, layers = 494032768, 896, 24
    activations = 2048 * hidden * layers  # one hidden-size value per token per layer
    assert pretrain["rule_of_thumb_bytes"] == (4 * params + activations) * 4


def test_vendor_changes_only_the_overhead(run: Run) -> None:
    """--vendor apple charges Metal's overhead (no context); tensors stay byte for byte."""
    cuda = json.loads(run("estimate", "--model", "llama-2-7b", "--json").stdout)
    metal = json.loads(
        run("estimate", "--model", "llama-2-7b", "--vendor", "apple", "--json").stdout
    )
    assert metal["tensor_bytes"] == cuda["tensor_bytes"]
    assert metal["overhead_bytes"] == math.ceil(cuda["tensor_bytes"] * 0.05)
    assert cuda["overhead_bytes"] == 1343 * 2**20 + metal["overhead_bytes"]
    table = run("estimate", "--model", "llama-2-7b", "--vendor", "amd")
    assert table.stdout.splitlines()[1] == (
        "runtime overhead (amd rocm): context 1.3 GiB (unmeasured: CUDA's figure) + 5% allocator "
        "reserve"
    )


def test_config_path_matches_catalog_model(run: Run) -> None:
    """A config.json gives the same answer as the catalog row built from it."""
    by_path = run("estimate", "--model", str(CONFIGS / "llama-2-7b.json"), "--json")
    by_name = run("estimate", "--model", "llama-2-7b", "--json")
    assert by_path.exit_code == 0, by_path.stderr
    path_data, name_data = json.loads(by_path.stdout), json.loads(by_name.stdout)
    assert path_data["model"] == "llama-2-7b"
    assert path_data["components"] == name_data["components"]


def test_table_and_explain(run: Run) -> None:
    result = run(
        "estimate",
        "--model",
        "qwen2.5-0.5b",
        "--stage",
        "finetune",
        "--batch",
        "8",
        "--seq",
        "1024",
        "--recipe",
        "none",
        "--explain",
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "qwen2.5-0.5b: 494,032,768 parameters · finetune (full, adamw) · pure bf16 · "
        "batch 8 x 1024 tokens · 1 GPU"
    )
    assert lines[1] == ("runtime overhead (nvidia cuda): context 1.3 GiB + 5% allocator reserve")
    assert lines[2] == "peak at: start of backward"
    assert "logits: tokens x vocab x (bytes + 4 log-softmax + 8 loss gradients)" in lines
    assert "    tokens=8,192, vocab=151,936, bytes=2" in lines


def test_pure_bf16_full_fine_tuning_shows_the_fp32_master_figure(run: Run) -> None:
    """Issue 16: a full fine-tune in pure bf16 says so, and gives the need with fp32 master
    weights and states (--precision mixed-bf16) beside it when that is over 20 % more, in
    the table and the JSON; LoRA, which keeps its adapters in fp32 already, shows none."""
    args = ("estimate", "--model", "llama-3.1-8b", "--stage", "finetune", "--recipe", "none")
    mixed = json.loads(run(*args, "--precision", "mixed-bf16", "--json").stdout)
    pure = json.loads(run(*args, "--json").stdout)
    assert mixed["per_gpu_bytes"] > 1.2 * pure["per_gpu_bytes"]
    assert pure["mixed_precision"] == {
        "precision": "mixed-bf16",
        "per_gpu_bytes": mixed["per_gpu_bytes"],
        "tensor_bytes": mixed["tensor_bytes"],
        "components": mixed["components"],
    }
    assert mixed["mixed_precision"] is None
    text = run(*args).stdout
    assert "· pure bf16 ·" in text.splitlines()[0]
    figure = f"{mixed['per_gpu_bytes'] / 2**30:.2f} GiB"
    assert (
        "pure bf16: weights, gradients and adamw states in bf16, no fp32 master copy; with "
        "fp32 master weights and states (--precision mixed-bf16, as Hugging Face's Trainer "
        f"keeps them for a model loaded in fp32): {figure} per GPU"
    ) in " ".join(line.rstrip() for line in text.splitlines())
    lora = json.loads(run(*args, "--method", "lora", "--json").stdout)
    assert lora["mixed_precision"] is None
    assert "pure" not in run(*args, "--method", "lora").stdout.splitlines()[0]


def test_quant_from_catalog(run: Run) -> None:
    """--quant looks the format up: Q4_K_M's per-tensor rules weigh every tensor of the model
    (under transformers, which holds the whole file on the GPU): 32 layers of Q4_K with Q6_K
    attn_v/ffn_down in 16 of them, a Q6_K output layer, a Q4_K embedding, F32 norms."""
    result = run(
        "estimate",
        "--model",
        "llama-2-7b",
        "--quant",
        "q4_k_m",
        "--engine",
        "transformers",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workload"]["quant"] == "q4_k_m"
    q4_k, q6_k = 144 / 256, 210 / 256  # bytes per weight of the two block types
    h, f, v = 4096, 11008, 32000
    layer_q4 = 3 * h * h + 2 * h * f  # q, k, o, gate, up
    layer_mixed = h * h + f * h  # v and down: Q6_K in 16 layers, Q4_K in the others
    expected = (
        32 * layer_q4 * q4_k
        + 16 * layer_mixed * (q4_k + q6_k)
        + v * h * (q4_k + q6_k)
        + (2 * 32 + 1) * h * 4
    )
    assert data["components"]["weights"] == expected


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--model", "lama-2-7b"), 1, "error: unknown model 'lama-2-7b'; did you mean"),
        (
            ("--model", "llama-2-7b", "--method", "lora"),
            2,
            "error: --method lora is a fine-tuning method; inference has none",
        ),
        (("--model", "llama-2-7b", "--batch", "0"), 2, "error: batch must be at least 1, got 0"),
        (
            ("--model", "llama-3-8b", "--gpus", "3"),
            2,
            "error: tensor parallelism over 3 GPUs needs the count to divide 32 attention and 8 KV "
            "heads; valid counts: 1, 2, 4, 8",
        ),
        (("--model", "missing.json"), 2, "error: missing.json: no such file"),
        (
            ("--model", "llama-2-7b", "--quant", "q4_k_z"),
            1,
            "error: unknown quantization format 'q4_k_z'",
        ),
    ],
)
def test_errors(run: Run, args: tuple[str, ...], code: int, message: str) -> None:
    result = run("estimate", *args)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1
