"""What the `catalog` command groups share: the table renderer and the common options, every
editable field as a command-line option, and one `Entity` per kind of row that `catalog show`,
`add`, `update` and `remove` edit (its query functions, its create model, its fields).

The catalog is imported inside the functions, so `advisor --help` loads no ORM.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import shared
from advisor.enums import LinkKind, Market, ModelType, Vendor
from advisor.errors import InvalidValueError
from advisor.recipes import RECIPE_OPTIONS
from advisor.units import Units, format_bandwidth, parse_size, to_unit, unit_label
from advisor.workload import (
    Attention,
    Checkpointing,
    LoraDtype,
    Loss,
    Method,
    Optimizer,
    Precision,
    TrainingOffload,
)

if TYPE_CHECKING:
    from rich.table import Table
    from sqlmodel import SQLModel

    from catalog.tables import GPUPublic, ModelPublic, RecipePublic

# --- options every group uses ---------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
UnitsOption = Annotated[
    Units, typer.Option("--units", help="Memory in GiB (2^30 bytes) or GB (10^9 bytes).")
]
SourcesOption = Annotated[
    bool, typer.Option("--sources", help="Add a column with each row's source.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
NameArgument = Annotated[str, typer.Argument(help="Slug or any alias.", metavar="NAME")]
RecipeNameArgument = Annotated[str, typer.Argument(help="Slug or name.", metavar="NAME")]
AliasOption = Annotated[
    list[str] | None, typer.Option("--alias", help="Another name users type (repeatable).")
]
AddAliasOption = Annotated[
    list[str] | None, typer.Option("--add-alias", help="Add an alias (repeatable).")
]
RemoveAliasOption = Annotated[
    list[str] | None, typer.Option("--remove-alias", help="Remove an alias (repeatable).")
]
ClearOption = Annotated[
    list[str] | None,
    typer.Option(
        "--clear",
        help="Empty an optional field, "
        "by its option name without dashes (repeatable): --clear list-price.",
    ),
]
ArchOption = Annotated[
    list[str] | None,
    typer.Option(
        "--arch-option",
        help="Another config.json key as KEY=JSON, e.g. attention_bias=true (repeatable).",
    ),
]


# --- rendering ------------------------------------------------------------------------------


def table(title: str, columns: Sequence[tuple[str, str]], caption: str | None = None) -> Table:
    """An empty rich table with these (header, justify) columns."""
    from rich.table import Table

    result = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    for header, justify in columns:
        result.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    return result


def num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def option_text(value: Any) -> str:
    """A recipe option's value as the user would type it (a switch: yes or no)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


def show_table(title: str, pairs: Sequence[tuple[str, str]]) -> None:
    """One row's fields, a (field, value) line each."""
    result = table(title, [("Field", "left"), ("Value", "left")])
    for key, value in pairs:
        result.add_row(key, value)
    shared.out().print(result)


def _text(value: object) -> str:
    return "—" if value is None else str(value)


def gpu_pairs(gpu: GPUPublic, units: Units) -> list[tuple[str, str]]:
    def size(value: int) -> str:
        return f"{to_unit(value, units):,.2f} {unit_label(units)} ({value:,} bytes)"

    return [
        ("slug", gpu.slug),
        ("name", gpu.name),
        ("vendor", gpu.vendor.value),
        ("architecture", gpu.architecture),
        ("market", gpu.market.value),
        ("memory", size(gpu.memory_bytes)),
        ("memory type", _text(gpu.memory_type)),
        ("bandwidth", format_bandwidth(gpu.bandwidth_bytes_per_s)),
        ("FP16/BF16 dense TFLOPS", _text(gpu.fp16_tflops)),
        ("FP8 dense TFLOPS", _text(gpu.fp8_tflops)),
        ("INT8 dense TOPS", _text(gpu.int8_tops)),
        ("interconnect", _text(gpu.interconnect)),
        (
            "interconnect bandwidth",
            format_bandwidth(gpu.interconnect_bytes_per_s) if gpu.interconnect_bytes_per_s else "—",
        ),
        ("release year", _text(gpu.release_year)),
        (
            "list price",
            f"${gpu.list_price_usd:,.0f} ({gpu.list_price_date or 'date unknown'})"
            if gpu.list_price_usd
            else "—",
        ),
        (
            "cloud price",
            f"${gpu.cloud_price_per_hour_usd:,.2f}/h ({gpu.cloud_price_date or 'date unknown'})"
            if gpu.cloud_price_per_hour_usd
            else "—",
        ),
        ("usable memory share", _text(gpu.usable_memory_fraction)),
        ("aliases", ", ".join(gpu.aliases) or "—"),
        ("per machine", _text(gpu.max_per_node) if gpu.max_per_node else "market's rule"),
        ("link", gpu.link.value if gpu.link else "market's rule"),
        (
            "multi-node",
            "market's rule" if gpu.multi_node is None else "yes" if gpu.multi_node else "no",
        ),
        ("default set", (gpu.default_set_reason or "yes") if gpu.default_set else "no"),
        ("source", gpu.source),
        ("notes", _text(gpu.notes)),
    ]


