"""Training recipes (advisor/recipes.py, the `recipe` catalog table) and what would make a level
fit (advisor/suggest.py): the core, the catalog commands, and `--recipe` on the commands."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from advisor.arch import Architecture
from advisor.enums import Market, Vendor
from advisor.errors import InvalidValueError
from advisor.estimator import estimate
from advisor.fit import Card, plan
from advisor.policy import DEFAULT_RECIPES, NO_RECIPE, Level, Request, default_recipe, sequence
from advisor.recipes import RECIPE_OPTIONS, Recipe, apply
from advisor.suggest import SAVER_ORDER, cheapest_change
from advisor.workload import (
    ATTENTION_TARGETS,
    LORA_TARGET_SETS,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Parallel,
    Precision,
    Stage,
    TrainingOffload,
    WeightFormat,
    Workload,
)
from catalog import bundled

Run = Callable[..., Any]
RTX4090 = Card(
    slug="rtx4090",
    name="NVIDIA GeForce RTX 4090",
    vendor=Vendor.nvidia,
    market=Market.consumer,
    memory_bytes=24 * 2**30,
)


def _format(slug: str) -> WeightFormat:
    row = next(q for q in bundled.load().quants if q.slug == slug)
    return WeightFormat(
        slug=row.slug, bits_per_weight=row.bits_per_weight, scope=row.scope.value, kind=row.kind
    )


# bitsandbytes NF4 as the bundled catalog row describes it (QLoRA's base).
NF4 = _format("nf4")


def _arch(slug: str) -> Architecture:
    return next(m for m in bundled.load().models if m.slug == slug).architecture()


def _recipe(slug: str) -> Recipe:
    row = next(r for r in bundled.load().recipes if r.slug == slug)
    return Recipe(**{name: getattr(row, name) for name in Recipe.__dataclass_fields__})


# --- the core -------------------------------------------------------------------------------


def test_apply_fills_only_what_was_not_typed() -> None:
    """A recipe fills the untyped options, says which in order, and leaves typed ones alone."""
    unsloth = _recipe("unsloth")
    asked = Request(stage=Stage.finetune, checkpointing=Checkpointing.full, seq=4096)
    filled, applied = apply(asked, unsloth, frozenset({"checkpointing", "seq"}))
    assert (filled.method, filled.optimizer, filled.loss) == (
        Method.qlora,
        Optimizer.adamw_8bit,
        Loss.fused,
    )
    assert (filled.checkpointing, filled.seq, filled.batch) == (Checkpointing.full, 4096, 2)
    assert filled.lora_targets == LORA_TARGET_SETS["all-linear"]
    assert applied.filled == (
        ("--method", "qlora"),
        ("--precision", "bf16"),
        ("--optimizer", "adamw-8bit"),
        ("--loss", "fused"),
        ("--lora-targets", "all-linear"),
        ("--lora-rank", "16"),
        ("--batch", "2"),
    )
    assert applied.as_json()["lora_targets"] == "all-linear"


def test_recipe_method_is_for_fine_tuning_and_inference_takes_none() -> None:
    """Pretraining keeps method full whatever the recipe says; inference refuses a recipe."""
    filled, applied = apply(Request(stage=Stage.pretrain), _recipe("unsloth"), frozenset())
    assert filled.method is None and ("--method", "qlora") not in applied.filled
    with pytest.raises(InvalidValueError) as error:
        apply(Request(stage=Stage.inference), _recipe("unsloth"), frozenset())
    assert str(error.value) == "--recipe unsloth: recipes configure training; inference takes none"


def test_torchtitan_parallel_text_becomes_the_strategy() -> None:
    """A recipe's `--parallel` text fills the strategy and the degrees, as the option does."""
    filled, _ = apply(Request(stage=Stage.pretrain), _recipe("torchtitan"), frozenset())
    assert (filled.parallel, filled.tensor_parallel, filled.recipe_seq) == (Parallel.zero3, 1, 8192)
    assert filled.seq is None  # the recipe's sequence stops at each model's maximum
    assert (filled.precision, filled.checkpointing) == (
        Precision.mixed_bf16,
        Checkpointing.selective,
    )


