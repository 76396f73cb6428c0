"""Recording files in the call log's database (table `recording_files`, migration 0005).

One row per MixMonitor: the bridge's own (one per operator leg) and any the PBX started
by itself (dialplan, another client), linked to the call by `call_id` (+ `seq`, 1-based),
on the call's PBX (`pbx`, migration 0008).
Not a child of `calls` with a foreign key: the row is written at the answer, possibly
before the call log's batched writer has saved the call.

Statuses: starting -> recording -> stopped -> ok | missing | empty; failed (MixMonitor
refused); external (a PBX file outside the recordings folder: not checked, not served);
purged (retention removed the file; the row and its reviews stay).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from bridge.call_log.store import CallLogStore, to_datetime, to_epoch
from bridge.call_log.tables import Base, CallRow, UtcDateTime
from bridge.calls.record import DEFAULT_PBX

Status = Literal["starting", "recording", "stopped", "ok", "missing", "empty", "failed", "external", "purged"]
PROBLEMS = ("missing", "empty", "failed")  # flagged on the call


class RecordingFileRow(Base):
    __tablename__ = "recording_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String, nullable=False)
    pbx: Mapped[str] = mapped_column(String, nullable=False, server_default=DEFAULT_PBX)
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String, nullable=False)  # bridge | pbx
    operator: Mapped[str | None] = mapped_column(String)
    channel: Mapped[str] = mapped_column(String, nullable=False)
    file: Mapped[str | None] = mapped_column(String)  # as the PBX names it
    path: Mapped[str | None] = mapped_column(String)  # relative to the recordings folder: what is served
    format: Mapped[str] = mapped_column(String, nullable=False)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    offset_seconds: Mapped[float] = mapped_column(Float, nullable=False)  # start, within the call
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    paused: Mapped[list[list[float | None]]] = mapped_column(JSON, nullable=False)  # [[from, to], ...] s
    status: Mapped[str] = mapped_column(String, nullable=False)
    error: Mapped[str | None] = mapped_column(String)
    checked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    purged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (
        UniqueConstraint("call_id", "seq", name="uq_recording_files_call_id_seq"),
        Index("ix_recording_files_call_id", "call_id"),
        Index("ix_recording_files_operator", "operator"),
        Index("ix_recording_files_started_at", "started_at"),
    )


FILES = RecordingFileRow.__table__


class PausedSpan(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    start: float  # seconds from the start of the recording
    end: float | None  # None: still paused (a live recording)


class RecordingInfo(BaseModel):
    """A recording as the API and the review pages see it."""

    model_config = ConfigDict(frozen=True)

    id: int | None = None
    call_id: str
    pbx: str = DEFAULT_PBX  # the PBX of the call (and of the channel recorded)
    seq: int
    source: Literal["bridge", "pbx"]
    operator: str | None
    channel: str
    file: str | None
    path: str | None
    format: str
    started_at: float
    stopped_at: float | None = None
    offset_seconds: float
    duration_seconds: float | None = None
    size_bytes: int | None = None
    paused: list[PausedSpan] = []
    status: Status
    error: str | None = None
    checked_at: datetime | None = None
    purged_at: datetime | None = None
    # From the call log, when the call is there (list and get fill them).
    caller_number: str | None = None
    caller_name: str | None = None
    queue: str | None = None

    @property
    def problem(self) -> bool:
        return self.status in PROBLEMS


def _values(rec: RecordingInfo) -> dict[str, Any]:
    return {
        "call_id": rec.call_id, "pbx": rec.pbx, "seq": rec.seq, "source": rec.source,
        "operator": rec.operator,
        "channel": rec.channel, "file": rec.file, "path": rec.path, "format": rec.format,
        "started_at": to_datetime(rec.started_at),
        "stopped_at": None if rec.stopped_at is None else to_datetime(rec.stopped_at),
        "offset_seconds": rec.offset_seconds, "duration_seconds": rec.duration_seconds,
        "size_bytes": rec.size_bytes, "paused": [[s.start, s.end] for s in rec.paused],
        "status": rec.status, "error": rec.error, "checked_at": rec.checked_at,
        "purged_at": rec.purged_at, "updated_at": datetime.now(UTC),
    }


def _info(row: Any, call: Any = None) -> RecordingInfo:
    return RecordingInfo(
        id=row.id, call_id=row.call_id, pbx=row.pbx, seq=row.seq, source=row.source, operator=row.operator,
        channel=row.channel, file=row.file, path=row.path, format=row.format,
        started_at=to_epoch(row.started_at),
        stopped_at=None if row.stopped_at is None else to_epoch(row.stopped_at),
        offset_seconds=row.offset_seconds, duration_seconds=row.duration_seconds,
        size_bytes=row.size_bytes, paused=[PausedSpan(start=a, end=b) for a, b in row.paused or []],
        status=row.status, error=row.error, checked_at=row.checked_at, purged_at=row.purged_at,
        caller_number=getattr(call, "caller_number", None), caller_name=getattr(call, "caller_name", None),
        queue=getattr(call, "queue", None),
    )


_CALLS = CallRow.__table__


class RecordingStore:
    """Recording rows on an open CallLogStore (same engine, same migrations)."""

    def __init__(self, store: CallLogStore) -> None:
        self.store = store

    async def save(self, rec: RecordingInfo) -> int:
        """Insert or update the row of (call_id, seq); returns its id."""
        values = _values(rec)
        async with self.store.engine.begin() as conn:
            found = (await conn.execute(select(FILES.c.id).where(
                FILES.c.call_id == rec.call_id, FILES.c.seq == rec.seq))).scalar_one_or_none()
            if found is None:
                result = await conn.execute(insert(FILES).values(**values).returning(FILES.c.id))
                return int(result.scalar_one())
            await conn.execute(update(FILES).where(FILES.c.id == found).values(**values))
            return int(found)

    async def max_seq(self, call_id: str) -> int:
        """The highest recording number stored for the call (0: none)."""
        async with self.store.engine.connect() as conn:
            found = (await conn.execute(select(func.max(FILES.c.seq)).where(FILES.c.call_id == call_id)))
            return int(found.scalar_one() or 0)

    def _query(self):  # noqa: ANN202  (a Select of the row joined with its call)
        joined = FILES.outerjoin(_CALLS, _CALLS.c.call_id == FILES.c.call_id)
        return select(FILES, _CALLS.c.caller_number, _CALLS.c.caller_name, _CALLS.c.queue).select_from(joined)

    async def _fetch(self, query) -> list[RecordingInfo]:  # noqa: ANN001
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_info(row, row) for row in rows]

    async def get(self, recording_id: int) -> RecordingInfo | None:
        found = await self._fetch(self._query().where(FILES.c.id == recording_id))
        return found[0] if found else None

    async def for_call(self, call_id: str) -> list[RecordingInfo]:
        return await self._fetch(self._query().where(FILES.c.call_id == call_id).order_by(FILES.c.seq))

    async def search(self, *, operators: Sequence[str] | None = None, call_id: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     statuses: Sequence[str] | None = None, ids: Sequence[int] | None = None,
                     pbx: str | Sequence[str] | None = None, limit: int = 100,
                     offset: int = 0) -> list[RecordingInfo]:
        """Newest first (of one PBX if given: its stored ids). `operators=[]` matches nothing (an
        operator with no extension)."""
        where = []
        if pbx is not None:
            where.append(FILES.c.pbx.in_([pbx] if isinstance(pbx, str) else list(pbx)))
        if operators is not None:
            where.append(FILES.c.operator.in_(list(operators)))
        if call_id is not None:
            where.append(FILES.c.call_id == call_id)
        if since is not None:
            where.append(FILES.c.started_at >= since)
        if until is not None:
            where.append(FILES.c.started_at < until)
        if statuses:
            where.append(FILES.c.status.in_(list(statuses)))
        if ids is not None:
            where.append(FILES.c.id.in_(list(ids)))
        query = (self._query().where(*where)
                 .order_by(FILES.c.started_at.desc(), FILES.c.id.desc()).limit(limit).offset(offset))
        return await self._fetch(query)

    async def problems(self, call_id: str | None = None) -> list[RecordingInfo]:
        """Recordings flagged missing, empty or failed (of one call, or all)."""
        where = [FILES.c.status.in_(PROBLEMS)]
        if call_id is not None:
            where.append(FILES.c.call_id == call_id)
        return await self._fetch(self._query().where(*where).order_by(FILES.c.started_at))

    async def older_than(self, before: datetime) -> list[RecordingInfo]:
        """Not yet purged recordings that started before `before`, oldest first."""
        query = (self._query().where(FILES.c.started_at < before, FILES.c.status != "purged")
                 .order_by(FILES.c.started_at, FILES.c.id))
        return await self._fetch(query)

    async def mark_purged(self, recording_id: int, at: datetime) -> None:
        async with self.store.engine.begin() as conn:
            await conn.execute(update(FILES).where(FILES.c.id == recording_id).values(
                status="purged", purged_at=at, updated_at=datetime.now(UTC)))
