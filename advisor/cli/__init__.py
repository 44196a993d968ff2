"""The `advisor` command: a thin layer that parses, looks up, calls the library and renders.

Every `AdvisorError` raised below a command becomes one line on stderr and its exit code, here
and nowhere else (`AdvisorGroup.invoke`). Command modules import the catalog and the
estimator inside their functions, so `advisor --help` loads neither, and the root group
imports a command's module only when that command runs.
"""

from __future__ import annotations

import codecs
import errno
import importlib
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from advisor import __version__
from advisor.cli import plain_params
from advisor.cli.shared import CliState
from advisor.errors import AdvisorError

# The commands and groups under `advisor`, in help order (commands, then groups, as Typer
# lists registered ones): name → (module, attribute: a command function or a Typer group).
# A module is imported only when its command runs (or help lists it), so `advisor fit`
# loads neither the catalog editor nor the tracer.
COMMANDS: dict[str, tuple[str, str]] = {
    "estimate": ("advisor.cli.estimate_cmd", "estimate"),
    "trace": ("advisor.cli.trace_cmd", "trace"),
    "fit": ("advisor.cli.fit_cmd", "fit"),
    "which-models": ("advisor.cli.which_models_cmd", "which_models"),
    "detect": ("advisor.cli.detect_cmd", "detect_command"),
    "catalog": ("advisor.cli.catalog_cmd", "app"),
    "db": ("advisor.cli.db_cmd", "app"),
}


# What an output stream that cannot hold a character (an ASCII or Latin-1 locale,
# PYTHONIOENCODING=ascii) shows instead of each character the tables and notes use; any
# other character becomes "?". Rich itself draws ASCII boxes on a non-UTF-8 stream.
ASCII_FALLBACK: dict[str, str] = {
    "—": "-",
    "\u2013": "-",  # en dash
    "·": "|",
    "█": "#",
    "…": "...",
    "\u00d7": "x",  # multiplication sign
    "≈": "~",
    "≤": "<=",
    "≥": ">=",
    "→": "->",
    "±": "+/-",
    "µ": "u",
    "─": "-",
    "━": "-",
    "│": "|",
    "┃": "|",
    "✓": "v",
    "✗": "x",
}
# The name of the codecs error handler that applies ASCII_FALLBACK.
ASCII_FALLBACK_ERRORS = "advisor-ascii"


def _ascii_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    text = error.object[error.start : error.end]
    return "".join(ASCII_FALLBACK.get(c, "?") for c in text), error.end


def use_ascii_fallback() -> None:
    """Make stdout and stderr write ASCII stand-ins (ASCII_FALLBACK) for the characters their
    encoding cannot hold, instead of raising UnicodeEncodeError mid-output."""
    codecs.register_error(ASCII_FALLBACK_ERRORS, _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        if reconfigure is None or codecs.lookup(encoding).name == "utf-8":
            continue
        reconfigure(errors=ASCII_FALLBACK_ERRORS)


def _load(name: str) -> Any:
    """The click command for `name`, built exactly as `app.command`/`app.add_typer` would."""
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name, cls=PlainParamsCommand)(target)
    return typer.main.get_group(holder).commands[name]


class PlainParamsCommand(TyperCommand):
    """A command whose plain parameters convert without pydantic (advisor/cli/plain_params.py)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        plain_params.install(self.get_params(ctx))
        return super().parse_args(ctx, args)


class LazyCommands(MutableMapping[str, Any]):
    """The root group's commands, each built on first access (see COMMANDS)."""

    def __init__(self, loader: Callable[[str], Any], names: Sequence[str]) -> None:
        self._loader = loader
        self._names = list(names)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in self._names:
                raise KeyError(name)
            self._built[name] = self._loader(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)


class AdvisorGroup(TyperGroup):
    """The root group: loads its commands lazily, and turns the project's errors into a
    message and an exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        registered = dict(self.commands)
        self.commands = LazyCommands(_load, list(COMMANDS))
        self.commands.update(registered)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        plain_params.install(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        use_ascii_fallback()
        try:
            return super().invoke(ctx)
        except AdvisorError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None


app = typer.Typer(
    cls=AdvisorGroup,
    name="advisor",
    help="Does this language model fit this GPU? Memory for inference, fine-tuning and "
    "pretraining, and which cards to use.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"advisor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="ADVISOR_DB",
            help="Catalog database: a file path or a SQLAlchemy URL. Default: catalog.db in "
            "the user data directory, created on first use.",
            show_envvar=True,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Does this language model fit this GPU?"""
    ctx.obj = CliState(db=db)


# The exit code when stdout cannot take the output (full disk, /dev/full, closed): a domain
# failure, like every error that is not the user's typing.
OUTPUT_FAILED_EXIT = 1
# The errors a write to stdout ends in when it cannot take the output: disk full, reader
# gone, descriptor closed, device failed. Any other OSError is not an output failure.
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EPIPE, errno.EBADF, errno.EIO})


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: the process's arguments); return the exit code.

    A stdout that cannot be written (closed, /dev/full, a pipe closed by its reader) ends the
    run with one line on stderr and OUTPUT_FAILED_EXIT, never a traceback."""
    if sys.stdout is None:  # started with stdout closed: every write fails, as on a real fd
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        sys.stdout.close()
    try:
        try:
            app(args=list(argv) if argv is not None else None, prog_name="advisor")
        finally:
            if not sys.stdout.closed:
                sys.stdout.flush()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except (OSError, ValueError) as error:
        if isinstance(error, ValueError) and not sys.stdout.closed:
            raise
        _output_failed(error)
        return OUTPUT_FAILED_EXIT
    return 0


def _output_failed(error: OSError | ValueError) -> None:
    """Report a stdout that cannot be written, and stop the interpreter's own flush at exit
    from failing again (it would print 'Exception ignored')."""
    if isinstance(error, OSError) and error.errno not in OUTPUT_ERRNOS:
        raise error
    reason = error.strerror if isinstance(error, OSError) else "it is closed"
    if sys.stderr is not None:
        typer.echo(f"error: cannot write the output to stdout: {reason}", err=True)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