def test_every_stage_default_is_a_bundled_recipe() -> None:
    """The default of each training stage ships with the advisor; inference has none."""
    slugs = {r.slug for r in bundled.load().recipes}
    assert set(DEFAULT_RECIPES.values()) <= slugs
    assert default_recipe(Stage.inference) is None
    assert NO_RECIPE not in slugs
    common = _recipe("common-finetune")
    assert (common.checkpointing, common.optimizer) == (Checkpointing.full, Optimizer.adamw_8bit)


def test_every_bundled_recipe_names_its_framework_source_and_an_option() -> None:
    """Each bundled row says where its defaults come from (a file at a commit) and sets at
    least one option, each a value the options take."""
    for row in bundled.load().recipes:
        recipe = _recipe(row.slug)
        assert "@" in recipe.source, recipe.slug
        assert recipe.options(), recipe.slug
        assert set(recipe.options()) <= set(RECIPE_OPTIONS)


def test_bad_recipe_values_are_refused_by_option() -> None:
    """A recipe holds only what the options would take: the option is named."""
    with pytest.raises(InvalidValueError) as error:
        Recipe(slug="x", name="x", framework="x", description="x", source="x", parallel="zero9")
    assert str(error.value).startswith("--parallel: unknown strategy 'zero9'")
    with pytest.raises(InvalidValueError) as error:
        Recipe(slug="x", name="x", framework="x", description="x", source="x", lora_rank=0)
    assert str(error.value) == "--lora-rank must be at least 1, got 0"


# Bytes of each bundled recipe for Llama-3.1-8B fine-tuning (QLoRA on the NF4 base where the
# recipe names no method) on one CUDA card, as `apply` fills it and `policy.workload` builds it
# (every option the recipe sets reaches the estimator). Regression pins: copied from the
# estimator's output; the mechanisms are checked by their own tests.
SIZED_RECIPES = {
    "common-finetune": 12_255_250_842,
    "hf-trainer": 133_844_328_858,
    "trl-sft": 15_735_105_536,
    "unsloth": 8_902_957_876,
    "axolotl": 25_771_865_293,
    "torchtune": 11_825_420_288,
    "llama-factory": 22_996_206_388,
}


def _recipe_workload(slug: str) -> tuple[Architecture, Workload]:
    from advisor.policy import workload

    arch = _arch("llama-3.1-8b")
    request, _ = apply(Request(stage=Stage.finetune), _recipe(slug), frozenset())
    method = request.method or Method.qlora
    return arch, workload(
        arch, request, method=method, weight_format=NF4 if method is Method.qlora else None
    )


@pytest.mark.parametrize("slug", sorted(SIZED_RECIPES))
def test_recipe_fills_a_workload_the_estimator_sizes(slug: str) -> None:
    """Each bundled fine-tuning recipe gives a valid workload of exactly these bytes."""
    arch, work = _recipe_workload(slug)
    assert estimate(arch, work).per_gpu_bytes == SIZED_RECIPES[slug]


def test_axolotl_fills_its_options() -> None:
    """axolotl's QLoRA example: what it fills (paged AdamW, flash attention, r32 on every
    linear layer, 2 x 4096)."""
    request, applied = apply(Request(stage=Stage.finetune), _recipe("axolotl"), frozenset())
    assert (request.method, request.optimizer, request.lora_rank) == (
        Method.qlora,
        Optimizer.paged_adamw_32bit,
        32,
    )
    assert (request.batch, request.recipe_seq, request.checkpointing) == (
        2,
        4096,
        Checkpointing.full,
    )
    assert ("--attention", "flash") in applied.filled


# --- suggestions ----------------------------------------------------------------------------


def _qlora(**changes: Any) -> Workload:
    """QLoRA at the plain defaults with PEFT's fp32 adapters (the issue's setting; the QLoRA
    recipe's bf16 adapters fit the card as they are)."""
    base = Workload(
        stage=Stage.finetune, method=Method.qlora, weight_format=NF4, lora_dtype=LoraDtype.fp32
    )
    return dataclasses.replace(base, **changes)


