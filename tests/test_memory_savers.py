"""Training memory savers: checkpointing policies and loss implementations, in exact bytes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from advisor.arch import Architecture, architecture_from_hf_config
from advisor.errors import InvalidValueError
from advisor.estimator import (
    START_OF_BACKWARD,
    RuntimeOverhead,
    estimate,
    fused_loss_chunk_tokens,
)
from advisor.policy import checkpointing_asked
from advisor.workload import Checkpointing, Loss, Method, Stage, Workload

Run = Callable[..., Any]
NO_OVERHEAD = RuntimeOverhead(context_bytes=0, allocator_reserve_fraction=0)
# Llama-3.1-8B's shape (meta-llama/Llama-3.1-8B config.json).
LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 32, 4096, 32, 8, 128, 14336, 128256
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
TOKENS = 2 * 2048
# The LoRA fine-tune of the example: Llama-3.1-8B, 2 x 2048 tokens, bf16.
LORA = Workload(stage=Stage.finetune, method=Method.lora, batch=2, seq=2048)


@pytest.fixture(scope="module")
def arch() -> Architecture:
    return architecture_from_hf_config(LLAMA_8B)


def _at_start(arch: Architecture, workload: Workload) -> dict[str, int]:
    result = estimate(arch, workload, overhead=NO_OVERHEAD)
    assert result.peak_moment == START_OF_BACKWARD
    return result.components


def test_selective_keeps_every_other_matmul_and_the_attention_output(arch: Architecture) -> None:
    """torchtitan's op policy on a full fine-tune: per layer, the input plus q, v, gate, down
    (the 1st, 3rd, 5th and 7th products) and SDPA's output with its fp32 log-sum-exp, bf16."""
    base = Workload(stage=Stage.finetune, batch=8, seq=2048)
    full = _at_start(arch, replace(base, checkpointing=Checkpointing.full))
    selective = _at_start(arch, replace(base, checkpointing=Checkpointing.selective))
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    per_token = (q + kv + FFN + HIDDEN) * 2 + q * 2 + HEADS * 4
    assert selective["activations"] - full["activations"] == LAYERS * 8 * 2048 * per_token
    none = _at_start(arch, base)
    assert full["activations"] < selective["activations"] < none["activations"]


def test_selective_counts_lora_products_in_the_alternation(arch: Architecture) -> None:
    """PEFT runs base, A, B for each adapted projection: the odd products become q, q's B
    (fp32), k's A, v, v's B, o's A (rank 16, fp32), gate and down."""
    full = _at_start(arch, replace(LORA, checkpointing=Checkpointing.full))
    selective = _at_start(arch, replace(LORA, checkpointing=Checkpointing.selective))
    q, kv, rank = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, 16
    products = q * 2 + q * 4 + rank * 4 + kv * 2 + kv * 4 + rank * 4 + FFN * 2 + HIDDEN * 2
    per_token = products + q * 2 + HEADS * 4
    assert selective["activations"] - full["activations"] == LAYERS * TOKENS * per_token


def test_offload_keeps_one_layer_input_on_the_gpu_and_the_rest_on_the_host(
    arch: Architecture,
) -> None:
    """Unsloth's offloaded checkpointing: the GPU holds one layer input (bf16), the host every
    layer's."""
    full = estimate(arch, replace(LORA, checkpointing=Checkpointing.full), overhead=NO_OVERHEAD)
    offload = estimate(
        arch, replace(LORA, checkpointing=Checkpointing.offload), overhead=NO_OVERHEAD
    )
    layer_input = TOKENS * HIDDEN * 2
    assert full.components["activations"] - offload.components["activations"] == (
        (LAYERS - 1) * layer_input
    )
    assert offload.host_bytes == LAYERS * layer_input == 1_073_741_824
    assert full.host_bytes == 0


def test_offloaded_optimizer_states_are_host_bytes(arch: Architecture) -> None:
    """--offload-optimizer: the AdamW states leave the GPU and are reported as host memory."""
    on_gpu = estimate(arch, LORA, overhead=NO_OVERHEAD)
    offloaded = estimate(arch, replace(LORA, offload_optimizer=True), overhead=NO_OVERHEAD)
    assert offloaded.components["optimizer"] == 0
    # two fp32 states of rank-16 adapters on q, k, v, o: 32 layers x 16 x 26624
    assert offloaded.host_bytes == on_gpu.components["optimizer"] == 2 * 4 * 13_631_488


def test_grad_checkpointing_is_full_checkpointing() -> None:
    """The older flag and `checkpointing=full` make the same workload."""
    older = Workload(stage=Stage.finetune, grad_checkpointing=True)
    assert older == Workload(stage=Stage.finetune, checkpointing=Checkpointing.full)
    assert replace(older, checkpointing=Checkpointing.none).checkpointing is Checkpointing.none
    assert checkpointing_asked(None, True) is Checkpointing.full
    assert checkpointing_asked(None, False) is Checkpointing.none
    assert checkpointing_asked(Checkpointing.offload, False) is Checkpointing.offload


