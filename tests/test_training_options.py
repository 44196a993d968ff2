"""Optimizers, offload, adapters and attention kernels for training (issue 11, part B), in
exact bytes and by mechanism."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from advisor.arch import Architecture, architecture_from_hf_config
from advisor.enums import Engine
from advisor.errors import InvalidValueError
from advisor.estimator import (
    EIGHT_BIT_BLOCK,
    OPTIMIZER_STEP,
    START_OF_BACKWARD,
    STEP_IN_BACKWARD,
    RuntimeOverhead,
    estimate,
)
from advisor.workload import (
    LORA_TARGET_SETS,
    Attention,
    LoraDtype,
    Method,
    Optimizer,
    Parallel,
    Precision,
    Serving,
    Stage,
    TrainingOffload,
    WeightFormat,
    Workload,
)

Run = Callable[..., Any]
NO_OVERHEAD = RuntimeOverhead(context_bytes=0, allocator_reserve_fraction=0)
# Llama-3.1-8B's shape (meta-llama/Llama-3.1-8B config.json).
LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 32, 4096, 32, 8, 128, 14336, 128256
Q, KV = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
LLAMA_8B = {
    "model_type": "llama",
    "num_hidden_layers": LAYERS,
    "hidden_size": HIDDEN,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "intermediate_size": FFN,
    "vocab_size": VOCAB,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}
RANK = 16
LORA = Workload(stage=Stage.finetune, method=Method.lora, batch=2, seq=2048)
FULL = Workload(stage=Stage.finetune, batch=1, seq=128)
NF4 = WeightFormat(slug="nf4-dq", bits_per_weight=4.127, scope="linear")
# (in, out) of q, k, v, o: each adapter is A (rank x in) and B (out x rank).
ATTENTION_DIMS = ((HIDDEN, Q), (HIDDEN, KV), (HIDDEN, KV), (Q, HIDDEN))


@pytest.fixture(scope="module")
def arch() -> Architecture:
    return architecture_from_hf_config(LLAMA_8B)


def _components(arch: Architecture, workload: Workload) -> dict[str, int]:
    return estimate(arch, workload, overhead=NO_OVERHEAD).components


def _adapter_tensors() -> list[int]:
    """Values of every LoRA A and B of the attention targets, all layers."""
    per_layer = [n for i, o in ATTENTION_DIMS for n in (RANK * i, o * RANK)]
    return per_layer * LAYERS


# --- optimizers -------------------------------------------------------------------------------


def test_adamw_8bit_states_are_bytes_plus_an_absmax_per_256_values(arch: Architecture) -> None:
    """bitsandbytes: two uint8 states per value and one fp32 absmax per block of 256."""
    states = _components(arch, replace(LORA, optimizer=Optimizer.adamw_8bit))["optimizer"]
    assert EIGHT_BIT_BLOCK == 256
    assert states == sum(2 * (n + 4 * math.ceil(n / 256)) for n in _adapter_tensors())
    assert states == 27_688_960


def test_eight_bit_keeps_fp32_states_under_4096_values() -> None:
    """A tensor under `min_8bit_size` (a 2048-wide norm) keeps two fp32 states."""
    small = architecture_from_hf_config(
        dict(LLAMA_8B, hidden_size=2048, head_dim=HEAD_DIM, num_hidden_layers=1)
    )
    full = replace(FULL, optimizer=Optimizer.adamw_8bit, batch=64, seq=2048)
    result = estimate(small, full, overhead=NO_OVERHEAD)
    norms = 3  # two per layer and the final one, 2048 values each
    matrices = result.params - norms * 2048
    shapes = [(Q, 2048), (KV, 2048), (KV, 2048), (2048, Q), (FFN, 2048), (FFN, 2048)]
    shapes += [(2048, FFN), (VOCAB, 2048), (VOCAB, 2048)]
    blocks = sum(math.ceil(rows * cols / 256) for rows, cols in shapes)
    expected = 2 * matrices + 2 * 4 * blocks + norms * 2 * 4 * 2048
    assert result.peak_moment == START_OF_BACKWARD
    assert result.components["optimizer"] == expected


def test_paged_states_leave_the_allocator_and_one_tensor_comes_back_for_its_step(
    arch: Architecture,
) -> None:
    """Paged AdamW 32-bit on a full fine-tune: fp32 states of every tensor of 10^5 values or
    more are paged (host bytes); the norms' stay on the GPU; the step prefetches the largest
    tensor's states (the embedding's, 2 x 4 bytes x V x h)."""
    paged = estimate(
        arch, replace(FULL, optimizer=Optimizer.paged_adamw_32bit), overhead=NO_OVERHEAD
    )
    norms = (2 * LAYERS + 1) * HIDDEN
    assert paged.peak_moment == OPTIMIZER_STEP
    assert paged.host_bytes == 2 * 4 * (paged.params - norms)
    gradients = paged.params * 2
    assert paged.components["gradients"] == gradients
    largest_states = 2 * 4 * VOCAB * HIDDEN
    assert paged.components["optimizer"] == 2 * 4 * norms + largest_states
    eight = estimate(
        arch, replace(FULL, optimizer=Optimizer.paged_adamw_8bit), overhead=NO_OVERHEAD
    )
    assert eight.components["optimizer"] < paged.components["optimizer"]
    assert eight.host_bytes == 2 * (eight.params - norms)


def test_paged_changes_nothing_for_small_adapters(arch: Architecture) -> None:
    """Rank-16 adapters have under 10^5 values per tensor: bitsandbytes never pages them."""
    eight = estimate(arch, replace(LORA, optimizer=Optimizer.adamw_8bit), overhead=NO_OVERHEAD)
    paged = estimate(
        arch, replace(LORA, optimizer=Optimizer.paged_adamw_8bit), overhead=NO_OVERHEAD
    )
    assert paged.components == eight.components
    assert paged.host_bytes == 0


def test_adafactor_keeps_a_row_and_a_column_per_matrix(arch: Architecture) -> None:
    """transformers' Adafactor (no first moment): rows + cols fp32 values per matrix; its step
    holds two fp32 buffers of the largest tensor (fp32 adapters: no gradient copy)."""
    workload = replace(LORA, optimizer=Optimizer.adafactor)
    start = _components(arch, workload)
    per_layer = sum((RANK + i) + (o + RANK) for i, o in ATTENTION_DIMS)
    assert start["optimizer"] == LAYERS * per_layer * 4 == 3_424_256
    step = estimate(arch, replace(workload, batch=1, seq=1), overhead=NO_OVERHEAD)
    assert step.peak_moment == OPTIMIZER_STEP
    assert step.components["optimizer"] - start["optimizer"] == 2 * RANK * HIDDEN * 4


def test_optimizer_in_backward_holds_one_gradient(arch: Architecture) -> None:
    """torchtune's optimizer in backward: one gradient (the largest, bf16) at a time, its step
    run while the saved activations are alive."""
    plain = estimate(arch, FULL, overhead=NO_OVERHEAD)
    hooked = estimate(arch, replace(FULL, optimizer_in_backward=True), overhead=NO_OVERHEAD)
    assert plain.components["gradients"] == plain.params * 2
    assert hooked.peak_moment == STEP_IN_BACKWARD
    assert hooked.components["gradients"] == VOCAB * HIDDEN * 2
    assert hooked.components["optimizer"] == plain.params * 2 * 2 + 2 * VOCAB * HIDDEN * 2
    assert hooked.components["logits"] == 128 * VOCAB * 2  # the logits the caller holds
    assert hooked.components["activations"] > 0  # every layer's, unlike the plain step
    assert plain.components["activations"] == 0
    assert hooked.per_gpu_bytes < plain.per_gpu_bytes


# --- offload ----------------------------------------------------------------------------------


def test_offloaded_optimizer_under_mixed_precision_moves_master_weights(arch: Architecture) -> None:
    """ZeRO-Offload with mixed precision: fp32 states, master weights and gradients on the
    host; a 16-bit model and 16-bit gradients on the GPU."""
    mixed = replace(FULL, precision=Precision.mixed_bf16, offload=TrainingOffload.optimizer)
    result = estimate(arch, mixed, overhead=NO_OVERHEAD)
    p = result.params
    assert result.workload.strategy is Parallel.zero2
    assert result.host_bytes == p * (2 * 4 + 4 + 4)
    assert result.components["optimizer"] == 0
    after = estimate(arch, replace(mixed, seq=1), overhead=NO_OVERHEAD)
    assert after.components["weights"] == p * 2
    assert after.components["gradients"] == p * 2


def test_offloaded_parameters_leave_two_units_on_the_gpu(arch: Architecture) -> None:
    """optimizer+params (ZeRO-3/FSDP): the GPU holds two gathered units (the embedding is the
    largest) and one unit's gradient; the host every weight, gradient and state."""
    result = estimate(
        arch, replace(FULL, offload=TrainingOffload.optimizer_params), overhead=NO_OVERHEAD
    )
    p = result.params
    unit = VOCAB * HIDDEN * 2
    assert result.workload.strategy is Parallel.zero3
    assert result.components["weights"] == 2 * unit
    assert result.host_bytes == p * 2 + p * 2 + 2 * p * 2
    step = estimate(
        arch, replace(FULL, seq=1, offload=TrainingOffload.optimizer_params), overhead=NO_OVERHEAD
    )
    assert step.components["gradients"] == unit


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"offload": TrainingOffload.optimizer, "parallel": Parallel.ddp},
            "--offload optimizer needs a ZeRO stage: DDP has no offload (DeepSpeed offloads "
            "under ZeRO 1-3, FSDP under full sharding)",
        ),
        (
            {"offload": TrainingOffload.optimizer_params, "parallel": Parallel.zero1},
            "--offload optimizer+params needs --parallel zero3, not zero1 (DeepSpeed's "
            "offload_param is valid only with ZeRO stage 3)",
        ),
        (
            {"lora_dtype": LoraDtype.bf16},
            "--lora-dtype applies to lora, qlora and dora, not --method full",
        ),
    ],
)
def test_combinations_that_cannot_run_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError) as error:
        Workload(stage=Stage.finetune, **change)
    assert str(error.value) == message


