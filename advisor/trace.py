"""Exact mode: the peak tensor memory of a workload, measured on the real Hugging Face model.

The model is built from its config under PyTorch's `FakeTensorMode` (tensors with shapes and
dtypes but no storage, so any size runs on a laptop CPU with no weights and no GPU), the
workload runs on it, and `torch.distributed._tools.mem_tracker.MemTracker` records the peak of
all live tensor bytes with its split by category. The figure is what
`torch.cuda.max_memory_allocated()` would report; the CUDA context, cuBLAS workspaces and the
caching allocator's unused blocks are not tensors (the estimator's `runtime_overhead`).

Pure: no CLI, rendering or database imports. torch, transformers and peft are the optional
`trace` extra and are imported inside the functions, so importing this module costs nothing.

The harness (the one `tests/data/calibration/traced.jsonl` was made with):

- inference: `model.eval()`, `torch.no_grad()`, one forward pass over the context with
  `use_cache=True` and `logits_to_keep=1`, as `generate` processes its prompt;
- training: two iterations of forward (labels = the inputs, the loss inside the model,
  `use_cache=False`) and backward (once per `--microbatches`, the gradients accumulating),
  `optimizer.step()`, `zero_grad(set_to_none=True)`; the caller
  holds the model's output through backward and drops it before the step; the peak is taken
  over both iterations (the second, which has optimizer states, is the larger);
- fine-tuning batches carry an all-ones `attention_mask`, pretraining and inference none;
- pure 16-bit precisions build the model in that dtype (optimizer states follow it); mixed
  ones build it in fp32 and run forward under `torch.autocast`;
- optimizers are PyTorch's single-tensor (for-loop) implementations (`foreach=False`);
- LoRA: `peft.get_peft_model` with `LoraConfig(r, lora_alpha=2r, lora_dropout=0)` (adapters
  in fp32, PEFT's default) after `enable_input_require_grads()`;
- gradient checkpointing: `activation_checkpointing_enable` (formerly
  `gradient_checkpointing_enable`) with `use_reentrant=False`;
- dropout is set to 0: on the CPU, SDPA with dropout falls back to the math kernel, which
  stores the whole attention matrix where the GPU kernels do not.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from advisor.arch import Architecture, hf_text_config
from advisor.errors import TraceExtraMissingError, TraceUnavailableError
from advisor.workload import (
    ALL_LINEAR,
    Attention,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Precision,
    Stage,
    TrainingOffload,
    Workload,
)

if TYPE_CHECKING:
    from advisor.estimator import Estimate

# MemTracker's categories, in the order they are reported.
CATEGORIES = ("param", "buffer", "grad", "act", "temp", "opt", "oth")
# MemTracker's reference types by name (its enum is private; its member names are stable).
_CATEGORY_OF_REFTYPE = {
    "PARAM": "param",
    "BUFFER": "buffer",
    "GRAD": "grad",
    "ACT": "act",
    "TEMP": "temp",
    "OPT": "opt",
    "OTH": "oth",
}
TRAINING_ITERATIONS = 2
SGD_MOMENTUM = 0.9
# LoRA's scaling as the calibration set (and most recipes) use it: alpha = 2 x rank.
LORA_ALPHA_PER_RANK = 2
INSTALL_HINT = "pip install 'gpu-fit-advisor[trace]'"
# Config fields that hold a dropout probability, by model type's spelling.
_DROPOUT_MARKERS = ("dropout", "pdrop")
# Config fields a saved config.json carries that are not the architecture.
_NOT_ARCHITECTURE = ("_name_or_path", "architectures", "transformers_version", "auto_map")

_DTYPE_NAMES = {
    Precision.fp32: "float32",
    Precision.bf16: "bfloat16",
    Precision.fp16: "float16",
    Precision.mixed_bf16: "float32",
    Precision.mixed_fp16: "float32",
}
_AUTOCAST_DTYPE_NAMES = {Precision.mixed_bf16: "bfloat16", Precision.mixed_fp16: "float16"}


@dataclass(frozen=True)
class Trace:
    """The traced peak: total bytes, MemTracker's split at that moment, and what was changed."""

    model_type: str
    params: int
    workload: Workload
    peak_bytes: int
    by_category: Mapping[str, int]
    notes: tuple[str, ...] = field(default=())
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def category(self, name: str) -> int:
        return self.by_category.get(name, 0)


# --- Architecture -> Hugging Face config ---------------------------------------------------


