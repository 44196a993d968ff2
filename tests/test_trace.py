"""Exact mode: `advisor.trace` and `advisor trace` (skipped without the `trace` extra)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from advisor import trace as tracing
from advisor.arch import architecture_from_hf_config, count_params
from advisor.errors import TraceExtraMissingError, TraceUnavailableError
from advisor.estimator import estimate, traffic
from advisor.workload import Checkpointing, Method, Precision, Stage, WeightFormat, Workload

DATA = Path(__file__).parent / "data"
TINY = DATA / "trace"
CALIBRATION = DATA / "calibration" / "traced.jsonl"
# Issue 4: the estimate within 3 % of the trace for every term that matters (a group holding
# at least a tenth of the peak), and the shared calibration totals reproduced within 0.5 %.
ESTIMATE_BOUND_PCT = 3.0
MATTERS = 0.10
REPRODUCE_BOUND = 0.005

TINY_INFERENCE = Workload(stage=Stage.inference, batch=2, seq=256)
TINY_FINETUNE = Workload(stage=Stage.finetune, batch=2, seq=256)
TINY_LORA = dataclasses.replace(TINY_FINETUNE, method=Method.lora)


def _tiny(name: str) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((TINY / f"tiny-{name}.json").read_text())
    return config


def _case(case_id: str) -> dict[str, Any]:
    for line in CALIBRATION.read_text().splitlines():
        case: dict[str, Any] = json.loads(line)
        if case["id"] == case_id:
            return case
    raise AssertionError(f"no calibration case {case_id}")


@pytest.mark.parametrize("path", sorted(TINY.glob("tiny-*.json")), ids=lambda p: p.stem)
def test_hf_config_builds_the_architecture(path: Path) -> None:
    """The config made from an Architecture builds a model with exactly its parameter count."""
    arch = architecture_from_hf_config(json.loads(path.read_text()))
    result = tracing.trace(arch, TINY_INFERENCE)
    assert result.params == count_params(arch).total
    assert result.model_type == arch.model_type.value
    assert result.peak_bytes == sum(result.by_category.values())
    assert tuple(result.by_category) == tracing.CATEGORIES
    assert result.category("grad") == result.category("opt") == 0


@pytest.mark.parametrize(
    ("name", "workload"),
    [
        ("llama", TINY_INFERENCE),
        ("llama", TINY_FINETUNE),
        ("llama", TINY_LORA),
        ("qwen3", TINY_FINETUNE),
        ("qwen3", TINY_LORA),
        ("mixtral", TINY_INFERENCE),
        ("mixtral", TINY_FINETUNE),
        ("qwen3_moe", TINY_FINETUNE),
        ("gemma", TINY_FINETUNE),
        ("gpt2", TINY_FINETUNE),
        ("opt", TINY_FINETUNE),
        ("falcon", TINY_FINETUNE),
        ("gpt_neox", TINY_FINETUNE),
        ("phi3", TINY_LORA),
        ("opt", TINY_LORA),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.stage.value}-{v.method.value}",
)
def test_estimate_within_bound_of_trace(name: str, workload: Workload) -> None:
    """Every group of terms holding a tenth of the peak is estimated within 3 % of the trace."""
    arch = architecture_from_hf_config(_tiny(name))
    result = tracing.trace(arch, workload)
    rows = tracing.compare(result, estimate(arch, workload))
    checked = [row for row in rows if row.traced >= MATTERS * result.peak_bytes]
    assert checked[-1].name == "total"
    for row in checked:
        assert row.error_pct is not None
        assert abs(row.error_pct) <= ESTIMATE_BOUND_PCT, (row.name, row.estimated, row.traced)


@pytest.mark.parametrize("case_id", ["inf-l2-7b-b1-s2048", "inf-mixtral-b1-s4096"])
def test_reproduces_calibration_inference_exactly(case_id: str) -> None:
    """The shared calibration's inference traces, to the byte and by category."""
    case = _case(case_id)
    config = json.loads((DATA / "configs" / Path(case["config"]).name).read_text())
    arch = architecture_from_hf_config(config)
    workload = Workload(stage=Stage.inference, batch=1, seq=int(case["advisor_estimate_flags"][-1]))
    result = tracing.trace(config, workload)
    assert result.params == case["params"]
    assert result.peak_bytes == case["peak_bytes"]
    assert dict(result.by_category) == case["peak_by_category"]
    # Tracing the architecture advisor keeps (`hf_config`) builds the same model: transformers
    # reads the same value for every field it sets. (Tracing from an architecture is exercised
    # end to end on the tiny configs above; a second trace of these large ones would only
    # repeat that at a minute of CPU.)
    transformers = pytest.importorskip("transformers")
    derived = tracing.hf_config(arch)
    as_written = transformers.AutoConfig.for_model(**config).to_dict()
    as_derived = transformers.AutoConfig.for_model(**derived).to_dict()
    if as_written.get("head_dim") is None and "head_dim" in derived:
        # Mixtral's modeling code takes a missing head_dim as hidden_size // num_attention_heads.
        as_written["head_dim"] = as_written["hidden_size"] // as_written["num_attention_heads"]
    assert {key: as_derived[key] for key in derived} == {key: as_written[key] for key in derived}