def model_pairs(model: ModelPublic) -> list[tuple[str, str]]:
    from catalog.tables import ARCHITECTURE_FIELDS

    pairs = [
        ("slug", model.slug),
        ("name", model.name),
        ("family", model.family),
        ("model_type", model.model_type.value),
        ("params", f"{model.params:,} ({'published' if model.params_published else 'computed'})"),
        ("active params", f"{model.active_params:,}"),
        ("attention", model.attention.value),
    ]
    for field in ARCHITECTURE_FIELDS:
        value = getattr(model, field)
        if value is not None:
            pairs.append(
                (
                    field,
                    f"{value:,}"
                    if isinstance(value, int) and not isinstance(value, bool)
                    else str(value),
                )
            )
    pairs += [
        ("native dtype", model.native_dtype),
        ("arch options", json.dumps(model.arch_options) if model.arch_options else "—"),
        ("aliases", ", ".join(model.aliases) or "—"),
        ("source", model.source),
        ("notes", model.notes or "—"),
    ]
    return pairs


def recipe_pairs(recipe: RecipePublic) -> list[tuple[str, str]]:
    pairs = [
        ("slug", recipe.slug),
        ("name", recipe.name),
        ("framework", recipe.framework),
        ("description", recipe.description),
    ]
    for name, flag in RECIPE_OPTIONS.items():
        value = getattr(recipe, name)
        pairs.append((flag, "— (not set)" if value is None else option_text(value)))
    pairs += [("source", recipe.source), ("notes", recipe.notes or "—")]
    return pairs


# --- fields as options: one table per kind --------------------------------------------------


@dataclass(frozen=True)
class FieldOption:
    """One catalog field as a command-line option."""

    field: str
    flag: str
    type: Any
    help: str
    parse: Callable[[Any], Any] | None = None


def _size(what: str) -> Callable[[str], int]:
    return lambda text: parse_size(text, what=what)


GPU_FIELDS = (
    FieldOption("slug", "--slug", str, "Unique id: lowercase letters, digits, '.', '_', '-'."),
    FieldOption("name", "--name", str, "Full name, e.g. 'NVIDIA GeForce RTX 4090'."),
    FieldOption("vendor", "--vendor", Vendor, "Vendor."),
    FieldOption("architecture", "--architecture", str, "Architecture, e.g. 'Ada Lovelace'."),
    FieldOption("market", "--market", Market, "Market segment."),
    FieldOption(
        "memory_bytes",
        "--memory",
        str,
        "Memory with its unit: 24GiB (vendors' '24 GB' of VRAM is 24GiB) or 24GB.",
        _size("--memory"),
    ),
    FieldOption("memory_type", "--memory-type", str, "Memory type, e.g. GDDR6X, HBM3."),
    FieldOption(
        "bandwidth_bytes_per_s",
        "--bandwidth",
        str,
        "Memory bandwidth, e.g. 1008GB/s.",
        _size("--bandwidth"),
    ),
    FieldOption("fp16_tflops", "--fp16-tflops", float, "Dense FP16/BF16 tensor TFLOPS."),
    FieldOption("fp8_tflops", "--fp8-tflops", float, "Dense FP8 tensor TFLOPS."),
    FieldOption("int8_tops", "--int8-tops", float, "Dense INT8 tensor TOPS."),
    FieldOption("interconnect", "--interconnect", str, "GPU-to-GPU link, e.g. 'NVLink 4'."),
    FieldOption(
        "interconnect_bytes_per_s",
        "--interconnect-bandwidth",
        str,
        "Link bandwidth, e.g. 900GB/s.",
        _size("--interconnect-bandwidth"),
    ),
    FieldOption("release_year", "--release-year", int, "Year of release."),
    FieldOption("list_price_usd", "--list-price", float, "List price in USD."),
    FieldOption("list_price_date", "--list-price-date", str, "Date of the list price, YYYY-MM-DD."),
    FieldOption(
        "cloud_price_per_hour_usd",
        "--cloud-price",
        float,
        "Typical cloud price in USD per card-hour.",
    ),
    FieldOption(
        "cloud_price_date", "--cloud-price-date", str, "Date of the cloud price, YYYY-MM-DD."
    ),
    FieldOption(
        "usable_memory_fraction",
        "--usable-memory-fraction",
        float,
        "Unified memory: share the GPU may use (0-1].",
    ),
    FieldOption("source", "--source", str, "Where the numbers come from."),
    FieldOption("notes", "--notes", str, "Caveats."),
    FieldOption(
        "max_per_node",
        "--max-per-node",
        int,
        "Most of these cards one machine takes (default: the market's rule).",
    ),
    FieldOption(
        "link", "--link", LinkKind, "Link between cards in one machine (default: market's rule)."
    ),
    FieldOption(
        "multi_node",
        "--multi-node",
        bool,
        "Whether machines of these cards can be joined over the network (default: market's rule).",
    ),
    FieldOption(
        "default_set", "--default-set", bool, "Among the cards `fit` considers by default."
    ),
    FieldOption(
        "default_set_reason",
        "--default-set-reason",
        str,
        "Why it is in the default set, with a source (cloud offer, survey share).",
    ),
)

