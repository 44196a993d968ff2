"""Where the catalog lives, and opening it: create, migrate and seed on first use.

`--db` or `ADVISOR_DB` name a file path or any SQLAlchemy URL; by default the catalog is a
SQLite file in the user's data directory. Opening never changes a file that is not an
advisor catalog (it is identified read-only, before WAL mode or anything else is switched on),
backs a SQLite file up before upgrading it to a newer schema, and creates a new catalog file
atomically: built and seeded under a temporary name, then hard-linked into place, so that
concurrent first uses see either no file or a complete catalog. Write transactions start as
writes (`BEGIN IMMEDIATE`) so that SQLite's busy timeout applies; docs/reliability.md has
the details.

A database server (PostgreSQL through psycopg 3, the `postgres` extra) is a team's shared
catalog: it is never upgraded on open (an out-of-date schema is an error naming
`advisor db upgrade`), its write transactions take one transaction-scoped advisory lock so
that writers run one at a time, as on SQLite, and its reads run in a read-only repeatable-read
snapshot; docs/team-catalog.md has the details.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from advisor.errors import AdvisorError, CatalogBusyError, DatabaseError, ReadOnlyCatalogError

# Where the catalog lives and the schema head: shared with the stdlib reader (catalog/reader.py).
from catalog.location import SCHEMA_HEAD as SCHEMA_HEAD
from catalog.location import database_value

# How long one SQLite statement waits for another process's lock before SQLite reports
# "database is locked" (milliseconds; SQLite's `PRAGMA busy_timeout`).
SQLITE_BUSY_TIMEOUT_MS = 5_000
# Starting a write transaction is retried until this many busy timeouts have passed: SQLite
# returns SQLITE_BUSY without waiting in a few cases (a WAL file being recovered or
# checkpointed by another connection), which a short pause and a retry get past.
BEGIN_RETRY_TIMEOUTS = 2
# Pause between two attempts to start a write transaction (seconds).
BEGIN_RETRY_PAUSE_S = 0.05
SQLITE_HEADER = b"SQLite format 3\x00"
# The tables every revision of the advisor catalog has (revision 0001 created them); a SQLite
# file with an `alembic_version` table but without these belongs to another program.
CATALOG_TABLES = frozenset(
    {"gpu", "gpu_alias", "model", "model_alias", "model_family", "quant_format"}
)
# Execution option marking a read-only transaction (a plain deferred `BEGIN`).
_READ_ONLY = "advisor_read_only"
BUSY_MESSAGE = "the catalog is busy: another advisor is writing; try again"
# How long a first use waits for another process that is building the catalog file (seconds;
# building and seeding the bundled rows takes seconds).
CREATE_LOCK_TIMEOUT_S = 60

# PostgreSQL: every write transaction first takes this transaction-scoped advisory lock
# (`pg_advisory_xact_lock`, https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS),
# so writers run one at a time and each sees every earlier commit: no update is lost, as with
# SQLite's single writer. The key is any 64-bit number no other program on the database uses:
# the ASCII bytes of "advisor!".
WRITER_LOCK_KEY = int.from_bytes(b"advisor!", "big")
# How long a write waits for another writer's lock before "the catalog is busy" (PostgreSQL's
# `lock_timeout`, milliseconds): the same bounded wait as SQLite's retried BEGIN IMMEDIATE.
SERVER_LOCK_TIMEOUT_MS = BEGIN_RETRY_TIMEOUTS * SQLITE_BUSY_TIMEOUT_MS
# The driver a `postgresql://` URL gets: psycopg 3, from the `postgres` extra (SQLAlchemy's
# default for `postgresql://` is psycopg2, which advisor does not install).
POSTGRES_DRIVER = "postgresql+psycopg"
POSTGRES_EXTRA_HINT = (
    "the PostgreSQL driver (psycopg 3) is not installed: install advisor's 'postgres' extra "
    "(pip install 'gpu-fit-advisor[postgres]')"
)
# PostgreSQL error codes (SQLSTATE, https://www.postgresql.org/docs/current/errcodes-appendix.html)
# that mean the user may not write, and those that mean another transaction was in the way.
_SQLSTATE_READ_ONLY = frozenset({"42501", "25006"})  # insufficient_privilege, read-only txn
_SQLSTATE_BUSY = frozenset({"55P03", "40001", "40P01"})  # lock timeout, serialization, deadlock
UPGRADE_HINT = "run 'advisor db upgrade' (a shared catalog is upgraded deliberately, not on open)"


def resolve_url(db: str | None = None) -> str:
    """`db`, else `$ADVISOR_DB`, else the default file; a plain path becomes a SQLite URL."""
    value = database_value(db)
    if "://" in value:
        try:
            make_url(value)
        except ArgumentError:
            raise DatabaseError(f"invalid database URL {value!r}") from None
        return value
    try:
        resolved = Path(value).expanduser().resolve()
    except (OSError, RuntimeError) as error:
        raise DatabaseError(f"cannot use {value!r} as the catalog file: {error}") from None
    return f"sqlite:///{resolved}"


def is_server(url: str) -> bool:
    """Whether `url` names a database server rather than a SQLite file or memory."""
    return make_url(url).get_backend_name() != "sqlite"


def shown_url(url: str) -> str:
    """`url` as messages show it: a password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _server_user(url: str) -> str:
    """The role a server URL logs in as: its user, else libpq's default (PGUSER, else the
    operating-system user)."""
    return make_url(url).username or os.environ.get("PGUSER") or getpass.getuser()


