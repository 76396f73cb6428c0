"""Inert events of the call-state model: what no rule reads, kept only as a trace.

A busy Asterisk sends more events that no rule reads (Newexten, DeviceStateChange, Cdr,
most VarSets) than ones that matter. Of such an event, about a channel the model knows
already, `handle` would change only the PBX's last proof of life and the call's last-seen
time (which dates the end of a call lost in an outage). CallPipeline.feed lets it only
`touch` the model, skipping every subscriber; a cluster's owner publishes just that trace
(`touch_of`), so its followers hold exactly its state (tests/test_inert_events.py).
Mixed into CallTracker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.ami.message import AmiMessage

if TYPE_CHECKING:
    from bridge.calls.tracker import CallTracker

Touch = tuple[float, bool, str | None]  # an inert event's trace: (at, dated by the PBX, channel)


def touch_of(event: AmiMessage) -> Touch:
    """What of an inert event (CallTracker.is_inert) the model keeps: its time, whether the
    PBX dated it, and the channel whose call it was seen in (as `handle` would look it up)."""
    channel = event.get("Channel") if event.event == "VarSet" or "Linkedid" in event else None
    return event.timestamp, "Timestamp" in event, channel


class InertRules:
    def is_inert(self: CallTracker, event: AmiMessage) -> bool:
        """Would `handle` change nothing but a call's or the PBX's last-seen time? No rule
        reads it (Newexten, DeviceStateChange, Cdr, most VarSets: over half of what a busy
        Asterisk sends) and its channel, if any, is one the model knows already (an unknown one
        would join its call: a mid-call attach). Such an event only `touch`es the model; a
        cluster's owner publishes just that touch (CallPipeline.feed, bridge.pbx_link)."""
        name = event.event
        if name is None or self._boot_uptime is not None:  # the next dated event dates a boot
            return False
        if name == "VarSet":
            return (event.get("Variable") or "") not in self._variable_handlers and self._knows(event)
        return name not in self._handlers and self._knows(event)

    def touch(self: CallTracker, at: float, alive: bool, channel: str | None) -> None:
        """What `handle` does with an inert event (is_inert): `alive` if it carried the PBX's
        Timestamp `at`; its known channel's call was seen then (the end of a lost call)."""
        if alive:
            self.note_alive(at)
        call_id = self._channel_call.get(channel) or self._dead.get(channel) if channel else None
        call = self.calls.get(call_id) if call_id is not None else None
        if call is not None and at > call.last_seen_at:
            call.last_seen_at = at

    def _knows(self: CallTracker, event: AmiMessage) -> bool:
        channel = event.get("Channel")
        if not channel or channel == "none" or "Linkedid" not in event:
            return True
        return channel in self._channel_call or channel in self._dead

