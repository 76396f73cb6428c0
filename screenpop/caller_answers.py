"""Who asks the CRM about a call's caller: one node per PBX, its owner in a cluster.

Every node of a cluster runs the same pop rules for every call (bridge.cluster_node), but
one answer about the caller is enough. The PBX's owner asks the CRM and shares each answer
it puts on the call's cards; it reaches the other nodes through the PBX's event stream,
after the events that made the call, and they put it on their cards. So the CRM and the
database are asked once per call, not once per node, and a follower's loop has no lookup
to run beside a ring's card.

A follower that hears nothing about a call within `wait` seconds asks the CRM itself. That
happens when it joined after the call began (a resync brought the call), or when the owner
died before it answered. A node that becomes a PBX's owner asks at once for the calls still
waiting. One process owns every PBX: it asks for every call, and shares with nobody.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from crm_adapters.caller_card import CallerCard

log = logging.getLogger(__name__)

TOPIC = "caller"  # what the owner shares (web.features.BridgeParts.share)

# ask(pbx, call id, number): start this node's own lookup.
Ask = Callable[[str, str, str | None], None]
# take(call id, number, card): an answer shared by the PBX's owner.
Take = Callable[[str, str | None, CallerCard], None]
# share(pbx, data, urgent): to the nodes following the PBX (a no-op on one process).
Share = Callable[[str, dict[str, Any], bool], None]


class CallerAnswers:
    def __init__(self, ask: Ask, take: Take, wait: float) -> None:
        self._ask = ask
        self._take = take
        self.wait = wait
        self.asks_crm: Callable[[str], bool] = lambda pbx: True  # this node owns the PBX
        self.share: Share | None = None
        # call id -> (its PBX, the number, the timer of its own lookup) on a follower
        self._waiting: dict[str, tuple[str, str | None, asyncio.TimerHandle]] = {}

    def wait_for_owner(self, pbx: str, call_id: str, number: str | None) -> bool:
        """A follower: the owner will answer about this caller. False without an event loop
        (an offline replay asks nobody)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.forget(call_id)
        timer = loop.call_later(self.wait, self._overdue, call_id)
        self._waiting[call_id] = (pbx, number, timer)
        return True

    def shared(self, pbx: str, call_id: str, number: str | None, card: CallerCard, urgent: bool) -> None:
        """The owner put this answer on the call's cards: the other nodes put it on theirs."""
        if self.share is None or not self.asks_crm(pbx):
            return
        self.share(pbx, {"call_id": call_id, "number": number, "card": card.model_dump(mode="json")}, urgent)

    def told(self, pbx: str, data: Any) -> None:
        """An answer from the PBX's owner (the stream's entry; hostile input like any other)."""
        try:
            call_id, number = str(data["call_id"]), data["number"]
            card = CallerCard.model_validate(data["card"])
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("pbx %s: a caller answer from its owner that is not one (%s): ignored", pbx, exc)
            return
        number = None if number is None else str(number)
        waiting = self._waiting.get(call_id)
        if waiting is not None and waiting[1] != number:
            return  # about a number the call no longer has: the owner answers the new one too
        self.forget(call_id)
        self._take(call_id, number, card)

    async def take_over(self, pbx: str) -> None:
        """This node now owns the PBX: it asks about the callers nobody answered yet."""
        for call_id in [c for c, (p, _, _) in self._waiting.items() if p == pbx]:
            self._overdue(call_id)

    def forget(self, call_id: str) -> None:
        waiting = self._waiting.pop(call_id, None)
        if waiting is not None:
            waiting[2].cancel()

    def _overdue(self, call_id: str) -> None:
        waiting = self._waiting.pop(call_id, None)
        if waiting is None:
            return
        pbx, number, timer = waiting
        timer.cancel()
        log.debug("pbx %s: no caller answer from its owner for call %s: asking the CRM here", pbx, call_id)
        self._ask(pbx, call_id, number)
