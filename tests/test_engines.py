"""The inference engines: the table, the llama.cpp and vLLM memory models against published
logs, CPU offload, and the CLI's --engine."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from advisor.arch import Architecture, architecture_from_hf_config, load_hf_config
from advisor.engines import (
    ENGINES,
    LLAMA_CPP_CUDA_CONTEXT_BYTES,
    budget_bytes,
    check,
    default_engine,
    parse_engine,
)
from advisor.enums import Engine, Market, ModelType, QuantKind, Vendor
from advisor.errors import InvalidValueError
from advisor.estimator import (
    CUDA_CONTEXT_BYTES,
    CUDA_OVERHEAD,
    LLAMA_CPP_CTX_PAD,
    OVERHEAD_BY_VENDOR,
    Estimate,
    RuntimeOverhead,
    engine_overhead,
    estimate,
    llama_cpp_layout,
    vllm_kv_pool,
)
from advisor.fit import Card, best_level, plan
from advisor.ggml import QuantRules
from advisor.offload import Verdict, split
from advisor.policy import Level
from advisor.units import GIB, MIB
from advisor.workload import KVDtype, Serving, Stage, WeightFormat, Workload

Run = Callable[..., Any]
DATA = Path(__file__).parent / "data"
LOGS = {
    record["id"]: record
    for record in map(json.loads, (DATA / "engine_logs.jsonl").read_text().splitlines())
}
LLAMA_CPP = Serving(engine=Engine.llama_cpp)
VLLM = Serving(engine=Engine.vllm)
Q4_K_M = WeightFormat(slug="q4_k_m", bits_per_weight=4.9, scope="all", kind=QuantKind.gguf)
# The catalog's Q5_K_M (bits per weight measured on Llama-3-8B files).
Q5_K_M = WeightFormat(slug="q5_k_m", bits_per_weight=5.7, scope="all", kind=QuantKind.gguf)
AWQ = WeightFormat(slug="awq-4bit", bits_per_weight=4.156, kind=QuantKind.awq)


def _llama(layers: int, hidden: int, ffn: int, *, kv_heads: int | None = None) -> Architecture:
    """A Llama-architecture model with 128-wide heads and the 32,000-token vocabulary."""
    heads = hidden // 128
    return Architecture(
        model_type=ModelType.llama,
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads or heads,
        head_dim=128,
        intermediate_size=ffn,
        vocab_size=32000,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )


LLAMA_7B = _llama(32, 4096, 11008)
LLAMA_13B = _llama(40, 5120, 13824)
# Qwen3-8B's attention: 36 layers, 8 KV heads of 128 (the record names only these).
QWEN3_8B = Architecture(
    model_type=ModelType.qwen3,
    num_hidden_layers=36,
    hidden_size=4096,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    intermediate_size=12288,
    vocab_size=151936,
    max_position_embeddings=40960,
    tie_word_embeddings=False,
)


def _config(name: str) -> Architecture:
    return architecture_from_hf_config(load_hf_config(DATA / "configs" / f"{name}.json"))


def _run(arch: Architecture, seq: int, serving: Serving, **kw: Any) -> Estimate:
    return estimate(arch, Workload(stage=Stage.inference, seq=seq, serving=serving, **kw))


# --- the table ------------------------------------------------------------------------------


def test_every_engine_has_a_complete_entry() -> None:
    """Every Engine has an entry keyed by itself, and every QuantKind is run or refused."""
    assert set(ENGINES) == set(Engine)
    for engine, traits in ENGINES.items():
        assert traits.engine is engine
        assert traits.runs.isdisjoint(traits.refused), engine
        assert traits.runs | set(traits.refused) == set(QuantKind), engine
        assert traits.default_kv_dtype is None or traits.default_kv_dtype in traits.kv_dtypes


def test_ollama_is_an_alias_of_llama_cpp() -> None:
    """`ollama` names llama.cpp, and the note says so; exact names pass without a note."""
    assert parse_engine("ollama") == (Engine.llama_cpp, "ollama runs llama.cpp: sizing llama.cpp")
    assert parse_engine("vllm") == (Engine.vllm, None)
    with pytest.raises(InvalidValueError, match=r"^unknown engine 'tgi'; choose transformers, "):
        parse_engine("tgi")


@pytest.mark.parametrize(
    ("fmt", "engine"),
    [
        (None, Engine.transformers),
        (Q4_K_M, Engine.llama_cpp),
        (AWQ, Engine.vllm),
        (
            WeightFormat(slug="gptq-4bit-g128", bits_per_weight=4.156, kind=QuantKind.gptq),
            Engine.vllm,
        ),
        (WeightFormat(slug="fp8", bits_per_weight=8, kind=QuantKind.float), Engine.vllm),
        (WeightFormat(slug="bf16", bits_per_weight=16, kind=QuantKind.float), Engine.transformers),
        (
            WeightFormat(slug="nf4", bits_per_weight=4.5, kind=QuantKind.bitsandbytes),
            Engine.transformers,
        ),
    ],
)
def test_default_engine_by_format(fmt: WeightFormat | None, engine: Engine) -> None:
    """GGUF → llama.cpp; GPTQ, AWQ, FP8 → vLLM; 16-bit and bitsandbytes → transformers."""
    assert default_engine(fmt) is engine


def test_engine_refuses_what_it_cannot_run() -> None:
    """AWQ on llama.cpp, GGUF on vLLM, a GGUF KV type on vLLM, q8_0 KV without flash attention."""
    with pytest.raises(InvalidValueError, match=r"^awq-4bit: llama.cpp runs GGUF files only"):
        check(LLAMA_CPP, AWQ, None)
    with pytest.raises(InvalidValueError, match=r"^q4_k_m: GGUF on vLLM is experimental"):
        check(VLLM, Q4_K_M, None)
    with pytest.raises(InvalidValueError, match=r"^--kv-dtype q4_0 is not a vllm KV cache type"):
        check(VLLM, None, KVDtype.q4_0)
    with pytest.raises(InvalidValueError, match=r"q8_0 KV cache needs flash attention"):
        check(replace(LLAMA_CPP, flash_attention=False), None, KVDtype.q8_0)


# --- llama.cpp against its logs -------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "arch", "n_ctx"),
    [
        ("lcpp-llama7b-kv-512", LLAMA_7B, 512),
        ("lcpp-llava7b-kv-2048", LLAMA_7B, 2048),
        ("lcpp-qwen3-36l-kv-4096", QWEN3_8B, 4096),
    ],
)
def test_llama_cpp_kv_cache_equals_log(record: str, arch: Architecture, n_ctx: int) -> None:
    """llama.cpp's `KV self size` is exactly layers x n_ctx x K and V x 2 bytes (f16)."""
    kv = _run(arch, n_ctx, LLAMA_CPP).components["kv_cache"]
    assert kv == LOGS[record]["value_bytes"]


