"""The policy (`advisor.policy`): what `fit` and `which-models` compare unless told, and how a
request becomes their levels. Pure: no catalog, no CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from advisor.arch import Architecture, architecture_from_hf_config
from advisor.errors import InvalidValueError
from advisor.policy import (
    COMPARED_METHODS,
    DEFAULT_QLORA_QUANT,
    FIT_QUANTS,
    WHICH_MODELS_LADDER,
    Request,
    build_levels,
    default_seq,
    formats_to_look_up,
    levels_asked,
    workload,
)
from advisor.workload import (
    DEFAULT_LORA_RANK,
    LORA_TARGET_SETS,
    Method,
    Precision,
    Stage,
    WeightFormat,
    Workload,
)

CONFIGS = Path(__file__).parent / "data" / "configs"
NF4 = WeightFormat(slug="nf4", bits_per_weight=4.5, scope="linear")
INT4 = WeightFormat(slug="int4", bits_per_weight=4.156, scope="linear")
FORMATS = {
    "nf4": NF4,
    "int4": INT4,
    "int8": WeightFormat(slug="int8", bits_per_weight=8, scope="linear"),
    "q4_k_m": WeightFormat(slug="q4_k_m", bits_per_weight=4.9, scope="all"),
}


@pytest.fixture(scope="module")
def llama() -> Architecture:
    config = json.loads((CONFIGS / "llama-2-7b.json").read_text(encoding="utf-8"))
    return architecture_from_hf_config(config)


def test_fit_compares_16_bit_then_its_quantizations() -> None:
    request = Request(stage=Stage.inference)
    assert levels_asked(request, FIT_QUANTS) == ("bf16", "int8", "int4", "q4_k_m")
    fp16 = Request(stage=Stage.inference, precision=Precision.fp16)
    assert levels_asked(fp16, FIT_QUANTS)[0] == "fp16"
    mixed = Request(stage=Stage.inference, precision=Precision.mixed_bf16)
    assert levels_asked(mixed, FIT_QUANTS)[0] == "bf16"  # not a whole-model dtype
    assert formats_to_look_up(levels_asked(request, FIT_QUANTS)) == FIT_QUANTS


def test_which_models_climbs_the_k_quant_ladder() -> None:
    asked = levels_asked(Request(stage=Stage.inference), WHICH_MODELS_LADDER)
    assert asked == ("bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k")


def test_levels_asked_keep_their_order_without_duplicates() -> None:
    request = Request(stage=Stage.inference, quants=("int4", "bf16", "int4"))
    assert levels_asked(request, FIT_QUANTS) == ("int4", "bf16")


def test_fine_tuning_needs_only_the_qlora_base() -> None:
    assert levels_asked(Request(stage=Stage.finetune), FIT_QUANTS) == (DEFAULT_QLORA_QUANT,)
    lora = Request(stage=Stage.finetune, method=Method.lora)
    assert levels_asked(lora, FIT_QUANTS) == ()
    assert levels_asked(Request(stage=Stage.pretrain), FIT_QUANTS) == ()


def test_inference_levels(llama: Architecture) -> None:
    levels = build_levels(llama, Request(stage=Stage.inference), FORMATS)
    assert [lv.label for lv in levels] == ["bf16", "int8", "int4", "q4_k_m"]
    assert levels[0].workload.weight_format is None
    assert levels[0].workload.precision is Precision.bf16
    assert levels[2].workload.weight_format is INT4
    assert all(lv.workload.seq == 4096 for lv in levels)  # min(4096, the model's 4096)


def test_fine_tuning_compares_the_methods(llama: Architecture) -> None:
    levels = build_levels(llama, Request(stage=Stage.finetune), FORMATS)
    assert tuple(lv.method for lv in levels) == COMPARED_METHODS
    assert [lv.workload.weight_format for lv in levels] == [None, None, NF4]
    assert [lv.quant for lv in levels] == [None, None, "nf4"]
    assert all(lv.workload.seq == 2048 and lv.workload.batch == 1 for lv in levels)
    assert all(lv.workload.lora_rank == DEFAULT_LORA_RANK for lv in levels)


def test_pretraining_is_one_level(llama: Architecture) -> None:
    (level,) = build_levels(llama, Request(stage=Stage.pretrain), FORMATS)
    assert level.label == "bf16" and level.method is Method.full and level.quant is None


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            Request(stage=Stage.inference, method=Method.lora),
            "--method lora is a fine-tuning method; inference has none",
        ),
        (
            Request(stage=Stage.pretrain, method=Method.lora),
            "pretraining trains every weight: --method must be full",
        ),
        (
            Request(stage=Stage.pretrain, quants=("int4",)),
            "--quant applies to inference and to the QLoRA base; use --precision for training",
        ),
        (
            Request(stage=Stage.finetune, method=Method.full, quants=("nf4",)),
            "--quant applies to inference and to the QLoRA base; use --precision for training",
        ),
        (
            Request(stage=Stage.finetune, quants=("nf4", "int4")),
            "training compares methods, not formats: give one --quant (the QLoRA base)",
        ),
        (
            Request(stage=Stage.finetune, trainable_layers=2),
            "--trainable-layers applies to --method freeze",
        ),
    ],
)
def test_what_a_workload_cannot_be_is_refused(
    llama: Architecture, request_: Request, message: str
) -> None:
    """The checks are the workload's own: the same message as every other command gives."""
    with pytest.raises(InvalidValueError) as error:
        build_levels(llama, request_, FORMATS)
    assert str(error.value) == message


def test_one_workload_fills_the_model_dependent_defaults(llama: Architecture) -> None:
    w = workload(llama, Request(stage=Stage.inference), weight_format=INT4)
    assert w == Workload(stage=Stage.inference, seq=4096, weight_format=INT4)
    assert default_seq(llama, Stage.finetune) == 2048


def test_lora_target_sets_are_peft_names() -> None:
    assert LORA_TARGET_SETS["attention"] == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert LORA_TARGET_SETS["all-linear"] == ("all-linear",)


def test_the_policy_loads_no_estimator() -> None:
    """The CLI reads these defaults at start-up: importing them must stay light."""
    import subprocess

    code = (
        "import sys, advisor.policy; "
        "print(sorted(m for m in ('advisor.estimator', 'advisor.arch', 'sqlmodel') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
