"""The supervisor's live picture of one PBX's queues and operators. Pure: no I/O.

Fed by queue AMI events (QueueCallerJoin/Leave/Abandon, QueueMember*), by the
QueueStatus list at every (re)connect, and by the call-state model's domain events
(who rings, who talks with whom, finished calls for today's figures). `snapshot(now)`
gives the wallboard; `evaluate_alerts(now)` raises and clears queue alerts. Queue names,
extensions and channels are a PBX's own: with several PBXes there is one board per PBX
(supervision.pbx_site), and every view it gives names its `pbx`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import OperatorDirectory, unescape_ami
from bridge.calls.definitions import ServiceLevelPolicy, Tally, service_level
from bridge.calls.events import CallAnswered, CallEnded, CallRingEnded, CallRinging, DomainEvent
from bridge.calls.record import DEFAULT_PBX, CallRecord
from supervision.models import (
    Alert,
    AlertThresholds,
    LiveCallView,
    OperatorView,
    QueueView,
    WallboardSnapshot,
)

# Asterisk's queue member Status (AST_DEVICE_*): which mean the phone is not reachable.
_UNREACHABLE = {"4", "5"}  # INVALID, UNAVAILABLE


@dataclass(slots=True)
class Member:
    queue: str
    interface: str
    operator: str | None
    name: str
    status: str = "1"
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    membership: str = "static"
    penalty: int = 0

    def update(self, ev: AmiMessage) -> None:
        self.name = ev.get("MemberName") or ev.get("Name") or self.name
        self.status = ev.get("Status", self.status)
        self.paused = ev.get("Paused", "1" if self.paused else "0") == "1"
        self.paused_reason = ev.get("PausedReason", self.paused_reason) if self.paused else ""
        self.in_call = ev.get("InCall", "1" if self.in_call else "0") == "1"
        self.membership = ev.get("Membership", self.membership)
        self.penalty = int(ev.get("Penalty") or self.penalty)


@dataclass(slots=True)
class QueueLive:
    name: str
    members: dict[str, Member] = field(default_factory=dict)  # by interface
    waiting: dict[str, tuple[float, str | None, str | None]] = field(default_factory=dict)  # channel ->
    days: dict[str, Tally] = field(default_factory=dict)  # (joined, number, name)


@dataclass(slots=True)
class OperatorDay:
    calls: int = 0
    talk_seconds: float = 0.0


class QueueBoard:
    def __init__(self, operators: OperatorDirectory | None = None, *, target_seconds: float = 30.0,
                 after_call_seconds: float = 10.0, thresholds: dict[str, AlertThresholds] | None = None,
                 default_thresholds: AlertThresholds | None = None, tz: tzinfo = UTC,
                 policy: ServiceLevelPolicy | None = None, pbx: str = DEFAULT_PBX) -> None:
        self.pbx = pbx
        self.operators = operators or OperatorDirectory()
        self.tz = tz  # the call centre's zone: where "today" starts and ends
        # "Answered within T" as the reports define it ([reports]; bridge.calls.definitions).
        self.policy = policy or ServiceLevelPolicy(target_seconds=target_seconds)
        self.target_seconds = self.policy.target_seconds
        self.after_call_seconds = after_call_seconds
        self.thresholds = thresholds or {}
        self.default_thresholds = default_thresholds or AlertThresholds()
        self.queues: dict[str, QueueLive] = {}
        self.live_calls: dict[str, CallRecord] = {}
        self.ringing: dict[str, set[str]] = {}  # operator -> call ids ringing him
        self.last_call_end: dict[str, float] = {}
        self.operator_days: dict[tuple[str, str], OperatorDay] = {}
        self.names: dict[str, str] = {}  # operator extension -> member name
        self.known: set[str] = set()  # every operator seen rung, even outside any queue
        self.alerts: dict[tuple[str, str], Alert] = {}

    # -- AMI queue events ----------------------------------------------------------------

    def handle(self, ev: AmiMessage) -> None:
        name = ev.event or ""
        if not name.startswith(("Queue", "Agent")) or "Queue" not in ev:
            return
        queue = self._queue(ev["Queue"])
        if name in ("QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause", "QueueMember"):
            self._member(queue, ev).update(ev)
        elif name == "QueueMemberRemoved":
            queue.members.pop(ev.get("Interface") or ev.get("Location") or "", None)
        elif name in ("QueueCallerJoin", "QueueEntry"):
            joined = ev.timestamp - float(ev.get("Wait") or 0)
            caller_name = ev.get("CallerIDName")
            if name == "QueueCallerJoin":  # a channel snapshot: C-escaped (QueueEntry is raw)
                caller_name = unescape_ami(caller_name)
            queue.waiting[ev.get("Channel", "")] = (joined, ev.get("CallerIDNum"), caller_name)
        elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
            queue.waiting.pop(ev.get("Channel", ""), None)

    def apply_queue_status(self, items: list[AmiMessage], at: float) -> None:
        """Replace the queues' live state by the PBX's QueueStatus answer (after a connect)."""
        seen: set[str] = set()
        for ev in items:
            if ev.event == "QueueParams":
                queue = self._queue(ev["Queue"])
                if queue.name not in seen:
                    queue.members.clear()
                    queue.waiting.clear()
                    seen.add(queue.name)
        for ev in items:
            if ev.event in ("QueueMember", "QueueEntry"):
                msg = AmiMessage(ev.pairs + [("Timestamp", f"{at:.6f}")], ev.received_at)
                self.handle(msg)

    def _queue(self, name: str) -> QueueLive:
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = QueueLive(name)
        return queue

    def _member(self, queue: QueueLive, ev: AmiMessage) -> Member:
        interface = ev.get("Interface") or ev.get("Location") or ev.get("StateInterface") or ""
        member = queue.members.get(interface)
        if member is None:
            operator = self.operators.operator_of(interface)
            name = ev.get("MemberName") or ev.get("Name") or interface
            member = queue.members[interface] = Member(queue.name, interface, operator, name)
            if operator:
                self.names[operator] = name
        return member

    def day_of(self, ts: float) -> str:
        """The calendar day (ISO) of a moment in the board's zone: the key of "today's" figures."""
        return datetime.fromtimestamp(ts, self.tz).date().isoformat()

    # -- domain events -------------------------------------------------------------------

    def handle_domain(self, event: DomainEvent) -> None:
        call = event.call
        if isinstance(event, CallEnded):
            self.live_calls.pop(call.call_id, None)
            for calls in self.ringing.values():
                calls.discard(call.call_id)
            self._count_finished(call)
            return
        self.live_calls[call.call_id] = call
        if isinstance(event, CallRinging):
            self.known.add(event.operator)
            self.ringing.setdefault(event.operator, set()).add(call.call_id)
        elif isinstance(event, (CallAnswered, CallRingEnded)):
            self.ringing.get(event.operator, set()).discard(call.call_id)

    def _count_finished(self, call: CallRecord) -> None:
        if call.ended_at is None:
            return
        day = self.day_of(call.entered_at)
        if call.queue and not call.internal:
            stats = self._queue(call.queue).days.setdefault(day, Tally())
            stats.count(call.outcome, call.wait_seconds, self.policy.target_for(call.queue),
                        self.policy.short_abandon_seconds)
        for operator, start, end in _talk_segments(call):
            self.last_call_end[operator] = call.ended_at
            figures = self.operator_days.setdefault((operator, day), OperatorDay())
            figures.calls += 1
            figures.talk_seconds += max(0.0, end - start)

    # -- the picture ---------------------------------------------------------------------

    def snapshot(self, now: float) -> WallboardSnapshot:
        day = self.day_of(now)
        talking = self._talking()
        worked_today = {op for op, d in self.operator_days if d == day}  # even outside any queue
        operators = sorted({m.operator for q in self.queues.values() for m in q.members.values()
                            if m.operator} | set(talking) | self.known | worked_today)
        return WallboardSnapshot(
            at=now,
            queues=[self._queue_view(self.queues[name], now, day) for name in sorted(self.queues)],
            operators=[self._operator_view(op, now, day, talking) for op in operators],
            live_calls=[self._live_call_view(c, now) for c in sorted(self.live_calls.values(),
                                                                       key=lambda c: c.entered_at)],
            alerts=sorted(self.alerts.values(), key=lambda a: (a.queue, a.kind)),
            target_seconds=self.target_seconds,
        )

    def _talking(self) -> dict[str, CallRecord]:
        talking: dict[str, CallRecord] = {}
        for call in self.live_calls.values():
            operator = _current_operator(call)
            if operator is not None:
                talking[operator] = call
        return talking

    def _queue_view(self, queue: QueueLive, now: float, day: str) -> QueueView:
        stats = queue.days.get(day, Tally())
        members = list(queue.members.values())
        talking = self._talking()
        logged_in = [m for m in members if m.status not in _UNREACHABLE]
        free = [m for m in logged_in if not m.paused and not m.in_call and m.operator not in talking
                and not self.ringing.get(m.operator or "", set())]
        longest = max((now - joined for joined, _, _ in queue.waiting.values()), default=0.0)
        level = service_level(stats, self.policy.definition,
                              abandons_within_target_met=self.policy.abandons_within_target_met)
        return QueueView(
            name=queue.name, pbx=self.pbx, waiting=len(queue.waiting),
            longest_wait_seconds=round(max(0.0, longest), 1),
            logged_in=len(logged_in), free=len(free), calls_today=stats.offered,
            answered_today=stats.answered, abandoned_today=stats.abandoned,
            answered_in_target_percent=round(100.0 * level, 1) if level is not None else None,
        )

    def _operator_view(self, operator: str, now: float, day: str,
                       talking: dict[str, CallRecord]) -> OperatorView:
        memberships = [m for q in self.queues.values() for m in q.members.values() if m.operator == operator]
        figures = self.operator_days.get((operator, day), OperatorDay())
        call = talking.get(operator)
        paused = next((m for m in memberships if m.paused), None)
        status, since, with_caller, reason = "available", None, None, None
        if call is not None:
            status, since = "talking", _answered_by_operator_at(call, operator)
            with_caller = call.caller_name or call.caller_number
        elif self.ringing.get(operator):
            status = "ringing"
        elif memberships and all(m.status in _UNREACHABLE for m in memberships):
            status = "offline"
        elif paused is not None:
            status, reason = "paused", paused.paused_reason or None
        elif now - self.last_call_end.get(operator, float("-inf")) < self.after_call_seconds:
            status, since = "after_call", self.last_call_end[operator]
        return OperatorView(
            operator=operator, pbx=self.pbx, name=self.names.get(operator), status=status,
            paused_reason=reason,
            since=since, with_caller=with_caller, call_id=call.call_id if call else None,
            queues=sorted(m.queue for m in memberships), calls_today=figures.calls,
            average_talk_seconds=round(figures.talk_seconds / figures.calls, 1) if figures.calls else None,
        )

    def _live_call_view(self, call: CallRecord, now: float) -> LiveCallView:
        return LiveCallView(
            call_id=call.call_id, pbx=self.pbx, caller_number=call.caller_number,
            caller_name=call.caller_name,
            queue=call.queue, operator=_current_operator(call),
            duration_seconds=round(max(0.0, now - call.entered_at), 1),
            recording=any(r.stopped_at is None for r in call.recordings),
        )

    # -- alerts --------------------------------------------------------------------------

    def evaluate_alerts(self, now: float, queue_name: str | None = None) -> tuple[list[Alert], list[Alert]]:
        """(raised, cleared) since the last evaluation, of every queue or of one."""
        raised, cleared = [], []
        queues = self.queues.values() if queue_name is None else [
            q for q in (self.queues.get(queue_name),) if q is not None]
        for queue in queues:
            limits = self.thresholds.get(queue.name, self.default_thresholds)
            longest = max((now - joined for joined, _, _ in queue.waiting.values()), default=0.0)
            checks = (("callers_waiting", len(queue.waiting), limits.callers_waiting),
                      ("longest_wait", round(longest, 1), limits.longest_wait_seconds))
            for kind, value, limit in checks:
                key = (queue.name, kind)
                if limit is not None and value >= limit:
                    if key not in self.alerts:
                        self.alerts[key] = Alert(queue=queue.name, pbx=self.pbx, kind=kind, value=value,
                                                 limit=limit, since=now)
                        raised.append(self.alerts[key])
                    elif self.alerts[key].value != value:  # every queue event asks: copy on change only
                        self.alerts[key] = self.alerts[key].model_copy(update={"value": value})
                elif key in self.alerts:
                    cleared.append(self.alerts.pop(key))
        return raised, cleared


def _current_operator(call: CallRecord) -> str | None:
    if call.answered_at is None:
        return None
    if call.transfers and call.transfers[-1].to_operator:
        return call.transfers[-1].to_operator
    return call.answered_by


def _answered_by_operator_at(call: CallRecord, operator: str) -> float | None:
    times = [r.answered_at for r in call.rings if r.operator == operator and r.answered_at is not None]
    return max(times) if times else call.answered_at


def _talk_segments(call: CallRecord) -> list[tuple[str, float, float]]:
    """(operator, from, to) for each operator who talked with the caller."""
    if call.answered_at is None or call.answered_by is None or call.ended_at is None:
        return []
    segments, operator, start = [], call.answered_by, call.answered_at
    for transfer in call.transfers:
        if transfer.to_operator and transfer.to_operator != operator:
            segments.append((operator, start, transfer.at))
            operator, start = transfer.to_operator, transfer.at
    segments.append((operator, start, call.ended_at))
    return segments
