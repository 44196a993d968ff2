"""What the command modules share: the catalog handle, consoles, JSON output, and the words
and styles `fit` and `which-models` both render with."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import typer

from advisor.units import Units, format_size

if TYPE_CHECKING:
    from rich.console import Console
    from sqlmodel import Session

    from advisor.fit import Option
    from advisor.offload import Offload
    from advisor.policy import Level
    from advisor.workload import Workload
    from catalog.reader import CatalogReader
    from catalog.session import Catalog

# Styles of the three states of an answer (plain text when piped or NO_COLOR is set).
STYLE_FITS = "green"
STYLE_TIGHT = "yellow"
STYLE_NONE = "red"
NO_FIT = "—"


class CliState(NamedTuple):
    """Set by the root callback: which database the commands use."""

    db: str | None


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliState) else CliState(db=None)


def announce(catalog: Catalog, *, remind_sync: bool = True) -> None:
    """Say on stderr what opening the catalog did (created, upgraded) or found."""
    from catalog.session import shown_url

    report = catalog.report
    if report.created:
        note(f"created the catalog at {shown_url(catalog.url)} with {report.seeded} bundled rows")
    if report.upgraded_from is not None:
        backup = f"; backup at {report.backup}" if report.backup else ""
        note(f"upgraded the catalog from revision {report.upgraded_from}{backup}")
    if report.bundled_newer and remind_sync:
        note("this advisor ships newer catalog rows: run 'advisor catalog sync' to bring them in")


@contextmanager
def opened(
    ctx: typer.Context, *, remind_sync: bool = True, server_upgrade: bool = False
) -> Iterator[Catalog]:
    """Open the catalog (creating, upgrading or seeding it, said on stderr) for one command;
    a server catalog is created or upgraded only with `server_upgrade` (`advisor db upgrade`)."""
    from catalog.session import open_catalog

    catalog = open_catalog(state(ctx).db, server_upgrade=server_upgrade)
    announce(catalog, remind_sync=remind_sync)
    try:
        yield catalog
    finally:
        catalog.close()


@contextmanager
def reader(ctx: typer.Context) -> Iterator[CatalogReader]:
    """Read-only look-ups for one command: the stdlib path on a current SQLite catalog, else
    the full open (with its notes on stderr) and SQLModel (catalog/reader.py)."""
    from catalog.reader import open_reader

    with open_reader(state(ctx).db, announce=announce) as catalog_reader:
        yield catalog_reader


@contextmanager
def session(ctx: typer.Context) -> Iterator[Session]:
    """One transaction on the catalog: committed if the command succeeds, else rolled back."""
    with opened(ctx) as catalog, catalog.session() as s:
        yield s


@contextmanager
def reading(ctx: typer.Context) -> Iterator[Session]:
    """One read-only transaction on the catalog: takes no write lock, changes nothing."""
    with opened(ctx) as catalog, catalog.reading() as s:
        yield s


def confirm(question: str) -> bool:
    """Ask on stderr; False when answered no. When no answer can come (stdin closed or at
    its end), ConfirmationNeededError: one line, nothing changed."""
    import sys

    from advisor.errors import ConfirmationNeededError

    if sys.stdin is None or sys.stdin.closed:
        raise ConfirmationNeededError(
            "no answer on stdin; nothing changed (pass --yes to go ahead without asking)"
        )
    try:
        return typer.confirm(question, err=True)
    except (typer.Abort, OSError, RuntimeError):
        typer.echo("", err=True)
        raise ConfirmationNeededError(
            "no answer on stdin; nothing changed (pass --yes to go ahead without asking)"
        ) from None


# Width of tables written to a pipe or file when COLUMNS is unset: wide enough that rows
# stay whole for grep and for reading in an editor (a terminal uses its own width).
PIPED_WIDTH = 200


def out() -> Console:
    import os
    import sys

    from rich.console import Console

    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=False, width=PIPED_WIDTH if piped else None)


def note(message: str) -> None:
    """A diagnostic line on stderr."""
    typer.echo(f"advisor: {message}", err=True)


def print_json(data: Any) -> None:
    """Indented JSON, UTF-8 as is. orjson writes it natively (the standard library's indenting
    encoder is pure Python: seconds for a 2,000-card `fit`); output is byte-identical to
    `json.dumps(data, indent=2, ensure_ascii=False)`. On a stdout that cannot hold a
    character of it, that character is written as a JSON escape (`json_for_stdout`)."""
    import orjson

    typer.echo(json_for_stdout(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()))


def stdout_holds(text: str) -> bool:
    """Whether stdout's encoding can write `text` as it is (an ASCII or Latin-1 locale, a
    pipe opened with PYTHONIOENCODING=ascii … cannot write every character)."""
    import sys

    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def json_for_stdout(text: str) -> str:
    """JSON text with every character beyond ASCII written as a JSON escape when stdout
    cannot hold it: the same JSON value, so nothing is lost or replaced."""
    if stdout_holds(text):
        return text
    return re.sub(r"[^\x00-\x7f]", _json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    """One character as JSON writes it escaped: \\uXXXX, a surrogate pair beyond U+FFFF."""
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def level_words(level: Level) -> str:
    """A level as tables name it: the format, or the method with its base format."""
    if level.method is not None and level.quant:
        return f"{level.label} ({level.quant})"
    return level.label


def suggestion_brief(option: Option) -> str:
    """A table cell's short form of `suggestion_words`: 'seq ≤ 1,277 or +checkpointing'."""
    parts = []
    for found in option.suggestions:
        options = [name for name, _ in found.change]
        if options == ["seq"]:
            parts.append(f"seq ≤ {int(found.change[0][1]):,}")
        elif found.fits:
            more = "+" + options[0] if len(options) == 1 else f"+{len(options)} changes"
            parts.append(more)
    return " or ".join(parts)


def partial_words(offload: Offload, units: Units) -> str:
    """'partial: 28/33 layers on GPU, 6.1 GiB in RAM' (llama.cpp's CPU offload)."""
    return (
        f"partial: {offload.gpu_layers}/{offload.total_layers} layers on GPU, "
        f"{format_size(offload.host_bytes, units)} in RAM"
    )


def offload_json(offload: Offload | None) -> dict[str, int] | None:
    if offload is None:
        return None
    return {
        "gpu_layers": offload.gpu_layers,
        "total_layers": offload.total_layers,
        "host_bytes": offload.host_bytes,
    }


def host_bytes(option: Option) -> int:
    """Host RAM one card's process needs beside the card: llama.cpp's layers kept in system
    RAM, or training's offloaded states and checkpoints (0: none)."""
    if option.offload is not None:
        return option.offload.host_bytes
    return option.estimate.host_bytes


def rate_words(value: float) -> str:
    """Tokens per second as the tables print them: three significant figures at most."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def accumulation_words(w: Workload) -> str:
    """' x 4 micro-batches' when gradients accumulate over micro-batches ('' otherwise), as
    the headers append it to the batch."""
    return f" x {w.step_microbatches} micro-batches" if w.accumulates else ""