def test_llama_cpp_compute_buffer_near_log() -> None:
    """LLaVA-1.5-7B at n_ctx 2048 (Oct 2023, no flash attention): the compute buffer within
    5 % of the logged 162.13 MiB (the attention phase, KQ over the whole cache, dominates)."""
    assert "compute buffer total size = 162.13 MB" in LOGS["lcpp-llava7b-kv-2048"]["quote"]
    compute = _run(LLAMA_7B, 2048, replace(LLAMA_CPP, flash_attention=False))
    assert abs(compute.components["activations"] / (162.13 * MIB) - 1) < 0.05


def _bundled_rules(slug: str) -> QuantRules:
    from catalog import bundled

    (row,) = [q for q in bundled.load().quants if q.slug == slug]
    assert row.gguf_rules is not None
    return QuantRules.from_json(row.gguf_rules)


def test_llama_cpp_13b_total_near_log() -> None:
    """A 13B Q5_K_M on a P40 at n_ctx 512: KV exactly 400 MiB; model buffer + KV, with the
    catalog's per-tensor Q5_K_M rules, the logged 8694.21 + 400 MiB to the logged 0.01 MiB
    (one bits-per-weight figure over every tensor was 0.4 % off); compute buffer within 10 %
    of 78.07 MiB."""
    record = LOGS["lcpp-13b-q5km-p40-total"]
    assert record["settings"]["kv_self_size"] == "400 MiB"
    q5_k_m = replace(Q5_K_M, rules=_bundled_rules("q5_k_m"))
    result = _run(LLAMA_13B, 512, replace(LLAMA_CPP, flash_attention=False), weight_format=q5_k_m)
    parts = result.components
    assert parts["kv_cache"] == 400 * MIB
    logged = 8694.21 * MIB + 400 * MIB
    assert abs(parts["weights"] + parts["kv_cache"] - logged) <= 0.005 * MIB
    assert abs(parts["activations"] / (78.07 * MIB) - 1) < 0.10