def test_the_issue_example_qlora_on_a_4090() -> None:
    """Llama-3.1-8B QLoRA at the plain defaults misses a 24 GiB card: it fits at --seq 1912
    (not 1913), or with --checkpointing full, the first saver in the order."""
    arch = _arch("llama-3.1-8b")
    level = Level(label="qlora", workload=_qlora(), quant="nf4")
    (option,) = plan(arch, [level], [RTX4090], count=1).options
    assert not option.fits
    seq, change = option.suggestions
    assert seq.change == (("seq", "1912"),) and seq.fits
    assert seq.per_gpu_bytes == estimate(arch, _qlora(seq=1912)).per_gpu_bytes <= 24 * 2**30
    assert estimate(arch, _qlora(seq=1913)).per_gpu_bytes > 24 * 2**30
    assert change.change == (("checkpointing", "full"),) and change.fits
    full = _qlora(checkpointing=Checkpointing.full)
    assert change.per_gpu_bytes == estimate(arch, full).per_gpu_bytes == 12_369_308_058
    assert change.as_json() == {
        "change": {"checkpointing": "full"},
        "per_gpu_bytes": 12_369_308_058,
        "host_bytes": 0,
        "fits": True,
    }


def test_savers_accumulate_in_order_then_more_cards() -> None:
    """Full fine-tuning of an 8B model on a 24 GiB card takes every saver and two more cards;
    each step's need is the estimator's for the options so far."""
    arch = _arch("llama-3.1-8b")
    workload = Workload(stage=Stage.finetune, method=Method.full)

    def size(w: Workload) -> Any:
        return estimate(arch, w)

    found = cheapest_change(size, workload, 24 * 2**30, more_cards=range(2, 9))
    assert found is not None and found.fits
    options = [name for name, _ in found.change]
    assert options == [s.option for s in SAVER_ORDER] + ["count"]
    assert found.change[-1] == ("count", "3")
    final = Workload(
        stage=Stage.finetune,
        method=Method.full,
        checkpointing=Checkpointing.full,
        loss=Loss.fused,
        optimizer=Optimizer.adamw_8bit,
        offload=TrainingOffload.optimizer,
        gpus=3,
    )
    assert found.per_gpu_bytes == estimate(arch, final).per_gpu_bytes
    assert found.host_bytes == estimate(arch, final).host_bytes > 0
    alone = cheapest_change(size, workload, 24 * 2**30)
    assert alone is not None and not alone.fits and "count" not in dict(alone.change)


def test_no_saver_for_inference() -> None:
    """Inference gets the sequence suggestion only (its savers are the engine's)."""
    arch = _arch("llama-3.1-8b")
    w = Workload(stage=Stage.inference, seq=8192)
    assert cheapest_change(lambda x: estimate(arch, x), w, 2**30) is None


# --- the commands ---------------------------------------------------------------------------


@pytest.mark.usefixtures("ready_catalog")
def test_readme_question_says_which_methods_fit_and_how(run: Run) -> None:
    """`fit --stage finetune --gpu rtx4090 --count 1` on Llama-3.1-8B: the default recipe is
    named with what it filled; LoRA and QLoRA fit; full says what would make it fit."""
    args = ("fit", "--model", "llama-3.1-8b", "--stage", "finetune", "--gpu", "rtx4090")
    shown = run(*args, "--count", "1")
    assert shown.exit_code == 0, shown.stderr
    said = " ".join(shown.stdout.split())  # the lines as words, whatever the terminal's width
    assert (
        "recipe common-finetune (the default; --recipe none for none) fills "
        "--optimizer adamw-8bit, --checkpointing full, --loss unfused"
    ) in said
    assert "full — fits with --loss fused --offload optimizer --count 3 (" in said
    data = json.loads(run(*args, "--count", "1", "--json").stdout)
    assert data["workload"]["recipe"] == "common-finetune"
    assert data["workload"]["recipe_filled"] == {
        "optimizer": "adamw-8bit",
        "checkpointing": "full",
        "loss": "unfused",
    }
    fits = {o["method"]: o["fits"] for o in data["options"]}
    assert fits == {"full": False, "lora": True, "qlora": True}
    (full,) = [o for o in data["options"] if o["method"] == "full"]
    (change,) = full["suggestions"]
    assert change["change"] == {"loss": "fused", "offload": "optimizer", "count": 3}
    assert change["fits"] is True and change["host_bytes"] > 0
    assert change["per_gpu_bytes"] <= full["capacity_bytes"]