def test_reproduces_calibration_finetune_within_bound() -> None:
    """GPT-2 full fine-tuning at 16 x 1024: parameters, optimizer states and backward buffers
    to the byte, the total within 0.5 % (one 128 KiB int64 tensor of the labels apart)."""
    case = _case("ft-gpt2-b16-s1024")
    arch = architecture_from_hf_config(json.loads((DATA / "configs" / "gpt2.json").read_text()))
    result = tracing.trace(arch, Workload(stage=Stage.finetune, batch=16, seq=1024))
    expected = case["peak_by_category"]
    for category in ("param", "grad", "opt", "temp"):
        assert result.category(category) == expected[category]
    assert abs(result.peak_bytes - case["peak_bytes"]) <= REPRODUCE_BOUND * case["peak_bytes"]
    assert any(note.startswith("dropout set to 0 (attn_pdrop=0.1") for note in result.notes)


def test_training_variants_run() -> None:
    """Gradient checkpointing keeps less than a full backward; mixed precision keeps fp32
    weights and states."""
    arch = architecture_from_hf_config(_tiny("llama"))
    full = tracing.trace(arch, TINY_FINETUNE)
    checkpointed = tracing.trace(arch, dataclasses.replace(TINY_FINETUNE, grad_checkpointing=True))
    mixed = tracing.trace(arch, dataclasses.replace(TINY_FINETUNE, precision=Precision.mixed_bf16))
    params = count_params(arch).total
    assert checkpointed.category("act") < full.category("act")
    assert checkpointed.category("param") == full.category("param") == 2 * params
    assert mixed.category("param") == 4 * params
    # Two fp32 moments per parameter, and AdamW's fp32 step count per tensor: 9 tensors in
    # each of the 2 layers, the embedding, the final norm and the output head.
    assert mixed.category("opt") == 2 * 4 * params + 4 * (9 * 2 + 3)


TINY_MIXED = dataclasses.replace(TINY_FINETUNE, precision=Precision.mixed_bf16)