def test_offload_with_zero1_is_allowed() -> None:
    """DeepSpeed's offload_optimizer is valid for ZeRO stage 1 too."""
    workload = Workload(
        stage=Stage.finetune, gpus=2, parallel=Parallel.zero1, offload=TrainingOffload.optimizer
    )
    assert workload.offload_optimizer


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimizer_in_backward": True}, "--optimizer-in-backward applies to training only"),
        ({"lora_dtype": LoraDtype.bf16}, "--lora-dtype applies to training only"),
    ],
)
def test_training_options_refused_for_inference(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError) as error:
        Workload(stage=Stage.inference, **change)
    assert str(error.value) == message


# --- adapters ---------------------------------------------------------------------------------


def test_adapter_dtype_defaults(arch: Architecture) -> None:
    """PEFT's fp32 adapters for LoRA; the QLoRA recipe's bf16 for QLoRA; asked: as asked."""
    params = sum(_adapter_tensors())
    assert _components(arch, LORA)["adapters"] == params * 4
    qlora = replace(LORA, method=Method.qlora, weight_format=NF4)
    assert _components(arch, qlora)["adapters"] == params * 2
    asked = replace(LORA, lora_dtype=LoraDtype.bf16)
    assert _components(arch, asked)["adapters"] == params * 2


