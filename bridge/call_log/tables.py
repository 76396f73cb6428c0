"""The call log's tables (SQLAlchemy 2 declarative), one row per call plus its children.

The schema itself is created by the Alembic migrations in `bridge/migrations`; these
classes must match them (a test compares the two).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, MetaData, String
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from bridge.calls.record import DEFAULT_PBX

# Stable constraint names, so later migrations can refer to them on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """`timestamptz` on PostgreSQL; on SQLite (which keeps no zone) stored as UTC and
    read back as UTC-aware, so both databases hand out the same aware datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the call log stores UTC-aware times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CallRow(Base):
    __tablename__ = "calls"

    call_id: Mapped[str] = mapped_column(String, primary_key=True)  # the Linkedid ("<pbx>:" before it
    # on all PBXes but the first: bridge.calls.tracker)
    pbx: Mapped[str] = mapped_column(String, server_default=DEFAULT_PBX)
    caller_number: Mapped[str | None] = mapped_column(String)
    caller_name: Mapped[str | None] = mapped_column(String)
    queue: Mapped[str | None] = mapped_column(String)
    dialed: Mapped[str | None] = mapped_column(String)
    answered_by: Mapped[str | None] = mapped_column(String)
    # Kept as given: a hand-made or restored record need not derive it from the rings.
    rung: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str | None] = mapped_column(String)  # NULL while the call is live
    outcome_reason: Mapped[str | None] = mapped_column(String)  # timeout, busy, caller_hangup, ...
    ended_by: Mapped[str | None] = mapped_column(String)  # hangup | pbx_lost; NULL while live
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    entered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Derived from the times, stored so reports can query them without recomputing.
    wait_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    talk_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    recording: Mapped[str | None] = mapped_column(String)
    attached_mid_call: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    rings: Mapped[list[RingRow]] = relationship(
        order_by="RingRow.seq", cascade="all, delete-orphan", lazy="selectin"
    )
    transfers: Mapped[list[TransferRow]] = relationship(
        order_by="TransferRow.seq", cascade="all, delete-orphan", lazy="selectin"
    )
    recordings: Mapped[list[RecordingRow]] = relationship(
        order_by="RecordingRow.seq", cascade="all, delete-orphan", lazy="selectin"
    )

    __table_args__ = (
        Index("ix_calls_entered_at", "entered_at"),
        Index("ix_calls_caller_number", "caller_number"),
        Index("ix_calls_pbx_entered_at", "pbx", "entered_at"),
    )


def _call_fk() -> Mapped[str]:
    return mapped_column(String, ForeignKey("calls.call_id", ondelete="CASCADE"), index=True)


class RingRow(Base):
    __tablename__ = "call_rings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = _call_fk()
    seq: Mapped[int] = mapped_column(Integer)  # position in the record's list
    operator: Mapped[str] = mapped_column(String)
    queue: Mapped[str | None] = mapped_column(String)
    member_name: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    result: Mapped[str | None] = mapped_column(String)


class TransferRow(Base):
    __tablename__ = "call_transfers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = _call_fk()
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String)
    from_operator: Mapped[str | None] = mapped_column(String)
    to_operator: Mapped[str | None] = mapped_column(String)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class RecordingRow(Base):
    __tablename__ = "call_recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = _call_fk()
    seq: Mapped[int] = mapped_column(Integer)
    file: Mapped[str | None] = mapped_column(String)
    channel: Mapped[str] = mapped_column(String)
    operator: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


CHILD_TABLES = (RingRow.__table__, TransferRow.__table__, RecordingRow.__table__)
