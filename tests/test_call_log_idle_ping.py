"""Pooled connections are pinged only after sitting idle (bridge/call_log/idle_ping.py): no
extra round trip per checkout under load, and still a fresh connection after the server
dropped an idle one (a PostgreSQL restart)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bridge.call_log import idle_ping
from bridge.call_log.store import CallLogStore
from tests.db_fixtures import Database, database_fixture, store_fixture  # noqa: F401  # fixtures


def _count_pings(store: CallLogStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pings = [0]
    dialect = store.engine.sync_engine.dialect
    real = dialect.do_ping

    def counting(conn: Any) -> bool:
        pings[0] += 1
        return real(conn)

    monkeypatch.setattr(dialect, "do_ping", counting)
    return pings


async def test_a_connection_used_a_moment_ago_is_not_pinged(store: CallLogStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pings = _count_pings(store, monkeypatch)
    for _ in range(5):
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    assert pings[0] == 0


# The server ending a pooled connection: PostgreSQL only.
@pytest.mark.parametrize("database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_an_idle_connection_the_server_dropped_is_replaced_at_checkout(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    store = database.store()
    await store.open()
    admin = create_async_engine(database.url, isolation_level="AUTOCOMMIT")
    try:
        async with store.engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with admin.connect() as conn:  # as a restart would
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        pings = _count_pings(store, monkeypatch)
        real = time.monotonic
        monkeypatch.setattr(idle_ping.time, "monotonic", lambda: real() + idle_ping.IDLE_PING_AFTER + 1)
        async with store.engine.connect() as conn:  # no error: a fresh connection
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
        assert pings[0] >= 1
    finally:
        await admin.dispose()
        await store.close()
