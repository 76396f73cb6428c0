"""Ping a pooled database connection only when it sat idle, not at every checkout.

SQLAlchemy's `pool_pre_ping` costs a round trip per checkout: under load (every card's
history, the open pages' session sweep, the call log's batches, on every node) that is as
many extra trips to PostgreSQL as real queries, and each costs both processes CPU on a
busy machine (bench/cluster.py). A connection that was just used is alive; one that sat
in the pool for `after` seconds (long enough for a PostgreSQL restart to have killed it)
is pinged at checkout as before, and replaced by a fresh one if the ping fails.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine

IDLE_PING_AFTER = 1.0  # seconds in the pool after which a connection is pinged before use
_CHECKED_IN = "callbridge_checked_in"  # ConnectionRecord.info key: our clock at its checkin


def ping_when_idle(engine: AsyncEngine, after: float = IDLE_PING_AFTER) -> None:
    """Install the checkin/checkout hooks on `engine` (created without pool_pre_ping)."""
    sync_engine = engine.sync_engine
    dialect = sync_engine.dialect

    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_CHECKED_IN)
        if since is None or time.monotonic() - since < after:
            return  # new, or used a moment ago
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool drops this connection and checks out another (a fresh one if need be).
            raise exc.DisconnectionError(f"idle connection failed its ping: {error}") from error

    event.listen(sync_engine, "checkin", on_checkin)
    event.listen(sync_engine, "checkout", on_checkout)