@pytest.mark.parametrize(
    ("name", "checkpointing"),
    [
        ("llama", Checkpointing.full),
        ("gpt2", Checkpointing.full),
        ("falcon", Checkpointing.full),
        ("llama", Checkpointing.selective),
        ("phi3", Checkpointing.selective),
    ],
)
def test_autocast_with_checkpointing(name: str, checkpointing: Checkpointing) -> None:
    """Mixed precision (fp32 weights under autocast) with checkpointed layers: at the start of
    backward autocast's cache of casted weights is gone and checkpointed layers saved none, so
    only the output head's 16-bit copy lives, and each layer's saved input is the fp32
    residual stream. The total within 3 % of the trace (it was 3.2-3.7 % over with every
    linear weight's copy counted, up to 8 % with selective checkpointing)."""
    arch = architecture_from_hf_config(_tiny(name))
    w = dataclasses.replace(TINY_MIXED, checkpointing=checkpointing)
    found = estimate(arch, w)
    assert found.peak_moment == "start of backward"
    head_copy = arch.vocab_size * arch.hidden_size * 2
    assert found.components["weights"] == 4 * count_params(arch).total + head_copy
    total = tracing.compare(tracing.trace(arch, w), found)[-1]
    assert total.name == "total" and total.error_pct is not None
    assert abs(total.error_pct) <= ESTIMATE_BOUND_PCT


@pytest.mark.parametrize("name", ["gpt2", "opt", "gpt_neox", "llama"])
def test_selective_checkpointing_recomputes_biased_projections(name: str) -> None:
    """torchtitan's per-op policy saves every other `aten.mm` output; a biased projection
    runs as `addmm`, which it neither saves nor counts: GPT-2, OPT and GPT-NeoX (every
    projection biased) save no product output, Llama q, v, gate and down. Within 3 % of the
    trace (the biased models were 6 % over when every product counted as `mm`); the speed
    model recomputes the products not saved."""
    arch = architecture_from_hf_config(_tiny(name))
    w = dataclasses.replace(TINY_FINETUNE, checkpointing=Checkpointing.selective)
    found = estimate(arch, w)
    total = tracing.compare(tracing.trace(arch, w), found)[-1]
    assert total.name == "total" and total.error_pct is not None
    assert abs(total.error_pct) <= ESTIMATE_BOUND_PCT
    t = traffic(arch, w)
    h, layers = arch.hidden_size, arch.num_hidden_layers
    if name == "llama":  # k, o, up of q, k, v, o, gate, up, down
        kv = arch.num_key_value_heads * arch.head_dim
        q = arch.num_attention_heads * arch.head_dim
        per_layer = h * kv + q * h + h * arch.intermediate_size
    else:  # every product: q, k, v (fused or not), o, up, down
        per_layer = 4 * h * h + 2 * h * arch.intermediate_size
    assert t.selective_recomputed_params == layers * per_layer


@pytest.mark.parametrize("name", ["llama", "qwen3", "mixtral", "gemma", "gpt2"])
def test_gradient_accumulation_holds_the_gradients(name: str) -> None:
    """--microbatches 2 without a pipeline: the second micro-batch runs forward and backward
    with the first one's gradients held, so the start of its backward holds every gradient
    besides the activations; the trace (two micro-batches before each step) agrees within
    3 %, and the peak exceeds the single micro-batch's by the gradients at most."""
    arch = architecture_from_hf_config(_tiny(name))
    one = estimate(arch, TINY_FINETUNE)
    two_w = dataclasses.replace(TINY_FINETUNE, microbatches=2)
    two = estimate(arch, two_w)
    assert two.peak_moment == "start of backward"
    assert two.components["gradients"] == 2 * count_params(arch).total  # bf16, every weight
    tensors = {
        m: found.per_gpu_bytes - found.components["runtime_overhead"]
        for m, found in ((1, one), (2, two))
    }
    assert tensors[1] < tensors[2] <= tensors[1] + two.components["gradients"]
    result = tracing.trace(arch, two_w)
    assert result.category("grad") == two.components["gradients"]
    rows = tracing.compare(result, two)
    assert rows[-1].name == "total" and rows[-1].error_pct is not None
    assert abs(rows[-1].error_pct) <= ESTIMATE_BOUND_PCT


def test_eager_attention_noted() -> None:
    """Gemma-2 has no SDPA path in transformers: traced with eager attention, and said so."""
    result = tracing.trace(architecture_from_hf_config(_tiny("gemma2")), TINY_INFERENCE)
    assert any("eager attention" in note for note in result.notes)


