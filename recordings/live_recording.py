"""One recording while the recorder keeps it: its row (`RecordingInfo` to and from), its
paused spans and its stop, in the PBX's clock.

A pause edge set from a reply to our MixMonitorMute is a guess; the PBX's MixMonitorMute
event, when it comes within `CORRECTION_WINDOW` seconds, moves it to the PBX's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.calls.record import DEFAULT_PBX
from recordings.store import PausedSpan, RecordingInfo

CORRECTION_WINDOW = 10.0  # s: how far an event may move a span edge guessed from a reply


@dataclass
class LiveRecording:
    """One recording as the recorder keeps it until its file is checked."""

    call_id: str
    seq: int
    source: str  # bridge | pbx
    channel: str
    operator: str | None
    file: str | None
    path: str | None
    started_at: float
    entered_at: float  # the call's, for the offset
    pbx: str = DEFAULT_PBX  # the call's PBX: its channel names are that PBX's, its actions go there
    status: str = "starting"
    stopped_at: float | None = None
    spans: list[list[float | None]] = field(default_factory=list)  # PBX times [start, end|None]
    guessed: list[bool] = field(default_factory=lambda: [False, False])  # last span's edges from a reply
    error: str | None = None
    size: int | None = None
    duration: float | None = None
    checked_at: datetime | None = None
    id: int | None = None

    @property
    def open(self) -> bool:
        return self.stopped_at is None and self.status in ("starting", "recording")

    @property
    def paused(self) -> bool:
        return bool(self.spans) and self.spans[-1][1] is None

    def info(self) -> RecordingInfo:
        end = self.stopped_at
        spans = []
        for start, stop in self.spans:
            stop = stop if stop is not None else end
            a = round(max(0.0, (start or self.started_at) - self.started_at), 3)
            b = None if stop is None else round(max(0.0, stop - self.started_at), 3)
            spans.append(PausedSpan(start=a, end=None if b is None else max(a, b)))
        return RecordingInfo(
            id=self.id, call_id=self.call_id, pbx=self.pbx, seq=self.seq,
            source=self.source,  # type: ignore[arg-type]
            operator=self.operator, channel=self.channel, file=self.file, path=self.path, format="wav",
            started_at=self.started_at, stopped_at=self.stopped_at,
            offset_seconds=round(max(0.0, self.started_at - self.entered_at), 3),
            duration_seconds=self.duration, size_bytes=self.size, paused=spans,
            status=self.status, error=self.error, checked_at=self.checked_at)  # type: ignore[arg-type]

    @classmethod
    def from_info(cls, info: RecordingInfo) -> LiveRecording:
        spans: list[list[float | None]] = [
            [info.started_at + s.start, None if s.end is None else info.started_at + s.end]
            for s in info.paused]
        return cls(call_id=info.call_id, pbx=info.pbx, seq=info.seq, source=info.source, channel=info.channel,
                   operator=info.operator, file=info.file, path=info.path, started_at=info.started_at,
                   entered_at=info.started_at - info.offset_seconds, status=info.status,
                   stopped_at=info.stopped_at, spans=spans, error=info.error, id=info.id)


def action_outcome(result: Any) -> tuple[bool, str | None]:
    """(ok, error) of an AMI action's reply, or of the exception sending it raised."""
    if isinstance(result, BaseException):
        return False, str(result) or type(result).__name__
    if getattr(result, "success", True):
        return True, None
    return False, (result.get("Message") if hasattr(result, "get") else None) or "refused by the PBX"


def mark_muted(rec: LiveRecording, state: bool, at: float, confirmed: bool) -> None:
    """A pause edge: from the PBX's MixMonitorMute (`confirmed`) or guessed from its reply."""
    edge = 0 if state else 1
    last = rec.spans[-1] if rec.spans else None
    # An event for an edge a reply already set: move the edge to the PBX's time.
    if (confirmed and last is not None and rec.guessed[edge] and last[edge] is not None
            and abs(at - last[edge]) <= CORRECTION_WINDOW and (state or not rec.paused)):
        last[edge], rec.guessed[edge] = at, False
        if last[1] is not None and last[0] is not None and last[1] < last[0]:
            last[1] = last[0]
        return
    if state and not rec.paused:
        rec.spans.append([max(at, rec.started_at), None])
        rec.guessed = [not confirmed, False]
    elif not state and rec.paused and last is not None:
        last[1] = max(at, last[0] or at)
        rec.guessed[1] = not confirmed


def mark_stopped(rec: LiveRecording, at: float) -> None:
    """The recording ended at `at` (a pause still open ends with it)."""
    if rec.stopped_at is not None:
        return
    rec.stopped_at = max(at, rec.started_at)
    if rec.paused:
        last = rec.spans[-1]
        last[0] = min(last[0] or rec.stopped_at, rec.stopped_at)
        last[1] = rec.stopped_at
    if rec.status in ("starting", "recording"):
        rec.status = "stopped"
