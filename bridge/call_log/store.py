"""The call log: finished and live calls in SQLite or PostgreSQL.

`CallLogStore(url)` takes an async SQLAlchemy URL (`sqlite+aiosqlite:///var/x.sqlite3`,
`postgresql+asyncpg://user:pw@host/db`); `open()` brings the schema to the newest Alembic
revision, so a new release migrates the database it finds at start.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, String, Table, any_, bindparam, delete, event, func, insert, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.sql.elements import ColumnElement

from bridge.call_log.idle_ping import ping_when_idle
from bridge.call_log.tables import CHILD_TABLES, CallRow, RecordingRow, RingRow, TransferRow
from bridge.calls.record import CallRecord, RecordingRecord, RingRecord, TransferRecord

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"  # the whole schema's
_IN_CHUNK = 500  # ids per IN (...) list: far below SQLite's and asyncpg's parameter limits
_PG_MIGRATION_LOCK = 0x63616C6C  # advisory lock id: two bridges starting together migrate once

CALLS = CallRow.__table__
# Checks, inside a save's transaction, that this node may still write for these PBXes.
WriteGuard = Callable[[AsyncConnection, set[str]], Awaitable[None]]


class WriteFenced(Exception):
    """This node no longer owns a PBX of the records: another node writes its calls now."""
RINGS, TRANSFERS, RECORDINGS = RingRow.__table__, TransferRow.__table__, RecordingRow.__table__


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config for the bundled migrations, without any alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the bundled migrations have no head revision"
    return head


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def to_epoch(dt: datetime) -> float:
    # Exact for any time with at most microsecond digits (the AMI's Timestamp precision).
    return dt.timestamp()


def _opt_dt(ts: float | None) -> datetime | None:
    return None if ts is None else to_datetime(ts)


def _opt_ts(dt: datetime | None) -> float | None:
    return None if dt is None else to_epoch(dt)


def _call_values(rec: CallRecord, now: datetime) -> dict[str, Any]:
    return {
        "call_id": rec.call_id,
        "pbx": rec.pbx,
        "caller_number": rec.caller_number,
        "caller_name": rec.caller_name,
        "queue": rec.queue,
        "dialed": rec.dialed,
        "answered_by": rec.answered_by,
        "rung": list(rec.rung),
        "outcome": rec.outcome,
        "outcome_reason": rec.outcome_reason,
        "ended_by": rec.ended_by,
        "internal": rec.internal,
        "entered_at": to_datetime(rec.entered_at),
        "answered_at": _opt_dt(rec.answered_at),
        "ended_at": _opt_dt(rec.ended_at),
        "wait_seconds": rec.wait_seconds,
        "talk_seconds": rec.talk_seconds,
        "recording": rec.recording,
        "attached_mid_call": rec.attached_mid_call,
        "updated_at": now,
    }


def _child_values(rec: CallRecord) -> dict[Table, list[dict[str, Any]]]:
    rings = [
        {"call_id": rec.call_id, "seq": i, "operator": r.operator, "queue": r.queue,
         "member_name": r.member_name, "started_at": to_datetime(r.started_at),
         "ended_at": _opt_dt(r.ended_at), "answered_at": _opt_dt(r.answered_at), "result": r.result}
        for i, r in enumerate(rec.rings)
    ]
    transfers = [
        {"call_id": rec.call_id, "seq": i, "kind": t.kind, "from_operator": t.from_operator,
         "to_operator": t.to_operator, "at": to_datetime(t.at)}
        for i, t in enumerate(rec.transfers)
    ]
    recordings = [
        {"call_id": rec.call_id, "seq": i, "file": r.file, "channel": r.channel, "operator": r.operator,
         "started_at": to_datetime(r.started_at), "stopped_at": _opt_dt(r.stopped_at)}
        for i, r in enumerate(rec.recordings)
    ]
    return {RINGS: rings, TRANSFERS: transfers, RECORDINGS: recordings}


def row_to_record(row: CallRow) -> CallRecord:
    return CallRecord(
        call_id=row.call_id,
        pbx=row.pbx,
        caller_number=row.caller_number,
        caller_name=row.caller_name,
        queue=row.queue,
        dialed=row.dialed,
        answered_by=row.answered_by,
        rung=list(row.rung or []),
        outcome=row.outcome,  # type: ignore[arg-type]  # validated by pydantic
        outcome_reason=row.outcome_reason,
        ended_by=row.ended_by,  # type: ignore[arg-type]  # validated by pydantic
        internal=row.internal,
        entered_at=to_epoch(row.entered_at),
        answered_at=_opt_ts(row.answered_at),
        ended_at=_opt_ts(row.ended_at),
        transfers=[
            TransferRecord(kind=t.kind, from_operator=t.from_operator,  # type: ignore[arg-type]
                           to_operator=t.to_operator, at=to_epoch(t.at))
            for t in row.transfers
        ],
        rings=[
            RingRecord(operator=r.operator, queue=r.queue, member_name=r.member_name,
                       started_at=to_epoch(r.started_at), ended_at=_opt_ts(r.ended_at),
                       answered_at=_opt_ts(r.answered_at), result=r.result)
            for r in row.rings
        ],
        recordings=[
            RecordingRecord(file=r.file, channel=r.channel, operator=r.operator,
                            started_at=to_epoch(r.started_at), stopped_at=_opt_ts(r.stopped_at))
            for r in row.recordings
        ],
        attached_mid_call=row.attached_mid_call,
    )


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start:start + _IN_CHUNK]


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (the call log keeps UTC), got {value!r}")


class CallLogStore:
    """Saves `CallRecord`s and gives them back equal (`replay_dict()` included)."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        # engine_options go to create_async_engine (e.g. connect_args for a search_path).
        self.url = url
        # No pre-ping at every checkout (a round trip each, under load): ping_when_idle
        # still gives the first save after a PostgreSQL restart a fresh connection.
        self._engine_options = engine_options
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("CallLogStore is not open: call `await store.open()` first")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def open(self) -> None:
        """Connect and migrate the schema to the newest revision (idempotent)."""
        if self._engine is not None:
            return
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            # The default `var/callbridge.sqlite3` lives in a folder that may not exist yet.
            await asyncio.to_thread(Path(url.database).parent.mkdir, parents=True, exist_ok=True)
        engine = create_async_engine(self.url, **self._engine_options)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if not self._engine_options.get("pool_pre_ping"):
            ping_when_idle(engine)
        try:
            async with engine.begin() as conn:
                await self._migrate(conn)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        log.info("call log open: %s (schema %s)", url.render_as_string(hide_password=True), head_revision())

    async def _migrate(self, conn: AsyncConnection) -> None:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        # Alembic's API is synchronous: run it on the async connection's sync facade.
        await conn.run_sync(_upgrade_head)

    async def close(self) -> None:
        if self._engine is not None:
            engine, self._engine, self._sessions = self._engine, None, None
            await engine.dispose()

    async def __aenter__(self) -> CallLogStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def revision(self) -> str | None:
        """The schema revision the database is at (what `alembic current` shows)."""
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

    async def save(self, records: Sequence[CallRecord], guard: WriteGuard | None = None) -> None:
        """Insert or update calls (their rings, transfers, recordings replaced), one transaction.

        `guard` runs first in that transaction with the records' PBXes: in a cluster it
        checks this node still owns them (the fencing epoch) and raises `WriteFenced` if not."""
        if not records:
            return
        latest = {rec.call_id: rec for rec in records}  # the last snapshot of a call wins
        now = datetime.now(UTC)
        ids = list(latest)
        children: dict[Table, list[dict[str, Any]]] = {table: [] for table in CHILD_TABLES}
        for rec in latest.values():
            for table, rows in _child_values(rec).items():
                children[table].extend(rows)
        async with self.engine.begin() as conn:
            if guard is not None:
                await guard(conn, {rec.pbx for rec in latest.values()})
            if conn.dialect.name == "postgresql":  # the ids as one array: no IN list rendered per save
                for table in CHILD_TABLES:
                    await conn.execute(_DELETE_CHILDREN_PG[table], {"ids": ids})
            else:
                for chunk in _chunks(ids):
                    for table in CHILD_TABLES:
                        await conn.execute(delete(table).where(table.c.call_id.in_(chunk)))
            await self._upsert_calls(conn, [_call_values(rec, now) for rec in latest.values()])
            for table, rows in children.items():
                if rows:
                    await conn.execute(insert(table), rows)

    async def _upsert_calls(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        upsert = _upsert_statement(conn.dialect.name)
        if upsert is not None:
            await conn.execute(upsert, rows)
            return
        # Other databases: plain delete and insert in the same transaction.
        for chunk in _chunks([row["call_id"] for row in rows]):
            await conn.execute(delete(CALLS).where(CALLS.c.call_id.in_(chunk)))
        await conn.execute(insert(CALLS), rows)

    async def _select(self, *where: ColumnElement[bool]) -> list[CallRecord]:
        if self._sessions is None:
            raise RuntimeError("CallLogStore is not open: call `await store.open()` first")
        query = select(CallRow).where(*where).order_by(CallRow.entered_at, CallRow.call_id)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
            return [row_to_record(row) for row in rows]

    async def get(self, call_id: str) -> CallRecord | None:
        found = await self._select(CallRow.call_id == call_id)
        return found[0] if found else None

    async def get_many(self, call_ids: Sequence[str]) -> dict[str, CallRecord]:
        """The logged calls among `call_ids`, by id: a query per chunk, not per call."""
        found: dict[str, CallRecord] = {}
        for chunk in _chunks(list(dict.fromkeys(call_ids))):
            records = await self._select(CallRow.call_id.in_(chunk))
            found.update((record.call_id, record) for record in records)
        return found

    async def export(self, since: datetime | None = None, until: datetime | None = None, *,
                     pbx: str | None = None) -> list[CallRecord]:
        """Calls that entered in [since, until) (on one PBX if given), oldest first (ties by call_id)."""
        _require_aware("since", since)
        _require_aware("until", until)
        where: list[ColumnElement[bool]] = []
        if since is not None:
            where.append(CallRow.entered_at >= since)
        if until is not None:
            where.append(CallRow.entered_at < until)
        if pbx is not None:
            where.append(CallRow.pbx == pbx)
        return await self._select(*where)

    async def live_calls(self, pbx: str | None = None) -> list[CallRecord]:
        """Calls saved while live and never saved ended: at restart, these ended while away."""
        where = [CallRow.ended_at.is_(None)] + ([CallRow.pbx == pbx] if pbx is not None else [])
        return await self._select(*where)

    async def count(self, *, live: bool | None = None) -> int:
        """How many calls are logged (only live or only ended ones when `live` is given)."""
        query = select(func.count()).select_from(CALLS)
        if live is not None:
            query = query.where(CALLS.c.ended_at.is_(None) if live else CALLS.c.ended_at.is_not(None))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())


# Built once (not per save: the ON CONFLICT clause alone made 20 column proxies each time).
_IDS = bindparam("ids", type_=ARRAY(String))
_DELETE_CHILDREN_PG = {table: delete(table).where(table.c.call_id == any_(_IDS)) for table in CHILD_TABLES}


@functools.cache
def _upsert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (call_id) DO UPDATE for PostgreSQL and SQLite, else None."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        return None
    stmt = dialect_insert(CALLS)
    updates = {c.name: stmt.excluded[c.name] for c in CALLS.columns if c.name != "call_id"}
    return stmt.on_conflict_do_update(index_elements=["call_id"], set_=updates)


def _upgrade_head(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection  # env.py migrates on this connection
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # The writer, the audit log and the pages' reads share the file: in WAL mode readers
    # never block the writer, and a writer waits for another instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