def hf_config(arch: Architecture) -> dict[str, Any]:
    """A Hugging Face config (model_type and fields) that builds a model of `arch`, written with
    the type's own field names (`ModelTraits.names`).

    Fields the architecture does not hold (rope scaling, activation, norm epsilon) keep
    transformers' defaults for the type; none of them changes a tensor's size.
    """
    names = arch.traits.names
    config: dict[str, Any] = {
        "model_type": arch.model_type.value,
        "vocab_size": arch.vocab_size,
        "tie_word_embeddings": arch.tie_word_embeddings,
        names.layers: arch.num_hidden_layers,
        names.hidden: arch.hidden_size,
        names.heads: arch.num_attention_heads,
    }
    optional = (
        (names.positions, arch.max_position_embeddings),
        (names.kv_heads, arch.num_key_value_heads),
        (names.head_dim, arch.head_dim),
        (names.ffn, arch.intermediate_size),
    )
    config.update((name, value) for name, value in optional if name is not None)
    config.update(_moe_fields(arch))
    config.update(_sliding_fields(arch))
    config.update(arch.arch_options)
    return config


def _moe_fields(arch: Architecture) -> dict[str, Any]:
    traits = arch.traits
    if arch.num_experts is None or traits.names.experts is None:
        return {}
    fields: dict[str, Any] = {
        traits.names.experts: arch.num_experts,
        "num_experts_per_tok": arch.num_experts_per_tok,
    }
    fields.update((name, getattr(arch, name)) for name in traits.trace_moe_fields)
    fields.update(
        (name, list(value) if isinstance(value, tuple) else value)
        for name, value in traits.trace_fixed
    )
    return fields


def _sliding_fields(arch: Architecture) -> dict[str, Any]:
    traits = arch.traits
    if arch.sliding_window is None:
        if traits.clears_window:
            return {"sliding_window": None, "use_sliding_window": False}
        return {}
    fields: dict[str, Any] = {"sliding_window": arch.sliding_window}
    if traits.window_flag:
        fields["use_sliding_window"] = True
    return fields


# --- the trace ----------------------------------------------------------------------------


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise TraceExtraMissingError(
            f"tracing needs torch, transformers and peft: {INSTALL_HINT}"
        ) from None


# Optimizers a trace cannot build: bitsandbytes' need its CUDA kernels, Lion is not in torch.
_NOT_IN_TORCH = frozenset(
    {Optimizer.adamw_8bit, Optimizer.paged_adamw_8bit, Optimizer.paged_adamw_32bit, Optimizer.lion}
)


def _unsupported(workload: Workload) -> str | None:
    """Why this workload cannot be traced on one fake device, or None."""
    if workload.gpus > 1:
        return "a trace runs on one device: use --gpus 1 (the estimate divides the terms)"
    if workload.method is Method.qlora:
        return "QLoRA's 4-bit base needs bitsandbytes' CUDA kernels, which fake tensors cannot run"
    if workload.weight_format is not None:
        return "--quant: quantized weights need their formats' kernels; trace bf16/fp16/fp32"
    if workload.precision is Precision.fp8:
        return "fp8 training needs TransformerEngine on a GPU; it cannot be traced"
    if workload.kv_dtype is not None and workload.kv_dtype.value != workload.precision.value:
        return "--kv-dtype: transformers' default cache keeps keys and values in the model dtype"
    if workload.offload is not TrainingOffload.none:
        return f"--offload {workload.offload.value} moves state off the device; it is not traced"
    if workload.attention is Attention.flash:
        return "--attention flash needs FlashAttention-2's CUDA kernels (not on fake tensors)"
    if workload.checkpointing is Checkpointing.offload:
        return "--checkpointing offload moves checkpoints to host memory; it is not traced"
    if workload.loss is Loss.fused:
        return "--loss fused needs Liger's Triton kernels, which fake tensors cannot run"
    if workload.training and workload.optimizer in _NOT_IN_TORCH:
        return f"--optimizer {workload.optimizer.value} is not in torch.optim; it is not traced"
    return None


