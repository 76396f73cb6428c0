"""Queue members' state over time (logged in, paused), kept in `queue_member_log`.

Fed by raw AMI events (QueueMemberAdded / Removed / Pause / Status) and by the QueueMember
items of the QueueStatus answer after every (re)connect. Only *changes* are stored: one row
each time a member's (logged in, paused, reason) changes in a queue, plus a row with
`queue` NULL each time the operator's overall state changes (logged in to at least one
queue; paused in every queue he is logged in to) — the rows the per-operator and
all-queues figures read, so no union of intervals is needed in SQL. Queues and interfaces are
a PBX's own: every row names the PBX of its event (`.pbx`, tagged by that PBX's link; untagged:
the one PBX, "main"), the states are kept per PBX, and a row's `operator` is its interface's
extension if that matches its PBX's own `operator_pattern`.

Like the call log writer, handling an event never waits on the database: rows are queued
and a background task writes them in batches, retrying with back-off during an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, insert
from sqlalchemy.orm import Mapped, mapped_column

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.call_log.tables import Base, CallRow, RingRow, UtcDateTime
from bridge.call_log.writer import describe_error
from bridge.calls.channel_names import OperatorDirectory
from bridge.calls.record import DEFAULT_PBX

log = logging.getLogger(__name__)

MEMBER_EVENTS = frozenset({"QueueMemberAdded", "QueueMemberRemoved", "QueueMemberPause",
                           "QueueMemberPaused", "QueueMemberStatus"})
_UNREACHABLE = {"4", "5"}  # AST_DEVICE_INVALID, UNAVAILABLE: a member whose phone is gone is not in
_MAX_PENDING = 100_000  # a database down for days must not eat the memory


class MemberLogRow(Base):
    __tablename__ = "queue_member_log"
    __table_args__ = (Index("ix_queue_member_log_at", "at"),
                      Index("ix_queue_member_log_operator_at", "operator", "at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    pbx: Mapped[str] = mapped_column(String, nullable=False, server_default=DEFAULT_PBX)
    queue: Mapped[str | None] = mapped_column(String)  # NULL: the operator's state over all queues
    interface: Mapped[str] = mapped_column(String, nullable=False)
    operator: Mapped[str | None] = mapped_column(String)
    name: Mapped[str | None] = mapped_column(String)
    logged_in: Mapped[bool] = mapped_column(Boolean, nullable=False)
    paused: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reason: Mapped[str | None] = mapped_column(String)
    source: Mapped[str] = mapped_column(String, nullable=False)  # the AMI event, or QueueStatus


MEMBER_LOG = MemberLogRow.__table__

# Indexes the reports need on the call log's own tables (migration 0007 creates them); declared
# here so the ORM's schema matches the migrations without the call log knowing about reports.
_calls, _rings = CallRow.__table__.c, RingRow.__table__.c
Index("ix_calls_report", _calls.entered_at, _calls.queue, _calls.outcome, _calls.internal,
      _calls.wait_seconds, _calls.talk_seconds, _calls.answered_by, _calls.call_id)
Index("ix_call_rings_report", _rings.call_id, _rings.operator, _rings.answered_at, _rings.member_name)


@dataclass(frozen=True, slots=True)
class MemberState:
    logged_in: bool
    paused: bool
    reason: str | None


_OUT = MemberState(False, False, None)


class MemberLog:
    """The subscriber (`on_ami_event`, `on_resync`) and its background writer."""

    def __init__(self, store: CallLogStore, operators: OperatorDirectory | None = None, *,
                 pbx_operators: Mapping[str, OperatorDirectory] | None = None,
                 batch_size: int = 500, max_delay: float = 0.5, retry_max: float = 30.0) -> None:
        self.store = store
        self.operators = operators or OperatorDirectory()  # a PBX not in `pbx_operators`
        # Each PBX's own pattern: another PBX's 2xx may be its operators while ours are 1xx.
        self.pbx_operators = dict(pbx_operators or {})
        self.batch_size, self.max_delay, self.retry_max = batch_size, max_delay, retry_max
        self.states: dict[tuple[str, str, str], MemberState] = {}  # (pbx, queue, interface) -> state
        self.overall: dict[tuple[str, str], MemberState] = {}  # (pbx, interface) -> state over all queues
        self.names: dict[tuple[str, str], str] = {}  # (pbx, interface) -> member name
        self.pending: list[dict[str, Any]] = []
        self.written = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- subscriber side (sync, never blocks) --------------------------------------------------

    def on_ami_event(self, ev: AmiMessage) -> None:
        if ev.event in MEMBER_EVENTS and "Queue" in ev:
            self._apply(ev, ev.timestamp)

    def on_resync(self, _channels: list[AmiMessage], queue_items: list[AmiMessage], at: float) -> None:
        """A PBX's member list after its connect: what changed while we were away, and members
        no longer listed in a queue it reported are out from `at` (another PBX's stay as they are)."""
        listed = {(_pbx(ev), ev["Queue"], _interface(ev)) for ev in queue_items if ev.event == "QueueMember"}
        reported = {(_pbx(ev), ev["Queue"]) for ev in queue_items if ev.event == "QueueParams"}
        for ev in queue_items:
            if ev.event == "QueueMember":
                self._apply(ev, at, source="QueueStatus")
        for pbx, queue, interface in list(self.states):
            if (pbx, queue) in reported and (pbx, queue, interface) not in listed:
                self._set(pbx, queue, interface, _OUT, at, "QueueStatus")

    def _apply(self, ev: AmiMessage, at: float, source: str | None = None) -> None:
        pbx, queue, interface = _pbx(ev), ev["Queue"], _interface(ev)
        if not interface:
            return
        if name := ev.get("MemberName") or ev.get("Name"):
            self.names[(pbx, interface)] = name
        previous = self.states.get((pbx, queue, interface), _OUT)
        if ev.event == "QueueMemberRemoved":
            state = _OUT
        else:
            status = ev.get("Status")
            logged_in = status not in _UNREACHABLE if status is not None else (
                previous.logged_in or ev.event in ("QueueMemberAdded", "QueueMember"))
            paused = ev.get("Paused", "1" if previous.paused else "0") == "1"
            reason = (ev.get("PausedReason") or None) if paused else None
            state = MemberState(logged_in, paused and logged_in, reason if logged_in else None)
        self._set(pbx, queue, interface, state, at, source or ev.event or "?")

    def _set(self, pbx: str, queue: str, interface: str, state: MemberState, at: float, source: str) -> None:
        old = self.states.get((pbx, queue, interface))
        if old == state or (old is None and state == _OUT):
            return
        self.states[(pbx, queue, interface)] = state
        self._row(at, pbx, queue, interface, state, source)
        mine = [s for (p, _, i), s in self.states.items() if p == pbx and i == interface and s.logged_in]
        overall = MemberState(bool(mine), bool(mine) and all(s.paused for s in mine),
                              next((s.reason for s in mine if s.reason), None) if mine else None)
        if self.overall.get((pbx, interface)) != overall:
            self.overall[(pbx, interface)] = overall
            self._row(at, pbx, None, interface, overall, source)

    def _row(self, at: float, pbx: str, queue: str | None, interface: str, state: MemberState,
             source: str) -> None:
        if len(self.pending) >= _MAX_PENDING:
            del self.pending[: self.batch_size]
            log.error("member log: database unavailable too long; dropped %d old state changes",
                      self.batch_size)
        operator = self.operators_of(pbx).operator_of(interface)
        self.pending.append({"at": datetime.fromtimestamp(at, UTC), "pbx": pbx, "queue": queue,
                             "interface": interface, "operator": operator,
                             "name": self.names.get((pbx, interface)), "logged_in": state.logged_in,
                             "paused": state.paused, "reason": (state.reason or None) and state.reason[:200],
                             "source": source})
        self._wake.set()

    def operators_of(self, pbx: str) -> OperatorDirectory:
        return self.pbx_operators.get(pbx, self.operators)

    # -- the background writer ----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="member-log-writer")

    async def stop(self, give_up_after: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):  # a last try; a dead database loses only these rows
            await asyncio.wait_for(self.flush(), give_up_after)

    async def flush(self) -> None:
        """Write everything queued so far (tests, and the stop)."""
        while self.pending:
            batch = self.pending[: self.batch_size]
            async with self.store.engine.begin() as conn:
                await conn.execute(insert(MEMBER_LOG), batch)
            del self.pending[: len(batch)]
            self.written += len(batch)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            if not self.pending:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(self.max_delay)  # let a resync's burst become one batch
            try:
                await self.flush()
                delay = 0.5
            except Exception as exc:  # an outage: keep the rows, retry with back-off
                log.error("member log: writing %d state change(s) failed: %s; retrying in %.1f s",
                          len(self.pending), describe_error(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)


def _interface(ev: AmiMessage) -> str:
    return ev.get("Interface") or ev.get("Location") or ev.get("StateInterface") or ""


def _pbx(ev: AmiMessage) -> str:
    """The PBX an event or list item came from (its link tags it; untagged: the one PBX)."""
    return ev.pbx or DEFAULT_PBX

