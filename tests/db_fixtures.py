"""Database fixtures for the call-log tests: a temp SQLite file, and PostgreSQL.

PostgreSQL is at CALLBRIDGE_TEST_PG_URL (default: the server `.ci/postgres.sh` sets up).
Each PostgreSQL test gets a schema of its own (dropped afterwards), so tests never see
each other's rows and may share the database with other suites. When the server is not
reachable the PostgreSQL tests fail under CI (CI set, or CALLBRIDGE_REQUIRE_PG=1) and
skip, saying why, on a developer's machine.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.call_log.store import CallLogStore

DEFAULT_PG_URL = "postgresql+asyncpg://callbridge:callbridge@127.0.0.1:5432/callbridge_test"
_pg_problem: dict[str, str | None] = {}  # url -> why it is unusable (None: reachable), per session


def pg_url() -> str:
    return os.environ.get("CALLBRIDGE_TEST_PG_URL") or DEFAULT_PG_URL


def pg_required() -> bool:
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return ci or os.environ.get("CALLBRIDGE_REQUIRE_PG") == "1"


async def _pg_unreachable(url: str) -> str | None:
    if url not in _pg_problem:
        engine = create_async_engine(url, connect_args={"timeout": 5})
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            _pg_problem[url] = None
        except Exception as exc:  # any reason: refused, auth, missing database
            _pg_problem[url] = f"{type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
    return _pg_problem[url]


@dataclass
class Database:
    """Where a test's call log lives; `store()` makes a (not yet open) store on it."""

    kind: str  # "sqlite" or "postgres"
    url: str
    engine_options: dict[str, Any] = field(default_factory=dict)
    schema: str | None = None

    def store(self) -> CallLogStore:
        return CallLogStore(self.url, **self.engine_options)


DB_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

# Fixture functions named *_fixture: a test module imports them without its test
# arguments shadowing the imported names.


@pytest.fixture(name="database", params=DB_KINDS)
async def database_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'var' / 'calls.sqlite3'}")
        return

    url = pg_url()
    problem = await _pg_unreachable(url)
    if problem is not None:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = f"PostgreSQL at {shown} is not reachable ({problem}); start it with `bash .ci/postgres.sh`"
        if pg_required():
            pytest.fail(reason + " [required: CI or CALLBRIDGE_REQUIRE_PG=1]", pytrace=False)
        pytest.skip(reason)

    schema = f"calllog_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        # search_path puts the tables, alembic_version included, in the test's own schema.
        options = {"connect_args": {"server_settings": {"search_path": schema}}}
        yield Database("postgres", url, options, schema)
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(name="store")
async def store_fixture(database: Database) -> AsyncIterator[CallLogStore]:
    opened = database.store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
