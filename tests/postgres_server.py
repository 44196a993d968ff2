"""A real PostgreSQL server for the tests: fresh databases, each made from a seeded template.

The server is named by ADVISOR_TEST_POSTGRES, the SQLAlchemy URL of a superuser's connection
to its maintenance database (`eval "$(.ci/postgres start)"` starts a throwaway cluster and
sets it). Without it the PostgreSQL half of the parametrized tests is skipped with that reason;
under CI (`CI=true`) a missing or unreachable server fails them instead: CI must test both back
ends.

Making a database from a template is a file copy on the server (about 0.15 s for a seeded
catalog), so every test gets a database of its own while the catalog is migrated and seeded
once per test process.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

ENV_VAR = "ADVISOR_TEST_POSTGRES"
MISSING = (
    f"no PostgreSQL server: set {ENV_VAR} to a superuser's URL "
    '(eval "$(.ci/postgres start)" starts a throwaway one)'
)
# Every database the tests make starts with this, so a leftover is recognisable.
DATABASE_PREFIX = "advisor_test_"


def under_ci() -> bool:
    """Whether this run is CI's, where a missing server is a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true"


@dataclass(frozen=True)
class Server:
    """The test server, reached as its superuser."""

    admin_url: URL

    def url(self, database: str, *, user: str | None = None) -> str:
        """The SQLAlchemy URL of `database` on this server, as the superuser or `user`."""
        url = self.admin_url.set(database=database)
        if user is not None:
            url = url.set(username=user, password=None)
        return url.render_as_string(hide_password=False)

    def connect_args(self, database: str) -> dict[str, Any]:
        args = self.admin_url.set(database=database).translate_connect_args(
            username="user", database="dbname"
        )
        return dict(args)

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run statements one by one outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(
            **self.connect_args(database or str(self.admin_url.database)), autocommit=True
        ) as connection:
            for statement in statements:
                connection.execute(statement.encode())

    def create_database(self, *, template: str | None = None) -> str:
        """A new database, empty or a copy of `template`; returns its name."""
        name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        self.execute(f'CREATE DATABASE "{name}"{copy}')
        return name

    def drop_database(self, name: str) -> None:
        """Drop `name`, ending any session still connected to it."""
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_or_skip() -> Server:
    """The configured server, reachable; skips (fails under CI) when there is none."""
    value = os.environ.get(ENV_VAR, "")
    if not value:
        if under_ci():
            pytest.fail(f"CI=true and {MISSING}", pytrace=False)
        pytest.skip(MISSING)
    server = Server(admin_url=make_url(value))
    try:
        server.execute("SELECT 1")
    except Exception as error:  # any failure to reach it: the reason is in the message
        reason = f"the PostgreSQL server at {server.admin_url} cannot be used: {error}"
        if under_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return server
