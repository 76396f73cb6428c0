"""Transfer rules of the call-state model (blind and attended), proven on the
blind_transfer and attended_transfer captures. Mixed into CallTracker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.ami_message import AmiMessage
from bridge.call_working import Ring
from bridge.domain_events import CallTransferred

if TYPE_CHECKING:
    from bridge.call_state import CallTracker


class TransferRules:
    def transfer_handlers(self: CallTracker) -> dict[str, Callable[[AmiMessage, float], None]]:
        return {"BlindTransfer": self._on_blind_transfer, "AttendedTransfer": self._on_attended_transfer}

    def _on_blind_transfer(self: CallTracker, ev: AmiMessage, at: float) -> None:
        if ev.get("Result") != "Success":
            return
        call = self._call_for(ev, at, ev.get("TransfereeChannel"), ev.get("TransfereeLinkedid"))
        if call is None:
            return
        source = self._operator_on(call, ev.get("TransfererChannel"))
        transfer = call.add_transfer("blind", source, ev.get("Extension"), at)
        call.pending_blind = transfer
        self._emit(CallTransferred, call, at, transfer=transfer.record())

    def _on_attended_transfer(self: CallTracker, ev: AmiMessage, at: float) -> None:
        if ev.get("Result") != "Success":
            return
        call = self._call_for(ev, at, ev.get("TransfereeChannel"), ev.get("TransfereeLinkedid"))
        if call is None:
            return
        source = self._operator_on(call, ev.get("OrigTransfererChannel"))
        target_channel = ev.get("TransferTargetChannel")
        target_call = self.call_of_channel(target_channel) if target_channel else None
        target = self._operator_on(target_call or call, target_channel)
        if target is None and target_call is not None:
            target = target_call.current_operator
        transfer = call.add_transfer("attended", source, target, at)
        if target is not None:
            call.current_operator = target
            if target not in call.rung:  # the consultation rang him in another call
                call.rings.append(Ring(operator=target, started_at=at, answered_at=at,
                                       ended_at=at, result="ANSWER"))
        self._emit(CallTransferred, call, at, transfer=transfer.record())