def test_llama_cpp_compute_buffer_with_flash_attention_is_the_logits() -> None:
    """Llama-3-8B at n_ctx 8192 with flash attention: the output phase is the peak, one
    micro-batch of fp32 logits and the final norm's output: 512 x (128256 + 4096) x 4."""
    result = _run(_config("llama-3-8b"), 8192, LLAMA_CPP)
    assert result.components["activations"] == 512 * (128256 + 4096) * 4


def test_llama_cpp_compute_grows_with_ubatch_and_context_not_prompt() -> None:
    """The compute buffer depends on n_ubatch and n_ctx (no flash attention: KQ spans the
    cache), and 80k tokens of context cost no 80k-token activations."""
    arch = _config("llama-3-8b")
    plain = replace(LLAMA_CPP, flash_attention=False)
    short, long = (_run(arch, n, plain).components["activations"] for n in (4096, 81920))
    assert long > short
    assert long == 512 * 81920 * (32 * 4 + 4) + 512 * 3 * 4096 * 4
    bigger = _run(arch, 4096, replace(plain, ubatch=1024)).components["activations"]
    assert bigger == 2 * short


def test_llama_cpp_pads_context_and_quantizes_kv() -> None:
    """n_ctx is padded to 256 cells; q8_0 stores 34 bytes per 32 values."""
    arch = _config("llama-3-8b")
    kv = _run(arch, 1000, LLAMA_CPP, kv_dtype=KVDtype.q8_0).components["kv_cache"]
    assert LLAMA_CPP_CTX_PAD == 256
    assert kv == 1024 * 32 * 2 * 1024 * 34 // 32


def test_llama_cpp_weights_leave_the_embedding_in_ram() -> None:
    """The GPU holds every layer and the output layer; the input embedding stays in RAM."""
    arch = _config("llama-3-8b")
    layout = llama_cpp_layout(arch, Workload(stage=Stage.inference, weight_format=Q4_K_M))
    whole_file = math.ceil(8030261248 * 4.9 / 8)
    assert layout.host_embedding == math.ceil(128256 * 4096 * 4.9 / 8)
    gpu = _run(arch, 4096, LLAMA_CPP, weight_format=Q4_K_M).components["weights"]
    assert abs(gpu + layout.host_embedding - whole_file) <= layout.layers


# --- vLLM against its logs ------------------------------------------------------------------


def test_vllm_llama3_8b_h100_matches_log() -> None:
    """Llama-3-8B on an H100 (79.22 GiB, utilization 0.9, max_num_batched_tokens 8192): the
    weights to the log's two decimals, the activation peak within 10 % of 1.26 GiB, the KV
    pool within 3 % of 53.29 GiB."""
    record = LOGS["vllm-l3-8b-activation-peak"]
    assert record["settings"]["available_kv_cache"] == "53.29GiB"
    arch = _config("llama-3-8b")
    result = _run(arch, 8192, VLLM)
    parts = result.components
    assert abs(parts["weights"] - LOGS["vllm-l3-8b-weights"]["value"] * GIB) <= 0.005 * GIB
    assert abs((parts["activations"] + parts["logits"]) / record["value_bytes"] - 1) < 0.10
    pool = vllm_kv_pool(result, budget_bytes(round(79.22 * GIB), VLLM))
    assert abs(pool.pool_bytes / (53.29 * GIB) - 1) < 0.03


def test_vllm_llama2_7b_a100_blocks_match_log() -> None:
    """Llama-2-7B on an A100-80GB (utilization 0.9, max_num_batched_tokens = max_model_len
    4096 as vLLM then set it): within 3 % of the log's 7351 blocks of 16 tokens."""
    record = LOGS["vllm-l2-7b-kv-blocks"]
    result = _run(_config("llama-2-7b"), 4096, replace(VLLM, max_batched_tokens=4096))
    pool = vllm_kv_pool(result, budget_bytes(80 * GIB, VLLM))
    assert abs(pool.blocks / 7351 - 1) < 0.03
    assert abs(pool.tokens / record["kv_tokens_capacity"] - 1) < 0.03
    assert pool.max_concurrency == pool.tokens / 4096


