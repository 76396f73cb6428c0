"""Call pickup, call forwarding and channel renames in the call-state model. Mixed into
CallTracker through TransferRules, whose `transfer_handlers()` registers these handlers.

What Asterisk sends (read in its source: main/pickup.c, main/channel.c, main/stasis_channels.c,
apps/app_dial.c and apps/app_queue.c `do_forward`/`wait_for_answer`, res_pjsip_session.c):

- **Pickup** (`*8`, `Pickup()`, directed pickup): the picker's channel is moved into the
  ringing one (a masquerade that swaps names, Uniqueid and Linkedid), then `Pickup` names the
  picker (`Channel`, as named before the move) and the phone that rang (`TargetChannel`).
  Since Asterisk 13 the caller's Dial also reports `DialEnd CANCEL` for the rung phone and
  `DialBegin` + `DialEnd ANSWER` under the picker's name; older versions send only the
  answer, and Asterisk 11's `Pickup` has just `Channel` and `TargetChannel`.
- **Forward** (SIP 302, chan_dahdi call forward): `DialEnd` with `DialStatus: CANCEL` and
  `Forward: <target>`, then `DialBegin` from the same caller channel to the new channel. The
  target is an extension dialled as `Local/<exten>@<context>` or, with PJSIP
  `redirect_method=uri_core`, `PJSIP/<forwarding endpoint>/sip:<user>@<host>`: the new
  channel is then named after the *forwarding* phone, so the target comes from `Forward`.
- **Rename** (`Channel`, `Newname`): a channel changed its name (Asterisk 11 masquerades:
  `<MASQ>`/`<ZOMBIE>`); its call, ring and caller leg follow the new name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import leg_key
from bridge.calls.events import CallRingEnded, CallUpdated
from bridge.calls.working import Call, Ring

if TYPE_CHECKING:
    from bridge.calls.tracker import CallTracker

Handler = Callable[[AmiMessage, float], None]
FORWARDED = "FORWARD"  # a ring's result when the phone forwarded the call elsewhere


class PickupRules:
    _forwards: dict[str, str | None]  # caller channel -> forward target operator (None: not ours)
    _external_legs: dict[str, set[str]]  # call id -> legs forwarded to a non-operator
    _picked_up: set[str]  # call ids some operator picked up

    def pickup_handlers(self: CallTracker) -> dict[str, Handler]:
        self._forwards, self._external_legs, self._picked_up = {}, {}, set()
        # DialBegin/DialEnd/AgentConnect wrap the core handlers in call_state.
        return {"Pickup": self._on_pickup, "Rename": self._on_rename,
                "DialBegin": self._on_dial_begin_forwarding, "DialEnd": self._on_dial_end_forwarding,
                "AgentConnect": self._on_agent_connect_after_pickup}

    # -- pickup -------------------------------------------------------------------------

    def _on_pickup(self: CallTracker, ev: AmiMessage, at: float) -> None:
        target, picker = ev.get("TargetChannel"), ev.get("Channel")
        if not target or not picker:
            return
        call = self._call_for(ev, at, target, ev.get("TargetLinkedid"))
        operator = self.operators.operator_of(picker)
        if call is None or operator is None:
            return
        ring = self._ring_for(call, picker)
        if ring is None or ring.operator != operator:
            self._start_ring(call, picker, operator, at)
            ring = self._ring_for(call, picker)
        if ring is not None and ring.answered_at is None:
            # Answered by the picker; the rung phone's card is withdrawn "answered by ...".
            self._answer(call, ring, at, picker)
        rung = self._ring_for(call, target)
        if rung is not None and rung is not ring and rung.ended_at is None:
            rung.ended_at, rung.result = at, "CANCEL"  # Asterisk's ANSWERED_ELSEWHERE
        self._picked_up.add(call.call_id)
        self._adopt(call, picker, at)

    def _adopt(self: CallTracker, call: Call, channel: str, at: float) -> None:
        """The picker's channel now carries the caller's conversation: it belongs to his
        call. The picker's own `*8` call ends there (it was only the dial to the feature)."""
        own = self.call_of_channel(channel)
        if own is None or own is call:
            return
        own.channels.discard(channel)
        self._channel_call[channel] = call.call_id
        call.channels.add(channel)
        if not own.channels:
            self.end_call(own, at)

    def _on_agent_connect_after_pickup(self: CallTracker, ev: AmiMessage, at: float) -> None:
        call = self.call_of_channel(ev.get("Channel") or "")
        if call is not None and call.call_id in self._picked_up:
            ring = self._ring_for(call, ev.get("DestChannel"))
            if ring is None or ring.answered_at is None:
                return  # app_queue credits the member whose phone was picked up: not him
        self._on_agent_connect(ev, at)

    # -- forwarding ---------------------------------------------------------------------

    def _on_dial_end_forwarding(self: CallTracker, ev: AmiMessage, at: float) -> None:
        forward, dest, source = ev.get("Forward"), ev.get("DestChannel"), ev.get("Channel")
        if forward and dest and source:
            call = self._call_for(ev, at)
            ring = self._ring_for(call, dest) if call is not None else None
            if call is not None and ring is not None and ring.ended_at is None:
                ring.ended_at, ring.result = at, FORWARDED
                self._emit(CallRingEnded, call, at, operator=ring.operator, result=FORWARDED)
            self._forwards[source] = self._forward_operator(forward)
            return
        self._on_dial_end(ev, at)
        call = self.call_of_channel(source) if source else None
        if (call is not None and dest and ev.get("DialStatus") == "ANSWER" and call.answered_at is None
                and leg_key(dest) in self._external_legs.get(call.call_id, ())):
            # Forwarded to a number that is no operator's (a mobile): answered, by nobody of ours.
            call.answered_at = at
            self._emit(CallUpdated, call, at)

    def _on_dial_begin_forwarding(self: CallTracker, ev: AmiMessage, at: float) -> None:
        source, dest = ev.get("Channel"), ev.get("DestChannel")
        if not source or not dest or source not in self._forwards:
            self._on_dial_begin(ev, at)
            return
        target = self._forwards.pop(source)
        self._call_for(ev, at, dest, ev.get("DestLinkedid"))
        call = self._call_for(ev, at)
        if call is None:
            return
        if target is not None:
            self._start_ring(call, dest, target, at)
        else:
            self._external_legs.setdefault(call.call_id, set()).add(leg_key(dest))

    def _forward_operator(self: CallTracker, forward: str) -> str | None:
        """The operator a `Forward` value points at, or None (an outside number)."""
        tech, _, rest = forward.partition("/")
        if not rest:  # a bare extension, dialled in the forwarding context
            exten = tech
        elif "sip:" in rest:  # PJSIP/<endpoint>/sip:user@host: the user part
            exten = rest.split("sip:", 1)[1].split("@", 1)[0].split(";", 1)[0]
        else:  # Local/105@ctx, SIP/105, PJSIP/105
            exten = rest.split("/", 1)[0].split("@", 1)[0]
        return exten if self.operators.is_operator(exten) else None

    # -- renames ----------------------------------------------------------------------------

    def _on_rename(self: CallTracker, ev: AmiMessage, at: float) -> None:
        old, new = ev.get("Channel"), ev.get("Newname")
        call_id = self._channel_call.pop(old, None) if old else None
        if not old or not new or call_id is None:
            return
        displaced = self.call_of_channel(new)
        if displaced is not None and displaced.call_id != call_id:
            displaced.channels.discard(new)
        self._channel_call[new] = call_id
        call = self.calls.get(call_id)
        if call is None:
            return
        call.channels.discard(old)
        call.channels.add(new)
        ring: Ring | None = call.ring_by_leg.get(leg_key(old))
        if ring is not None:
            call.ring_by_leg[leg_key(new)] = ring
        if call.caller_leg == leg_key(old):
            call.caller_leg = leg_key(new)
