"""`advisor db …`: the catalog database's schema revision."""

from __future__ import annotations

from typing import Annotated

import typer

from advisor.cli import shared

app = typer.Typer(help="Inspect and upgrade the catalog database's schema.", no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create or upgrade the database to this advisor's schema (a SQLite file is backed up
    first; a database server is upgraded only by this command)."""
    from catalog import migrate
    from catalog.session import shown_url

    with shared.opened(ctx, server_upgrade=True) as catalog:
        revision = migrate.current_revision(catalog.engine)
    typer.echo(f"{shown_url(catalog.url)} is at revision {revision} (head)")


@app.command("current")
def current(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Print the database's revision and this advisor's head revision, changing nothing."""
    from catalog import migrate
    from catalog.session import is_server, open_catalog, resolve_url, shown_url, sqlite_path

    url = resolve_url(shared.state(ctx).db)
    path = sqlite_path(url)
    revision: str | None = None
    if path is None or path.exists():
        catalog = open_catalog(shared.state(ctx).db, seed=False, upgrade=False)
        try:
            revision = migrate.current_revision(catalog.engine)
        finally:
            catalog.close()
    head = migrate.head_revision()
    creator = "'advisor db upgrade' creates it" if is_server(url) else "any command creates it"
    url = shown_url(url)
    if as_json:
        shared.print_json({"url": url, "current": revision, "head": head})
        return
    if revision is None:
        typer.echo(f"{url}: no catalog yet (head is {head}); {creator}")
    elif revision == head:
        typer.echo(f"{url}: revision {revision} (head)")
    else:
        typer.echo(f"{url}: revision {revision}; head is {head}: run 'advisor db upgrade'")


@app.command("history")
def history(as_json: JsonOption = False) -> None:
    """List the schema revisions, oldest first."""
    from catalog import migrate

    revisions = migrate.history()
    if as_json:
        shared.print_json(
            [
                {
                    "revision": r.revision,
                    "down_revision": r.down_revision,
                    "message": r.message,
                    "head": r.is_head,
                }
                for r in revisions
            ]
        )
        return
    for r in revisions:
        typer.echo(f"{r.revision}  {r.message}{'  (head)' if r.is_head else ''}")