MODEL_FIELDS = (
    FieldOption("slug", "--slug", str, "Unique id, e.g. llama-2-7b."),
    FieldOption("name", "--name", str, "Display name (default: the slug)."),
    FieldOption("family", "--family", str, "Family slug (see 'advisor catalog families')."),
    FieldOption("model_type", "--model-type", ModelType, "Hugging Face model_type."),
    FieldOption(
        "params",
        "--params",
        int,
        "Exact parameter count (default: computed from the architecture).",
    ),
    FieldOption("num_hidden_layers", "--num-hidden-layers", int, "Decoder layers."),
    FieldOption("hidden_size", "--hidden-size", int, "Hidden size."),
    FieldOption("num_attention_heads", "--num-attention-heads", int, "Query heads."),
    FieldOption(
        "num_key_value_heads",
        "--num-key-value-heads",
        int,
        "Key/value heads (default: as many as query heads).",
    ),
    FieldOption("head_dim", "--head-dim", int, "Head dimension (default: hidden / heads)."),
    FieldOption("intermediate_size", "--intermediate-size", int, "MLP inner size."),
    FieldOption("vocab_size", "--vocab-size", int, "Vocabulary size."),
    FieldOption(
        "max_position_embeddings", "--max-position-embeddings", int, "Maximum context in tokens."
    ),
    FieldOption(
        "tie_word_embeddings",
        "--tie-word-embeddings",
        bool,
        "Output head shares the input embedding.",
    ),
    FieldOption("num_experts", "--num-experts", int, "MoE: routed experts."),
    FieldOption("num_experts_per_tok", "--num-experts-per-tok", int, "MoE: experts per token."),
    FieldOption("n_shared_experts", "--n-shared-experts", int, "MoE: shared experts."),
    FieldOption("moe_intermediate_size", "--moe-intermediate-size", int, "MoE: expert FFN size."),
    FieldOption(
        "first_k_dense_replace", "--first-k-dense-replace", int, "MoE: leading dense layers."
    ),
    FieldOption("sliding_window", "--sliding-window", int, "Sliding attention window (tokens)."),
    FieldOption(
        "num_sliding_layers",
        "--num-sliding-layers",
        int,
        "Layers using the sliding window (default: all).",
    ),
    FieldOption("q_lora_rank", "--q-lora-rank", int, "MLA: query latent rank."),
    FieldOption("kv_lora_rank", "--kv-lora-rank", int, "MLA: key/value latent rank."),
    FieldOption("qk_nope_head_dim", "--qk-nope-head-dim", int, "MLA: non-rotary head dim."),
    FieldOption("qk_rope_head_dim", "--qk-rope-head-dim", int, "MLA: rotary head dim."),
    FieldOption("v_head_dim", "--v-head-dim", int, "MLA: value head dim."),
    FieldOption("native_dtype", "--native-dtype", str, "Checkpoint dtype, e.g. bfloat16."),
    FieldOption("source", "--source", str, "Where the architecture comes from."),
    FieldOption("notes", "--notes", str, "Caveats."),
)


def _recipe_option(field: str, type_: Any, help_: str) -> FieldOption:
    """A recipe column as the option `fit` and `estimate` spell it (advisor.recipes)."""
    return FieldOption(field, RECIPE_OPTIONS[field], type_, help_)


