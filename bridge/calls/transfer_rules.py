"""Transfer rules of the call-state model, for every shape Asterisk 11 to 22 sends. Mixed
into CallTracker; pickups, forwards and renames live in call_pickup_rules.

- `BlindTransfer` / `AttendedTransfer` (Asterisk 12+, main/stasis_bridges.c). Proven on the
  blind_transfer, attended_transfer and blonde_transfer captures; the other shapes
  (DestType App/Link/Threeway/Fail, events without the Transferee*/TransferTarget* snapshots
  that only some versions add) in tests/test_call_transfer_shapes.py.
- `Transfer` (Asterisk 11 and older, chan_sip): TransferType Blind/Attended, Channel (the
  transferer), TargetChannel, TransferExten.

The transfer goes on the caller's call: `from` is the operator who transferred, `to` the
operator the caller ends up with. When the target has not answered yet (blind, blonde, a
transfer into a ringing Dial), `to` is settled by the next answer (`pending_blind`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallTransferred, CallUpdated
from bridge.calls.pickup_rules import PickupRules
from bridge.calls.working import Call, Ring

if TYPE_CHECKING:
    from bridge.calls.tracker import CallTracker

Handler = Callable[[AmiMessage, float], None]


class TransferRules(PickupRules):
    def transfer_handlers(self: CallTracker) -> dict[str, Handler]:
        return {"BlindTransfer": self._on_blind_transfer, "AttendedTransfer": self._on_attended_transfer,
                "Transfer": self._on_legacy_transfer, **self.pickup_handlers()}

    # -- Asterisk 12+ -------------------------------------------------------------------

    def _on_blind_transfer(self: CallTracker, ev: AmiMessage, at: float) -> None:
        # Result Fail / Invalid / Not Permitted: the caller stays where he was.
        if ev.get("Result") != "Success":
            return
        # Transferee* is missing from some versions' event; the transferer's leg is in the
        # caller's call too (same Linkedid as the bridge he talked in).
        call = (self._known_call(ev, at, "Transferee")
                or self._known_call(ev, at, "Transferer"))
        if call is None:
            return
        source = self._operator_on(call, ev.get("TransfererChannel"))
        transfer = call.add_transfer("blind", source, ev.get("Extension") or None, at)
        call.pending_blind = transfer  # the next phone to answer is who the caller got
        self._emit(CallTransferred, call, at, transfer=transfer.record())

    def _on_attended_transfer(self: CallTracker, ev: AmiMessage, at: float) -> None:
        if ev.get("Result") != "Success" or ev.get("DestType") == "Fail":
            return
        call = self._known_call(ev, at, "Transferee") or self._callers_side(ev, at)
        if call is None:
            return
        source = (self._operator_on(call, ev.get("OrigTransfererChannel"))
                  or self._operator_on(call, ev.get("SecondTransfererChannel")))
        dest_type = ev.get("DestType")
        target, answered = self._attended_target(ev, call, source)
        if dest_type == "Threeway":
            # Everybody stays in one conference: the transferer did not leave, so nobody
            # took the call over from him. The target still talked to the caller.
            # No transfer is logged and the transferer's card stays live.
            if target is not None and target not in call.rung:
                call.rings.append(Ring(operator=target, started_at=at, answered_at=at, ended_at=at,
                                       result="ANSWER"))
                self._emit(CallUpdated, call, at)
            return
        transfer = call.add_transfer("attended", source, target, at)
        if answered and target is not None:
            self._handed_to(call, target, at)
        else:
            # Blonde transfer, or DestType App (the caller replaces the transferer in a Dial
            # still ringing): whoever answers next is who the caller ends up with.
            call.pending_blind = transfer
        self._emit(CallTransferred, call, at, transfer=transfer.record())

    def _attended_target(self: CallTracker, ev: AmiMessage, call: Call,
                         source: str | None) -> tuple[str | None, bool]:
        """(the operator the caller is handed to, whether he is already talking)."""
        channel = ev.get("TransferTargetChannel")
        if channel:
            target_call = self.call_of_channel(channel) or call
            ring = self._ring_for(target_call, channel)
            target = ring.operator if ring is not None else self.operators.operator_of(channel)
            if target is None or target == source:
                ring = self._consulted_ring(target_call, source)
                target = ring.operator if ring is not None else target_call.current_operator
            up = ev.get("TransferTargetChannelStateDesc", "Up") == "Up"
            return target, up and (ring is None or ring.answered_at is not None)
        # No TransferTarget* snapshot (DestType App, or a version without it): the phone the
        # transferer's second leg was consulting.
        for prefix in ("SecondTransferer", "OrigTransferer"):
            leg = self.call_of_channel(ev.get(f"{prefix}Channel") or "")
            ring = self._consulted_ring(leg, source) if leg is not None else None
            if ring is not None:
                return ring.operator, ring.answered_at is not None and ev.get("DestType") != "App"
        return None, False

    @staticmethod
    def _handed_to(call: Call, target: str, at: float) -> None:
        """The caller now talks with `target`, who answered the consultation."""
        call.current_operator = target
        if target not in call.rung:  # the consultation rang him in another call
            call.rings.append(Ring(operator=target, started_at=at, answered_at=at, ended_at=at,
                                   result="ANSWER"))

    @staticmethod
    def _consulted_ring(call: Call, source: str | None) -> Ring | None:
        """The latest phone rung in a call other than the transferer's own."""
        rings = [r for r in call.rings if r.operator != source]
        return max(rings, key=lambda r: r.started_at) if rings else None

    def _callers_side(self: CallTracker, ev: AmiMessage, at: float) -> Call | None:
        """Without Transferee*: of the transferer's two legs, the one in a caller's call (the
        AMI doc orders Orig/Second by time, not by who is the caller)."""
        calls = [c for c in (self._known_call(ev, at, "OrigTransferer"),
                             self._known_call(ev, at, "SecondTransferer")) if c is not None]
        return next((c for c in calls if not c.internal), calls[0] if calls else None)

    def _known_call(self: CallTracker, ev: AmiMessage, at: float, prefix: str) -> Call | None:
        channel = ev.get(f"{prefix}Channel")
        return self._call_for(ev, at, channel, ev.get(f"{prefix}Linkedid")) if channel else None

    # -- Asterisk 11 and older ------------------------------------------------------------

    def _on_legacy_transfer(self: CallTracker, ev: AmiMessage, at: float) -> None:
        # No Linkedid in this event: the channels we already know place it.
        channel, other = ev.get("Channel") or "", ev.get("TargetChannel") or ""
        calls = [c for c in (self.call_of_channel(channel), self.call_of_channel(other)) if c is not None]
        call = next((c for c in calls if not c.internal), calls[0] if calls else None)
        if call is None:
            return
        source = self._operator_on(call, channel)
        if ev.get("TransferType") == "Blind":
            transfer = call.add_transfer("blind", source, ev.get("TransferExten") or None, at)
            call.pending_blind = transfer
        else:
            target = self.operators.operator_of(other)
            target = target if target != source else None
            transfer = call.add_transfer("attended", source, target, at)
            if target is None:
                call.pending_blind = transfer
            else:
                self._handed_to(call, target, at)
        self._emit(CallTransferred, call, at, transfer=transfer.record())
