"""Alembic environment for the call log.

Two ways in:
- programmatic (`CallLogStore.open()`): the caller passes an open *sync* connection in
  `config.attributes["connection"]` (an async connection's `run_sync` facade), and we
  migrate on it, inside the caller's transaction;
- the `alembic` command with `bridge/migrations/alembic.ini`: the URL is `-x url=...`,
  else `CALLBRIDGE_DATABASE_URL`, else the ini's `sqlalchemy.url`; async URLs
  (aiosqlite, asyncpg) get an async engine driven by `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.schema import Base  # every table of the schema on Base.metadata

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get("CALLBRIDGE_DATABASE_URL")
    url = url or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: pass -x url=..., set CALLBRIDGE_DATABASE_URL or sqlalchemy.url")
    return url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: later migrations rebuild tables in batch mode.
        render_as_batch=True,
        **kwargs,
    )


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        do_run_migrations(given)
        return
    # Only the command line configures logging: the bridge keeps its own when it migrates.
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    url = _url()
    if make_url(url).get_dialect().is_async:
        asyncio.run(_run_async(url))
    else:
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.begin() as connection:
                do_run_migrations(connection)
        finally:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
