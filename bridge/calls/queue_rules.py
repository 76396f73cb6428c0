"""Queue rules of the call-state model (app_queue's caller events and QUEUESTATUS), proven
on the queue_* captures. Mixed into CallTracker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import leg_key
from bridge.calls.events import CallUpdated

if TYPE_CHECKING:
    from bridge.calls.tracker import CallTracker

Handler = Callable[[AmiMessage, float], None]


class QueueRules:
    def queue_handlers(self: CallTracker) -> dict[str, Handler]:
        return {"QueueCallerJoin": self._on_queue_join, "QueueCallerAbandon": self._on_queue_abandon,
                "QueueCallerLeave": self._on_queue_leave}

    def queue_variables(self: CallTracker) -> dict[str, Handler]:
        return {"QUEUESTATUS": self._on_queue_status}

    def _on_queue_join(self: CallTracker, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        if call is None:
            return
        if call.caller_leg is None:  # attached mid-call: the queue tells who the caller is
            call.caller_leg = leg_key(ev["Channel"])
        call.queue = ev.get("Queue") or call.queue
        call.dialed = None
        call.in_queue = True
        # A caller sent on to another queue starts over there.
        call.abandoned, call.queue_status = False, None
        self.learn_caller(call, ev["Channel"], ev.get("CallerIDNum"), ev.get("CallerIDName"), at)
        self._emit(CallUpdated, call, at)

    def _on_queue_abandon(self: CallTracker, ev: AmiMessage, at: float) -> None:
        # Also sent on a queue timeout: the QUEUESTATUS that follows tells (decide_outcome).
        if (call := self._call_for(ev, at)) is not None:
            call.abandoned = True
            call.queue = call.queue or ev.get("Queue")

    def _on_queue_leave(self: CallTracker, ev: AmiMessage, at: float) -> None:
        if (call := self._call_for(ev, at)) is not None:
            call.queue = call.queue or ev.get("Queue")
            call.in_queue = False
            if call.caller_leg is None:
                call.caller_leg = leg_key(ev["Channel"])

    def _on_queue_status(self: CallTracker, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        if call is not None and call.caller_leg == leg_key(ev["Channel"]):
            call.queue_status = (ev.get("Value") or "").upper() or None