def test_unknown_model_type_is_refused() -> None:
    """A model type transformers does not know: one clear line naming it."""
    with pytest.raises(TraceUnavailableError, match=r"cannot build model_type 'no_such_type'"):
        tracing.trace({"model_type": "no_such_type", "vocab_size": 8}, TINY_INFERENCE)


def test_qlora_is_refused() -> None:
    """QLoRA needs bitsandbytes' CUDA kernels; the message says so."""
    nf4 = WeightFormat(slug="nf4", bits_per_weight=4.127)
    workload = dataclasses.replace(TINY_FINETUNE, method=Method.qlora, weight_format=nf4)
    with pytest.raises(TraceUnavailableError, match="QLoRA's 4-bit base needs bitsandbytes"):
        tracing.trace(_tiny("llama"), workload)


def test_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without torch, the error says how to install the extra."""

    def no_module(name: str) -> Any:
        raise ImportError(name)

    monkeypatch.setattr("advisor.trace.importlib.import_module", no_module)
    with pytest.raises(TraceExtraMissingError, match=r"pip install 'gpu-fit-advisor\[trace\]'"):
        tracing.trace(_tiny("llama"), TINY_INFERENCE)


def test_cli_json_is_the_estimate_plus_the_trace(run: Any) -> None:
    """--json: the estimate's shape, `traced` as the library returns it, and `error_pct`."""
    path = TINY / "tiny-llama.json"
    flags = ["--stage", "finetune", "--batch", "2", "--seq", "256"]
    traced = run("trace", "--model", str(path), *flags, "--json")
    estimated = run("estimate", "--model", str(path), *flags, "--recipe", "none", "--json")
    assert traced.exit_code == 0, traced.stderr
    data, plain = json.loads(traced.stdout), json.loads(estimated.stdout)
    assert {k: v for k, v in data.items() if k not in ("traced", "error_pct")} == plain
    result = tracing.trace(json.loads(path.read_text()), TINY_FINETUNE)
    assert data["traced"]["peak_bytes"] == result.peak_bytes
    assert data["traced"]["by_category"] == dict(result.by_category)
    assert set(data["error_pct"]) == {
        "parameters",
        "gradients",
        "optimizer",
        "activations",
        "total",
    }
    tensor = plain["per_gpu_bytes"] - plain["components"]["runtime_overhead"]
    assert data["error_pct"]["total"] == round(
        (tensor - result.peak_bytes) / result.peak_bytes * 100, 3
    )


def test_cli_table_and_errors(run: Any) -> None:
    """The table names the categories and the groups; refusals exit 2 with one line."""
    path = str(TINY / "tiny-gpt2.json")
    shown = run("trace", "--model", path, "--stage", "inference", "--batch", "2", "--seq", "256")
    assert shown.exit_code == 0, shown.stderr
    assert "traced peak by category" in shown.stdout
    assert "against the estimate" in shown.stdout
    lora = run("trace", "--model", path, "--stage", "finetune", "--method", "lora", "--seq", "64")
    assert lora.exit_code == 2
    assert lora.stderr.startswith("error: PEFT cannot add LoRA to q_proj,k_proj,v_proj,o_proj")
    assert lora.stderr.count("\n") == 1
    gpus = run("trace", "--model", path, "--gpus", "2")
    assert (gpus.exit_code, gpus.stderr) == (
        2,
        "error: a trace runs on one device: use --gpus 1 (the estimate divides the terms)\n",
    )


def test_cli_and_library_import_no_torch() -> None:
    """`advisor --help` and `import advisor.trace` load none of the extra's packages."""
    code = (
        "import sys, advisor.cli, advisor.trace, advisor.cli.trace_cmd; "
        "print(sorted({'torch', 'transformers', 'peft'} & set(sys.modules)))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout == "[]\n"
