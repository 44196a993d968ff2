"""What `fit`, `which-models` and `estimate` assume unless told, and how a request becomes the
levels they compare.

Pure and light: it imports only `advisor.workload`, `advisor.engines`, `advisor.enums` and
`advisor.errors`, so the CLI can read these defaults when it builds its options without loading
the estimator. It also holds how each market's cards combine (`TOPOLOGY_BY_MARKET`). The CLI
parses the options into a `Request`, looks up the weight formats `formats_to_look_up` names,
and calls `build_levels` (or `workload` for one estimate); the validation of each workload is
`Workload.__post_init__`'s, and of its engine `advisor.engines.check`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from advisor import engines
from advisor.enums import Engine, LinkKind, Market
from advisor.errors import InvalidValueError
from advisor.workload import (
    ATTENTION_TARGETS,
    DEFAULT_BATCH,
    DEFAULT_CHECKPOINTING,
    DEFAULT_LORA_RANK,
    DEFAULT_LOSS,
    DEFAULT_OPTIMIZER,
    DEFAULT_PRECISION,
    DEFAULT_TRAINING_SEQ,
    Attention,
    Checkpointing,
    Float8Scaling,
    KVDtype,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Parallel,
    PipelineSchedule,
    Precision,
    Serving,
    Stage,
    TrainingOffload,
    WeightFormat,
    Workload,
)

if TYPE_CHECKING:
    from advisor.arch import Architecture

# How many cards `fit` tries at most unless told otherwise: one 8-GPU server (DGX/HGX nodes).
DEFAULT_MAX_GPUS = 8
# Inference context when none is asked: 4096 tokens, or the model's maximum if shorter.
DEFAULT_INFERENCE_CONTEXT = 4096
# Levels that are a precision of the whole model rather than a weight format in the catalog.
FLOAT_DTYPES: Mapping[str, Precision] = MappingProxyType(
    {"fp32": Precision.fp32, "bf16": Precision.bf16, "fp16": Precision.fp16}
)
# The 16-bit level inference comparisons start from when the precision is not a float dtype.
DEFAULT_FLOAT_LEVEL = "bf16"
# Quantization levels `fit` compares for inference after the 16-bit one: bitsandbytes int8,
# 4-bit integer (GPTQ/AWQ-style, group size 128) and llama.cpp's most used k-quant.
FIT_QUANTS = ("int8", "int4", "q4_k_m")
# The ladder `which-models` climbs down for inference after the 16-bit level, highest precision
# first: llama.cpp's k-quants from 8 to 2 bits (the sizes people download for one card).
WHICH_MODELS_LADDER = ("q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k")
# The fine-tuning methods compared unless one is asked.
COMPARED_METHODS = (Method.full, Method.lora, Method.qlora)
# QLoRA's base format unless one is asked: bitsandbytes NF4 without double quantization
# (BitsAndBytesConfig's default, bnb_4bit_use_double_quant=False).
DEFAULT_QLORA_QUANT = "nf4"
# `--recipe none`: no recipe at all, the advisor's plain defaults (Hugging Face Trainer-like:
# no checkpointing, the unfused loss, AdamW).
NO_RECIPE = "none"
# The recipe each training stage uses when none is asked. Fine-tuning: `common-finetune`, what
# the public fine-tuning recipes share (every one checked turns activation checkpointing on,
# most use an 8-bit or paged optimizer; docs/estimates.md "Recipes" lists them). Pretraining:
# `torchtitan`, PyTorch's reference pretraining recipe (FSDP2, selective checkpointing).
DEFAULT_RECIPES: Mapping[Stage, str] = MappingProxyType(
    {Stage.finetune: "common-finetune", Stage.pretrain: "torchtitan"}
)

# Full training in pure 16 bit keeps the weights and AdamW's states in that dtype; Hugging
# Face's Trainer on a model loaded in fp32 with `bf16=True` keeps fp32 master weights and
# states and computes under autocast (`--precision mixed-bf16`). The commands show that
# figure beside the pure one when it needs more than this share more per card (issue 16).
MIXED_PRECISION_SHOWN_ABOVE = 0.20
# The mixed-precision counterpart of each pure 16-bit precision.
MIXED_OF_PURE: Mapping[Precision, Precision] = MappingProxyType(
    {Precision.bf16: Precision.mixed_bf16, Precision.fp16: Precision.mixed_fp16}
)


def default_recipe(stage: Stage) -> str | None:
    """The recipe a stage uses when none is asked (None: inference has none)."""
    return DEFAULT_RECIPES.get(stage)


class Topology(NamedTuple):
    """How cards of one market combine: the most one machine takes, the link between them
    there, and whether machines can be joined over the network (then only whole machines)."""

    max_per_node: int
    link: LinkKind
    multi_node: bool
    source: str


# The rule of each market, used for a card whose catalog row leaves a field empty (bundled rows
# fill every field: catalog/data/README.md "How cards combine").
TOPOLOGY_BY_MARKET: Mapping[Market, Topology] = MappingProxyType(
    {
        Market.laptop: Topology(
            max_per_node=1,
            link=LinkKind.none,
            multi_node=False,
            source="a laptop has one discrete GPU (NVIDIA GeForce RTX laptop GPU specifications)",
        ),
        Market.unified_memory: Topology(
            max_per_node=1,
            link=LinkKind.none,
            multi_node=False,
            source="one SoC per machine: Apple M-series Mac and AMD Strix Halo specifications",
        ),
        Market.consumer: Topology(
            max_per_node=4,
            link=LinkKind.pcie,
            multi_node=False,
            source=(
                "consumer boards have 2-4 x16-size slots; NVLink was dropped after the RTX 3090 "
                "(NVIDIA GeForce RTX 40 series specifications list no NVLink)"
            ),
        ),
        Market.workstation: Topology(
            max_per_node=8,
            link=LinkKind.pcie,
            multi_node=False,
            source=(
                "workstations take 4 cards, rack servers 8 (NVIDIA RTX PRO Server: 8 RTX PRO "
                "6000; Intel Project Battlematrix: up to 8 Arc Pro B60)"
            ),
        ),
        Market.datacenter: Topology(
            max_per_node=8,
            link=LinkKind.nvlink,
            multi_node=True,
            source=(
                "8-GPU HGX/DGX and OAM baseboards, joined over InfiniBand or Ethernet (NVIDIA "
                "DGX H100 user guide; AMD Instinct MI300X platform)"
            ),
        ),
    }
)


class Request(NamedTuple):
    """The workload options as the user gave them, before the defaults that depend on the
    model (the context) are filled. `method` None: compare `COMPARED_METHODS` (fine-tuning),
    full otherwise; `quants`: the levels asked, in order (empty: the policy's defaults)."""

    stage: Stage = Stage.inference
    method: Method | None = None
    precision: Precision = DEFAULT_PRECISION
    quants: tuple[str, ...] = ()
    kv_dtype: KVDtype | None = None
    batch: int | None = None
    seq: int | None = None
    # A recipe's sequence (not typed): used up to each model's maximum (`sequence`).
    recipe_seq: int | None = None
    optimizer: Optimizer = DEFAULT_OPTIMIZER
    checkpointing: Checkpointing = DEFAULT_CHECKPOINTING
    loss: Loss = DEFAULT_LOSS
    lora_rank: int = DEFAULT_LORA_RANK
    lora_targets: tuple[str, ...] = ATTENTION_TARGETS
    trainable_layers: int | None = None
    gpus: int = 1
    parallel: Parallel | None = None
    offload_optimizer: bool = False
    optimizer_in_backward: bool = False
    offload: TrainingOffload = TrainingOffload.none
    lora_dtype: LoraDtype | None = None
    attention: Attention | None = None
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    context_parallel: int = 1
    microbatches: int | None = None  # pipeline parallelism's micro-batches per step
    pp_schedule: PipelineSchedule = PipelineSchedule.one_f_one_b
    fp8_scaling: Float8Scaling = Float8Scaling.tensorwise
    compile: bool = False  # torch.compile around the model (training speed)
    # None: each level's default engine by its format (`advisor.engines.default_engine`).
    engine: Engine | None = None
    serving: Serving = Serving()  # the engines' settings


class Level(NamedTuple):
    """One column of a comparison: the workload at one quantization level or method (the
    search varies only the card count, the context and the batch)."""

    label: str
    workload: Workload
    quant: str | None = None

    @property
    def method(self) -> Method | None:
        return self.workload.method if self.workload.training else None


def default_context(arch: Architecture) -> int:
    return min(DEFAULT_INFERENCE_CONTEXT, arch.max_position_embeddings)


def default_seq(arch: Architecture, stage: Stage) -> int:
    """The context (inference) or sequence length (training) when none is asked, never beyond
    the model's maximum (which only --allow-longer-context passes)."""
    if stage is Stage.inference:
        return default_context(arch)
    return min(DEFAULT_TRAINING_SEQ, arch.max_position_embeddings)


def sequence(arch: Architecture, request: Request) -> int:
    """The context or training sequence `request` sizes `arch` at: the one typed; else the
    recipe's, but never beyond the model's maximum (a recipe's default is the sequence its
    framework trains its own model at, not a request to exceed a shorter model's); else the
    stage's default (`default_seq`)."""
    if request.seq is not None:
        return request.seq
    if request.recipe_seq is not None:
        return min(request.recipe_seq, arch.max_position_embeddings)
    return default_seq(arch, request.stage)


def workload(
    arch: Architecture,
    request: Request,
    *,
    method: Method | None = None,
    weight_format: WeightFormat | None = None,
    precision: Precision | None = None,
) -> Workload:
    """The validated workload `request` asks for on `arch`; `method` and `precision` override
    the request's (one level of a comparison). Inference runs on the engine asked, else on
    the format's usual engine; an engine that cannot run the format or the KV dtype is
    refused (InvalidValueError)."""
    serving = request.serving
    if request.stage is Stage.inference:
        engine = request.engine or engines.default_engine(weight_format)
        serving = dataclasses.replace(serving, engine=engine)
        engines.check(serving, weight_format, request.kv_dtype)
    elif request.engine not in (None, Engine.transformers):
        raise InvalidValueError(
            f"--engine {request.engine.value} serves inference; training runs on transformers"
        )
    return Workload(
        stage=request.stage,
        method=method or request.method or Method.full,
        precision=precision or request.precision,
        weight_format=weight_format,
        kv_dtype=request.kv_dtype,
        batch=DEFAULT_BATCH if request.batch is None else request.batch,
        seq=sequence(arch, request),
        optimizer=request.optimizer,
        checkpointing=request.checkpointing,
        loss=request.loss,
        lora_rank=request.lora_rank,
        lora_targets=request.lora_targets,
        trainable_layers=request.trainable_layers,
        gpus=request.gpus,
        parallel=request.parallel,
        offload_optimizer=request.offload_optimizer,
        optimizer_in_backward=request.optimizer_in_backward,
        offload=request.offload,
        lora_dtype=request.lora_dtype,
        attention=request.attention,
        tensor_parallel=request.tensor_parallel,
        pipeline_parallel=request.pipeline_parallel,
        context_parallel=request.context_parallel,
        microbatches=request.microbatches,
        pp_schedule=request.pp_schedule,
        fp8_scaling=request.fp8_scaling,
        compile=request.compile,
        serving=serving,
    )


def mixed_precision_counterpart(w: Workload) -> Workload | None:
    """The same full training with fp32 master weights and optimizer states (autocast
    compute) when `w` trains every weight in pure 16 bit; None otherwise (inference, adapters,
    an fp32 or mixed precision already)."""
    if not w.training or w.method is not Method.full or w.precision not in MIXED_OF_PURE:
        return None
    return dataclasses.replace(w, precision=MIXED_OF_PURE[w.precision])


def mixed_precision_differs(pure_bytes: int, mixed_bytes: int) -> bool:
    """Whether the mixed-precision need is worth showing beside the pure one: more than
    `MIXED_PRECISION_SHOWN_ABOVE` larger."""
    return mixed_bytes > pure_bytes * (1 + MIXED_PRECISION_SHOWN_ABOVE)


def checkpointing_asked(
    checkpointing: Checkpointing | None, grad_checkpointing: bool
) -> Checkpointing:
    """The checkpointing policy of `--checkpointing` and its older alias `--grad-checkpointing`
    (full); the default when neither is given."""
    if grad_checkpointing:
        if checkpointing not in (None, Checkpointing.full):
            raise InvalidValueError(
                "--grad-checkpointing means --checkpointing full; it conflicts with "
                f"--checkpointing {checkpointing.value}"
            )
        return Checkpointing.full
    return DEFAULT_CHECKPOINTING if checkpointing is None else checkpointing


def levels_asked(request: Request, default_quants: Sequence[str]) -> tuple[str, ...]:
    """The quantization levels to compare: those asked (duplicates dropped), else, for
    inference, the request's float level then `default_quants`, and for a fine-tune that may
    use QLoRA, its default base."""
    asked = tuple(dict.fromkeys(request.quants))
    if asked:
        return asked
    if request.stage is Stage.inference:
        precision = request.precision.value
        first = precision if precision in FLOAT_DTYPES else DEFAULT_FLOAT_LEVEL
        return (first, *default_quants)
    base = default_base(request)
    return (base,) if base else ()


def default_base(request: Request) -> str | None:
    """The weight format a fine-tune is given when none is asked: QLoRA's base
    (`DEFAULT_QLORA_QUANT`) wherever QLoRA is asked or compared; None otherwise. `fit`,
    `which-models` and `estimate` all take it from here."""
    if request.quants:
        return request.quants[0]
    if request.stage is Stage.finetune and request.method in (None, Method.qlora):
        return DEFAULT_QLORA_QUANT
    return None


def formats_to_look_up(levels: Sequence[str]) -> tuple[str, ...]:
    """The levels that name a weight format (the caller looks them up in the catalog)."""
    return tuple(q for q in levels if q not in FLOAT_DTYPES)


def build_levels(
    arch: Architecture,
    request: Request,
    formats: Mapping[str, WeightFormat],
    *,
    default_quants: Sequence[str] = FIT_QUANTS,
) -> tuple[Level, ...]:
    """The columns to compare: one per quantization level (inference) or method (training).

    `formats` maps each name `formats_to_look_up` gave to its format. Every combination the
    workload cannot be (a method for inference, a quantization for full fine-tuning, ...) is
    refused by `Workload` itself.
    """
    quants = levels_asked(request, default_quants)
    if request.stage is Stage.inference:
        if not request.quants:
            # Default levels whose engine cannot run them (the engine asked, or the format's
            # own, with the KV dtype asked) are left out, not refused.
            runnable = tuple(q for q in quants if _runs(request, formats.get(q)))
            # None runs (the KV dtype asked is not the engine's): the first level's refusal
            # says why, rather than an empty comparison.
            quants = runnable or quants
        return tuple(_inference_level(arch, request, q, formats) for q in quants)
    if len(quants) > 1:
        raise InvalidValueError(
            "training compares methods, not formats: give one --quant (the QLoRA base)"
        )
    base = formats[quants[0]] if quants else None
    if request.method is not None:
        methods: tuple[Method, ...] = (request.method,)
    elif request.stage is Stage.finetune:
        methods = COMPARED_METHODS
    else:
        methods = (Method.full,)
    compared = request.method is None and request.stage is Stage.finetune
    levels = []
    for method in methods:
        # The asked base goes to QLoRA, and to a method not compared (Workload refuses it there
        # unless that method is QLoRA); compared full and LoRA levels train 16-bit weights.
        given = base if method is Method.qlora or not compared else None
        w = workload(arch, request, method=method, weight_format=given)
        label = method.value if request.stage is Stage.finetune else request.precision.value
        levels.append(Level(label=label, workload=w, quant=given.slug if given else None))
    return tuple(levels)


def levels_by_model(
    archs: Sequence[Architecture],
    request: Request,
    formats: Mapping[str, WeightFormat],
    *,
    default_quants: Sequence[str] = FIT_QUANTS,
) -> list[tuple[Level, ...]]:
    """`build_levels` for each of `archs`, in order. A model's levels depend on it only
    through its default context or sequence (`default_seq`), so they are built once per
    distinct default and shared (they are frozen): `which-models` builds a handful instead of
    one set per catalog model."""
    built: dict[int, tuple[Level, ...]] = {}
    answer = []
    for arch in archs:
        seq = sequence(arch, request)
        if seq not in built:
            built[seq] = build_levels(arch, request, formats, default_quants=default_quants)
        answer.append(built[seq])
    return answer


def is_ladder(request: Request) -> bool:
    """Whether `which-models` climbs the policy's ladder (no --quant asked, inference): its
    levels after the first never need more bytes than the one before (a property test checks
    it on every catalog model), so the first that fits can be bisected for."""
    return request.stage is Stage.inference and not request.quants


def _runs(request: Request, fmt: WeightFormat | None) -> bool:
    """Whether the level's engine runs weights in `fmt` (None: a float dtype) with the KV
    dtype asked."""
    traits = engines.ENGINES[request.engine or engines.default_engine(fmt)]
    if fmt is not None and fmt.kind is not None and fmt.kind not in traits.runs:
        return False
    return request.kv_dtype is None or request.kv_dtype in traits.kv_dtypes


def _inference_level(
    arch: Architecture, request: Request, quant: str, formats: Mapping[str, WeightFormat]
) -> Level:
    if quant in FLOAT_DTYPES:
        w = workload(arch, request, precision=FLOAT_DTYPES[quant])
        return Level(label=quant, workload=w, quant=quant)
    fmt = formats[quant]
    return Level(
        label=fmt.slug, workload=workload(arch, request, weight_format=fmt), quant=fmt.slug
    )


def with_parallel(levels: Sequence[Level], parallel: Parallel | None) -> tuple[Level, ...]:
    """The levels with their workloads' strategy set to `parallel`."""
    return tuple(
        lv._replace(workload=dataclasses.replace(lv.workload, parallel=parallel)) for lv in levels
    )