def _one_line(error: object) -> str:
    """A driver's message on one line (libpq's span several)."""
    return " ".join(str(error).split())


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def translate(error: BaseException, url: str) -> AdvisorError | None:
    """The project's error for a database failure, or None for one that is not about the
    database file (a bug, to surface as is)."""
    if isinstance(error, AdvisorError):
        return error
    orig = getattr(error, "orig", None) or error
    if not isinstance(orig, sqlite3.Error):
        if isinstance(error, SQLAlchemyError):
            return _translate_server(error, orig, url)
        return None
    text = str(orig)
    if "locked" in text or "busy" in text:
        return CatalogBusyError(BUSY_MESSAGE)
    if "readonly" in text or "read-only" in text:
        return DatabaseError(
            f"cannot write to the catalog at {url}: the file or its folder is read-only"
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        path = sqlite_path(url)
        return _damaged(path, text) if path is not None else DatabaseError(text)
    if "unable to open" in text:
        return DatabaseError(f"cannot open the catalog at {url}: {text}")
    if "disk" in text and ("full" in text or "I/O" in text):
        return DatabaseError(f"cannot write to the catalog at {url}: {text}")
    return DatabaseError(f"the database at {url} failed: {text}")


def _translate_server(error: SQLAlchemyError, orig: BaseException, url: str) -> AdvisorError:
    """A database server's failure: read-only for this user, busy, or unreachable."""
    from sqlalchemy.exc import OperationalError

    shown = shown_url(url)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _SQLSTATE_READ_ONLY:
        return ReadOnlyCatalogError(
            f"the catalog at {shown} is read-only for user {_server_user(url)}"
        )
    if sqlstate in _SQLSTATE_BUSY:
        return CatalogBusyError(BUSY_MESSAGE)
    if sqlstate is None and isinstance(error, OperationalError):
        return DatabaseError(f"cannot connect to the catalog at {shown}: {_one_line(orig)}")
    return DatabaseError(f"the database at {shown} failed: {_one_line(orig)}")


def _begin_immediate(dbapi_connection: Any, busy_timeout_ms: int) -> None:
    """`BEGIN IMMEDIATE`, retried for a bounded time while another process holds the lock."""
    deadline = time.monotonic() + BEGIN_RETRY_TIMEOUTS * busy_timeout_ms / 1000
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            text = str(error)
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
        time.sleep(BEGIN_RETRY_PAUSE_S)


def make_engine(
    url: str,
    *,
    foreign_keys: bool = True,
    busy_timeout_ms: int | None = None,
    immutable: bool = False,
) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout (default SQLITE_BUSY_TIMEOUT_MS), foreign
    keys and transactional DDL, and its transactions start as writes (`BEGIN IMMEDIATE`)
    unless marked read-only. PostgreSQL's write transactions take the writer lock, waiting
    at most `busy_timeout_ms` (default SERVER_LOCK_TIMEOUT_MS); see `_server_engine`.
    `immutable` opens a SQLite file read-only without the `-shm` file WAL mode needs (for a
    catalog in a folder nobody may write to)."""
    timeout_ms = SQLITE_BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        lock_ms = SERVER_LOCK_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        return _server_engine(parsed, lock_ms)
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url)
        except (NoSuchModuleError, ImportError, ArgumentError) as error:
            raise DatabaseError(
                f"cannot use the database URL {shown_url(url)!r}: {error}"
            ) from None
    in_memory = sqlite_path(url) is None
    kwargs: dict[str, Any] = {}
    if in_memory:
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    file = sqlite_path(url)
    if immutable and file is not None:
        uri = f"{file.as_uri()}?mode=ro&immutable=1"
        kwargs = {"creator": lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)}
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) so DDL runs inside transactions too:
        # pysqlite's own transaction handling commits before every DDL statement.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        if not in_memory and not immutable:
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY) or in_memory:
            connection.exec_driver_sql("BEGIN")
        else:
            _begin_immediate(connection.connection.driver_connection, timeout_ms)

    return engine


def _server_engine(parsed: URL, lock_timeout_ms: int) -> Engine:
    """A PostgreSQL engine through psycopg 3: a read-only transaction is a repeatable-read,
    read-only snapshot (it sees a whole import or sync or none of it, and never waits); a write
    transaction takes the writer lock first, waiting at most `lock_timeout_ms`."""
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
    try:
        engine = create_engine(parsed)
    except ImportError:
        raise DatabaseError(POSTGRES_EXTRA_HINT) from None
    except (NoSuchModuleError, ArgumentError) as error:
        shown = parsed.render_as_string(hide_password=True)
        raise DatabaseError(f"cannot use the database URL {shown!r}: {error}") from None

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")

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
        """A write transaction (on SQLite it starts with `BEGIN IMMEDIATE`, so it waits for
        another writer instead of failing halfway), committed when the block ends without
        error. Database failures become the project's errors (busy, read-only, damaged)."""
        with self._session(self.engine, commit=True) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only transaction: takes no write lock, never commits."""
        engine = self.engine.execution_options(**{_READ_ONLY: True})
        with self._session(engine, commit=False) as session:
            yield session

    @contextmanager
    def _session(self, engine: Engine, *, commit: bool) -> Iterator[Session]:
        with Session(engine, expire_on_commit=False) as session:
            try:
                yield session
                if commit:
                    session.commit()
                # a read ends when the session closes: its objects stay loaded, detached
            except BaseException as error:
                session.rollback()
                mapped = translate(error, self.url)
                if mapped is None or mapped is error:
                    raise
                raise mapped from None

    def close(self) -> None:
        self.engine.dispose()


def _damaged(path: Path, reason: object) -> DatabaseError:
    return DatabaseError(
        f"{path} is damaged ({reason}); copy a backup over it ({path.name}.*.bak beside it, "
        "if an upgrade made one), or move it aside and import a file made by "
        "'advisor catalog export'"
    )


@dataclass(frozen=True)
class _FileState:
    """What a SQLite file holds, read without changing it."""

    tables: frozenset[str]
    revision: str | None


def _inspect_file(path: Path, busy_timeout_ms: int) -> _FileState | None:
    """None when there is no catalog file yet (missing or empty); otherwise its tables and
    revision, read through a read-only connection (no WAL switch, no journal, no change).
    DatabaseError for a directory, a file that is not SQLite, or a damaged one."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return None
        if path.is_dir():
            raise DatabaseError(f"{path} is a directory, not a database file")
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except PermissionError:
        raise DatabaseError(f"cannot read {path}: permission denied") from None
    except OSError as error:
        raise DatabaseError(f"cannot read {path}: {error.strerror or error}") from None
    if header != SQLITE_HEADER:
        raise DatabaseError(f"{path} is not a SQLite database; refusing to use or overwrite it")
    try:
        options = "mode=ro&immutable=1" if _read_only_folder(path) else "mode=ro"
        connection = sqlite3.connect(f"{path.as_uri()}?{options}", uri=True)
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot open {path}: {error}") from None
    try:
        connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        tables = frozenset(
            str(row[0])
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
        revision: str | None = None
        if "alembic_version" in tables:
            rows = connection.execute("SELECT version_num FROM alembic_version").fetchall()
            revision = str(rows[0][0]) if rows else None
    except sqlite3.OperationalError as error:
        text = str(error)
        if "locked" in text or "busy" in text:
            raise CatalogBusyError(BUSY_MESSAGE) from None
        if "unable to open" in text or "readonly" in text:
            raise DatabaseError(f"cannot read {path}: {text}") from None
        raise _damaged(path, text) from None
    except sqlite3.DatabaseError as error:
        raise _damaged(path, error) from None
    finally:
        connection.close()
    return _FileState(tables=tables, revision=revision)


def _is_catalog(tables: frozenset[str], revision: str | None) -> bool:
    return revision is not None and CATALOG_TABLES <= tables


def _check_identity(where: str, tables: frozenset[str], revision: str | None) -> None:
    """Refuse a database holding anything but an advisor catalog, before changing it. A blank
    database (no tables, or only an empty Alembic version table) may become one."""
    if revision is None and tables <= {"alembic_version"}:
        return
    if not _is_catalog(tables, revision):
        raise DatabaseError(
            f"the database at {shown_url(where)} holds tables that are not an advisor catalog; "
            "refusing to use or change it"
        )


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


def _create_file(path: Path, *, seed: bool, busy_timeout_ms: int | None) -> int:
    """Build a complete catalog under a temporary name beside `path`, then hard-link it into
    place, which fails if `path` appeared meanwhile: concurrent first uses never see a half
    built catalog, and exactly one of them wins. Returns the rows seeded (0 if another
    process created the file first). An empty placeholder file is replaced by rename."""

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseError(
            f"cannot create the catalog folder {path.parent}: {error.strerror or error}"
        ) from None
    with _creation_lock(path):
        if path.exists() and path.stat().st_size != 0:
            return 0  # another advisor created it while this one waited
        return _build_and_link(path, seed=seed, busy_timeout_ms=busy_timeout_ms)


@contextmanager
def _creation_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on a file beside `path` while a catalog is built, so that concurrent
    first uses build it once (the others wait, then open it). Where `fcntl` is missing the
    hard link alone keeps creation atomic; the lock file itself is left in place (removing
    it would race with a waiter)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    lock_path = path.with_name(f".{path.name}.create-lock")
    try:
        descriptor = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as error:
        raise DatabaseError(
            f"cannot create the catalog at {path}: {error.strerror or error}"
        ) from None
    try:
        deadline = time.monotonic() + CREATE_LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CatalogBusyError(BUSY_MESSAGE) from None
                time.sleep(BEGIN_RETRY_PAUSE_S)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _build_and_link(path: Path, *, seed: bool, busy_timeout_ms: int | None) -> int:
    from catalog import bundled

    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    url = f"sqlite:///{temporary}"
    try:
        engine = make_engine(url, busy_timeout_ms=busy_timeout_ms)
        try:
            _migrate(url, engine)
            seeded = 0
            if seed:
                with Session(engine, expire_on_commit=False) as session:
                    seeded = bundled.sync(session).added
                    session.commit()
            # Fold the WAL into the file before it is linked into place (outside any
            # transaction: a checkpoint cannot run inside one).
            raw = engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
            finally:
                raw.close()
        finally:
            engine.dispose()
        try:
            os.link(temporary, path)
        except FileExistsError:
            if path.stat().st_size != 0:
                return 0  # another advisor created it first: use theirs
            os.replace(temporary, path)
        except OSError:
            # A file system without hard links: rename, unless the file appeared meanwhile.
            if path.exists() and path.stat().st_size != 0:
                return 0
            os.replace(temporary, path)
        return seeded
    except PermissionError:
        raise DatabaseError(
            f"cannot create the catalog at {path}: permission denied in {path.parent}"
        ) from None
    except OSError as error:
        raise DatabaseError(
            f"cannot create the catalog at {path}: {error.strerror or error}"
        ) from None
    except SQLAlchemyError as error:
        mapped = translate(error, url)
        raise (mapped or DatabaseError(str(error))) from None
    finally:
        for leftover in (temporary, *(Path(f"{temporary}{s}") for s in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)


def open_catalog(
    db: str | None = None,
    *,
    seed: bool = True,
    upgrade: bool = True,
    busy_timeout_ms: int | None = None,
    server_upgrade: bool = False,
) -> Catalog:
    """Open the catalog, creating, upgrading (after a backup) and seeding it as needed.

    A database server is created or upgraded only when `server_upgrade` is set (`advisor db
    upgrade`): otherwise a server catalog whose schema is not this advisor's head is an
    error naming that command. `upgrade=False` opens any known revision as it is.

    Raises DatabaseError for a corrupt or foreign file or one made by a newer advisor,
    CatalogBusyError when other processes keep it locked past the busy timeout.
    """
    url = resolve_url(db)
    path = sqlite_path(url)
    report = OpenReport()
    if path is not None:
        timeout_ms = SQLITE_BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        state = _inspect_file(path, timeout_ms)
        if state is None:
            if not (seed and upgrade):  # `db current`: report, create nothing
                return Catalog(url=url, engine=make_engine(url), report=report)
            seeded = _create_file(path, seed=seed, busy_timeout_ms=busy_timeout_ms)
            report = OpenReport(created=seeded > 0, seeded=seeded)
            state = _inspect_file(path, timeout_ms)
            assert state is not None
        _check_identity(url, state.tables, state.revision)
        if state.revision is not None and state.revision != SCHEMA_HEAD:
            from catalog import migrate

            if not migrate.known_revision(state.revision):
                raise _newer(url, state.revision)
    engine = make_engine(url, busy_timeout_ms=busy_timeout_ms, immutable=_read_only_folder(path))
    try:
        return _open(
            url, path, engine, report, seed=seed, upgrade=upgrade, server_upgrade=server_upgrade
        )
    except BaseException as error:
        engine.dispose()
        mapped = translate(error, url)
        if mapped is None or mapped is error:
            raise
        raise mapped from None


def _read_only_folder(path: Path | None) -> bool:
    """True for a catalog file in a folder this process cannot write to, with no WAL file
    beside it: SQLite could not create the `-shm` file WAL mode needs, so the catalog is
    opened immutable (reads work; a write says the catalog is read-only). With a `-wal`
    file present it is opened normally, since immutable would ignore the WAL's rows."""
    if path is None or not path.exists() or os.access(path.parent, os.W_OK):
        return False
    return not Path(f"{path}-wal").exists()


def _newer(url: str, revision: str) -> DatabaseError:
    return DatabaseError(
        f"the database at {shown_url(url)} is at revision {revision}, made by a newer advisor "
        f"(this one knows revisions up to {SCHEMA_HEAD}); upgrade advisor to use it"
    )


def _out_of_date(url: str, revision: str | None, head: str) -> DatabaseError:
    if revision is None:
        return DatabaseError(
            f"the database at {shown_url(url)} holds no advisor catalog yet (this advisor's "
            f"schema is revision {head}): {UPGRADE_HINT}"
        )
    return DatabaseError(
        f"the catalog at {shown_url(url)} is at revision {revision}, older than this "
        f"advisor's {head}: {UPGRADE_HINT}"
    )


def _open(
    url: str,
    path: Path | None,
    engine: Engine,
    report: OpenReport,
    *,
    seed: bool,
    upgrade: bool,
    server_upgrade: bool = False,
) -> Catalog:
    from catalog import bundled

    reader = engine.execution_options(**{_READ_ONLY: True})  # looking takes no write lock
    tables = frozenset(inspect(reader).get_table_names())
    revision = _stored_revision(reader) if "alembic_version" in tables else None
    _check_identity(url, tables, revision)
    if revision == SCHEMA_HEAD:  # the common case: nothing to migrate, Alembic not loaded
        catalog = Catalog(url=url, engine=engine, report=report)
        with catalog.reading() as session:
            newer = bundled.has_unsynced_changes(session)
        catalog.report = OpenReport(
            created=report.created, seeded=report.seeded, bundled_newer=newer
        )
        return catalog
    from catalog import migrate

    head = migrate.head_revision()
    if revision is not None and not migrate.known_revision(revision):
        raise _newer(url, revision)
    if is_server(url) and revision != head and upgrade and not server_upgrade:
        raise _out_of_date(url, revision, head)
    created = revision is None
    backup: Path | None = None
    upgraded_from: str | None = None
    if revision != head and (upgrade or server_upgrade):
        if not created and path is not None:
            backup = _backup(path, revision or "empty")
        _migrate(url, engine)
        upgraded_from = None if created else revision
    catalog = Catalog(url=url, engine=engine, report=OpenReport())
    seeded = 0
    if created and seed and (upgrade or server_upgrade):
        with catalog.session() as session:
            seeded = bundled.sync(session).added
    catalog.report = OpenReport(
        created=created and (upgrade or server_upgrade),
        upgraded_from=upgraded_from,
        backup=backup,
        seeded=seeded,
    )
    return catalog
