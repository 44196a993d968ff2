"""Alembic, run programmatically on the catalog's engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from advisor.errors import DatabaseError


def migrations_dir() -> Path:
    """The Alembic scripts: inside the installed package, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "migrations", here.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise DatabaseError(f"the database migrations are missing (looked beside {here})")


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    heads = script_directory().get_heads()
    if len(heads) != 1:
        raise DatabaseError(f"the migrations have {len(heads)} heads; expected one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def known_revision(revision: str) -> bool:
    return any(script.revision == revision for script in script_directory().walk_revisions())


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade in one transaction: on failure nothing of it remains."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str
    is_head: bool


def history() -> list[Revision]:
    """Every revision, oldest first."""
    scripts = list(script_directory().walk_revisions())
    scripts.reverse()
    return [
        Revision(
            revision=script.revision,
            down_revision=script.down_revision if isinstance(script.down_revision, str) else None,
            message=(script.doc or "").strip(),
            is_head=script.is_head,
        )
        for script in scripts
    ]
