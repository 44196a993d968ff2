"""What a user wants to run: the stage, precision, batch and parallelism the estimator sizes.

Pure: no CLI, rendering or database imports. A `Workload` is validated when it is made, so the
estimator only ever sees requests that can exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from advisor.enums import Engine, QuantKind
from advisor.errors import InvalidValueError
from advisor.ggml import GGUFWeights, QuantRules


class Stage(StrEnum):
    inference = "inference"
    finetune = "finetune"
    pretrain = "pretrain"


class Method(StrEnum):
    """How much of the model a fine-tune trains."""

    full = "full"
    lora = "lora"
    qlora = "qlora"
    dora = "dora"  # LoRA with a learned magnitude vector (PEFT's `use_dora=True`)
    freeze = "freeze"


class Precision(StrEnum):
    """Pure precisions keep weights, gradients and optimizer states in that dtype (plain
    PyTorch); mixed ones keep fp32 weights and states and compute under autocast."""

    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"
    mixed_bf16 = "mixed-bf16"
    mixed_fp16 = "mixed-fp16"
    fp8 = "fp8"

    @property
    def is_mixed(self) -> bool:
        return self in (Precision.mixed_bf16, Precision.mixed_fp16, Precision.fp8)


class Float8Scaling(StrEnum):
    """How float8 training scales its casts (torchao's `Float8LinearConfig.from_recipe_name`,
    torchtitan's `float8.recipe_name`): one scale per tensor, or one per row of each operand
    (finer, more accurate at scale; its matmuls run torch._scaled_mm's row-scaled kernels).
    The memory is the same: both keep the 16-bit weights and save the 16-bit inputs."""

    tensorwise = "tensorwise"
    rowwise = "rowwise"


class KVDtype(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp32 = "fp32"
    fp8 = "fp8"
    q8_0 = "q8_0"
    q4_0 = "q4_0"


class Optimizer(StrEnum):
    adamw = "adamw"
    adamw_8bit = "adamw-8bit"
    paged_adamw_8bit = "paged-adamw-8bit"  # bitsandbytes PagedAdamW8bit (unified-memory states)
    paged_adamw_32bit = "paged-adamw-32bit"  # bitsandbytes PagedAdamW32bit
    sgd = "sgd"
    sgd_momentum = "sgd-momentum"
    adafactor = "adafactor"
    lion = "lion"


class Checkpointing(StrEnum):
    """What a training step keeps for backward (docs/estimates.md, "Memory savers").

    none: every layer's activations (Hugging Face Trainer's default). full: each layer keeps
    only its input and is recomputed in backward (`gradient_checkpointing=True`). selective:
    torchtitan's per-op policy (`selective_ac_option="op"`): every layer keeps its input, the
    outputs of every other matmul and the attention kernel's output, and recomputes the rest.
    offload: full checkpointing with each layer's input copied to host memory and brought back
    for its backward (Unsloth's `use_gradient_checkpointing="unsloth"`).
    """

    none = "none"
    full = "full"
    selective = "selective"
    offload = "offload"


class Loss(StrEnum):
    """How the cross-entropy loss is computed over the vocabulary.

    unfused: the whole logits tensor upcast to fp32 (transformers' `ForCausalLMLoss`).
    chunked: torchtune's `CEWithChunkedOutputLoss` (logits in chunks, each upcast on its own).
    fused: fused linear cross-entropy (Liger's `LigerFusedLinearCrossEntropyLoss`, Unsloth,
    Apple's Cut Cross-Entropy): logits never exist for more than a chunk of tokens.
    """

    unfused = "unfused"
    chunked = "chunked"
    fused = "fused"


class TrainingOffload(StrEnum):
    """What training keeps in host memory: nothing, the optimizer states (DeepSpeed
    ZeRO-Offload, FSDP's CPU offload of states), or the states and the parameters (ZeRO-Infinity,
    FSDP `CPUOffload(offload_params=True)`)."""

    none = "none"
    optimizer = "optimizer"
    optimizer_params = "optimizer+params"


class LoraDtype(StrEnum):
    """The dtype of the adapter weights, their gradients and optimizer states: PEFT creates
    them in fp32; QLoRA's recipe and most trainers cast them to bf16."""

    fp32 = "fp32"
    bf16 = "bf16"


# Methods that train low-rank adapters beside a frozen base (DoRA adds a magnitude vector).
ADAPTER_METHODS = frozenset({Method.lora, Method.qlora, Method.dora})
# The adapter dtype when none is asked. LoRA and DoRA: PEFT's `get_peft_model` creates the
# adapters in fp32 (`autocast_adapter_dtype=True` upcasts 16-bit ones). QLoRA: the QLoRA
# recipe casts every `LoraLayer` to bf16 after adding the adapters (artidoro/qlora qlora.py
# `get_accelerate_model`: `if args.bf16: module = module.to(torch.bfloat16)`, bf16 in all its
# scripts), and the recipes that copied it (LLaVA, axolotl's early QLoRA path) do the same.
DEFAULT_LORA_DTYPE: Mapping[Method, LoraDtype] = MappingProxyType(
    {Method.lora: LoraDtype.fp32, Method.dora: LoraDtype.fp32, Method.qlora: LoraDtype.bf16}
)


class Attention(StrEnum):
    """The attention implementation asked for training: PyTorch SDPA (transformers' default),
    FlashAttention-2 (`attn_implementation="flash_attention_2"`), or eager (the T x T scores
    materialized)."""

    sdpa = "sdpa"
    flash = "flash"
    eager = "eager"


class Parallel(StrEnum):
    """tp/pp for inference; ddp and the ZeRO stages (zero3 = FSDP full sharding) for training."""

    tp = "tp"
    pp = "pp"
    ddp = "ddp"
    zero1 = "zero1"
    zero2 = "zero2"
    zero3 = "zero3"


class PipelineSchedule(StrEnum):
    """How a pipeline-parallel training step orders its micro-batches (PyTorch's
    torch.distributed.pipelining, as torchtitan runs it). 1f1b: one stage per card, each card
    alternating one forward and one backward once the pipeline is full (Schedule1F1B).
    interleaved-1f1b: `INTERLEAVED_STAGES_PER_CARD` smaller stages per card, taken in turn
    (ScheduleInterleaved1F1B), which shortens the pipeline's fill and drain and holds more
    micro-batches' activations on the first cards."""

    one_f_one_b = "1f1b"
    interleaved = "interleaved-1f1b"


# Stages each card holds under an interleaved schedule: torchtitan's default for a multi-stage
# schedule when no split points are given ("Multi-stage schedules support more than 2 stages
# per rank, but this is the default", torchtitan pipeline_llama.py generate_split_points).
INTERLEAVED_STAGES_PER_CARD = 2

INFERENCE_PARALLEL = frozenset({Parallel.tp, Parallel.pp})
TRAINING_PARALLEL = frozenset({Parallel.ddp, Parallel.zero1, Parallel.zero2, Parallel.zero3})
# The strategies that shard the optimizer states over the data-parallel ranks (ZeRO stages
# 1-3, Rajbhandari et al. 2020), so each card keeps and steps only its shard.
ZERO_STRATEGIES = frozenset({Parallel.zero1, Parallel.zero2, Parallel.zero3})

# PEFT's names for the projections; `attention` is PEFT's default for Llama-style models.
ATTENTION_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
LORA_TARGET_CHOICES = frozenset({*ATTENTION_TARGETS, *MLP_TARGETS})
# Every linear layer of a block, whatever the model type names them (PEFT's
# `target_modules="all-linear"`): a target of its own, never mixed with names.
ALL_LINEAR = "all-linear"
# Named sets of LoRA targets users type: PEFT's default (attention) and every linear layer.
LORA_TARGET_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"attention": ATTENTION_TARGETS, ALL_LINEAR: (ALL_LINEAR,)}
)
DEFAULT_LORA_TARGETS = "attention"

# Defaults of a workload, named once: the CLI's options show and use these.
# 16-bit brain float, the dtype most checkpoints ship in and most GPUs compute in.
DEFAULT_PRECISION = Precision.bf16
# AdamW, the optimizer of most published fine-tuning and pretraining recipes.
DEFAULT_OPTIMIZER = Optimizer.adamw
# Activation checkpointing off and the unfused loss: Hugging Face Trainer's defaults, the setup
# the estimator was calibrated on (a recipe may choose otherwise).
DEFAULT_CHECKPOINTING = Checkpointing.none
DEFAULT_LOSS = Loss.unfused
# One sequence per step.
DEFAULT_BATCH = 1
# Tokens per sequence: a common fine-tuning recipe's length (inference defaults to the
# model's context instead: `advisor.policy.default_seq`).
DEFAULT_TRAINING_SEQ = 2048
# LoRA rank when none is asked (PEFT's `LoraConfig` defaults to 8; 16 is the rank many
# published fine-tuning recipes use).
DEFAULT_LORA_RANK = 16


# --- bounds: the largest count or size a user may ask for -------------------------------------
# Checked when a Workload is made, and by the CLI's counts (fit --max-gpus/--count,
# which-models --count) before any search, so a typed 10^9 is one line (exit 2) instead of a
# hang or a MemoryError. Each is far beyond real use and small enough for the searches.
# Cards in one job: the largest published training clusters have about 10^5 GPUs (xAI
# Colossus, Meta's 2024 clusters of 24,576 per job); 2^17 = 131,072 covers them.
MAX_GPUS = 131_072
# Cards `fit` tries one by one per card kind and level (one estimate each): 4,096 is beyond
# any single node or pod a memory plan is made for, and keeps fit within seconds.
MAX_SEARCH_GPUS = 4_096
# Sequences per step: global batches of published pretraining runs are a few thousand
# sequences (Llama 3: 16M tokens of 8k = 2,048); 2^20 is 500 times that.
MAX_BATCH = 2**20
# Tokens per sequence: the longest published context is 10^7 tokens (Llama 4 Scout), and the
# architecture's own bound on trained positions is arch.MAX_POSITIONS (2^30); 2^30 here too.
MAX_SEQ = 2**30
# LoRA rank: published recipes use 8 to 256; a rank above a layer's width adds nothing, and
# widths are bounded by arch.MAX_WIDTH (2^24).
MAX_LORA_RANK = 2**24
# Layers trained by --method freeze: never more than a model has (checked by the estimator
# against the model) and never more than arch.MAX_LAYERS.
MAX_TRAINABLE_LAYERS = 4_096
# Micro-batches per optimizer step (gradient accumulation steps, or a pipeline's micro-batches):
# published runs use up to a few hundred (Megatron-LM and torchtitan: global batch over
# data-parallel replicas and micro-batch size); 2^16 is far beyond them.
MAX_MICROBATCHES = 2**16


class ParallelSpec(NamedTuple):
    """What `--parallel` asks: a strategy (tp/pp for inference; ddp or a ZeRO stage for
    training) and the training degrees of tensor, pipeline and context parallelism."""

    strategy: Parallel | None = None
    tensor: int = 1
    pipeline: int = 1
    context: int = 1

    @property
    def model_parallel(self) -> int:
        """GPUs one model replica spans: tensor x pipeline x context degrees."""
        return self.tensor * self.pipeline * self.context

    def check_divides(self, count: int, option: str) -> None:
        """InvalidValueError unless `count` GPUs (as `option` names them, e.g. "--count")
        hold whole model replicas."""
        check_replicas(self.tensor, self.pipeline, self.context, count, option)


def _degrees(tp: int, pp: int, cp: int) -> list[tuple[str, int]]:
    return [(name, value) for name, value in (("tp", tp), ("pp", pp), ("cp", cp)) if value > 1]


def degrees_typed(tp: int, pp: int, cp: int) -> str:
    """The training degrees above 1 as `--parallel` takes them ('tp:8,pp:8'; '' when none)."""
    return ",".join(f"{name}:{value}" for name, value in _degrees(tp, pp, cp))


def parallel_words(strategy: Parallel, tp: int, pp: int, cp: int) -> str:
    """A strategy and its training degrees as headers name them ('zero3 x tp 8 x pp 8')."""
    words = [f"{name} {value}" for name, value in _degrees(tp, pp, cp)]
    return " x ".join([strategy.value, *words])


def check_replicas(tp: int, pp: int, cp: int, count: int, option: str) -> None:
    """InvalidValueError unless `count` GPUs (`option`) are a whole number of model replicas
    of tp x pp x cp GPUs each (the data-parallel degree is their quotient)."""
    spans = tp * pp * cp
    if count % spans:
        raise InvalidValueError(
            f"--parallel {degrees_typed(tp, pp, cp)} spans {spans} GPUs per model replica, "
            f"which does not divide {option} {count}"
        )


_DEGREES = {"tp": "tensor", "pp": "pipeline", "cp": "context"}


def parse_parallel(text: str | None) -> ParallelSpec:
    """`--parallel` as typed: a comma list of one strategy name and `tp:N`, `pp:N`, `cp:N`
    degrees (e.g. `zero3,tp:8,pp:8`); InvalidValueError for anything else."""
    if text is None or not text.strip():
        return ParallelSpec()
    strategy: Parallel | None = None
    degrees: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        name, sep, count = item.partition(":")
        if sep:
            if name not in _DEGREES or name in degrees or not count.isdigit():
                raise InvalidValueError(
                    f"--parallel: {item!r} is not a degree (tp:N, pp:N or cp:N, each once)"
                )
            degrees[name] = check_count(f"--parallel {name}", int(count), MAX_GPUS)
            continue
        try:
            chosen = Parallel(item)
        except ValueError:
            known = ", ".join(p.value for p in Parallel)
            raise InvalidValueError(
                f"--parallel: unknown strategy {item!r} (one of {known}, or tp:N, pp:N, cp:N)"
            ) from None
        if strategy is not None:
            raise InvalidValueError(
                f"--parallel names two strategies ({strategy.value}, {chosen.value}): give one"
            )
        strategy = chosen
    return ParallelSpec(
        strategy=strategy,
        **{_DEGREES[name]: value for name, value in degrees.items()},
    )


def check_count(name: str, value: int, maximum: int, *, minimum: int = 1) -> int:
    """`value` if minimum <= value <= maximum, else InvalidValueError naming the option
    `name` (as the user typed it, e.g. "--max-gpus") and the bounds."""
    if value < minimum:
        raise InvalidValueError(f"{name} must be at least {minimum}, got {value}")
    if value > maximum:
        shown = (
            str(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
        )
        raise InvalidValueError(f"{name} must be at most {maximum:,}, got {shown}")
    return value


@dataclass(frozen=True, kw_only=True)
class WeightFormat:
    """How weights are stored: bits per weight measured on real files, and what they cover.

    scope `all`: every parameter (GGUF files); `linear`: the blocks' linear layers only, the
    embeddings, output head and norms staying at 16 bit (bitsandbytes, GPTQ, AWQ, FP8).

    `exact_bytes`: the weights of one checkpoint, byte for byte (its safetensors tensors added
    up); the weights term is then this figure, and `bits_per_weight` only describes it.

    `rules`: a GGUF file type's per-tensor rules (advisor/ggml.py): the weights are then the
    sum of each tensor's bytes in the type llama.cpp gives it, and `bits_per_weight` only
    describes them. `gguf`: a GGUF file's own tensors weighed (total = `exact_bytes`), which
    also says what its token embedding and output layer take.
    """

    slug: str
    bits_per_weight: float
    scope: str = "linear"
    kind: QuantKind | None = None  # the catalog's family; None: not from the catalog
    exact_bytes: int | None = None  # a checkpoint's weights byte for byte (Hub or local files)
    rules: QuantRules | None = None  # a GGUF file type's per-tensor rules
    gguf: GGUFWeights | None = None  # a GGUF file's tensors, weighed

    @classmethod
    def of_checkpoint(cls, slug: str, *, exact_bytes: int, params: int) -> WeightFormat:
        """A checkpoint's own format: its exact bytes, described as bits per parameter."""
        if exact_bytes <= 0 or params <= 0:
            raise InvalidValueError("a checkpoint's weights and parameters must be positive")
        return cls(
            slug=slug,
            bits_per_weight=min(32.0, exact_bytes * 8 / params),
            scope="all",
            exact_bytes=exact_bytes,
        )

    def __post_init__(self) -> None:
        if self.exact_bytes is not None and self.exact_bytes <= 0:
            raise InvalidValueError(f"weight bytes must be positive, got {self.exact_bytes}")
        if not 0 < self.bits_per_weight <= 32:
            raise InvalidValueError(
                f"bits per weight must be in (0, 32], got {self.bits_per_weight}"
            )
        if self.rules is not None and self.scope != "all":
            raise InvalidValueError("per-tensor GGUF rules describe whole files (scope 'all')")
        if self.scope not in ("all", "linear"):
            raise InvalidValueError(f"scope must be 'all' or 'linear', got {self.scope!r}")


# llama.cpp's micro-batch: prompts are processed n_ubatch tokens at a time (common/common.h
# `n_ubatch = 512`, ggml-org/llama.cpp).
DEFAULT_UBATCH = 512
# vLLM's share of the card (`gpu_memory_utilization`, vllm/config EngineArgs default 0.9).
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# Tokens of vLLM's profile run: the scheduler's `max_num_batched_tokens`, 8192 for
# `vllm serve` with chunked prefill (vllm/engine/arg_utils.py default_max_num_batched_tokens).
DEFAULT_MAX_BATCHED_TOKENS = 8192
# Sequences vLLM schedules at once, and so samples at once in its profile run (`max_num_seqs`).
DEFAULT_MAX_SEQS = 256
# Upper bounds of the engine settings a user can type (checked before any sizing).
MAX_UBATCH = 1 << 20
MAX_BATCHED_TOKENS = 1 << 24
MAX_SEQS = 1 << 16


@dataclass(frozen=True, kw_only=True)
class Serving:
    """The engine that runs an inference workload and the settings that size its memory.

    `ubatch` and `flash_attention` are llama.cpp's (`-ub`, `-fa`: llama.cpp turns flash
    attention on by default where the backend supports it); `gpu_memory_utilization`,
    `max_batched_tokens` and `max_seqs` are vLLM's. `gpu_layers`: llama.cpp layers on the GPU
    (`-ngl`; None: all of them).
    """

    engine: Engine = Engine.transformers
    ubatch: int = DEFAULT_UBATCH
    flash_attention: bool = True
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION
    max_batched_tokens: int = DEFAULT_MAX_BATCHED_TOKENS
    max_seqs: int = DEFAULT_MAX_SEQS

    def __post_init__(self) -> None:
        for name, value, high in (
            ("ubatch", self.ubatch, MAX_UBATCH),
            ("max-batched-tokens", self.max_batched_tokens, MAX_BATCHED_TOKENS),
            ("max-seqs", self.max_seqs, MAX_SEQS),
        ):
            if not 1 <= value <= high:
                raise InvalidValueError(f"{name} must be in [1, {high:,}], got {value:,}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise InvalidValueError(
                f"gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )


TRANSFORMERS = Serving()
# The workload's counts and their bounds, in the order they are checked.
_BOUNDS = (("batch", MAX_BATCH), ("seq", MAX_SEQ), ("gpus", MAX_GPUS), ("lora_rank", MAX_LORA_RANK))


@dataclass(frozen=True, kw_only=True)
class Workload:
    stage: Stage
    method: Method = Method.full
    precision: Precision = DEFAULT_PRECISION
    weight_format: WeightFormat | None = None
    kv_dtype: KVDtype | None = None
    batch: int = DEFAULT_BATCH
    seq: int = DEFAULT_TRAINING_SEQ
    optimizer: Optimizer = DEFAULT_OPTIMIZER
    checkpointing: Checkpointing = DEFAULT_CHECKPOINTING
    loss: Loss = DEFAULT_LOSS
    lora_rank: int = DEFAULT_LORA_RANK
    lora_targets: tuple[str, ...] = field(default=ATTENTION_TARGETS)
    trainable_layers: int | None = None
    gpus: int = 1
    parallel: Parallel | None = None
    offload_optimizer: bool = False  # the older spelling of offload=TrainingOffload.optimizer
    attention_mask: bool | None = None
    optimizer_in_backward: bool = False  # torchtune: each gradient applied and freed in backward
    offload: TrainingOffload = TrainingOffload.none
    lora_dtype: LoraDtype | None = None  # None: the method's usual dtype
    attention: Attention | None = None  # None: the model's kernel under SDPA (advisor.traits)
    # Training degrees beside `parallel` (the data-parallel/sharding strategy); 1: not split.
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    context_parallel: int = 1
    # Micro-batches of `batch` sequences per optimizer step: gradient accumulation (each one's
    # gradients summed into the earlier ones') or, with pipeline parallelism, the pipeline's
    # micro-batches (None: 1, or the number of pipeline stages, pp x stages per card,
    # torchtitan's default: build_pipeline_schedule sets n_microbatches = num_total_stages
    # when none is given); and the pipeline's schedule.
    microbatches: int | None = None
    pp_schedule: PipelineSchedule = PipelineSchedule.one_f_one_b
    # Float8 training (--precision fp8): per-tensor or per-row scales.
    fp8_scaling: Float8Scaling = Float8Scaling.tensorwise
    # torch.compile around the model (training): Inductor fuses the element-wise kernels
    # between matmuls. Off by default, as in Hugging Face Trainer (`torch_compile=False`) and
    # torchtitan (`compile.enable` false unless a config turns it on).
    compile: bool = False
    serving: Serving = TRANSFORMERS
    # `grad_checkpointing=True`: the older spelling of `checkpointing=Checkpointing.full`.
    grad_checkpointing: InitVar[bool] = False

    def __post_init__(self, grad_checkpointing: bool) -> None:
        if grad_checkpointing:
            if self.checkpointing not in (Checkpointing.none, Checkpointing.full):
                raise InvalidValueError(
                    "--grad-checkpointing means --checkpointing full; it conflicts with "
                    f"--checkpointing {self.checkpointing.value}"
                )
            object.__setattr__(self, "checkpointing", Checkpointing.full)
        if self.offload_optimizer and self.offload is TrainingOffload.none:
            object.__setattr__(self, "offload", TrainingOffload.optimizer)
        elif self.offload is TrainingOffload.optimizer:
            object.__setattr__(self, "offload_optimizer", True)
        # Sweeps build thousands of workloads (`dataclasses.replace`): the common case is
        # checked with plain comparisons, the messages are built only for a failure.
        if not (
            0 < self.batch <= MAX_BATCH
            and 0 < self.seq <= MAX_SEQ
            and 0 < self.gpus <= MAX_GPUS
            and 0 < self.lora_rank <= MAX_LORA_RANK
        ):
            for name, maximum in _BOUNDS:
                check_count(name.replace("_", "-"), getattr(self, name), maximum)
        training = self.stage is not Stage.inference
        self._check_method(training)
        self._check_lora_targets()
        self._check_parallel(training)
        if training and self.serving.engine is not Engine.transformers:
            raise InvalidValueError(
                f"--engine {self.serving.engine.value} serves inference; training runs on "
                "transformers"
            )
        self._check_savers(training)
        self._check_training_options(training)

    def _check_training_options(self, training: bool) -> None:
        """Optimizer placement, adapter dtype and attention kernel: where each applies, and the
        combinations no framework runs."""
        if self.fp8_scaling is not Float8Scaling.tensorwise and self.precision is not Precision.fp8:
            raise InvalidValueError(
                f"--fp8-scaling {self.fp8_scaling.value} applies to --precision fp8 "
                "(float8 training)"
            )
        if not training:
            for asked, name in (
                (self.optimizer_in_backward, "--optimizer-in-backward"),
                (self.offload is not TrainingOffload.none, f"--offload {self.offload.value}"),
                (self.lora_dtype is not None, "--lora-dtype"),
                (self.compile, "--compile"),
            ):
                if asked:
                    raise InvalidValueError(f"{name} applies to training only")
        elif self.lora_dtype is not None and self.method not in ADAPTER_METHODS:
            raise InvalidValueError(
                f"--lora-dtype applies to lora, qlora and dora, not --method {self.method.value}"
            )
        if self.attention is not None and self.serving.engine is not Engine.transformers:
            raise InvalidValueError(
                f"--attention picks a transformers kernel; --engine {self.serving.engine.value} "
                "has its own"
            )
        self._check_offload()

    def _check_offload(self) -> None:
        """Offload is a ZeRO feature: DeepSpeed's `offload_optimizer` is "valid for ZeRO stage
        1, 2, 3" and `offload_param` "valid only with stage 3" (deepspeed/runtime/zero/config.py,
        DeepSpeedZeroConfig); FSDP's `CPUOffload(offload_params=True)` shards fully. Plain DDP
        keeps every state on each GPU and has no offload."""
        if self.offload is TrainingOffload.none or self.parallel is None:
            return
        if self.parallel is Parallel.ddp:
            raise InvalidValueError(
                f"--offload {self.offload.value} needs a ZeRO stage: DDP has no offload "
                "(DeepSpeed offloads under ZeRO 1-3, FSDP under full sharding)"
            )
        if self.offload is TrainingOffload.optimizer_params and self.parallel is not Parallel.zero3:
            raise InvalidValueError(
                f"--offload optimizer+params needs --parallel zero3, not {self.parallel.value} "
                "(DeepSpeed's offload_param is valid only with ZeRO stage 3)"
            )

    def _check_method(self, training: bool) -> None:
        if not training and self.method is not Method.full:
            raise InvalidValueError(
                f"--method {self.method.value} is a fine-tuning method; inference has none"
            )
        if self.stage is Stage.pretrain and self.method is not Method.full:
            raise InvalidValueError("pretraining trains every weight: --method must be full")
        if self.method is Method.qlora and self.weight_format is None:
            raise InvalidValueError("qlora needs a 4-bit base format (--quant nf4)")
        if training and self.weight_format is not None and self.method is not Method.qlora:
            raise InvalidValueError(
                "--quant applies to inference and to the QLoRA base; use --precision for training"
            )
        if self.method is Method.freeze and self.trainable_layers is None:
            raise InvalidValueError("--method freeze needs --trainable-layers N")
        if self.trainable_layers is not None:
            if self.method is not Method.freeze:
                raise InvalidValueError("--trainable-layers applies to --method freeze")
            check_count("trainable-layers", self.trainable_layers, MAX_TRAINABLE_LAYERS, minimum=0)

    def _check_lora_targets(self) -> None:
        if self.lora_targets == (ALL_LINEAR,):
            return
        if not self.lora_targets or not LORA_TARGET_CHOICES.issuperset(self.lora_targets):
            unknown = sorted(set(self.lora_targets) - LORA_TARGET_CHOICES)
            raise InvalidValueError(
                "LoRA targets must be among "
                + ", ".join(sorted(LORA_TARGET_CHOICES))
                + (f"; got {', '.join(unknown)}" if unknown else "")
            )

    def _check_parallel(self, training: bool) -> None:
        model_parallel = self.model_parallel
        if model_parallel > 1:
            self._check_degrees(training, model_parallel)
        if self.parallel is not None:
            allowed = TRAINING_PARALLEL if training else INFERENCE_PARALLEL
            if self.parallel not in allowed:
                kind = "training" if training else "inference"
                raise InvalidValueError(
                    f"--parallel {self.parallel.value} does not apply to {kind}; use "
                    + " or ".join(sorted(p.value for p in allowed))
                )
        if self.offload_optimizer and not training:
            raise InvalidValueError("optimizer offload applies to training only")
        self._check_pipeline()

    def _check_pipeline(self) -> None:
        """The micro-batch count applies to training, the schedule to pipeline parallelism;
        an optimizer applied in backward cannot accumulate gradients."""
        pp = self.pipeline_parallel
        if self.microbatches is not None:
            if not self.training:
                raise InvalidValueError("--microbatches applies to training only")
            check_count("--microbatches", self.microbatches, MAX_MICROBATCHES)
            if self.optimizer_in_backward and self.microbatches > 1:
                raise InvalidValueError(
                    "--optimizer-in-backward applies each gradient as it is made, so it cannot "
                    f"accumulate --microbatches {self.microbatches} (torchtune refuses gradient "
                    "accumulation with it)"
                )
        if self.pp_schedule is not PipelineSchedule.one_f_one_b and pp == 1:
            raise InvalidValueError(
                f"--pp-schedule {self.pp_schedule.value} applies to pipeline parallelism "
                "(--parallel pp:N)"
            )

    def _check_degrees(self, training: bool, model_parallel: int) -> None:
        """Training degrees that cannot run: for inference, not dividing --gpus, or context
        parallelism where the attention cannot be split (the model's own limits, heads and
        layers, are the estimator's to check)."""
        typed = self.degrees_label
        if not training:
            raise InvalidValueError(
                f"--parallel {typed}: tensor, pipeline and context degrees apply to training; "
                "inference splits over --gpus with --parallel tp or pp"
            )
        check_replicas(
            self.tensor_parallel, self.pipeline_parallel, self.context_parallel, self.gpus, "--gpus"
        )
        cp = self.context_parallel
        if cp > 1 and self.with_attention_mask:
            raise InvalidValueError(
                f"--parallel cp:{cp}: context parallelism splits causal attention without a "
                f"padding mask (PyTorch's ring attention); {self.stage.value} batches carry one"
            )
        if cp > 1 and self.attention is Attention.eager:
            raise InvalidValueError(
                f"--parallel cp:{cp}: context parallelism runs SDPA's fused kernels as ring "
                "attention; --attention eager materializes the scores"
            )

    def _check_savers(self, training: bool) -> None:
        if training:
            return
        if self.checkpointing is not DEFAULT_CHECKPOINTING:
            raise InvalidValueError(
                f"--checkpointing {self.checkpointing.value} applies to training only"
            )
        if self.loss is not DEFAULT_LOSS:
            raise InvalidValueError(f"--loss {self.loss.value} applies to training only")

    @property
    def training(self) -> bool:
        return self.stage is not Stage.inference

    @property
    def adapters(self) -> bool:
        """The method trains adapters beside a frozen base (LoRA, QLoRA, DoRA)."""
        return self.method in ADAPTER_METHODS

    @property
    def adapter_dtype(self) -> LoraDtype:
        """The adapters' dtype: the one asked, else the method's usual one."""
        if self.lora_dtype is not None:
            return self.lora_dtype
        return DEFAULT_LORA_DTYPE[self.method]  # KeyError: not an adapter method

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def model_parallel(self) -> int:
        """GPUs one model replica spans: tensor x pipeline x context degrees."""
        return self.tensor_parallel * self.pipeline_parallel * self.context_parallel

    @property
    def step_microbatches(self) -> int:
        """Micro-batches per optimizer step: the count asked, else the number of pipeline
        stages (1 without pipeline parallelism)."""
        if self.microbatches is not None:
            return self.microbatches
        return self.pipeline_parallel * self.stages_per_card

    @property
    def accumulates(self) -> bool:
        """Gradient accumulation without a pipeline: later micro-batches run forward and
        backward while the earlier ones' gradients are held."""
        return self.training and self.pipeline_parallel == 1 and self.step_microbatches > 1

    @property
    def stages_per_card(self) -> int:
        """Pipeline stages each card holds: 2 under the interleaved schedule, else 1."""
        if self.pp_schedule is PipelineSchedule.interleaved:
            return INTERLEAVED_STAGES_PER_CARD
        return 1

    @property
    def data_parallel(self) -> int:
        """Model replicas: --gpus over the GPUs one replica spans."""
        return self.gpus // self.model_parallel

    @property
    def degrees_label(self) -> str:
        """The training degrees above 1 as typed ('tp:8,pp:8'; '' when none)."""
        return degrees_typed(self.tensor_parallel, self.pipeline_parallel, self.context_parallel)

    @property
    def parallel_label(self) -> str:
        """The strategy in force and the degrees, as headers name them ('zero3 x tp 8 x pp 8,
        1f1b over 8 micro-batches')."""
        words = parallel_words(
            self.strategy, self.tensor_parallel, self.pipeline_parallel, self.context_parallel
        )
        if self.pipeline_parallel > 1:
            words += f", {self.pp_schedule.value} over {self.step_microbatches} micro-batches"
        return words

    @property
    def strategy(self) -> Parallel:
        """The parallel strategy in force: what the user asked, else the usual default."""
        if self.parallel is not None:
            return self.parallel
        if self.training:
            if self.offload is TrainingOffload.optimizer_params:
                return Parallel.zero3  # parameters offload only under full sharding
            if self.offload is TrainingOffload.optimizer and self.gpus == 1:
                return Parallel.zero2  # ZeRO-Offload is built on ZeRO-2 (Ren et al. 2021)
            return Parallel.zero3 if self.gpus > 1 else Parallel.ddp
        return Parallel.tp

    @property
    def with_attention_mask(self) -> bool:
        """Fine-tuning batches carry a padding mask (a tokenizer's `attention_mask`);
        pretraining on packed sequences and generation pass none."""
        if self.attention_mask is not None:
            return self.attention_mask
        return self.stage is Stage.finetune