RECIPE_FIELDS = (
    FieldOption("slug", "--slug", str, "Unique id users pass to --recipe, e.g. my-team-qlora."),
    FieldOption("name", "--name", str, "Display name (default: the slug)."),
    FieldOption("framework", "--framework", str, "Framework, e.g. axolotl, torchtune."),
    FieldOption("description", "--description", str, "What the recipe does, in a sentence."),
    FieldOption("source", "--source", str, "Where its defaults come from (file and commit)."),
    _recipe_option("method", Method, "Fine-tuning method it uses."),
    _recipe_option("precision", Precision, "Training precision."),
    _recipe_option("optimizer", Optimizer, "Optimizer."),
    _recipe_option(
        "optimizer_in_backward", bool, "Applies each gradient during the backward pass."
    ),
    _recipe_option("checkpointing", Checkpointing, "Activation checkpointing."),
    _recipe_option("loss", Loss, "Cross-entropy implementation."),
    _recipe_option("offload", TrainingOffload, "Training state kept in host RAM."),
    _recipe_option("lora_dtype", LoraDtype, "Adapter weights' dtype."),
    _recipe_option("lora_targets", str, "attention, all-linear, or a comma list."),
    _recipe_option("lora_rank", int, "LoRA rank."),
    _recipe_option("attention", Attention, "Attention implementation."),
    _recipe_option("parallel", str, "As --parallel takes it, e.g. zero3 or zero3,tp:8."),
    _recipe_option("batch", int, "Sequences per step (micro-batch) per GPU."),
    _recipe_option("seq", int, "Tokens per sequence."),
    FieldOption("notes", "--notes", str, "Caveats."),
)


def option(fields: Sequence[FieldOption], field: str) -> Any:
    """The typer option of one field: its flag (a --x/--no-x switch for a boolean) and help."""
    found = next(o for o in fields if o.field == field)
    flags = (f"{found.flag}/--no-{found.flag[2:]}",) if found.type is bool else (found.flag,)
    return typer.Option(*flags, help=found.help)


def values(fields: Sequence[FieldOption], given: Mapping[str, Any]) -> dict[str, Any]:
    """The options the user gave (a command's parameters, named after their fields), parsed
    into field values."""
    result: dict[str, Any] = {}
    for field in fields:
        value = given.get(field.field)
        if value is None:
            continue
        result[field.field] = field.parse(value) if field.parse else value
    return result


def clears(fields: Sequence[FieldOption], names: Sequence[str] | None) -> dict[str, None]:
    """The fields `--clear NAME` empties, by their flags without dashes."""
    by_flag = {field.flag[2:]: field.field for field in fields}
    cleared: dict[str, None] = {}
    for name in names or ():
        field = by_flag.get(name.removeprefix("--"))
        if field is None:
            raise InvalidValueError(f"--clear: unknown field {name!r}")
        cleared[field] = None
    return cleared


def flagged(error: InvalidValueError, fields: Sequence[FieldOption]) -> InvalidValueError:
    """Name the option rather than the field in a validation message ('--memory: …')."""
    message = str(error)
    for field in fields:
        if message.startswith(f"{field.field}: "):
            message = field.flag + message[len(field.field) :]
            message = message.replace("Field required", "required")
            break
    return InvalidValueError(message)


def arch_options(pairs: Sequence[str]) -> dict[str, Any]:
    """`--arch-option KEY=JSON` pairs as a dict."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidValueError(f"--arch-option {pair!r}: write KEY=VALUE")
        try:
            result[key] = json.loads(raw)
        except json.JSONDecodeError:
            raise InvalidValueError(f"--arch-option {pair!r}: the value must be JSON") from None
    return result


# --- the kinds of row the show, add, update and remove groups edit --------------------------


def _no_detail(row: Any) -> str:
    return ""


def _parameter_count(row: Any) -> str:
    return f" ({row.params:,} parameters)"


@dataclass(frozen=True)
class Entity:
    """One kind of catalog row, as the show, add, update and remove commands edit it."""

    kind: str  # as messages name it: "GPU", "model", "recipe"
    table: str  # catalog.queries has get_<table>, add_<table>, update_<table>, remove_<table>
    create: str  # the catalog.tables model a whole row is validated through
    fields: tuple[FieldOption, ...]
    aliases: bool  # rows have aliases (--alias, --add-alias, --remove-alias)
    name_from_slug: bool  # an added row without --name is named by its slug
    added: Callable[[Any], str] = _no_detail  # what `add` says of the new row after its slug

    def query(self, verb: str) -> Callable[..., Any]:
        """catalog.queries' `<verb>_<table>` function (keyword arguments after the session)."""
        from catalog import queries

        function: Callable[..., Any] = getattr(queries, f"{verb}_{self.table}")
        return function

    def validated(self, data: Mapping[str, Any]) -> SQLModel:
        """A whole row validated through its create model; a problem names the option."""
        from catalog import queries, tables

        model: type[SQLModel] = getattr(tables, self.create)
        try:
            return queries.validate(model, data)
        except InvalidValueError as error:
            raise flagged(error, self.fields) from None


GPU = Entity("GPU", "gpu", "GPUCreate", GPU_FIELDS, aliases=True, name_from_slug=False)
MODEL = Entity(
    "model",
    "model",
    "ModelCreate",
    MODEL_FIELDS,
    aliases=True,
    name_from_slug=True,
    added=_parameter_count,
)
RECIPE = Entity(
    "recipe", "recipe", "RecipeCreate", RECIPE_FIELDS, aliases=False, name_from_slug=True
)
