"""`advisor detect`: the local accelerators, matched to catalog cards, and system RAM.

Also the `--gpu local` / which-models-without-`--gpu` look-up: `local_gpus` returns the
detected cards or refuses in one line, asking for `--gpu`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from advisor.cli import shared
from advisor.enums import Market, Vendor
from advisor.errors import DetectionError

if TYPE_CHECKING:
    from sqlmodel import Session

    from advisor.detect import Detection, KnownCard, LocalCard
    from advisor.fit import Card

NO_ACCELERATOR = (
    "no accelerator detected on this machine; pass --gpu NAME (see advisor catalog gpus)"
)


def known_cards(session: Session) -> list[KnownCard]:
    """Every catalog GPU with the name keys of its slug, name and aliases."""
    from sqlmodel import select

    from advisor.detect import KnownCard, name_key
    from advisor.enums import Vendor
    from catalog.tables import GPU, GPUAlias

    keys: dict[int, set[str]] = {}
    for key, gpu_id in session.exec(select(GPUAlias.key, GPUAlias.gpu_id)).all():
        keys.setdefault(gpu_id, set()).add(key)
    return [
        KnownCard(
            slug=row.slug,
            name=row.name,
            vendor=Vendor(row.vendor),
            memory_bytes=row.memory_bytes,
            usable_fraction=row.usable_memory_fraction or 1.0,
            keys=frozenset({name_key(row.slug), name_key(row.name), *keys.get(row.id or 0, ())}),
        )
        for row in session.exec(select(GPU)).all()
    ]


def detect_local(ctx: typer.Context) -> tuple[Detection, list[LocalCard]]:
    """Probe the machine and match what it has to the catalog."""
    from advisor.cli.probe import detect
    from advisor.detect import local_cards

    found = detect()
    with shared.reading(ctx) as session:  # matching cards only reads
        cards = known_cards(session)
    return found, local_cards(found, cards)


def local_gpus(ctx: typer.Context) -> list[LocalCard]:
    """The detected cards, or DetectionError (exit 2) asking for --gpu."""
    found, cards = detect_local(ctx)
    if not cards:
        reasons = "; ".join(found.notes)
        raise DetectionError(NO_ACCELERATOR + (f" ({reasons})" if reasons else ""))
    return cards


def local_fit_cards(ctx: typer.Context) -> tuple[list[Card], int | None, str]:
    """The detected cards as the search needs them, how many there are (when one kind), and
    the header's words; DetectionError when there are none."""
    from advisor.fit import Card

    found = local_gpus(ctx)
    cards = [
        Card(
            slug=c.slug,
            name=c.name,
            vendor=c.accelerator.vendor,
            # This machine: its own cards, as many as it has, and no other machine.
            market=Market.unified_memory
            if c.accelerator.vendor is Vendor.apple
            else Market.consumer,
            memory_bytes=c.accelerator.memory_bytes,
            usable_fraction=c.usable_fraction,
            price_per_hour=None,
            max_per_node=c.count,
            multi_node=False,
        )
        for c in found
    ]
    count = found[0].count if len(found) == 1 else None
    what = "this machine's cards: " + "; ".join(describe(c) for c in found)
    return cards, count, what


def describe(card: LocalCard) -> str:
    """'2 x NVIDIA H100 80GB HBM3 (catalog: h100-sxm)' for headers and notes."""
    from advisor.units import format_size

    what = f"{card.count} x {card.accelerator.name}"
    if card.match is not None:
        return f"{what} (catalog: {card.match.slug})"
    return f"{what} ({format_size(card.accelerator.memory_bytes)}, not in the catalog)"


def detection_json(found: Detection, cards: list[LocalCard]) -> dict[str, Any]:
    return {
        "accelerators": [
            {
                "vendor": c.accelerator.vendor.value,
                "name": c.accelerator.name,
                "count": c.count,
                "memory_bytes": c.accelerator.memory_bytes,
                "free_bytes": c.accelerator.free_bytes,
                "capacity_bytes": c.capacity_bytes,
                "nvlink_links": c.accelerator.nvlink_links,
                "catalog_gpu": c.match.slug if c.match is not None else None,
                "card": c.slug,
            }
            for c in cards
        ],
        "system_memory_bytes": found.system_memory_bytes,
        "notes": list(found.notes),
    }


def detect_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The local GPUs (NVIDIA through NVML, Apple silicon, AMD through amdsmi), matched to
    catalog cards, and the system's RAM."""
    from rich.table import Table

    from advisor.units import format_size

    found, cards = detect_local(ctx)
    for line in found.notes:
        shared.note(line)
    if as_json:
        shared.print_json(detection_json(found, cards))
        if not cards:
            raise DetectionError(NO_ACCELERATOR)
        return
    if not cards:
        raise DetectionError(NO_ACCELERATOR)
    table = Table(title="Local accelerators")
    for column in ("device", "count", "memory", "free", "GPU may use", "NVLink", "catalog"):
        table.add_column(column, justify="left" if column in ("device", "catalog") else "right")
    for c in cards:
        acc = c.accelerator
        table.add_row(
            acc.name,
            str(c.count),
            format_size(acc.memory_bytes),
            format_size(acc.free_bytes) if acc.free_bytes is not None else "-",
            format_size(c.capacity_bytes),
            str(acc.nvlink_links) if acc.nvlink_links else "-",
            c.match.slug if c.match is not None else "(ad hoc)",
        )
    console = shared.out()
    console.print(table)
    if found.system_memory_bytes is not None:
        console.print(f"System RAM: {format_size(found.system_memory_bytes)}")