def test_llama_cpp_backend_context_by_vendor() -> None:
    """llama.cpp charges its own backend's context: 456 MiB on CUDA (its memory breakdown on
    RTX 4090s), none on Metal, the CUDA figure flagged unmeasured on ROCm and SYCL; no
    allocator reserve. transformers and vLLM keep PyTorch's 1343 MiB CUDA context."""
    contexts = {
        vendor: engine_overhead(ov, Engine.llama_cpp) for vendor, ov in OVERHEAD_BY_VENDOR.items()
    }
    assert contexts[Vendor.nvidia].context_bytes == 456 * MIB
    assert contexts[Vendor.nvidia].measured
    assert contexts[Vendor.apple].context_bytes == 0
    assert contexts[Vendor.apple].measured
    for vendor in (Vendor.amd, Vendor.intel):
        assert contexts[vendor].context_bytes == 456 * MIB
        assert not contexts[vendor].measured
    assert all(ov.allocator_reserve_fraction == 0 for ov in contexts.values())
    assert {ov.runtime for ov in contexts.values()} == {
        ov.runtime for ov in OVERHEAD_BY_VENDOR.values()
    }
    for engine in (Engine.transformers, Engine.vllm):
        assert engine_overhead(CUDA_OVERHEAD, engine).context_bytes == CUDA_CONTEXT_BYTES
    assert CUDA_CONTEXT_BYTES == 1343 * MIB


def test_llama_cpp_keeps_an_overhead_of_ones_own() -> None:
    """An overhead passed in (a measurement of one's own) is charged as given under
    llama.cpp, only the allocator reserve dropped."""
    mine = RuntimeOverhead(context_bytes=100 * MIB, allocator_reserve_fraction=0.1)
    assert engine_overhead(mine, Engine.llama_cpp) == replace(mine, allocator_reserve_fraction=0)
    result = _run(LLAMA_7B, 512, LLAMA_CPP)
    own = estimate(
        LLAMA_7B, Workload(stage=Stage.inference, seq=512, serving=LLAMA_CPP), overhead=mine
    )
    assert result.components["runtime_overhead"] == 456 * MIB
    assert own.components["runtime_overhead"] == 100 * MIB


# --- fits, partial, no ----------------------------------------------------------------------

RTX_4090 = Card(
    slug="rtx4090",
    name="RTX 4090",
    vendor=Vendor.nvidia,
    market=Market.consumer,
    memory_bytes=24 * GIB,
)


def _level(arch: Architecture, serving: Serving, fmt: WeightFormat | None, seq: int) -> Level:
    w = Workload(stage=Stage.inference, seq=seq, weight_format=fmt, serving=serving)
    return Level(label=fmt.slug if fmt else "bf16", workload=w, quant=fmt.slug if fmt else None)


def _llama_70b() -> Architecture:
    return Architecture(
        model_type=ModelType.llama,
        num_hidden_layers=80,
        hidden_size=8192,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=28672,
        vocab_size=128256,
        max_position_embeddings=131072,
        tie_word_embeddings=False,
    )


def test_offload_when_the_model_does_not_fit() -> None:
    """Llama-3-70B Q4_K_M on 24 GiB: partial, the most layers whose bytes fit with the
    context, the rest of the layers, the output layer and the embedding in RAM."""
    arch = _llama_70b()
    level = _level(arch, LLAMA_CPP, Q4_K_M, 8192)
    option = plan(arch, [level], [RTX_4090], max_gpus=1).options[0]
    assert not option.fits
    assert option.verdict is Verdict.partial
    offload = option.offload
    assert offload is not None
    layout = llama_cpp_layout(arch, level.workload)
    n = offload.gpu_layers
    context = LLAMA_CPP_CUDA_CONTEXT_BYTES  # llama.cpp's CUDA backend, not PyTorch's
    assert layout.gpu_bytes(n) + context <= 24 * GIB < layout.gpu_bytes(n + 1) + context
    assert offload.total_layers == 81
    assert (
        offload.host_bytes
        == (layout.host_embedding + (80 - n) * (layout.layer_weights + layout.layer_kv))
        + layout.output_weights
    )


