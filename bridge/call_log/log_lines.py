"""Subscriber that writes a human-readable log line per call event and finished call."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bridge.calls.events import (
    CallAnswered,
    CallEnded,
    CallRecordingStarted,
    CallRingEnded,
    CallRinging,
    CallStarted,
    CallTransferred,
    DomainEvent,
)
from bridge.calls.record import CallRecord

log = logging.getLogger("callbridge.calls")


def _who(call: CallRecord) -> str:
    number = call.caller_number or "unknown number"
    return f"{number} ({call.caller_name})" if call.caller_name else number


def describe(event: DomainEvent) -> str | None:
    call = event.call
    head = f"call {call.call_id}"
    match event:
        case CallStarted():
            where = f"queue {call.queue}" if call.queue else (call.dialed or "?")
            seen = " (already running when we attached)" if call.attached_mid_call else ""
            return f"{head} started from {_who(call)} to {where}{seen}"
        case CallRinging():
            queue = f" [{event.queue}]" if event.queue else ""
            return f"{head} ringing operator {event.operator}{queue} for {_who(call)}"
        case CallRingEnded():
            return f"{head} stopped ringing {event.operator}: {event.result}"
        case CallAnswered():
            if event.operator != call.answered_by:
                return f"{head} now with operator {event.operator}"
            return f"{head} answered by {event.operator} after {call.wait_seconds:.1f}s"
        case CallTransferred():
            t = event.transfer
            return f"{head} {t.kind} transfer from {t.from_operator} to {t.to_operator}"
        case CallRecordingStarted():
            return f"{head} recording started on {event.recording.channel}"
        case CallEnded():
            by = f" by {call.answered_by}" if call.answered_by else ""
            return (f"{head} ended: {call.outcome}{by}, wait {call.wait_seconds:.1f}s, "
                    f"talk {call.talk_seconds:.1f}s, caller {_who(call)}")
    return None


class CallLogLines:
    """The log lines of a bridge's calls. A call's first line waits until it says who
    calls where: Asterisk names the caller (NewCallerid) and the queue (QueueCallerJoin)
    just after the first channel, so a line at CallStarted would say "unknown number"."""

    def __init__(self, tells: Callable[[str], bool] | None = None) -> None:
        self._unannounced: set[str] = set()  # started, first line not written yet
        # In a cluster every node follows every call: only the PBX's owner tells its story.
        self._tells = tells

    def __call__(self, event: DomainEvent) -> None:
        call = event.call
        if self._tells is not None and not self._tells(call.pbx):
            self._unannounced.discard(call.call_id)
            return
        if isinstance(event, CallStarted):
            self._unannounced.add(call.call_id)
        if call.call_id in self._unannounced and (
                (call.caller_number is not None and call.queue is not None)
                or isinstance(event, (CallRinging, CallAnswered, CallEnded))):
            self._unannounced.discard(call.call_id)
            log.info(describe(CallStarted(at=event.at, call=call)))
        if isinstance(event, CallStarted):
            return
        line = describe(event)
        if line is not None:
            log.info(line)
