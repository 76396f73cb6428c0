"""The call-state model: AMI events in, calls and domain events out. Pure: no I/O.

A call is what the caller experiences, grouped by Linkedid, from the first channel to
the last hang-up. Operators are identified by the extension of the device rung; the two
halves of a Local channel are one leg. Every rule here is proven on the recorded
captures in tests/fixtures (see tests/test_call_state.py).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import (
    DEFAULT_OPERATOR_PATTERN,
    OperatorDirectory,
    clean_caller_id,
    leg_key,
    unescape_ami,
)
from bridge.calls.events import (
    CallAnswered,
    CallEnded,
    CallRingEnded,
    CallRinging,
    CallStarted,
    CallUpdated,
    DomainEvent,
)
from bridge.calls.inert_rules import InertRules
from bridge.calls.outage_rules import OutageRules
from bridge.calls.queue_rules import QueueRules
from bridge.calls.record import DEFAULT_PBX
from bridge.calls.recording_rules import RecordingRules
from bridge.calls.transfer_rules import TransferRules
from bridge.calls.working import Call, Ring

log = logging.getLogger(__name__)

_ENDED_MEMORY = 20_000  # ended call ids remembered, so late events never resurrect a call


class CallTracker(QueueRules, TransferRules, RecordingRules, OutageRules, InertRules):
    """Turns AMI events into calls. `handle(event)` returns the domain events it caused."""

    def __init__(self, operator_pattern: str = DEFAULT_OPERATOR_PATTERN, *, pbx: str = DEFAULT_PBX,
                 id_prefix: str = "") -> None:
        self.operators = OperatorDirectory(operator_pattern)
        # Calls are keyed by Linkedid here; their records' ids get `id_prefix` ("<pbx>:" on
        # all PBXes but the first), as two Asterisks may hand out the same Uniqueids.
        self.pbx, self.id_prefix = pbx, id_prefix
        self.calls: dict[str, Call] = {}
        self._channel_call: dict[str, str] = {}  # live channel name -> call id
        self._ended: OrderedDict[str, None] = OrderedDict()
        # Hung-up channel -> its call: Asterisk still sends a few events after a Hangup
        # (NewConnectedLine, VarSet) which must not bring the channel back to life.
        self._dead: OrderedDict[str, str] = OrderedDict()
        self._pending_recording_file: dict[str, str] = {}
        self._out: list[DomainEvent] = []
        self.last_alive_at: float | None = None  # the PBX's last proof of life (its clock)
        self._gap_from: float | None = None  # last proof of life before the link was lost
        # Calls a resync found with no live channel: call id -> (snapshot time, the gap's
        # start then), until an event dated after the snapshot settles them (hold_lost).
        self._held_lost: dict[str, tuple[float, float | None]] = {}
        self.booted_at: float | None = None  # when the PBX we talk to started (its clock)
        self._boot_uptime: float | None = None  # FullyBooted's Uptime, until a Timestamp dates it
        self._handlers: dict[str, Callable[[AmiMessage, float], None]] = {
            "Newchannel": self._on_newchannel,
            "NewCallerid": self._on_caller_id,
            "Newstate": self._on_newstate,
            "AgentCalled": self._on_agent_called,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "AgentRingNoAnswer": self._on_ring_no_answer,
            "AgentConnect": self._on_agent_connect,
            "Hangup": self._on_hangup,
            "VarSet": self._on_varset,
        }
        # Each rule module registers the AMI events (and channel variables) it reads.
        for handlers in (self.queue_handlers(), self.transfer_handlers(), self.recording_handlers(),
                         self.outage_handlers()):
            self._handlers.update(handlers)
        self._variable_handlers: dict[str, Callable[[AmiMessage, float], None]] = {
            **self.queue_variables(), **self.recording_variables()}

    # -- public API -------------------------------------------------------------------

    def handle(self, event: AmiMessage) -> list[DomainEvent]:
        name = event.event
        if "Timestamp" in event:  # a PBX-dated event: the PBX was alive then
            at = event.timestamp
            if self._boot_uptime is not None:
                self._check_boot(at)
            self.note_alive(at)
        handler = self._handlers.get(name) if name else None
        channel = event.get("Channel")
        if handler is None:
            # Any other channel event still tells us the channel is part of a call.
            if channel and name is not None and "Linkedid" in event:
                self._call_for(event, event.timestamp)
            return self._flush() if self._out else []
        handler(event, event.timestamp)
        return self._flush()

    @property
    def held_lost(self) -> int:
        """Calls a resync found gone, waiting for a late Hangup (OutageRules.hold_lost)."""
        return len(self._held_lost)

    def live_calls(self) -> list[Call]:
        return [c for c in self.calls.values() if c.ended_at is None]

    def call_of_channel(self, channel: str) -> Call | None:
        call_id = self._channel_call.get(channel)
        return self.calls.get(call_id) if call_id else None

    def end_call(self, call: Call, at: float, incomplete: bool = False, lost: bool = False) -> None:
        """Close a call: its last hang-up, or (`lost`) we lost sight of it (see end_lost)."""
        if call.ended_at is not None:
            return
        for ring in call.rings:
            if ring.ended_at is None:
                ring.ended_at, ring.result = at, ring.result or ("ANSWER" if ring.answered_at else "CANCEL")
        for rec in call.recordings:
            if rec.stopped_at is None:
                rec.stopped_at = at
        for channel in call.channels:
            self._channel_call.pop(channel, None)
        call.channels.clear()
        call.ended_at = at
        call.ended_by = "pbx_lost" if lost else "hangup"
        call.outcome, call.outcome_reason = call.decide_outcome(incomplete)
        if call.outcome == "answered" and call.answered_at is None:
            # Answered by an application (IVR, ChanSpy): talk time runs from its answer.
            call.answered_at = call.up_at if call.up_at is not None else call.entered_at
        self._emit(CallEnded, call, at)
        del self.calls[call.call_id]
        self._ended[call.call_id] = None
        if len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)

    def _new_call(self, linkedid: str, at: float, **fields: object) -> Call:
        return Call(call_id=linkedid, entered_at=at, pbx=self.pbx, id_prefix=self.id_prefix,
                    **fields)  # type: ignore[arg-type]

    def forget_channel(self, channel: str, call_id: str) -> None:
        self._channel_call.pop(channel, None)
        self._dead[channel] = call_id

    def attach_channel(self, channel_info: AmiMessage, started: float) -> Call | None:
        """A live channel the PBX reports that we never saw (resync after connect)."""
        call = self._call_for(channel_info, started)
        if call is not None and started < call.entered_at:
            call.entered_at = started
        return call

    def attach_answered(self, call: Call, channel: str, operator: str, at: float) -> None:
        """An operator already talking when we attached: answered, time approximate."""
        self._start_ring(call, channel, operator, at)
        ring = self._ring_for(call, channel)
        if ring is not None and ring.answered_at is None:
            self._answer(call, ring, at, channel)

    def note_alive(self, at: float) -> None:
        """The PBX proved itself alive at `at` (its clock): an event, or a Ping reply. A call
        cut by a crash or a lost link ends here, never later: an outage is not talk."""
        if self.last_alive_at is None or at > self.last_alive_at:
            self.last_alive_at = at
        if self._held_lost:
            self.settle_lost(at)

    def take_events(self) -> list[DomainEvent]:
        """Domain events produced outside `handle` (by resync)."""
        return self._flush()

    # -- helpers ----------------------------------------------------------------------

    def _flush(self) -> list[DomainEvent]:
        out, self._out = self._out, []
        return out

    def _emit(self, kind: type, call: Call, at: float, **fields: object) -> None:
        self._out.append(kind(at=at, call=call.snapshot(), **fields))

    def _call_for(self, event: AmiMessage, at: float, channel: str | None = None,
                  linkedid: str | None = None) -> Call | None:
        """The call a channel belongs to, creating it (mid-call attach) if unseen."""
        channel = channel or event.get("Channel")
        if not channel or channel == "none":
            return None
        call_id = self._channel_call.get(channel) or self._dead.get(channel)
        if call_id is not None:
            call = self.calls.get(call_id)
            if call is not None and at > call.last_seen_at:
                call.last_seen_at = at
            return call
        linkedid = linkedid or event.get("Linkedid")
        if not linkedid or linkedid in self._ended:
            return None
        call = self.calls.get(linkedid)
        if call is None:
            call = self._new_call(linkedid, at, attached_mid_call=True)
            self.calls[linkedid] = call
            self._emit(CallStarted, call, at)
        call.last_seen_at = max(call.last_seen_at, at)
        call.channels.add(channel)
        self._channel_call[channel] = linkedid
        return call

    def learn_caller(self, call: Call, channel: str, number: str | None, name: str | None,
                      at: float, force: bool = False) -> None:
        if call.caller_leg is None or leg_key(channel) != call.caller_leg:
            return
        # Channel snapshots carry names C-escaped (ast_escape_c): `D\'Artagnan` is D'Artagnan.
        number, name = clean_caller_id(unescape_ami(number)), clean_caller_id(unescape_ami(name))
        changed = False
        if number and (force or call.caller_number is None) and number != call.caller_number:
            call.caller_number = number
            call.internal = call.internal or self.operators.is_operator(number)
            changed = True
        if name and (force or call.caller_name is None) and name != call.caller_name:
            call.caller_name, changed = name, True
        if changed:
            self._emit(CallUpdated, call, at)

    def _ring_for(self, call: Call, channel: str | None) -> Ring | None:
        return call.ring_by_leg.get(leg_key(channel)) if channel else None

    def _operator_on(self, call: Call | None, channel: str | None) -> str | None:
        """The operator behind a channel: its ring leg's operator, else its name."""
        if call is not None and (ring := self._ring_for(call, channel)) is not None:
            return ring.operator
        return self.operators.operator_of(channel)

    # -- event handlers ---------------------------------------------------------------

    def _on_newchannel(self, ev: AmiMessage, at: float) -> None:
        channel, linkedid = ev["Channel"], ev.get("Linkedid")
        if not linkedid or linkedid in self._ended:
            return
        self._release_stale_name(channel, linkedid)
        call = self.calls.get(linkedid)
        if call is None:
            call = self._new_call(linkedid, at, attached_mid_call=True, last_seen_at=at)
            self.calls[linkedid] = call
            call.channels.add(channel)
            self._channel_call[channel] = linkedid
            if ev.get("Uniqueid") == linkedid:
                self._first_channel(call, ev, at)
            self._emit(CallStarted, call, at)
            return
        call.channels.add(channel)
        call.last_seen_at = max(call.last_seen_at, at)
        self._channel_call[channel] = linkedid
        if ev.get("Uniqueid") == linkedid and call.caller_leg is None:
            # The call's first channel, after a resync already attached the call: we did
            # see its start after all (events queued behind the CoreShowChannels reply).
            self._first_channel(call, ev, at)

    def _release_stale_name(self, channel: str, linkedid: str) -> None:
        """A Newchannel is a new channel, even under a name we know: live channel names are
        unique, so the one we knew is gone (a PBX restart we did not see reuses names)."""
        self._dead.pop(channel, None)
        old_id = self._channel_call.get(channel)
        if old_id is None or old_id == linkedid:
            return
        self._channel_call.pop(channel, None)
        old = self.calls.get(old_id)
        if old is not None:
            old.channels.discard(channel)
            if not old.channels:
                self.end_lost(old)

    def _on_varset(self, ev: AmiMessage, at: float) -> None:
        handler = self._variable_handlers.get(ev.get("Variable") or "")
        if handler is not None:
            handler(ev, at)
        elif ev.get("Channel") not in (None, "none"):
            self._call_for(ev, at)

    def _first_channel(self, call: Call, ev: AmiMessage, at: float) -> None:
        channel = ev["Channel"]
        call.caller_leg = leg_key(channel)
        call.attached_mid_call = False
        call.entered_at = min(call.entered_at, at)
        exten = ev.get("Exten") or ""
        if call.queue is None:
            call.dialed = exten if exten not in ("", "s") else None
        if not channel.startswith("Local/"):
            call.internal = self.operators.operator_of(channel) is not None
        self.learn_caller(call, channel, ev.get("CallerIDNum"), ev.get("CallerIDName"), at)

    def _on_caller_id(self, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        if call is not None:
            self.learn_caller(call, ev["Channel"], ev.get("CallerIDNum"),
                               ev.get("CallerIDName"), at, force=True)

    def _on_newstate(self, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        if (call is not None and call.up_at is None and ev.get("ChannelStateDesc") == "Up"
                and call.caller_leg == leg_key(ev["Channel"])):
            call.up_at = at

    def _start_ring(self, call: Call, dest: str, operator: str, at: float,
                    queue: str | None = None, member: str | None = None) -> None:
        leg = leg_key(dest)
        ring = call.ring_by_leg.get(leg)
        if ring is None:
            # A Local member dialling the real phone is the same ring, not a new one.
            ring = next((r for r in call.rings if r.operator == operator and r.ended_at is None), None)
            if ring is None:
                ring = Ring(operator=operator, started_at=at, queue=queue, member_name=member)
                call.rings.append(ring)
                self._emit(CallRinging, call, at, operator=operator, queue=queue)
            call.ring_by_leg[leg] = ring
        if member and not ring.member_name:
            ring.member_name = member

    def _on_agent_called(self, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        dest = ev.get("DestChannel")
        operator = self.operators.operator_of(ev.get("Interface")) or self.operators.operator_of(dest)
        if call is None or not dest or operator is None:
            return
        self._call_for(ev, at, dest, ev.get("DestLinkedid"))
        call.queue = call.queue or ev.get("Queue")
        self._start_ring(call, dest, operator, at, ev.get("Queue"), ev.get("MemberName"))

    def _on_dial_begin(self, ev: AmiMessage, at: float) -> None:
        dest = ev.get("DestChannel")
        if not dest:
            return
        source = ev.get("Channel")
        dest_call = self._call_for(ev, at, dest, ev.get("DestLinkedid"))
        if not source:  # an Originate: no phone of ours is ringing
            return
        call = self._call_for(ev, at) or dest_call
        operator = self.operators.operator_of(dest)
        if call is not None and operator is not None:
            self._start_ring(call, dest, operator, at)

    def _on_dial_end(self, ev: AmiMessage, at: float) -> None:
        dest = ev.get("DestChannel")
        call = self._call_for(ev, at) if ev.get("Channel") else None
        if call is None and dest:
            call = self._call_for(ev, at, dest, ev.get("DestLinkedid"))
        ring = self._ring_for(call, dest) if call else None
        if call is None or ring is None or ring.ended_at is not None:
            return
        status = ev.get("DialStatus") or "UNKNOWN"
        if status == "ANSWER":
            self._answer(call, ring, at, dest)
        else:
            ring.ended_at, ring.result = at, status
            self._emit(CallRingEnded, call, at, operator=ring.operator, result=status)

    def _answer(self, call: Call, ring: Ring, at: float, channel: str | None = None) -> None:
        ring.answered_at = ring.ended_at = at
        ring.result = "ANSWER"
        if call.answered_at is None:
            call.answered_at, call.answered_by = at, ring.operator
        call.current_operator = ring.operator
        if call.pending_blind is not None:
            call.pending_blind.to_operator = ring.operator
            call.pending_blind = None
        self._emit(CallAnswered, call, at, operator=ring.operator, channel=channel)

    def _on_ring_no_answer(self, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        ring = self._ring_for(call, ev.get("DestChannel")) if call else None
        if call is not None and ring is not None and ring.ended_at is None:
            ring.ended_at, ring.result = at, "NOANSWER"
            self._emit(CallRingEnded, call, at, operator=ring.operator, result="NOANSWER")

    def _on_agent_connect(self, ev: AmiMessage, at: float) -> None:
        # Normally DialEnd ANSWER came first; this covers a stream that lost it.
        call = self._call_for(ev, at)
        dest = ev.get("DestChannel")
        if call is None or not dest:
            return
        ring = self._ring_for(call, dest)
        if ring is None:
            operator = self.operators.operator_of(ev.get("Interface")) or self.operators.operator_of(dest)
            if operator is None:
                return
            self._start_ring(call, dest, operator, at, ev.get("Queue"), ev.get("MemberName"))
            ring = self._ring_for(call, dest)
        if ring is not None and ring.answered_at is None:
            self._answer(call, ring, at, dest)

    def _on_hangup(self, ev: AmiMessage, at: float) -> None:
        channel = ev["Channel"]
        call = self._call_for(ev, at)
        if call is None:
            return
        ring = self._ring_for(call, channel)
        if ring is not None and ring.ended_at is None:
            ring.ended_at, ring.result = at, "CANCEL" if ev.get("Cause") in ("0", "16", "26") else "NOANSWER"
            self._emit(CallRingEnded, call, at, operator=ring.operator, result=ring.result)
        rec = call.open_recording(channel)
        if rec is not None:
            rec.stopped_at = at  # MixMonitor ends with its channel; no MixMonitorStop is sent
        if call.caller_leg is not None and leg_key(channel) == call.caller_leg:
            call.caller_gone = True
        call.channels.discard(channel)
        self._channel_call.pop(channel, None)
        self._pending_recording_file.pop(channel, None)
        self._dead[channel] = call.call_id
        if len(self._dead) > _ENDED_MEMORY:
            self._dead.popitem(last=False)
        if not call.channels:
            self.end_call(call, at)