def test_no_offload_where_it_fits_or_the_engine_cannot() -> None:
    """A fitting model has no split; transformers and vLLM never offload; a card too small
    for one layer says no."""
    small = _level(_config("llama-3-8b"), LLAMA_CPP, Q4_K_M, 4096)
    fits = plan(_config("llama-3-8b"), [small], [RTX_4090], max_gpus=1).options[0]
    assert fits.verdict is Verdict.fits
    assert fits.offload is None
    arch = _llama_70b()
    for serving in (Serving(), VLLM):
        option = plan(arch, [_level(arch, serving, None, 8192)], [RTX_4090], max_gpus=1)
        assert option.options[0].verdict is Verdict.no
    tiny = Card(
        slug="tiny", name="tiny", vendor=Vendor.nvidia, market=Market.consumer, memory_bytes=1 * GIB
    )
    w = _level(arch, LLAMA_CPP, Q4_K_M, 8192).workload
    assert split(arch, w, CUDA_OVERHEAD, tiny.capacity_bytes) is None


def test_which_models_partial_verdict() -> None:
    """best_level: a model that fits at no level is partial at the smallest one tried."""
    arch = _llama_70b()
    found = best_level("llama-70b", arch, [_level(arch, LLAMA_CPP, Q4_K_M, 8192)], RTX_4090, 1)
    assert not found.fits
    assert found.verdict is Verdict.partial
    assert found.offload is not None and found.offload.gpu_layers < 81


def test_no_one_card_split_when_several_cards_are_asked() -> None:
    """which-models --count 2: a model that fits on neither pair gets no one-card split."""
    arch = _llama_70b()
    level = _level(arch, LLAMA_CPP, None, 8192)
    assert best_level("llama-70b", arch, [level], RTX_4090, 1).verdict is Verdict.partial
    found = best_level("llama-70b", arch, [level], RTX_4090, 2)
    assert (found.fits, found.offload, found.verdict) == (False, None, Verdict.no)


def test_vllm_fits_when_the_pool_holds_one_sequence() -> None:
    """vLLM fits a card when utilization x card holds everything and one sequence of KV."""
    arch = _config("llama-3-8b")
    level = _level(arch, VLLM, None, 8192)
    option = plan(arch, [level], [RTX_4090], max_gpus=1).options[0]
    assert option.capacity_bytes == math.floor(24 * GIB * 0.9)
    assert option.fits == (option.per_gpu_bytes <= option.capacity_bytes)
    pool = option.kv_pool
    assert pool is not None and pool.max_concurrency >= 1


# --- the CLI --------------------------------------------------------------------------------


@pytest.mark.usefixtures("ready_catalog")
def test_cli_engine_alias_and_json(run: Run) -> None:
    """--engine ollama sizes llama.cpp, says so on stderr, and names it in the JSON."""
    result = run("estimate", "--model", "llama-3.1-8b", "--engine", "ollama", "--json")
    assert result.exit_code == 0, result.stderr
    assert "advisor: ollama runs llama.cpp: sizing llama.cpp\n" in result.stderr
    data = json.loads(result.stdout)
    assert data["workload"]["engine"] == "llama.cpp"
    assert data["workload"]["engine_settings"] == {
        "n_ubatch": 512,
        "flash_attention": True,
        "kv_dtype": "f16",  # llama.cpp's spelling
    }


@pytest.mark.usefixtures("ready_catalog")
def test_cli_default_engine_named_in_header(run: Run) -> None:
    """A GGUF format runs on llama.cpp unless told, and the header says so."""
    result = run("estimate", "--model", "llama-3.1-8b", "--quant", "q4_k_m")
    assert result.exit_code == 0, result.stderr
    assert "· weights q4_k_m · engine llama.cpp (n_ubatch 512, flash" in result.stdout


