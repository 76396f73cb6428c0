"""Hot reads of the built-in CRM on a connection kept open, queried through its driver.

A pool checkout (reset on return) and SQLAlchemy's async cursor adaption cost several
thread or network round trips and a few hundred microseconds of CPU per query: ~0.6-1 ms
against ~0.15 ms for the indexed query alone on SQLite (bench/crm_lookup.py); a card's
history (two queries) cost 650 us of CPU through SQLAlchemy against ~30 us for a lookup
here, on every node that shows the card (bench/cluster.py). Each statement is compiled
once per dialect; its rows come back as the driver gives them (the caller decodes times
and JSON as SQLAlchemy's types would). aiosqlite and asyncpg only: with other drivers
`fast` is False and the caller goes through the pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

log = logging.getLogger(__name__)

DRIVERS = ("aiosqlite", "asyncpg")


class RawReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.fast = engine.dialect.driver in DRIVERS
        # statement -> (SQL, its parameters' names in order, compiled-in values)
        self._compiled: dict[Executable, tuple[str, list[str], Mapping[str, Any]]] = {}
        self._conn: AsyncConnection | None = None
        self._raw: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection (asyncpg insists)

    def _sql(self, statement: Executable) -> tuple[str, list[str], Mapping[str, Any]]:
        found = self._compiled.get(statement)
        if found is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            found = self._compiled[statement] = (str(compiled), list(compiled.positiontup or []),
                                                 compiled.params)
        return found

    async def fetch(self, statement: Executable, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """The statement's rows (built once: the statements given are module constants)."""
        sql, names, values = self._sql(statement)
        args = tuple(params[n] if n in params else values[n] for n in names)
        async with self._lock:
            try:
                if self._raw is None:
                    conn = await self.engine.connect()
                    self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    self._raw = (await self._conn.get_raw_connection()).driver_connection
                if self.engine.dialect.driver == "asyncpg":
                    return list(await self._raw.fetch(sql, *args))
                return list(await self._raw.execute_fetchall(sql, args))
            except BaseException:
                await self.close()  # a broken connection is replaced on the next read
                raise

    async def close(self) -> None:
        conn, self._conn, self._raw = self._conn, None, None
        if conn is not None:
            try:
                await conn.close()
            except Exception as exc:  # already broken: nothing more to release
                log.debug("closing the CRM's read connection: %s", exc)


def utc(value: datetime | str | None) -> datetime | None:
    """A driver's time as UtcDateTime reads it: SQLite's text, or a timestamptz, UTC-aware."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_list(value: list[str] | str | None) -> list[str] | None:
    """A JSON column as SQLAlchemy's JSON type reads it (SQLite hands over the text)."""
    return json.loads(value) if isinstance(value, str) else value