@pytest.mark.usefixtures("ready_catalog")
def test_explicit_flags_win_over_the_recipe(run: Run) -> None:
    """A typed option is never filled; an alias typed (--grad-checkpointing) counts too."""
    base = ("estimate", "--model", "llama-3.1-8b", "--stage", "finetune", "--json")
    typed = json.loads(run(*base, "--checkpointing", "none", "--optimizer", "adamw").stdout)
    assert typed["workload"]["recipe_filled"] == {"loss": "unfused"}
    assert (typed["workload"]["checkpointing"], typed["workload"]["optimizer"]) == (
        "none",
        "adamw",
    )
    plain = json.loads(run(*base, "--recipe", "none").stdout)
    assert plain["workload"]["recipe"] is None and plain["workload"]["recipe_filled"] == {}
    assert typed["per_gpu_bytes"] == plain["per_gpu_bytes"]
    alias = json.loads(run(*base, "--grad-checkpointing", "--recipe", "hf-trainer").stdout)
    assert alias["workload"]["checkpointing"] == "full"
    assert "checkpointing" not in alias["workload"]["recipe_filled"]
    assert alias["workload"]["batch"] == 8


@pytest.mark.usefixtures("ready_catalog")
def test_pretraining_defaults_to_torchtitan(run: Run) -> None:
    """Pretraining fills torchtitan's options (its method is pretraining's own, full, so it
    is not listed); the header names them."""
    args = ("estimate", "--model", "qwen2.5-0.5b", "--stage", "pretrain")
    data = json.loads(run(*args, "--json").stdout)["workload"]
    assert data["recipe"] == "torchtitan"
    assert (data["precision"], data["checkpointing"], data["seq"]) == (
        "mixed-bf16",
        "selective",
        8192,
    )
    said = " ".join(run(*args).stdout.split())
    assert (
        "recipe torchtitan (the default; --recipe none for none) fills "
        "--precision mixed-bf16, --optimizer adamw, --checkpointing selective, --loss unfused, "
        "--parallel zero3, --batch 1, --seq 8192"
    ) in said


def test_a_recipe_sequence_stops_at_the_model_maximum(run: Run) -> None:
    """torchtitan's 8,192-token sequence is its own model's: a 2,048-token model is sized at
    2,048 instead of refused, the header says the recipe's figure is a ceiling, the JSON keeps
    what the recipe set; a typed --seq beyond the maximum is still refused."""
    args = ("fit", "--model", "bloom-560m", "--stage", "pretrain", "--gpu", "h100-sxm5-80gb")
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["workload"]["seq"] == 2048
    assert data["workload"]["recipe_filled"]["seq"] == "8192"
    said = " ".join(run(*args).stdout.split())
    assert "--seq 8192 (at most the model's maximum)" in said
    assert "batch 1 x 2,048 tokens" in said
    typed = run(*args, "--seq", "8192")
    assert (typed.exit_code, typed.stderr) == (
        2,
        "error: a training sequence of 8,192 tokens exceeds the model's maximum of 2,048; "
        "pass --allow-longer-context to size it anyway\n",
    )
    longer = json.loads(run("fit", "--model", "llama-3.1-8b", *args[3:], "--json").stdout)
    assert longer["workload"]["seq"] == 8192  # within Llama 3.1's 131,072


def test_sequence_prefers_typed_then_recipe_capped_then_default() -> None:
    """policy.sequence: the typed sequence as it is, the recipe's up to the maximum, else the
    stage's default."""
    arch = _arch("bloom-560m")
    assert arch.max_position_embeddings == 2048
    train = Request(stage=Stage.pretrain)
    assert sequence(arch, train) == 2048
    assert sequence(arch, train._replace(recipe_seq=8192)) == 2048
    assert sequence(arch, train._replace(recipe_seq=1024)) == 1024
    assert sequence(arch, train._replace(recipe_seq=1024, seq=4096)) == 4096


