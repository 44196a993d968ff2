"""Where the catalog lives, and opening it: create, migrate and seed on first use.

`--db` or `ADVISOR_DB` name a file path or any SQLAlchemy URL; by default the catalog is a
SQLite file in the user's data directory. Opening never overwrites a file that is not an
advisor database, and backs a SQLite file up before upgrading it to a newer schema.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from advisor.errors import DatabaseError

# Where the catalog lives and the schema head: shared with the stdlib reader (catalog/reader.py).
from catalog.location import SCHEMA_HEAD as SCHEMA_HEAD
from catalog.location import database_value

# How long a writer waits for another process's lock before SQLite reports "database is
# locked" (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 5_000
SQLITE_HEADER = b"SQLite format 3\x00"


def resolve_url(db: str | None = None) -> str:
    """`db`, else `$ADVISOR_DB`, else the default file; a plain path becomes a SQLite URL."""
    value = database_value(db)
    if "://" in value:
        try:
            make_url(value)
        except ArgumentError:
            raise DatabaseError(f"invalid database URL {value!r}") from None
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def make_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, foreign keys and transactional DDL."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url)
        except (NoSuchModuleError, ImportError, ArgumentError) as error:
            raise DatabaseError(f"cannot use the database URL {url!r}: {error}") from None
    in_memory = sqlite_path(url) is None
    kwargs: dict[str, Any] = {}
    if in_memory:
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) so DDL runs inside transactions too:
        # pysqlite's own transaction handling commits before every DDL statement.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")

    return engine


@dataclass(frozen=True)
class OpenReport:
    """What opening did, for the CLI to mention on stderr."""

    created: bool = False
    upgraded_from: str | None = None
    backup: Path | None = None
    seeded: int = 0
    bundled_newer: bool = False


@dataclass
class Catalog:
    url: str
    engine: Engine
    report: OpenReport

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose work is committed when the block ends without error."""
        with Session(self.engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()


def _check_file(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory, not a database file")
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise DatabaseError(f"{path} is not a SQLite database; refusing to use or overwrite it")


def _backup(path: Path, revision: str) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{revision}.{stamp}.bak")
    source = sqlite3.connect(path)
    try:
        destination = sqlite3.connect(target)
        try:
            source.backup(destination)
        finally:
            destination.close()
    finally:
        source.close()
    return target


def _stored_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    return str(rows[0][0]) if rows else None


def _migrate(url: str, engine: Engine, *, to: str = "head") -> None:
    """Upgrade a SQLite file with foreign keys off (SQLite's batch table copies would
    otherwise cascade deletes into child tables) and check the keys afterwards. An in-memory
    database exists only in `engine`, so it is upgraded there."""
    from catalog import migrate

    if sqlite_path(url) is None:
        migrate.upgrade(engine, to)
        return
    own = make_engine(url, foreign_keys=False)
    try:
        migrate.upgrade(own, to)
        with own.connect() as connection:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise DatabaseError(f"the upgrade left {len(broken)} broken foreign keys")
    finally:
        own.dispose()


def open_catalog(db: str | None = None, *, seed: bool = True, upgrade: bool = True) -> Catalog:
    """Open the catalog, creating, upgrading (after a backup) and seeding it as needed.

    Raises DatabaseError for a corrupt or foreign file or one made by a newer advisor.
    """
    from catalog import bundled

    url = resolve_url(db)
    path = sqlite_path(url)
    if path is not None:
        _check_file(path)
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        revision = _stored_revision(engine) if "alembic_version" in tables else None
    except SQLAlchemyError as error:
        engine.dispose()
        reason = getattr(error, "orig", None) or error
        raise DatabaseError(f"cannot read the database at {url}: {reason}") from None
    if revision is None and tables - {"alembic_version"}:
        engine.dispose()
        raise DatabaseError(
            f"the database at {url} holds tables that are not an advisor catalog; "
            "refusing to use or change it"
        )
    if revision == SCHEMA_HEAD:  # the common case: nothing to migrate, Alembic not loaded
        catalog = Catalog(url=url, engine=engine, report=OpenReport())
        with catalog.session() as session:
            catalog.report = OpenReport(bundled_newer=bundled.has_unsynced_changes(session))
        return catalog
    from catalog import migrate

    if revision is not None and not migrate.known_revision(revision):
        engine.dispose()
        raise DatabaseError(
            f"the database at {url} is at revision {revision}, made by a newer advisor; "
            "upgrade advisor to use it"
        )
    created = revision is None
    head = migrate.head_revision()
    backup: Path | None = None
    upgraded_from: str | None = None
    if revision != head and upgrade:
        if not created and path is not None:
            backup = _backup(path, revision or "empty")
        _migrate(url, engine)
        upgraded_from = None if created else revision
    catalog = Catalog(url=url, engine=engine, report=OpenReport())
    seeded = 0
    if created and seed and upgrade:
        with catalog.session() as session:
            seeded = bundled.sync(session).added
    catalog.report = OpenReport(
        created=created and upgrade,
        upgraded_from=upgraded_from,
        backup=backup,
        seeded=seeded,
    )
    return catalog
