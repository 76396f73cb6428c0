"""Screen-pop glue: call pipeline -> pop rules (CardBook) -> browser hub, with the CRM around.

- A pipeline subscriber (synchronous, never waits) feeds the CardBook and pushes the
  cards it returns to the hub.
- One CRM lookup per call, started as soon as the caller's number is known (usually
  before any phone rings) and shared by every operator it rings; in a cluster, by the
  PBX's owner only, whose answers every node puts on its cards (screenpop.caller_answers).
  While that lookup is within its time budget the call's first cards are held back, so
  the card normally pops with the caller's name; a later (final) answer updates the cards
  in place. An answer known without asking (an extension, a cached answer, a number the
  built-in CRM surely does not hold: crm_adapters.known_numbers) goes on the cards at
  once, nothing held. A found caller's history follows as another in-place update, but
  only on a node where a page shows a card of the call (every node of a cluster runs these
  rules for every call, and the history's queries are costly): screenpop.card_history.
  CardHistory says when.
- The operator's actions on his card (note, new contact, close): screenpop.card_actions.
- Several PBXes: a card, an operator's state and the PBX's clock go only to the pages of
  users on that PBX (screenpop.operator_state.PbxScope says whose is what); call ids are
  unique across PBXes, so notes and dismissals work by call id as with one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallAnswered, CallEnded, CallRinging, DomainEvent
from bridge.calls.pipeline import CallPipeline
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import Contact
from crm_adapters.lookup import CallerCard, LookupService
from screenpop.call_notes import CallNotes
from screenpop.caller_answers import CallerAnswers
from screenpop.card_actions import CardActions
from screenpop.card_history import CardHistory
from screenpop.card_ids import call_of, operator_of
from screenpop.cards import CardBook, Outgoing, superseded
from screenpop.history_calls import call_transfers
from screenpop.hub import Hub
from screenpop.messages import AgentState, Card, CardRemoved, Clock, ConsoleInfo, Hello
from screenpop.operator_state import MEMBER_EVENTS, AgentStates, PbxClock, PbxScope
from screenpop.settings import ConsoleSettings, ScreenPopSettings
from web.users import SignedInUser

log = logging.getLogger(__name__)

# A follower asks the CRM itself when its PBX's owner has not answered within the lookup's
# budget and this (it joined after the call began, or the owner died).
OWNER_ANSWER_GRACE = 1.0


class ScreenPopService(CardActions):
    def __init__(self, lookup: LookupService, *, settings: ScreenPopSettings | None = None,
                 hub: Hub | None = None, notes: BuiltinCrm | None = None,
                 operator_names: Callable[[str], str | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, console: ConsoleSettings | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.lookup = lookup
        self.console = console or ConsoleSettings()
        if settings is None:  # the wrap-up time of [console] closes after-call cards
            settings = ScreenPopSettings(after_call_seconds=self.console.wrapup_seconds)
        self.settings = settings
        s = self.settings
        self.wall_clock = wall_clock
        self.pbxes = PbxScope(wall_clock)  # the pipeline's PBXes, once attached
        self.agents = AgentStates(self.console.member_interface)
        self.can_act = False  # the console may send actions to the PBX (screenpop.console_actions)
        self.hub = hub or Hub(queue_size=s.queue_size, heartbeat=s.heartbeat_seconds,
                              send_timeout=s.send_timeout_seconds)
        self.region = lookup.settings.default_region
        self.book = CardBook(default_region=self.region, after_call_seconds=s.after_call_seconds,
                             history_items=s.history_items, operator_names=operator_names, clock=clock)
        # Notes go to the built-in CRM: the one given, else the first configured.
        self.notes = notes or next((a for a in lookup.adapters if isinstance(a, BuiltinCrm)), None)
        self.call_notes = CallNotes(lookup, self.notes, self.book, self.region)
        self.card_history = CardHistory(self.book, self.hub, self._fetch_history)
        self.hub.on_attach = lambda hello: self.card_history.opened(hello.cards)
        self._looked_up: dict[str, str | None] = {}  # call id -> number asked about
        # Who asks the CRM (a cluster: the PBX's owner); a follower waits this long for its answer.
        self.answers = CallerAnswers(self._ask_here, self._owner_answered,
                                     wait=lookup.settings.budget_seconds + OWNER_ANSWER_GRACE)
        self._held: dict[str, set[str]] = {}  # call id -> card ids waiting for the first lookup
        # /metrics: a ring's card pop, from the ring's AMI arrival (at the PBX's owner: the
        # stream keeps received_at) to its hand-over to the hub. card id -> that arrival.
        self.on_pop: Callable[[float], None] | None = None
        self._ring_arrival: dict[str, float] = {}
        self._pipeline: CallPipeline | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry: asyncio.Task[None] | None = None

    @property
    def pbx_clock(self) -> PbxClock:
        """The main PBX's clock (the only one, usually)."""
        return self.pbxes.clock(self.pbxes.main)

    def attach(self, pipeline: CallPipeline) -> None:
        self.pbxes.ids = tuple(pipeline.trackers)  # the first is the main one
        self._pipeline = pipeline
        pipeline.subscribe(self)
        pipeline.subscribe_raw(self.on_raw, (*MEMBER_EVENTS, "QueueMemberRemoved"))

    def on_raw(self, event: AmiMessage) -> None:
        """Queue member events: the operator's own state, pushed to his pages (his PBX's)."""
        pbx = self.pbxes.of_event(event.pbx)
        ext = self.agents.on_event(event, pbx)
        if ext is not None:
            self.hub.send("\0agent", self.agents.state(ext, pbx).model_dump_json(), extension=ext, pbx=pbx)

    def on_resync(self, channels: list[AmiMessage], queue_status: list[AmiMessage], at: float,
                  pbx: str | None = None) -> None:
        """After a (re)connect a PBX's QueueStatus answer says every operator's state at once
        (its items carry that PBX's id)."""
        for item in queue_status:
            self.on_raw(item)

    def agent_state(self, user: SignedInUser) -> AgentState | None:
        pbx = self.pbxes.of_user(user)
        states = [self.agents.state(ext, pbx) for ext in sorted(user.extensions)]
        return next((a for a in states if a.known), states[0] if states else None)

    async def start(self) -> None:
        self._expiry = asyncio.create_task(self._expire_loop(), name="screenpop after-call expiry")

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._expiry] if self._expiry else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._expiry = None

    # -- the pipeline subscriber ----------------------------------------------------------

    def __call__(self, event: DomainEvent) -> None:
        call_id, pbx = event.call_id, event.call.pbx
        clock = self.pbxes.clock(pbx)
        clock_moved = isinstance(event, CallRinging | CallAnswered) and clock.observe(event.at)
        if isinstance(event, CallEnded) and any(self.call_notes.of_call(call_id).values()):
            # Taken before the book may forget the call (its last card gone at hang-up).
            self._loop_task(self.call_notes.log_finished(event.call, self.call_notes.of_call(call_id),
                                                         self.book.caller(call_id)), f"log call {call_id}")
        messages = self.book.on_event(event)
        if isinstance(event, CallRinging) and self.on_pop is not None and self._pipeline is not None:
            arrival = self._pipeline.current.received_at if self._pipeline.current is not None else None
            for message in messages:
                if arrival is not None and isinstance(message, Card) and message.state == "ringing":
                    self._ring_arrival.setdefault(message.card_id, arrival)
        # Before the push: a new call's first cards wait for the lookup, or carry its instant answer.
        self._push(superseded(messages, self._start_lookup(event)))
        if clock_moved:
            # To that PBX's operators only: their cards' times are in its clock. After the
            # cards: this frame goes to every page of the PBX (1,000 sockets on a busy node),
            # and the rung operator's card must not wait behind them.
            frame = Clock(server_time=self.wall_clock(), pbx_offset=clock.offset)
            self.hub.send("\0clock", frame.model_dump_json(), pbx=pbx if self.pbxes.several else None)
        if isinstance(event, CallEnded):
            self._looked_up.pop(call_id, None)
            self.answers.forget(call_id)
            if not self.book.knows(call_id):
                self.card_history.forget(call_id)
            for card_id in [k for k in self._ring_arrival if call_of(k) == call_id]:
                del self._ring_arrival[card_id]  # rung, but never shown

    def _start_lookup(self, event: DomainEvent) -> list[Outgoing]:
        """Ask about the caller once his number is known. An answer known without asking
        (`LookupService.answer_at_once`) goes on the call's cards at once (returned: the cards
        it changed); otherwise its first cards wait for the lookup. The lookup (here, or at the
        PBX's owner) runs either way: a contact added since the built-in CRM's numbers were
        read updates the card."""
        call = event.call
        if not call.live:
            return []
        number = call.caller_number
        asked = self._looked_up.get(call.call_id, "")  # "" = not asked yet (None is "anonymous")
        if asked == number or (number is None and not call.rung):
            return []  # asked already; or wait for the number, unless a phone rings without one
        self._looked_up[call.call_id] = number
        at_once = self.lookup.answer_at_once(number)
        if self.answers.asks_crm(call.pbx):
            # Shared at once unless a follower can answer too: then its cards hold nothing.
            started = self._ask_here(call.pbx, call.call_id, number, urgent=at_once is None)
        else:
            started = self.answers.wait_for_owner(call.pbx, call.call_id, number)
        if at_once is not None:
            return self.book.on_caller(call.call_id, at_once)
        if started and asked == "":
            self._held[call.call_id] = set()  # only the call's first cards wait, never shown ones
        return []

    def _ask_here(self, pbx: str, call_id: str, number: str | None, urgent: bool = True) -> bool:
        return self._loop_task(self._lookup(pbx, call_id, number, urgent), f"lookup {call_id}")

    async def _lookup(self, pbx: str, call_id: str, number: str | None, urgent: bool) -> None:
        def update(found: CallerCard) -> None:  # a later, final answer
            self._answered_here(pbx, call_id, number, found)

        try:
            found = await self.lookup.lookup(number, on_update=update)
        except Exception:  # the lookup service answers errors as cards; this is a bug
            log.exception("caller lookup for call %s failed", call_id)
            found = CallerCard(number=number, status="unavailable")
        finally:
            held = self._held.pop(call_id, set())
        self._answered_here(pbx, call_id, number, found, held, urgent)

    def _answered_here(self, pbx: str, call_id: str, number: str | None, found: CallerCard,
                       held: set[str] | None = None, urgent: bool = True) -> None:
        """This node's own answer: on its cards, and (the PBX's owner) on every node's."""
        self._put_answer(call_id, found, held or set())
        self.answers.shared(pbx, call_id, number, found, urgent)

    def _owner_answered(self, call_id: str, number: str | None, found: CallerCard) -> None:
        if self._looked_up.get(call_id, number) != number:
            return  # about a number the call no longer has; the owner answers the new one too
        self._put_answer(call_id, found, self._held.pop(call_id, set()))

    def _put_answer(self, call_id: str, found: CallerCard, held: set[str]) -> None:
        """An answer on the call's cards; the `held` ones go out as they are now (a ring that
        ended meanwhile shows nothing)."""
        changed = self.book.on_caller(call_id, found)
        waiting = held - {m.card_id for m in changed}
        self._push([*changed, *(c for cid in waiting if (c := self.book.card(call_id, operator_of(cid))))])
        self._follow_up(call_id, found)

    def _follow_up(self, call_id: str, found: CallerCard) -> None:
        """A final answer about the caller: his history for the cards, once one is watched here."""
        if not found.final or not self.settings.history_items or not self.book.knows(call_id):
            return
        contact = found.contact
        if contact is None and found.status == "not_found" and found.e164 and self.notes is not None:
            # Unknown caller: the built-in CRM still has notes and calls from his number.
            contact = Contact(id="", display_name=found.e164, phones=[found.e164], source=self.notes.name)
        if contact is not None:
            self.card_history.want(call_id, contact, contact.id or found.e164)

    def _fetch_history(self, call_id: str, contact: Contact, key: str | None) -> None:
        self._loop_task(self._history(call_id, contact, key), f"history {call_id}")

    async def _history(self, call_id: str, contact: Contact, key: str | None) -> None:
        items = await self.lookup.history(contact, self.settings.history_items)
        moves = await call_transfers(self.notes, [i.call_id for i in items if i.kind == "call" and i.call_id])
        self._push(self.book.on_history(call_id, items, key, moves))

    def _push(self, messages: list[Outgoing]) -> None:
        free: list[Outgoing] = []
        for message in messages:
            call_id = message.call_id if isinstance(message, Card) else call_of(message.card_id)
            held = self._held.get(call_id)
            if held is not None:
                held.add(message.card_id)
            else:
                free.append(message)
        if free:
            self._to_hub(free)

    def _to_hub(self, messages: list[Outgoing]) -> None:
        self.hub.push(messages)
        self.card_history.shown(messages)  # after the push: a due history follows the card
        if self._ring_arrival and self.on_pop is not None:
            now = time.time()
            for message in messages:
                if (arrival := self._ring_arrival.pop(message.card_id, None)) is not None:
                    self.on_pop(now - arrival)

    def _loop_task(self, coro: Coroutine[Any, Any, None], name: str) -> bool:
        try:
            task = asyncio.get_running_loop().create_task(coro, name=name)
        except RuntimeError:  # no loop (an offline replay): no CRM work to do
            coro.close()
            return False
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return True

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("screen-pop task %s failed", task.get_name(), exc_info=task.exception())

    async def _expire_loop(self) -> None:
        period = min(2.0, self.settings.after_call_seconds / 4)
        while True:
            await asyncio.sleep(period)
            self.expire_now()

    def expire_now(self) -> list[CardRemoved]:
        removed = self.book.expire()
        self._push(list(removed))
        self.call_notes.forget_gone()
        self.card_history.forget_gone()
        return removed

    # -- the console --------------------------------------------------------------------------

    def hello(self, user: SignedInUser, since: float | None = None) -> Hello:
        """The first frame; `since` (the login, our clock): after-call cards of calls that
        ended before it are somebody else's business, not this operator's."""
        pbx = self.pbxes.of_user(user)
        cards = self.book.cards_for(user.extensions, pbx)
        c = self.console
        acts = self.can_act and bool(user.extensions) and pbx in self.pbxes.ids
        info = ConsoleInfo(wrapup_seconds=self.settings.after_call_seconds, wrapup_codes=c.wrapup_codes,
                           pause_reasons=c.pause_reasons, can_pause=acts, can_dial=acts,
                           pbxes=list(self.pbxes.ids) if self.pbxes.several else [])
        hello = Hello(user=user.username, display_name=user.display_name, role=user.role, pbx=pbx,
                      extensions=list(user.extensions), cards=cards, server_time=self.wall_clock(),
                      pbx_offset=self.pbxes.clock(pbx).offset, console=info, agent=self.agent_state(user))
        return self.since_login(hello, since)

    def since_login(self, hello: Hello, since: float | None) -> Hello:
        """The Hello without the after-call cards of calls that ended before `since` (the
        login, our clock): those are somebody else's business, not this operator's."""
        if since is None:
            return hello
        offset = hello.pbx_offset
        cards = [c for c in hello.cards if c.state != "after_call" or (c.ended_at or 0) - offset >= since]
        return hello if len(cards) == len(hello.cards) else hello.model_copy(update={"cards": cards})