@pytest.mark.usefixtures("ready_catalog")
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ("--stage", "finetune", "--recipe", "unslot"),
            1,
            "error: unknown recipe 'unslot'; did you mean 'unsloth'?\n",
        ),
        (
            ("--recipe", "unsloth"),
            2,
            "error: --recipe unsloth: recipes configure training; inference takes none\n",
        ),
        (
            ("--stage", "finetune", "--recipe", "torchtitan", "--lora-dtype", "bf16"),
            2,
            "error: --lora-dtype applies to lora, qlora and dora, not --method full "
            "(--recipe torchtitan sets --method full)\n",
        ),
    ],
)
def test_recipe_refusals_are_one_line(
    run: Run, args: tuple[str, ...], code: int, message: str
) -> None:
    """An unknown recipe (did you mean), a recipe for inference, a recipe's option that conflicts
    with a typed one (the recipe named): one line on stderr, nothing on stdout, the exit code of
    the error."""
    for command in ("estimate", "fit"):
        result = run(command, "--model", "llama-3.1-8b", *args)
        assert (result.exit_code, result.stdout, result.stderr) == (code, "", message), command


@pytest.mark.usefixtures("ready_catalog")
def test_catalog_recipe_commands(run: Run) -> None:
    """List, show, add, use, update, remove a team's recipe; a removed bundled recipe stays
    removed after sync, and its absence as a default is said, not fatal."""
    listed = json.loads(run("catalog", "recipes", "--json").stdout)
    assert [r["slug"] for r in listed] == sorted(r.slug for r in bundled.load().recipes)
    shown = json.loads(run("catalog", "show", "recipe", "TorchTitan", "--json").stdout)
    assert (shown["slug"], shown["parallel"], shown["checkpointing"]) == (
        "torchtitan",
        "zero3",
        "selective",
    )
    added = run(
        "catalog", "add", "recipe", "--slug", "our-lora", "--framework", "peft",
        "--description", "our LoRA", "--source", "team wiki", "--method", "lora",
        "--checkpointing", "full", "--lora-targets", "q_proj,v_proj", "--seq", "1024",
    )  # fmt: skip
    assert (added.exit_code, added.stderr) == (0, "advisor: added recipe 'our-lora'\n")
    used = json.loads(
        run(
            "estimate", "--model", "llama-2-7b", "--stage", "finetune", "--recipe", "our-lora",
            "--json",
        ).stdout
    )["workload"]  # fmt: skip
    assert (used["method"], used["lora_targets"], used["seq"]) == (
        "lora",
        ["q_proj", "v_proj"],
        1024,
    )
    bad = run("catalog", "update", "recipe", "our-lora", "--lora-targets", "wq")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --lora-targets 'wq': give")
    assert run("catalog", "update", "recipe", "our-lora", "--clear", "seq").exit_code == 0
    cleared = json.loads(run("catalog", "show", "recipe", "our-lora", "--json").stdout)
    assert cleared["seq"] is None
    assert run("catalog", "remove", "recipe", "our-lora", "--yes").exit_code == 0
    assert run("catalog", "remove", "recipe", "common-finetune", "--yes").exit_code == 0
    run("catalog", "sync")
    gone = run("catalog", "show", "recipe", "common-finetune")
    assert gone.exit_code == 1
    fallback = run("estimate", "--model", "llama-2-7b", "--stage", "finetune", "--json")
    assert fallback.exit_code == 0
    assert "the default recipe 'common-finetune' is not in the catalog" in fallback.stderr
    assert json.loads(fallback.stdout)["workload"]["recipe"] is None


def test_attention_targets_are_the_default_without_a_recipe() -> None:
    """A recipe that leaves LoRA targets alone keeps PEFT's default (attention)."""
    request, _ = apply(Request(stage=Stage.finetune), _recipe("common-finetune"), frozenset())
    assert request.lora_targets == ATTENTION_TARGETS


@pytest.mark.usefixtures("ready_catalog")
def test_which_models_says_what_would_make_a_fine_tune_fit(run: Run) -> None:
    """A model no method fits carries its closest level's suggestions; one that fits none."""
    result = run(
        "which-models", "--gpu", "rtx4090", "--stage", "finetune", "--family", "llama-3",
        "--all", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["recipe"], data["recipe_filled"]["checkpointing"]) == ("common-finetune", "full")
    models = {m["model"]: m for m in data["models"]}
    assert models["llama-3-8b"]["fits"] and models["llama-3-8b"]["suggestions"] == []
    big = models["llama-3-70b"]
    assert not big["fits"] and big["suggestions"]
    last = big["suggestions"][-1]
    assert set(last["change"]) <= {"seq", "loss", "offload", "count"}
    assert last["fits"] is (last["per_gpu_bytes"] <= 24 * 2**30)
