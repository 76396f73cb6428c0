"""The call as the rest of the system sees it: immutable pydantic records.

The call-state model keeps mutable working state of its own; what leaves it
(domain events, the call log, the replay tool) is these records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["answered", "abandoned", "unanswered", "incomplete"]
TransferKind = Literal["blind", "attended"]
# How we know the call ended: we saw its last channel hang up, or we lost sight of the PBX
# (crash, restart, lost link, bridge down) and end it at the PBX's last proof of life.
EndedBy = Literal["hangup", "pbx_lost"]
# The id of the one PBX of a one-PBX configuration (`[ami]`), and of rows older than PBX ids.
DEFAULT_PBX = "main"

# The keys `callbridge replay` and `callbridge calls export` print, in this order.
REPLAY_KEYS = (
    "call_id",
    "pbx",
    "caller_number",
    "caller_name",
    "queue",
    "dialed",
    "answered_by",
    "rung",
    "outcome",
    "outcome_reason",
    "internal",
    "wait_seconds",
    "talk_seconds",
    "transfers",
    "recording",
    "ended_by",
    "started_at",
    "answered_at",
    "ended_at",
)


def iso_utc(ts: float | None) -> str | None:
    """`2026-11-24T08:17:57.123Z`: the export's times, ISO 8601 in UTC (millisecond precision)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RingRecord(BaseModel):
    """One operator's phone ringing for a call (a ring attempt)."""

    model_config = ConfigDict(frozen=True)

    operator: str
    queue: str | None = None
    member_name: str | None = None
    started_at: float
    ended_at: float | None = None
    answered_at: float | None = None
    # Asterisk's DialStatus (ANSWER, BUSY, CANCEL, NOANSWER, ...), or None while ringing.
    result: str | None = None


class TransferRecord(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    kind: TransferKind
    from_operator: str | None = Field(alias="from")
    to_operator: str | None = Field(alias="to")
    at: float


class RecordingRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str | None
    channel: str
    operator: str | None = None
    started_at: float
    stopped_at: float | None = None


class CallRecord(BaseModel):
    """Everything known about one call (one Linkedid), live or finished."""

    model_config = ConfigDict(frozen=True)

    call_id: str
    pbx: str = DEFAULT_PBX  # the PBX the call is on (`[[pbx]]` id)
    caller_number: str | None = None
    caller_name: str | None = None
    queue: str | None = None
    dialed: str | None = None
    answered_by: str | None = None
    rung: list[str] = Field(default_factory=list)
    outcome: Outcome | None = None
    # Why a call was not answered: the queue's QUEUESTATUS (timeout, full, joinempty, ...),
    # the phones' DialStatus (busy, noanswer, ...), or caller_hangup. None when answered.
    outcome_reason: str | None = None
    ended_by: EndedBy | None = None  # None while live
    internal: bool = False
    entered_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    transfers: list[TransferRecord] = Field(default_factory=list)
    rings: list[RingRecord] = Field(default_factory=list)
    recordings: list[RecordingRecord] = Field(default_factory=list)
    # We connected while this call was already running: its start is what we saw first.
    attached_mid_call: bool = False

    @property
    def live(self) -> bool:
        return self.ended_at is None

    @property
    def last_seen_at(self) -> float:
        """The latest moment the record proves the call was still up."""
        times = [self.entered_at, self.answered_at or 0.0, self.ended_at or 0.0]
        times += [t for r in self.rings for t in (r.started_at, r.ended_at or 0.0)]
        times += [t.at for t in self.transfers]
        return max(times)

    @property
    def wait_seconds(self) -> float:
        """Entered to answered, or to the end (or now, 0 while live) when never answered."""
        until = self.answered_at if self.answered_at is not None else self.ended_at
        return round(max(0.0, until - self.entered_at), 1) if until is not None else 0.0

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return round(max(0.0, self.ended_at - self.answered_at), 1)

    @property
    def recording(self) -> str | None:
        for rec in self.recordings:
            if rec.file:
                return rec.file
        return None

    def replay_dict(self) -> dict:
        """The stable, documented shape printed by `replay` and `calls export`."""
        return {
            "call_id": self.call_id,
            "pbx": self.pbx,
            "caller_number": self.caller_number,
            "caller_name": self.caller_name,
            "queue": self.queue,
            "dialed": self.dialed,
            "answered_by": self.answered_by,
            "rung": list(self.rung),
            "outcome": self.outcome,
            "outcome_reason": self.outcome_reason,
            "internal": self.internal,
            "wait_seconds": self.wait_seconds,
            "talk_seconds": self.talk_seconds,
            "transfers": [
                {"kind": t.kind, "from": t.from_operator, "to": t.to_operator}
                for t in self.transfers
            ],
            "recording": self.recording,
            "ended_by": self.ended_by,
            "started_at": iso_utc(self.entered_at),
            "answered_at": iso_utc(self.answered_at),
            "ended_at": iso_utc(self.ended_at),
        }
