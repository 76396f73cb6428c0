"""Mutable working state of a call inside the call-state model.

Kept apart from the immutable records in call_record.py: the tracker mutates these as
events arrive and hands out `snapshot()` copies to subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.calls.record import (
    DEFAULT_PBX,
    CallRecord,
    EndedBy,
    Outcome,
    RecordingRecord,
    RingRecord,
    TransferKind,
    TransferRecord,
)

# DialStatus values that mean the system (not the caller) gave up on a ring.
# FORWARD: the phone sent the call on (call forwarding); whoever it went to rang as well.
_SYSTEM_FAILURES = frozenset({"BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION", "INVALIDARGS", "FORWARD"})
# QUEUESTATUS values (app_queue) that mean the queue, not the caller, gave up. app_queue
# also sends QueueCallerAbandon on a timeout: QUEUESTATUS is what tells the two apart.
# CONTINUE (the caller goes on in the dialplan after talking) settles nothing.
QUEUE_GAVE_UP = frozenset({"TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL",
                           "LEAVEUNAVAIL", "WITHDRAW"})


@dataclass(slots=True)
class Ring:
    operator: str
    started_at: float
    queue: str | None = None
    member_name: str | None = None
    ended_at: float | None = None
    answered_at: float | None = None
    result: str | None = None

    def record(self) -> RingRecord:
        return RingRecord(
            operator=self.operator, queue=self.queue, member_name=self.member_name,
            started_at=self.started_at, ended_at=self.ended_at,
            answered_at=self.answered_at, result=self.result,
        )


@dataclass(slots=True)
class Transfer:
    kind: TransferKind
    from_operator: str | None
    to_operator: str | None
    at: float

    def record(self) -> TransferRecord:
        return TransferRecord(kind=self.kind, at=self.at,
                              **{"from": self.from_operator, "to": self.to_operator})


@dataclass(slots=True)
class Recording:
    channel: str
    started_at: float
    operator: str | None = None
    file: str | None = None
    stopped_at: float | None = None

    def record(self) -> RecordingRecord:
        return RecordingRecord(file=self.file, channel=self.channel, operator=self.operator,
                               started_at=self.started_at, stopped_at=self.stopped_at)


@dataclass(slots=True)
class Call:
    call_id: str  # the Linkedid: the tracker's key (the record's id adds the PBX's prefix)
    entered_at: float
    attached_mid_call: bool = False
    pbx: str = DEFAULT_PBX
    id_prefix: str = ""  # see CallTracker: "" for the first PBX, "<pbx>:" for the others
    caller_leg: str | None = None  # leg key of the caller's channel(s)
    caller_number: str | None = None
    caller_name: str | None = None
    queue: str | None = None
    dialed: str | None = None
    internal: bool = False
    in_queue: bool = False
    abandoned: bool = False  # QueueCallerAbandon seen
    queue_status: str | None = None  # the last QUEUESTATUS the queue set on the caller
    caller_gone: bool = False
    up_at: float | None = None  # the caller's channel answered (by the PBX or a person)
    answered_at: float | None = None
    answered_by: str | None = None
    current_operator: str | None = None
    ended_at: float | None = None
    outcome: Outcome | None = None
    outcome_reason: str | None = None
    ended_by: EndedBy | None = None
    last_seen_at: float = 0.0  # the PBX time of the last event about this call
    rings: list[Ring] = field(default_factory=list)
    ring_by_leg: dict[str, Ring] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    pending_blind: Transfer | None = None
    recordings: list[Recording] = field(default_factory=list)
    channels: set[str] = field(default_factory=set)

    @property
    def rung(self) -> list[str]:
        """Every operator whose phone rang for this call, once each, in order."""
        seen: dict[str, None] = {}
        for ring in self.rings:
            seen.setdefault(ring.operator, None)
        return list(seen)

    def add_transfer(self, kind: TransferKind, source: str | None, target: str | None,
                     at: float) -> Transfer:
        transfer = Transfer(kind=kind, from_operator=source, to_operator=target, at=at)
        self.transfers.append(transfer)
        return transfer

    def open_recording(self, channel: str) -> Recording | None:
        for rec in reversed(self.recordings):
            if rec.channel == channel and rec.stopped_at is None:
                return rec
        return None

    def decide_outcome(self, incomplete: bool = False) -> tuple[Outcome, str | None]:
        """answered / abandoned (the caller gave up) / unanswered (the system did), with why.

        A call we only saw part of, with no event that settles it, is `incomplete`.
        """
        if self.answered_at is not None:
            return "answered", None
        if self.queue_status in QUEUE_GAVE_UP:
            return "unanswered", self.queue_status.lower()
        if self.abandoned:
            return "abandoned", "caller_hangup"
        if incomplete or self.attached_mid_call:
            return "incomplete", None
        if self.queue is not None:
            # Queue calls that end without QueueCallerAbandon or QUEUESTATUS.
            return ("unanswered", None) if not self.in_queue else ("abandoned", "caller_hangup")
        if self.rings:
            results = [r.result for r in self.rings]
            if set(results) <= _SYSTEM_FAILURES:
                return "unanswered", (results[-1] or "").lower() or None
            return "abandoned", "caller_hangup"
        # No operator rung and no queue: an application answered (IVR, ChanSpy, ...),
        # which Asterisk's own CDR also reports as ANSWERED.
        return "answered", None

    @classmethod
    def from_record(cls, record: CallRecord, id_prefix: str = "") -> Call:
        call = cls(
            call_id=record.call_id.removeprefix(id_prefix), entered_at=record.entered_at,
            pbx=record.pbx, id_prefix=id_prefix,
            attached_mid_call=record.attached_mid_call, caller_number=record.caller_number,
            caller_name=record.caller_name, queue=record.queue, dialed=record.dialed,
            internal=record.internal, answered_at=record.answered_at,
            answered_by=record.answered_by, last_seen_at=record.last_seen_at,
        )
        call.rings = [Ring(**r.model_dump()) for r in record.rings]
        call.transfers = [Transfer(kind=t.kind, from_operator=t.from_operator,
                                   to_operator=t.to_operator, at=t.at) for t in record.transfers]
        call.recordings = [Recording(**r.model_dump()) for r in record.recordings]
        call.current_operator = call.transfers[-1].to_operator if call.transfers else call.answered_by
        return call

    def snapshot(self) -> CallRecord:
        return CallRecord(
            call_id=self.id_prefix + self.call_id,
            pbx=self.pbx,
            caller_number=self.caller_number,
            caller_name=self.caller_name,
            queue=self.queue,
            dialed=self.dialed,
            answered_by=self.answered_by,
            rung=self.rung,
            outcome=self.outcome,
            outcome_reason=self.outcome_reason,
            ended_by=self.ended_by,
            internal=self.internal,
            entered_at=self.entered_at,
            answered_at=self.answered_at,
            ended_at=self.ended_at,
            transfers=[t.record() for t in self.transfers],
            rings=[r.record() for r in self.rings],
            recordings=[r.record() for r in self.recordings],
            attached_mid_call=self.attached_mid_call,
        )
