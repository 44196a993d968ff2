"""GGUF files on the command line, llama.cpp's KV cache by layer kind, and engine refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gguf_build import CONTEXT, HIDDEN, LAYERS, VOCAB, write_llama

Run = Callable[..., Any]
pytestmark = pytest.mark.usefixtures("ready_catalog")
# A tiny file's Q8_0 token embedding: 256 rows of 64 values, 2 blocks of 34 bytes per row.
EMBEDDING_BYTES = VOCAB * HIDDEN // 32 * 34
TOY = Path(__file__).parent / "data" / "toy-llama.gguf"


def _estimate(run: Run, *args: str) -> dict[str, Any]:
    result = run("estimate", *args, "--json")
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_estimate_reads_a_gguf_file(run: Run, tmp_path: Path) -> None:
    """--model file.gguf: llama.cpp by default, the file's own tensors as the weights (the
    embedding in system RAM), its context length as the default context."""
    path = tmp_path / "tiny.gguf"
    total = write_llama(path)
    data = _estimate(run, "--model", str(path))
    assert data["model"] == "toy-llama-gguf"
    assert data["workload"]["engine"] == "llama.cpp"
    assert data["workload"]["quant"] == "tiny.gguf"
    assert data["workload"]["seq"] == CONTEXT
    assert data["components"]["weights"] == total - EMBEDDING_BYTES
    assert data["host_bytes"] == 0  # everything fits: nothing left in RAM but the embedding
    # K and V: 2 layers x 4,096 cells x 2 heads x 16 x 2 (K, V) x 2 bytes (f16).
    assert data["components"]["kv_cache"] == LAYERS * CONTEXT * 2 * 16 * 2 * 2


def test_committed_toy_file_is_what_the_builder_writes(tmp_path: Path) -> None:
    """tests/data/toy-llama.gguf (the README's example) is byte for byte the builder's file."""
    path = tmp_path / "toy-llama.gguf"
    write_llama(path)
    assert path.read_bytes() == TOY.read_bytes()


def test_tied_gguf_file_has_no_output_tensor(run: Run, tmp_path: Path) -> None:
    """A file without output.weight ties the output to the embedding (llama.cpp duplicates
    it on the GPU as the output layer)."""
    path = tmp_path / "tied.gguf"
    total = write_llama(path, tied=True)
    data = _estimate(run, "--model", str(path))
    assert data["components"]["weights"] == total  # layers + the embedding as output layer


def test_catalog_add_model_from_gguf(run: Run, tmp_path: Path) -> None:
    """The header's architecture becomes a catalog model."""
    path = tmp_path / "tiny.gguf"
    write_llama(path)
    result = run("catalog", "add", "model", "--from-gguf", str(path), "--family", "llama-3")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "advisor: added model 'toy-llama-gguf' (106,816 parameters)\n"
    shown = json.loads(run("catalog", "show", "model", "toy-llama-gguf", "--json").stdout)
    assert (shown["hidden_size"], shown["num_key_value_heads"], shown["vocab_size"]) == (
        HIDDEN,
        2,
        VOCAB,
    )
    assert shown["max_position_embeddings"] == CONTEXT


@pytest.mark.parametrize("command", [("estimate", "--model"), ("fit", "--model")])
def test_not_a_gguf_file(run: Run, tmp_path: Path, command: tuple[str, str]) -> None:
    """A .gguf path that is something else: one line, exit 2."""
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"PK\x03\x04 not a model")
    result = run(*command, str(path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}: not a GGUF file (it does not start with 'GGUF')\n"


def test_truncated_gguf_file(run: Run, tmp_path: Path) -> None:
    """A file cut inside its tensor data: one line, exit 2."""
    path = tmp_path / "cut.gguf"
    write_llama(path)
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - 1000])
    result = run("estimate", "--model", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: truncated or corrupt GGUF file (")
    assert result.stderr.count("\n") == 1


def test_truncated_gguf_header(run: Run, tmp_path: Path) -> None:
    """A file cut inside its header: one line, exit 2."""
    path = tmp_path / "cut.gguf"
    write_llama(path)
    path.write_bytes(path.read_bytes()[:200])
    result = run("estimate", "--model", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: truncated or corrupt GGUF file (")
    assert result.stderr.count("\n") == 1


def test_unknown_gguf_architecture(run: Run, tmp_path: Path) -> None:
    """An architecture advisor has no layout for: one line listing those it knows, exit 2."""
    path = tmp_path / "rwkv.gguf"
    write_llama(path, arch="rwkv6")
    result = run("estimate", "--model", str(path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}: GGUF architecture 'rwkv6' is not one advisor knows (known: bloom, "
        "deepseek2, falcon, gemma, gemma2, gemma3, gpt-oss, gpt2, gptneox, llama, phi3, qwen2, "
        "qwen3, qwen3moe)\n"
    )


def test_llama_cpp_sliding_window_cache(run: Run) -> None:
    """Gemma-2's 21 local layers keep min(n_ctx, pad(4,096 + 512)) = 4,608 cells, its 21
    global layers all 8,192 (llama.cpp's default, without --swa-full)."""
    data = _estimate(run, "--model", "gemma-2-9b", "--quant", "q4_k_m", "--seq", "8192")
    per_cell = 8 * 256 * 2 * 2  # 8 KV heads x 256 x (K, V) x f16
    assert data["components"]["kv_cache"] == (21 * 8192 + 21 * 4608) * per_cell


def test_llama_cpp_short_context_fills_the_window(run: Run) -> None:
    """A context under the window: every layer holds the whole (padded) context."""
    data = _estimate(run, "--model", "gemma-2-9b", "--quant", "q4_k_m", "--seq", "1000")
    assert data["components"]["kv_cache"] == 42 * 1024 * 8 * 256 * 2 * 2


def test_llama_cpp_mla_caches_the_latent(run: Run) -> None:
    """DeepSeek-V3 under llama.cpp caches kv_lora_rank + rope dims (512 + 64) per token and
    layer, V being a view of it."""
    data = _estimate(run, "--model", "deepseek-v3", "--quant", "q4_k_m", "--seq", "4096")
    assert data["components"]["kv_cache"] == 61 * 4096 * 576 * 2


def test_kv_dtype_f16_spelling(run: Run) -> None:
    """--kv-dtype f16 is llama.cpp's fp16, and llama.cpp's settings say f16."""
    data = _estimate(run, "--model", "llama-3.1-8b", "--quant", "q4_0", "--kv-dtype", "f16")
    assert data["workload"]["kv_dtype"] == "fp16"
    assert data["workload"]["engine_settings"]["kv_dtype"] == "f16"


def test_unknown_kv_dtype(run: Run) -> None:
    """A KV dtype no engine has is a usage error naming the choices."""
    result = run("estimate", "--model", "llama-3.1-8b", "--kv-dtype", "f17")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: unknown KV-cache dtype 'f17'; choose bf16, fp16, fp32, fp8, q8_0, q4_0, f16, f32\n"
    )


@pytest.mark.parametrize("command", ["fit", "which-models"])
def test_vllm_refused_on_apple(run: Run, command: str) -> None:
    """vLLM has no Metal backend: asked for on an Apple card, one line, exit 2."""
    args = ["--model", "llama-3.1-8b"] if command == "fit" else []
    result = run(command, *args, "--gpu", "m4-max-128gb", "--engine", "vllm")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: vLLM has no Metal backend: it runs on Apple M4 Max 128GB (40-core GPU) only on "
        "the CPU; use --engine llama.cpp (or ollama) on Apple silicon\n"
    )


def test_catalog_quants_on_a_model(run: Run) -> None:
    """catalog quants --model weighs each GGUF file type on that model: SmolLM2-135M's narrow
    rows fall back to larger types, so its Q4_K_M is 6.17 bits a weight (4.89 on Llama-3.1-8B)."""
    data = json.loads(run("catalog", "quants", "--model", "smollm2-135m", "--json").stdout)
    by_slug = {row["slug"]: row for row in data}
    assert by_slug["q4_k_m"]["bits_per_weight"] == 4.8944
    assert round(by_slug["q4_k_m"]["bits_per_weight_on_model"], 2) == 6.17
    assert by_slug["nf4"]["bits_per_weight_on_model"] is None


def test_catalog_quants_rules_column(run: Run) -> None:
    """--rules shows each GGUF file type's rule summary (— for other formats)."""
    result = run("catalog", "quants", "--rules")
    assert result.exit_code == 0, result.stderr
    q8 = next(line for line in result.stdout.splitlines() if line.startswith("│ q8_0 "))
    assert q8.rstrip().endswith("│ Q8_0 │") or "Q8_0" in q8.split("│")[-2]


def test_gguf_sliding_window_from_metadata(run: Run, tmp_path: Path) -> None:
    """A Gemma-2 file's `gemma2.attention.sliding_window` makes every other layer local: under
    llama.cpp that layer keeps pad(256 + 512) = 768 cells, the global one all 4,096."""
    path = tmp_path / "gemma2.gguf"
    write_llama(path, arch="gemma2", sliding_window=256)
    data = _estimate(run, "--model", str(path))
    per_cell = 2 * 16 * 2 * 2  # 2 KV heads x 16 x (K, V) x f16
    assert data["components"]["kv_cache"] == (CONTEXT + 768) * per_cell


def test_gguf_package_loads_only_for_a_gguf_file(ready_catalog: Path) -> None:
    """A catalog model's estimate never imports the gguf package (nor numpy): cold start."""
    code = (
        "import sys\nfrom advisor.cli import main\n"
        "code = main(['estimate', '--model', 'llama-3.1-8b', '--quant', 'q4_k_m', '--json'])\n"
        "print(code, [m for m in ('gguf', 'numpy') if m in sys.modules], file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stderr.strip().splitlines()[-1] == "0 []"
