"""What the call-state model tells its subscribers (CRM lookup, call log, screen-pop,
recorder, wallboard). Each event carries a snapshot of the call at that moment."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bridge.calls.record import CallRecord, RecordingRecord, TransferRecord


class CallEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    at: float
    call: CallRecord

    @property
    def call_id(self) -> str:
        return self.call.call_id


class CallStarted(CallEvent):
    """A new call entered the PBX (or was first seen, when attaching mid-call)."""


class CallUpdated(CallEvent):
    """Caller id, queue or another detail of the call changed."""


class CallRinging(CallEvent):
    operator: str
    queue: str | None = None


class CallRingEnded(CallEvent):
    """An operator's phone stopped ringing without him taking the call.

    `result` is Asterisk's DialStatus (CANCEL when another operator answered or the
    caller hung up, BUSY, NOANSWER, ...)."""

    operator: str
    result: str


class CallAnswered(CallEvent):
    operator: str
    # The operator's leg channel that answered (bridged with the caller): where a
    # per-operator recording (MixMonitor) goes.
    channel: str | None = None


class CallTransferred(CallEvent):
    transfer: TransferRecord


class CallRecordingStarted(CallEvent):
    recording: RecordingRecord


class CallEnded(CallEvent):
    """The last channel of the call hung up (or resync found it gone)."""


DomainEvent = (
    CallStarted
    | CallUpdated
    | CallRinging
    | CallRingEnded
    | CallAnswered
    | CallTransferred
    | CallRecordingStarted
    | CallEnded
)
