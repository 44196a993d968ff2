"""Training recipes: the options a framework sets by default, filled in where the user typed none.

Pure: no CLI, rendering or database imports. A `Recipe` is one catalog row (catalog/tables.py
`RecipeFields`, bundled in catalog/data/recipes.json, each with the file and commit of the
framework it was read from); every option is optional, None meaning "the recipe leaves it to
the user (or to the advisor's own default)". `apply` fills a `Request`'s options the user did
not type and says which it filled; an option the user typed always wins.

Which recipe `fit`, `which-models` and `estimate` use when none is asked is policy:
`advisor.policy.default_recipe` (docs/estimates.md, "Recipes", says why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from advisor.errors import InvalidValueError
from advisor.policy import Request
from advisor.workload import (
    LORA_TARGET_CHOICES,
    LORA_TARGET_SETS,
    MAX_BATCH,
    MAX_LORA_RANK,
    MAX_SEQ,
    Attention,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Precision,
    Stage,
    TrainingOffload,
    check_count,
    parse_parallel,
)

# The option a recipe column fills, as the user would type it: column name → CLI flag. The
# order is the order the header lists what a recipe filled.
RECIPE_OPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "method": "--method",
        "precision": "--precision",
        "optimizer": "--optimizer",
        "optimizer_in_backward": "--optimizer-in-backward",
        "checkpointing": "--checkpointing",
        "loss": "--loss",
        "offload": "--offload",
        "lora_dtype": "--lora-dtype",
        "lora_targets": "--lora-targets",
        "lora_rank": "--lora-rank",
        "attention": "--attention",
        "parallel": "--parallel",
        "batch": "--batch",
        "seq": "--seq",
    }
)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """A framework's training defaults. Every option None: left to the user."""

    slug: str
    name: str
    framework: str
    description: str
    source: str
    method: Method | None = None
    precision: Precision | None = None
    optimizer: Optimizer | None = None
    optimizer_in_backward: bool | None = None
    checkpointing: Checkpointing | None = None
    loss: Loss | None = None
    offload: TrainingOffload | None = None
    lora_dtype: LoraDtype | None = None
    lora_targets: str | None = None  # attention, all-linear, or a comma list of projections
    lora_rank: int | None = None
    attention: Attention | None = None
    parallel: str | None = None  # as `--parallel` takes it: zero3, or zero3,tp:8
    batch: int | None = None
    seq: int | None = None

    def __post_init__(self) -> None:
        check_recipe_values(
            lora_targets=self.lora_targets,
            lora_rank=self.lora_rank,
            parallel=self.parallel,
            batch=self.batch,
            seq=self.seq,
        )

    def options(self) -> dict[str, Any]:
        """The options this recipe sets, by column name, in RECIPE_OPTIONS order."""
        return {
            name: getattr(self, name) for name in RECIPE_OPTIONS if getattr(self, name) is not None
        }


def check_recipe_values(
    *,
    lora_targets: str | None,
    lora_rank: int | None,
    parallel: str | None,
    batch: int | None,
    seq: int | None,
) -> None:
    """The recipe's free-form values as the options would take them (InvalidValueError
    naming the option otherwise): the catalog validates rows with this too."""
    if lora_targets is not None:
        lora_target_names(lora_targets)
    for flag, value, high in (
        ("--lora-rank", lora_rank, MAX_LORA_RANK),
        ("--batch", batch, MAX_BATCH),
        ("--seq", seq, MAX_SEQ),
    ):
        if value is not None:
            check_count(flag, value, high)
    if parallel is not None:
        parse_parallel(parallel)


def lora_target_names(text: str) -> tuple[str, ...]:
    """A named set of LoRA targets (attention, all-linear) or the projections of a comma
    list; InvalidValueError for a projection PEFT does not know here."""
    if text in LORA_TARGET_SETS:
        return LORA_TARGET_SETS[text]
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(set(names) - LORA_TARGET_CHOICES)
    if not names or unknown:
        raise InvalidValueError(
            f"--lora-targets {text!r}: give attention, all-linear or a comma list of "
            + ", ".join(sorted(LORA_TARGET_CHOICES))
        )
    return names


@dataclass(frozen=True, kw_only=True)
class Applied:
    """What a recipe did to a request: its slug, and each option it filled (flag → value
    as typed), in RECIPE_OPTIONS order. `default`: the stage's default recipe, not asked."""

    recipe: str
    filled: tuple[tuple[str, str], ...]
    default: bool = False

    def words(self) -> str:
        """'recipe common-finetune (default for finetune): --checkpointing full, …'."""
        said = f"recipe {self.recipe}"
        if self.default:
            said += " (the default; --recipe none for none)"
        if not self.filled:
            return said + ": fills nothing you did not type"
        return (
            said
            + " fills "
            + ", ".join(
                f"{flag} {value}" + (" (at most the model's maximum)" if flag == "--seq" else "")
                for flag, value in self.filled
            )
        )

    def as_json(self) -> dict[str, str]:
        """The filled options by JSON name (the flag without dashes, '-' as '_')."""
        return {flag[2:].replace("-", "_"): value for flag, value in self.filled}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


def apply(
    request: Request, recipe: Recipe, typed: frozenset[str], *, default: bool = False
) -> tuple[Request, Applied]:
    """`request` with the options of `recipe` the user did not
    type (`typed`: column names of RECIPE_OPTIONS given on the command line), and what was
    filled. A recipe's method applies to fine-tuning only (pretraining trains every weight),
    and a recipe never applies to inference (InvalidValueError)."""
    if request.stage is Stage.inference:
        raise InvalidValueError(
            f"--recipe {recipe.slug}: recipes configure training; inference takes none"
        )
    changes: dict[str, Any] = {}
    filled: list[tuple[str, str]] = []
    for name, value in recipe.options().items():
        if name in typed:
            continue
        if name == "method" and request.stage is not Stage.finetune:
            continue
        if name == "lora_targets":
            changes[name] = lora_target_names(value)
        elif name == "parallel":
            spec = parse_parallel(value)
            changes.update(
                parallel=spec.strategy,
                tensor_parallel=spec.tensor,
                pipeline_parallel=spec.pipeline,
                context_parallel=spec.context,
            )
        elif name == "offload":
            changes.update(offload=value, offload_optimizer=value is TrainingOffload.optimizer)
        elif name == "seq":  # up to each model's maximum (`policy.sequence`)
            changes["recipe_seq"] = value
        else:
            changes[name] = value
        filled.append((RECIPE_OPTIONS[name], _text(value)))
    applied = Applied(recipe=recipe.slug, filled=tuple(filled), default=default)
    return request._replace(**changes), applied