@pytest.mark.usefixtures("ready_catalog")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--quant", "awq-4bit", "--engine", "llama.cpp"),
            "error: awq-4bit: llama.cpp runs GGUF files only (its own k-quants and i-quants, "
            "F16/BF16/F32); AWQ checkpoints cannot be loaded: pick a GGUF format or --engine "
            "vllm/transformers\n",
        ),
        (
            ("--quant", "q4_k_m", "--engine", "vllm"),
            "error: q4_k_m: GGUF on vLLM is experimental (single-file models only, slower than "
            "llama.cpp) and not sized here: use --engine llama.cpp\n",
        ),
    ],
)
def test_cli_engine_that_cannot_run_the_format(
    run: Run, args: tuple[str, ...], message: str
) -> None:
    """One line on stderr, exit 2, nothing on stdout."""
    result = run("estimate", "--model", "llama-3.1-8b", *args)
    assert result.exit_code == 2
    assert result.stderr == message
    assert result.stdout == ""


@pytest.mark.usefixtures("ready_catalog")
def test_cli_fit_partial_json(run: Run) -> None:
    """fit: a partial fit keeps `fits` false, says `partial` and gives the split."""
    result = run(
        "fit",
        "--model",
        "llama-3.1-70b",
        "--gpu",
        "rtx4090",
        "--quant",
        "q4_k_m",
        "--max-gpus",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workload"]["engine"] == "llama.cpp"
    option = data["options"][0]
    assert option["fits"] is False
    assert option["verdict"] == "partial"
    assert set(option["offload"]) == {"gpu_layers", "total_layers", "host_bytes"}
    assert option["offload"]["total_layers"] == 81
    assert 0 < option["offload"]["gpu_layers"] < 81


@pytest.mark.usefixtures("ready_catalog")
def test_cli_which_models_partial(run: Run) -> None:
    """which-models lists partial fits apart from those that fit."""
    result = run("which-models", "--gpu", "rtx4090", "--family", "llama-3.1", "--json")
    assert result.exit_code == 0, result.stderr
    models = {m["model"]: m for m in json.loads(result.stdout)["models"]}
    assert models["llama-3.1-8b"]["verdict"] == "fits"
    assert models["llama-3.1-8b"]["offload"] is None
    big = models["llama-3.1-70b"]
    assert (big["fits"], big["verdict"], big["engine"]) == (False, "partial", "llama.cpp")
    text = run("which-models", "--gpu", "rtx4090", "--family", "llama-3.1")
    assert "partial: " in text.stdout
    assert "more only with layers in system RAM (partial)" in text.stdout


@pytest.mark.usefixtures("ready_catalog")
def test_cli_toy_gguf_overhead_is_llama_cpp_context(run: Run) -> None:
    """The README's 100k-parameter GGUF file: the overhead is llama.cpp's CUDA context,
    456 MiB, not PyTorch's 1343 MiB."""
    result = run("estimate", "--model", str(DATA / "toy-llama.gguf"), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["components"]["runtime_overhead"] == 456 * MIB
    assert data["overhead_bytes"] == 478_150_656


@pytest.mark.usefixtures("ready_catalog")
def test_cli_gemma_2_9b_q4_k_m_fits_an_8_gb_card(run: Run) -> None:
    """Issue 12's example: gemma-2-9b Q4_K_M at 4,096 tokens on an RTX 4060 (8 GiB) under
    llama.cpp: 5,755,000,860 weights + 1,409,286,144 KV + 531,628,032 compute + 456 MiB
    context = 8,174,065,692 bytes (7.61 GiB), fitting with 415,868,900 bytes to spare (it was
    0.48 GiB short with PyTorch's 1343 MiB context)."""
    result = run(
        "fit",
        *("--model", "gemma-2-9b", "--quant", "q4_k_m", "--seq", "4096"),
        *("--gpu", "rtx4060", "--json"),
    )
    assert result.exit_code == 0, result.stderr
    option = json.loads(result.stdout)["options"][0]
    assert option["engine"] == "llama.cpp"
    assert option["count"] == 1
    assert option["overhead_bytes"] == 456 * MIB
    assert option["per_gpu_bytes"] == 5_755_000_860 + 1_409_286_144 + 531_628_032 + 456 * MIB
    assert option["per_gpu_bytes"] == 8_174_065_692
    assert option["capacity_bytes"] == 8 * GIB
    assert option["headroom_bytes"] == 415_868_900
    assert (option["fits"], option["verdict"]) == (True, "fits")
    with_pytorch_context = option["per_gpu_bytes"] - 456 * MIB + CUDA_CONTEXT_BYTES
    assert with_pytorch_context > 8 * GIB