def _prepare_config(model: Architecture | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(model, Architecture):
        return hf_config(model)
    config = dict(hf_text_config(model))
    for key in (*_NOT_ARCHITECTURE, "dtype", "torch_dtype"):
        config.pop(key, None)
    return config


def _build_config(raw: dict[str, Any]) -> tuple[Any, list[str]]:
    """transformers' config for `raw`, with every dropout set to 0 (and a note saying so)."""
    transformers = _import("transformers")
    fields = dict(raw)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise TraceUnavailableError("the config has no model_type: cannot build the model")
    try:
        config = transformers.AutoConfig.for_model(str(model_type), **fields)
    except (ValueError, KeyError) as error:
        raise TraceUnavailableError(
            f"transformers {transformers.__version__} cannot build model_type "
            f"{model_type!r}: {_first_sentence(error)}"
        ) from None
    pad = getattr(config, "pad_token_id", None)
    if isinstance(pad, int) and pad >= config.vocab_size:
        config.pad_token_id = None  # a type's default pad id beyond a smaller vocabulary
    changed = []
    for key, value in sorted(config.to_dict().items()):
        if any(m in key for m in _DROPOUT_MARKERS) and isinstance(value, float) and value > 0:
            setattr(config, key, 0.0)
            changed.append(f"{key}={value:g}")
    notes = []
    if changed:
        notes.append(
            "dropout set to 0 (" + ", ".join(changed) + "): with dropout, the CPU's SDPA "
            "falls back to a kernel that stores the attention matrix, which GPU kernels do not"
        )
    return config, notes


def _dtype(name: str) -> Any:
    """The torch dtype named `name` (float32, bfloat16 …)."""
    return getattr(_import("torch"), name)


@contextmanager
def _adapters_stay_in_place() -> Iterator[None]:
    """PEFT moves new adapters to the base layer's device with `.to()`, which fake parameters
    refuse (PyTorch would have to swap them). Everything is already on the one fake device,
    so while adapters are added, those moves are skipped: the tuner layer's move, and any
    `Module.to(device)` onto the device the module's parameters are already on."""
    torch = _import("torch")
    tuners = _import("peft.tuners.tuners_utils")
    layer = tuners.BaseTunerLayer
    module = torch.nn.Module
    original_move = layer._move_adapter_to_device_of_base_layer
    original_to = module.to

    def stay(self: Any, adapter_name: str, device: Any = None) -> None:
        return None

    def to(self: Any, *args: Any, **kwargs: Any) -> Any:
        target = kwargs.get("device", args[0] if len(args) == 1 and not kwargs else None)
        if isinstance(target, torch.device) and all(p.device == target for p in self.parameters()):
            return self
        return original_to(self, *args, **kwargs)

    layer._move_adapter_to_device_of_base_layer = stay
    module.to = to
    try:
        yield
    finally:
        layer._move_adapter_to_device_of_base_layer = original_move
        module.to = original_to


@contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """transformers' info and warning logs (defaults it fills in) are not the trace's output."""
    logging = transformers.logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def _tracker() -> Any:
    """A MemTracker that installs its gradient hooks only on trainable parameters (it hooks
    every parameter, and `register_hook` fails on frozen ones such as LoRA's base)."""
    mem_tracker = _import("torch.distributed._tools.mem_tracker")

    base: Any = mem_tracker.MemTracker

    class Tracker(base):  # type: ignore[misc]
        def _track_module_params_and_buffers(
            self, module: Any, install_grad_hooks: bool = True
        ) -> tuple[int, int]:
            sizes: tuple[int, int] = super()._track_module_params_and_buffers(
                module, install_grad_hooks=False
            )
            if not install_grad_hooks:
                return sizes
            grad = mem_tracker._MemRefType.GRAD

            def on_grad(tensor: Any) -> None:
                self._update_and_maybe_create_winfos(tensor, grad)

            for param in module.parameters():
                if param.requires_grad and self._param_to_grad_hook_handles.get(param) is None:
                    self._param_to_grad_hook_handles[param] = (
                        param.register_hook(on_grad),
                        param.register_post_accumulate_grad_hook(lambda p: on_grad(p.grad)),
                    )
            return sizes

    return Tracker()


def _optimizer(params: list[Any], workload: Workload) -> Any:
    optim = _import("torch.optim")
    if workload.optimizer is Optimizer.adamw:
        return optim.AdamW(params, foreach=False)
    if workload.optimizer is Optimizer.adafactor:
        return optim.Adafactor(params, foreach=False)
    momentum = SGD_MOMENTUM if workload.optimizer is Optimizer.sgd_momentum else 0.0
    return optim.SGD(params, lr=1e-3, momentum=momentum, foreach=False)


def _freeze_all_but_top(model: Any, layers: int) -> None:
    """--method freeze: the top `layers` blocks, the final norm and the output head train."""
    for param in model.parameters():
        param.requires_grad_(False)
    blocks = _blocks(model)
    for block in blocks[len(blocks) - layers :] if layers else []:
        for param in block.parameters():
            param.requires_grad_(True)
    for param in model.get_output_embeddings().parameters():
        param.requires_grad_(True)
    base = model.get_decoder() if hasattr(model, "get_decoder") else model
    for name, module in base.named_children():
        if "norm" in name or name in ("ln_f", "final_layer_norm"):
            for param in module.parameters():
                param.requires_grad_(True)


def _blocks(model: Any) -> list[Any]:
    torch = _import("torch")
    lists: list[Any] = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise TraceUnavailableError("cannot find the model's layers to freeze")
    return list(max(lists, key=lambda blocks: len(list(blocks))))


def trace(model: Architecture | Mapping[str, Any], workload: Workload) -> Trace:
    """Run `workload` on the Hugging Face model of `model` (an Architecture or a config.json
    dict) under fake tensors and return its peak tensor memory.

    Raises TraceExtraMissingError without the `trace` extra, TraceUnavailableError for a
    model type transformers cannot build or a workload a fake device cannot run.
    """
    reason = _unsupported(workload)
    if reason is not None:
        raise TraceUnavailableError(reason)
    torch = _import("torch")
    transformers = _import("transformers")
    fake_tensor = _import("torch._subclasses.fake_tensor")
    config, notes = _build_config(_prepare_config(model))
    dtype = _dtype(_DTYPE_NAMES[workload.precision])
    with fake_tensor.FakeTensorMode(), _quiet(transformers):
        net = _build_model(transformers, config, dtype, notes, workload.attention)
        params = sum(p.numel() for p in net.parameters())
        ids = torch.randint(0, config.vocab_size, (workload.batch, workload.seq))
        mask = torch.ones_like(ids) if workload.with_attention_mask else None
        try:
            if workload.stage is Stage.inference:
                peak = _run_inference(torch, net, ids, mask)
            else:
                peak = _run_training(torch, net, ids, mask, workload)
        except (RuntimeError, NotImplementedError, TypeError) as error:
            # An op with no fake-tensor implementation for this dtype or layout.
            raise TraceUnavailableError(
                f"the {config.model_type} model cannot run this workload under fake tensors: "
                f"{_first_sentence(error)}"
            ) from None
    return Trace(
        model_type=str(config.model_type),
        params=params,
        workload=workload,
        peak_bytes=sum(peak.values()),
        by_category=MappingProxyType(peak),
        notes=tuple(notes),
        versions=MappingProxyType(
            {
                "torch": str(torch.__version__),
                "transformers": str(transformers.__version__),
                **(
                    {"peft": str(_import("peft").__version__)}
                    if workload.method in (Method.lora, Method.dora)
                    else {}
                ),
            }
        ),
    )


def _first_sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text.split(". ")[0].rstrip(".")


def _build_model(
    transformers: Any, config: Any, dtype: Any, notes: list[str], asked: Attention | None
) -> Any:
    """The causal LM of `config` with SDPA attention; with eager attention (and a note) for
    the types transformers gives no SDPA path, as it would on a GPU; with eager attention
    when `--attention eager` asks for it."""
    if asked is Attention.eager:
        return transformers.AutoModelForCausalLM.from_config(
            config, dtype=dtype, attn_implementation="eager"
        )
    for attention in ("sdpa", "eager"):
        try:
            net = transformers.AutoModelForCausalLM.from_config(
                config, dtype=dtype, attn_implementation=attention
            )
        except ValueError as error:
            if attention == "sdpa" and "scaled_dot_product_attention" in str(error):
                continue
            raise TraceUnavailableError(
                f"transformers cannot build a causal LM of model_type {config.model_type!r}: "
                f"{_first_sentence(error)}"
            ) from None
        if attention == "eager":
            notes.append(
                f"transformers has no SDPA attention for {config.model_type}: traced with its "
                "eager attention, which stores each layer's attention matrix"
            )
        return net
    raise AssertionError("unreachable")  # pragma: no cover


def _peak(tracker: Any) -> dict[str, int]:
    snapshot = tracker.get_tracker_snapshot("peak")
    peak = dict.fromkeys(CATEGORIES, 0)
    for device_snapshot in snapshot.values():
        for key, value in device_snapshot.items():
            name = _CATEGORY_OF_REFTYPE.get(getattr(key, "name", ""))
            if name is not None:
                peak[name] += int(value)
    return peak


def _run_inference(torch: Any, net: Any, ids: Any, mask: Any) -> dict[str, int]:
    net.eval()
    tracker = _tracker()
    tracker.track_external(net)
    with tracker, torch.no_grad():
        out = net(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1)
        del out
    return _peak(tracker)


def _run_training(torch: Any, net: Any, ids: Any, mask: Any, workload: Workload) -> dict[str, int]:
    net.train()
    if workload.checkpointing in (Checkpointing.full, Checkpointing.selective):
        kwargs: dict[str, Any] = {"use_reentrant": False}
        if workload.checkpointing is Checkpointing.selective:
            kwargs["context_fn"] = _selective_policy(torch)
        if hasattr(net, "activation_checkpointing_enable"):  # its name from transformers 5.2x
            net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if workload.method in (Method.lora, Method.dora):
        net = _with_adapters(torch, net, workload)
    elif workload.method is Method.freeze:
        assert workload.trainable_layers is not None  # Workload validates it
        _freeze_all_but_top(net, workload.trainable_layers)
    trainable = [p for p in net.parameters() if p.requires_grad]
    if workload.optimizer_in_backward:
        optimizers = _optimizers_in_backward(trainable, workload)
        optimizer = None
    else:
        optimizer = _optimizer(trainable, workload)
        optimizers = [optimizer]
    autocast_name = _AUTOCAST_DTYPE_NAMES.get(workload.precision)
    tracker = _tracker()
    tracker.track_external(net, *optimizers)
    with tracker, warnings.catch_warnings():
        # MemTracker reads every parameter's gradient after each step; with the optimizer in
        # backward the others are already freed (None), which it warns about.
        warnings.filterwarnings(
            "ignore", "Expected a tensor or a traceable wrapper-subclass", UserWarning
        )
        for _ in range(TRAINING_ITERATIONS):
            # Gradient accumulation: every micro-batch's gradients summed into .grad before
            # the one optimizer step (Hugging Face Trainer's gradient_accumulation_steps).
            for _ in range(workload.step_microbatches):
                with (
                    torch.autocast("cpu", dtype=_dtype(autocast_name))
                    if autocast_name
                    else nullcontext()
                ):
                    if workload.loss is Loss.chunked:
                        out = _chunked_loss(torch, net, ids, mask)
                    else:
                        out = net(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False)
                (out if workload.loss is Loss.chunked else out.loss).backward()
                del out
                # MemTracker tracks one call per module between resets (its peak is kept).
                tracker.reset_mod_stats()
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            tracker.reset_mod_stats()
    return _peak(tracker)


def _with_adapters(torch: Any, net: Any, workload: Workload) -> Any:
    """The PEFT model of `net` with the workload's LoRA or DoRA adapters (bf16 when asked)."""
    peft = _import("peft")
    net.enable_input_require_grads()
    lora = peft.LoraConfig(
        r=workload.lora_rank,
        lora_alpha=LORA_ALPHA_PER_RANK * workload.lora_rank,
        target_modules=(
            ALL_LINEAR if workload.lora_targets == (ALL_LINEAR,) else list(workload.lora_targets)
        ),
        lora_dropout=0.0,
        use_dora=workload.method is Method.dora,
        task_type="CAUSAL_LM",
    )
    try:
        with _adapters_stay_in_place(), warnings.catch_warnings():
            # PEFT 0.21 reads transformers 5's deprecated alias; not the user's concern.
            warnings.filterwarnings(
                "ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning
            )
            # all-linear on GPT-2's Conv1D: PEFT sets fan_in_fan_out itself and says so.
            warnings.filterwarnings("ignore", "fan_in_fan_out is set to False", UserWarning)
            net = peft.get_peft_model(net, lora)
    except ValueError as error:
        raise TraceUnavailableError(
            f"PEFT cannot add LoRA to {','.join(workload.lora_targets)} "
            f"(--lora-targets): {_first_sentence(error)}"
        ) from None
    if workload.adapter_dtype is LoraDtype.bf16:
        _adapters_to_bf16(torch, peft, net)
    return net


def _adapters_to_bf16(torch: Any, peft: Any, net: Any) -> None:
    """The QLoRA recipe's cast (artidoro/qlora qlora.py): every `LoraLayer` to bf16 after the
    adapters are added."""
    layer = _import("peft.tuners.lora").LoraLayer
    for module in net.modules():
        if isinstance(module, layer):
            # `Module.to` would swap fake parameters, which PyTorch refuses: cast in place.
            for param in module.parameters():
                if param.dtype == torch.float32:
                    param.data = param.data.to(torch.bfloat16)


def _optimizers_in_backward(params: list[Any], workload: Workload) -> list[Any]:
    """torchtune's optimizer in backward (`register_optim_in_bwd_hooks`): one optimizer per
    parameter, stepped and its gradient freed as soon as that gradient is accumulated."""
    optimizers = {param: _optimizer([param], workload) for param in params}

    def step(param: Any) -> None:
        optimizers[param].step()
        optimizers[param].zero_grad(set_to_none=True)

    for param in params:
        param.register_post_accumulate_grad_hook(step)
    return list(optimizers.values())


# The ops torchtitan's per-op selective checkpointing saves (`_save_list` in
# torchtitan/distributed/activation_checkpoint.py), plus PyTorch's CPU flash-attention kernel,
# the fused kernel SDPA takes on the CPU a trace runs on (CUDA's are in the list).
_SELECTIVE_SAVED_OPS = (
    "mm",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
)


def _selective_policy(torch: Any) -> Any:
    """torchtitan's op policy as a `context_fn` for `torch.utils.checkpoint`: save the listed
    ops' outputs, but only every other `mm` (counted separately in forward and recompute)."""
    checkpoint = importlib.import_module("torch.utils.checkpoint")
    aten = torch.ops.aten
    saved = {getattr(aten, name).default for name in _SELECTIVE_SAVED_OPS if hasattr(aten, name)}
    mm = aten.mm.default

    def context_fn() -> Any:
        counts = dict.fromkeys(("forward", "recompute"), 0)

        def policy(ctx: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
            mode = "recompute" if ctx.is_recompute else "forward"
            if func == mm:
                counts[mode] += 1
            keep = func in saved and not (func == mm and counts[mode] % 2 == 0)
            policy_enum = checkpoint.CheckpointPolicy
            return policy_enum.MUST_SAVE if keep else policy_enum.PREFER_RECOMPUTE

        return checkpoint.create_selective_checkpoint_contexts(policy)

    return context_fn


def _chunked_loss(torch: Any, net: Any, ids: Any, mask: Any) -> Any:
    """torchtune's `CEWithChunkedOutputLoss`: the output projection on 8 chunks of tokens, each
    chunk's logits upcast to fp32 on its own; the mean over the shifted labels."""
    from advisor.estimator import CHUNKED_LOSS_CHUNKS

    functional = importlib.import_module("torch.nn.functional")
    hidden = net.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False)[0]
    head = net.get_output_embeddings()
    labels = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    total = None
    for h, y in zip(
        hidden.chunk(CHUNKED_LOSS_CHUNKS, dim=1),
        labels.chunk(CHUNKED_LOSS_CHUNKS, dim=1),
        strict=True,
    ):
        logits = functional.linear(h, head.weight)  # MemTracker tracks one call per module
        part = functional.cross_entropy(
            logits.float().flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum"
        )
        total = part if total is None else total + part
    return total / (labels != -100).sum()


# --- the trace beside the estimate ----------------------------------------------------------

# How the estimate's terms and MemTracker's categories line up: the tracker files every tensor
# made in forward (saved activations, KV cache, logits, autocast's weight copies) under `act`
# and every tensor made in backward (activation gradients, the loss's buffers) under `temp`.
COMPARED_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("parameters", ("weights", "adapters"), ("param", "buffer")),
    ("gradients", ("gradients",), ("grad",)),
    ("optimizer", ("optimizer",), ("opt",)),
    ("activations", ("kv_cache", "activations", "logits"), ("act", "temp", "oth")),
)


@dataclass(frozen=True)
class Comparison:
    """One group of terms: the estimate's bytes, the trace's, and the estimate's error."""

    name: str
    estimated: int
    traced: int

    @property
    def error_pct(self) -> float | None:
        """(estimate - trace) / trace in percent; None where the trace has none and the
        estimate some."""
        if self.traced == 0:
            return 0.0 if self.estimated == 0 else None
        return (self.estimated - self.traced) / self.traced * 100


def compare(result: Trace, estimate: Estimate) -> tuple[Comparison, ...]:
    """The estimate's tensor terms against the trace, group by group, then the tensor total
    (the estimate's total less its runtime overhead, against the traced peak)."""
    components = estimate.components
    rows = [
        Comparison(
            name,
            sum(components.get(term, 0) for term in terms),
            sum(result.category(category) for category in categories),
        )
        for name, terms, categories in COMPARED_GROUPS
    ]
    rows.append(Comparison("total", estimate.tensor_bytes, result.peak_bytes))
    return tuple(rows)
