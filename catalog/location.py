"""Where the catalog lives and which schema revision this advisor expects.

Standard library only (platformdirs lazily), so that the stdlib read path in catalog/reader.py
can find and check a catalog file without loading SQLAlchemy; catalog/session.py uses the same
definitions for the full open path.
"""

from __future__ import annotations

import os
from pathlib import Path

# The newest schema revision. Opening compares the database's revision with it without
# loading Alembic (about 0.1 s of imports); tests/test_migrations.py keeps it equal to
# Alembic's head.
SCHEMA_HEAD = "0006"
ENV_VAR = "ADVISOR_DB"
APP_NAME = "advisor"
DEFAULT_FILENAME = "catalog.db"
# The URL prefix under which SQLAlchemy's default SQLite driver takes the rest as a file path
# (https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#connect-strings).
SQLITE_URL_PREFIX = "sqlite:///"


def default_database_path() -> Path:
    import platformdirs

    return platformdirs.user_data_path(APP_NAME, appauthor=False) / DEFAULT_FILENAME


def database_value(db: str | None = None) -> str:
    """What names the catalog: `db`, else `$ADVISOR_DB`, else the default file."""
    return db or os.environ.get(ENV_VAR) or str(default_database_path())


def plain_sqlite_file(value: str) -> Path | None:
    """The SQLite file `value` names when that is certain without parsing a URL: a plain path,
    or `sqlite:///path` with no query, escapes or driver; None for anything else (other
    databases, in-memory SQLite, URLs with options), which the full open path handles."""
    if "://" not in value:
        return Path(value).expanduser().resolve()
    if not value.startswith(SQLITE_URL_PREFIX):
        return None
    database = value.removeprefix(SQLITE_URL_PREFIX)
    if database in ("", ":memory:") or any(ch in database for ch in "?%#"):
        return None
    return Path(database)
