"""The `advisor` command: a thin layer that parses, looks up, calls the library and renders.

Every `AdvisorError` raised below a command becomes one line on stderr and its exit code, here
and nowhere else (`AdvisorGroup.invoke`). Command modules import the catalog and the
estimator inside their functions, so `advisor --help` loads neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from advisor import __version__
from advisor.cli import (
    catalog_cmd,
    db_cmd,
    detect_cmd,
    estimate_cmd,
    fit_cmd,
    trace_cmd,
    which_models_cmd,
)
from advisor.cli.shared import CliState
from advisor.errors import AdvisorError


class AdvisorGroup(TyperGroup):
    """The root group: turns the project's errors into a message and an exit code."""

    def invoke(self, ctx: Any) -> Any:
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


app.add_typer(catalog_cmd.app, name="catalog")
app.add_typer(db_cmd.app, name="db")
app.command("estimate")(estimate_cmd.estimate)
app.command("trace")(trace_cmd.trace)
app.command("fit")(fit_cmd.fit)
app.command("which-models")(which_models_cmd.which_models)
app.command("detect")(detect_cmd.detect_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: the process's arguments); return the exit code."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="advisor")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