def test_bf16_adapters_share_their_inputs(arch: Architecture) -> None:
    """fp32 adapters copy their input once per adapter; bf16 ones on a bf16 base save the
    projection's own input, once per distinct tensor (q, k, v share the norm's output)."""
    fp32 = _components(arch, LORA)["activations"]
    bf16 = _components(arch, replace(LORA, lora_dtype=LoraDtype.bf16))["activations"]
    tokens = 2 * 2048
    fp32_inputs = (3 * HIDDEN + Q) * 4 + 4 * RANK * 4
    bf16_inputs = (HIDDEN + Q) * 2 + 4 * RANK * 2
    assert fp32 - bf16 == LAYERS * tokens * (fp32_inputs - bf16_inputs)


def test_dora_adds_the_magnitude_and_two_saved_outputs(arch: Architecture) -> None:
    """DoRA: one magnitude value per output feature (trained: fp32 weight, gradient, two
    states), and per token the base output (bf16) and adapter output (fp32) of each target."""
    lora = _components(arch, LORA)
    dora = _components(arch, replace(LORA, method=Method.dora))
    outputs = sum(o for _, o in ATTENTION_DIMS)
    assert dora["adapters"] - lora["adapters"] == LAYERS * outputs * 4
    assert dora["optimizer"] - lora["optimizer"] == LAYERS * outputs * 2 * 4
    assert dora["activations"] - lora["activations"] == LAYERS * 2 * 2048 * outputs * (2 + 4)


def test_all_linear_adapts_each_types_own_layers() -> None:
    """GPT-2's c_attn is one linear (h -> 3h): one adapter, as PEFT's all-linear makes;
    Mixtral's experts are 3-D parameters PEFT skips: attention only."""
    gpt2 = architecture_from_hf_config(
        {
            "model_type": "gpt2",
            "n_layer": 2,
            "n_embd": 256,
            "n_head": 4,
            "vocab_size": 4096,
            "n_positions": 1024,
        }
    )
    workload = replace(LORA, lora_targets=LORA_TARGET_SETS["all-linear"], batch=1, seq=64)
    h, r = 256, RANK
    per_layer = r * (h + 3 * h) + r * (h + h) + r * (h + 4 * h) + r * (4 * h + h)
    assert _components(gpt2, workload)["adapters"] == 2 * per_layer * 4
    mixtral = architecture_from_hf_config(
        dict(LLAMA_8B, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2)
    )
    attention_only = replace(workload, lora_targets=LORA_TARGET_SETS["attention"])
    assert (
        _components(mixtral, workload)["adapters"]
        == (_components(mixtral, attention_only)["adapters"])
    )