def test_grad_checkpointing_conflicts_with_another_policy() -> None:
    with pytest.raises(InvalidValueError) as error:
        checkpointing_asked(Checkpointing.selective, True)
    assert str(error.value) == (
        "--grad-checkpointing means --checkpointing full; it conflicts with "
        "--checkpointing selective"
    )
    with pytest.raises(InvalidValueError) as error:
        Workload(stage=Stage.finetune, checkpointing=Checkpointing.offload, grad_checkpointing=True)
    assert "conflicts with --checkpointing offload" in str(error.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"checkpointing": Checkpointing.full}, "--checkpointing full applies to training only"),
        ({"loss": Loss.fused}, "--loss fused applies to training only"),
    ],
)
def test_savers_refused_for_inference(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidValueError) as error:
        Workload(stage=Stage.inference, **change)
    assert str(error.value) == message


def test_unfused_loss_is_fourteen_bytes_per_logit(arch: Architecture) -> None:
    """bf16 logits held, fp32 log-softmax saved, two fp32 gradients at the start of backward."""
    logits = _at_start(arch, LORA)["logits"]
    assert logits == TOKENS * VOCAB * (2 + 4 + 8) == 7_354_712_064  # issue 11's 6.85 GiB


def test_chunked_loss_holds_one_chunk_of_gradients(arch: Architecture) -> None:
    """torchtune's 8 chunks: the logits freed before backward, every chunk's fp32
    log-softmax saved, one chunk's two fp32 gradients (LoRA: the head does not train)."""
    logits = _at_start(arch, replace(LORA, loss=Loss.chunked))["logits"]
    assert logits == TOKENS * VOCAB * 4 + 2 * (TOKENS // 8) * VOCAB * 4


def test_chunked_loss_sums_a_trained_heads_gradients(arch: Architecture) -> None:
    """Full fine-tune: the second chunk's head gradient is made beside the first's (bf16),
    once two chunks' log-softmax are freed."""
    workload = Workload(stage=Stage.finetune, batch=4, seq=8192, loss=Loss.chunked)
    tokens = 4 * 8192
    one = (tokens // 8) * VOCAB * 4
    head = VOCAB * HIDDEN * 2
    logits = _at_start(arch, workload)["logits"]
    assert logits == tokens * VOCAB * 4 + max(2 * one + head, 2 * head)


def test_fused_loss_never_holds_the_logits(arch: Architecture) -> None:
    """Liger: the hidden states' gradient (bf16) and one chunk of logits; LoRA trains no head."""
    chunk = fused_loss_chunk_tokens(TOKENS, HIDDEN, VOCAB)
    assert chunk == 128  # next power of two of 4096 / ceil(128256 / 4096) = 128
    logits = _at_start(arch, replace(LORA, loss=Loss.fused))["logits"]
    assert logits == TOKENS * HIDDEN * 2 + chunk * VOCAB * 2


def test_fused_loss_computes_the_head_gradient_in_forward(arch: Architecture) -> None:
    """A full fine-tune's head gradient (bf16) exists from the loss's forward on."""
    workload = Workload(stage=Stage.finetune, batch=4, seq=8192, loss=Loss.fused)
    tokens = 4 * 8192
    chunk = fused_loss_chunk_tokens(tokens, HIDDEN, VOCAB)
    assert chunk == 1024
    logits = _at_start(arch, workload)["logits"]
    assert logits == tokens * HIDDEN * 2 + chunk * VOCAB * 2 + VOCAB * HIDDEN * 2


@pytest.mark.parametrize(
    ("tokens", "hidden", "vocab", "chunk"),
    [(1, 64, 4096, 1), (4096, 4096, 128256, 128), (3000, 4096, 32000, 512), (8, 4096, 4096, 8)],
)
def test_fused_chunk_sizes(tokens: int, hidden: int, vocab: int, chunk: int) -> None:
    assert fused_loss_chunk_tokens(tokens, hidden, vocab) == chunk


@pytest.mark.usefixtures("ready_catalog")
def test_cli_reports_host_bytes_and_the_savers(run: Run) -> None:
    """`estimate --json` carries host_bytes beside per_gpu_bytes and the options in force."""
    result = run(
        "estimate",
        "--model",
        "llama-2-7b",
        "--stage",
        "finetune",
        "--method",
        "lora",
        "--checkpointing",
        "offload",
        "--loss",
        "chunked",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    # 32 layers x 2048 tokens x 4096 hidden x 2 bytes
    assert data["host_bytes"] == 536_870_912
    assert data["workload"]["checkpointing"] == "offload"
    assert data["workload"]["loss"] == "chunked"


@pytest.mark.usefixtures("ready_catalog")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--stage", "finetune", "--grad-checkpointing", "--checkpointing", "selective"),
            "--grad-checkpointing means --checkpointing full; it conflicts with "
            "--checkpointing selective",
        ),
        (("--loss", "fused"), "--loss fused applies to training only"),
    ],
)
def test_cli_refuses_conflicts(run: Run, args: tuple[str, ...], message: str) -> None:
    for command in ("estimate", "fit", "which-models"):
        model = ("--gpu", "rtx4090") if command == "which-models" else ("--model", "llama-2-7b")
        result = run(command, *model, *args)
        assert result.exit_code == 2, (command, result.stdout)
        assert result.stderr.strip().endswith(message), (command, result.stderr)
