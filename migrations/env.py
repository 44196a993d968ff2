"""Alembic environment: runs on a connection handed in by `catalog.migrate`.

`catalog.migrate` passes an open connection through `config.attributes["connection"]`, so the
whole upgrade runs in that connection's single transaction (SQLite's DDL is transactional once
the driver's own transaction handling is off; see `catalog.session`): an upgrade either lands
whole or not at all.
"""

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import catalog.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("no connection given and no sqlalchemy.url configured")
        with create_engine(url).begin() as own_connection:
            _run(own_connection)
    else:
        _run(connection)


def _run(connection):  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations()