# --- attention kernels ------------------------------------------------------------------------


def test_eager_attention_saves_the_scores(arch: Architecture) -> None:
    """eager: per layer and head, softmax's fp32 output and its bf16 cast (batch x seq^2), and
    keys and values expanded to every head by repeat_kv."""
    pretrain = Workload(stage=Stage.pretrain, batch=4, seq=2048)
    sdpa = _components(arch, pretrain)["activations"]
    eager = _components(arch, replace(pretrain, attention=Attention.eager))["activations"]
    scores = LAYERS * 4 * HEADS * 2048**2 * (4 + 2)
    # SDPA keeps its output and log-sum-exp; eager the expanded keys and values instead.
    per_token = 2 * (Q - KV) * 2 - (HEADS * 4)
    assert eager - sdpa == scores + LAYERS * 4 * 2048 * per_token


def test_flash_attention_takes_no_mask(arch: Architecture) -> None:
    """FlashAttention-2 takes the padding as sequence lengths: no additive mask per layer and
    no repeat_kv expansion, which SDPA needs for a padded fine-tuning batch."""
    sdpa = _components(arch, LORA)["activations"]
    flash = _components(arch, replace(LORA, attention=Attention.flash))["activations"]
    masks = LAYERS * 2 * 2048**2 * 2
    expansion = LAYERS * 2 * 2048 * 2 * (Q - KV) * 2
    assert sdpa - flash == masks + expansion


def test_attention_kernel_refused_for_other_engines() -> None:
    with pytest.raises(InvalidValueError) as error:
        Workload(
            stage=Stage.inference,
            attention=Attention.eager,
            serving=Serving(engine=Engine.vllm),
        )
    assert str(error.value) == "--attention picks a transformers kernel; --engine vllm has its own"


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("ready_catalog")
def test_estimate_json_names_the_options(run: Run) -> None:
    result = run(
        "estimate", "--model", "llama-2-7b", "--stage", "finetune", "--method", "dora",
        "--lora-dtype", "bf16", "--optimizer", "paged-adamw-8bit", "--attention", "flash",
        "--optimizer-in-backward", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    workload = json.loads(result.stdout)["workload"]
    assert workload["method"] == "dora"
    assert workload["lora_dtype"] == "bf16"
    assert workload["optimizer"] == "paged-adamw-8bit"
    assert workload["attention"] == "flash"
    assert workload["optimizer_in_backward"] is True
    assert workload["offload"] == "none"


@pytest.mark.usefixtures("ready_catalog")
def test_fit_and_which_models_json_carry_host_bytes(run: Run) -> None:
    """Each option's host RAM beside per_gpu_bytes: the offloaded states."""
    fit = run(
        "fit", "--model", "llama-2-7b", "--stage", "finetune", "--gpu", "rtx4090",
        "--offload", "optimizer", "--json",
    )  # fmt: skip
    assert fit.exit_code == 0, fit.stderr
    options = json.loads(fit.stdout)["options"]
    assert options and all(o["host_bytes"] > 0 for o in options if o["method"] == "full")
    models = run(
        "which-models", "--gpu", "rtx4090", "--stage", "finetune", "--offload", "optimizer",
        "--json",
    )  # fmt: skip
    assert models.exit_code == 0, models.stderr
    rows = json.loads(models.stdout)
    rows = rows["models"] if isinstance(rows, dict) else rows
    assert rows and all("host_bytes" in row for row in rows)


@pytest.mark.usefixtures("ready_catalog")
def test_cli_refuses_offload_with_ddp(run: Run) -> None:
    for command in ("estimate", "fit", "which-models"):
        model = ("--gpu", "rtx4090") if command == "which-models" else ("--model", "llama-2-7b")
        result = run(
            command, *model, "--stage", "finetune", "--parallel", "ddp", "--offload", "optimizer"
        )
        assert result.exit_code == 2, (command, result.stdout)
        assert result.stderr.strip().endswith(
            "--offload optimizer needs a ZeRO stage: DDP has no offload (DeepSpeed offloads "
            "under ZeRO 1-3, FSDP under full sharding)"
        ), (command, result.stderr)
