"""Offline runner: a raw AMI capture through the same pipeline as a live connection.

`callbridge replay FILE.ami` prints one JSON object per call (see call_record.REPLAY_KEYS),
in the order the calls started.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from bridge.ami.message import AmiFramer, AmiMessage
from bridge.calls.channel_names import DEFAULT_OPERATOR_PATTERN
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import CallRecord
from bridge.calls.tracker import CallTracker

_CHUNK = 64 * 1024


class FinishedCalls:
    """Subscriber that keeps every finished call."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []

    def __call__(self, event: DomainEvent) -> None:
        if isinstance(event, CallEnded):
            self.calls.append(event.call)

    def in_start_order(self) -> list[CallRecord]:
        return sorted(self.calls, key=lambda c: (c.entered_at, c.call_id))


def capture_events(data: bytes) -> Iterable[AmiMessage]:
    """The messages of a raw capture, framed as a live connection would (64 KiB reads)."""
    framer = AmiFramer()
    for start in range(0, len(data), _CHUNK):
        yield from framer.feed(data[start : start + _CHUNK], received_at=0.0)


def replay_connections(connections: Iterable[Iterable[AmiMessage]], *,
                       operator_pattern: str = DEFAULT_OPERATOR_PATTERN,
                       pipeline: CallPipeline | None = None) -> list[CallRecord]:
    """Captures of consecutive AMI connections (a PBX restart is two), one after another:
    between two, the link is lost, as it was live."""
    pipeline = pipeline or CallPipeline(CallTracker(operator_pattern))
    finished = FinishedCalls()
    pipeline.subscribe(finished)
    for n, events in enumerate(connections):
        if n:
            pipeline.link_lost()
        for event in events:
            if event.is_event:
                pipeline.feed(event)
    # The last capture ends: calls still up end at the last proof of life (pbx_lost).
    pipeline.close_all()
    return finished.in_start_order()


def replay_events(events: Iterable[AmiMessage], **kwargs) -> list[CallRecord]:
    return replay_connections([events], **kwargs)


def replay_bytes(*captures: bytes, **kwargs) -> list[CallRecord]:
    """One capture, or several consecutive connections' captures."""
    return replay_connections([capture_events(data) for data in captures], **kwargs)


def to_json_line(call: CallRecord) -> str:
    return json.dumps(call.replay_dict(), ensure_ascii=False)
