"""Resync after (re)connecting: the PBX's CoreShowChannels list is the truth.

Calls we track that have no live channel left ended while we were away: they are closed
(outcome kept where the events we saw settle it, `incomplete` where not). Channels we
do not know belong to calls that started while we were away: they are attached.
"""

from __future__ import annotations

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import leg_key
from bridge.calls.tracker import CallTracker


def _duration_seconds(value: str | None) -> float:
    """CoreShowChannel's `Duration: HH:MM:SS`."""
    try:
        hours, minutes, seconds = (int(part) for part in (value or "").split(":"))
    except ValueError:
        return 0.0
    return float(hours * 3600 + minutes * 60 + seconds)


def resync_calls(tracker: CallTracker, channels: list[AmiMessage], at: float) -> None:
    live = {ch["Channel"]: ch for ch in channels if ch.get("Channel")}

    gone: set[str] = set()  # calls none of whose channels is live: held, their channels kept
    for call in list(tracker.live_calls()):
        dead = [n for n in call.channels if n not in live]
        if dead and len(dead) == len(call.channels):
            gone.add(call.call_id)
            continue
        for name in dead:
            call.channels.discard(name)
            tracker.forget_channel(name, call.call_id)

    bridges: dict[str, set[str]] = {}
    for name, ch in live.items():
        if ch.get("BridgeId"):
            bridges.setdefault(ch["BridgeId"], set()).add(name)

    for name, ch in live.items():
        if tracker.call_of_channel(name) is not None:
            continue
        started = at - _duration_seconds(ch.get("Duration"))
        call = tracker.attach_channel(ch, started)
        if call is None:
            continue
        if ch.get("Uniqueid") == ch.get("Linkedid") and call.caller_leg is None:
            call.caller_leg = leg_key(name)
            tracker.learn_caller(call, name, ch.get("CallerIDNum"), ch.get("CallerIDName"), at)
        if ch.get("Application") == "Queue" and call.caller_leg is None:
            call.caller_leg = leg_key(name)
            tracker.learn_caller(call, name, ch.get("CallerIDNum"), ch.get("CallerIDName"), at)
        operator = tracker.operators.operator_of(name)
        bridged = len(bridges.get(ch.get("BridgeId") or "", ())) > 1
        if operator and bridged and call.answered_by is None and leg_key(name) != call.caller_leg:
            tracker.attach_answered(call, name, operator, started)

    # Last: whatever has no live channel now ended while we were away (restored calls
    # from the log included, once the live channels had their chance to claim them). Its
    # Hangup may still be on its way: held until an event dated after the snapshot.
    for call in list(tracker.live_calls()):
        if not call.channels or call.call_id in gone:
            tracker.hold_lost(call, at)
    tracker.link_resynced()
