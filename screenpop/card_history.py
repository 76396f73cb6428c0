"""A caller's history on a call's cards, fetched only where a page shows one of them.

Every node of a cluster runs the same pop rules for every call, but the history (queries on
the built-in CRM and the call log) only matters on a node where a browser watches one of the
call's operators: the PBX's owner often has none. So a final CRM answer only says whose
history the call wants (`want`); it is fetched when a card of the call goes to a watched
operator here (`shown`), when a page with one of its cards opens here (`opened`), or at once
if such a card is on a page already. At most once per call and caller (a new caller, as a
new contact, fetches again); forgotten with the call's cards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from crm_adapters.contract import Contact
from screenpop.cards import CardBook, Outgoing
from screenpop.hub import Hub
from screenpop.messages import Card

# Start the fetch of (call id, whose history, his caller key for CardBook.on_history).
Fetch = Callable[[str, Contact, str | None], object]


class CardHistory:
    def __init__(self, book: CardBook, hub: Hub, fetch: Fetch) -> None:
        self.book = book
        self.hub = hub
        self._fetch = fetch
        self._asked: dict[str, str | None] = {}  # call id -> caller key of its last final answer
        self._pending: dict[str, tuple[Contact, str | None]] = {}  # call id -> not fetched yet
        # call id -> (its PBX, operators whose cards went to the hub): is one watched now?
        self._shown: dict[str, tuple[str, set[str]]] = {}

    def want(self, call_id: str, contact: Contact, key: str | None) -> None:
        """A final answer about the call's caller: this contact's history, once watched."""
        if call_id in self._asked and self._asked[call_id] == key:
            return  # this caller's history is fetched (or waits for a page) already
        self._asked[call_id] = key
        self._pending[call_id] = (contact, key)
        pbx, operators = self._shown.get(call_id, ("", set()))
        if any(self.hub.watching(pbx, op) and self.book.card(call_id, op) is not None for op in operators):
            self._start(call_id)

    def shown(self, messages: Iterable[Outgoing]) -> None:
        """Cards handed to the hub: one on a page here brings its call's history."""
        for m in messages:
            if not isinstance(m, Card) or m.state == "withdrawn" or not self.book.knows(m.call_id):
                continue  # a card gone at once never needs the history
            self._shown.setdefault(m.call_id, (m.pbx, set()))[1].add(m.operator)
            if m.call_id in self._pending and self.hub.watching(m.pbx, m.operator):
                self._start(m.call_id)

    def opened(self, cards: Iterable[Card]) -> None:
        """A page opened here with these cards (its Hello): their calls' history, if due."""
        cards = list(cards)
        self.shown(cards)
        for card in cards:  # the page watches them, whether the hub counts it yet or not
            if card.call_id in self._pending:
                self._start(card.call_id)

    def forget(self, call_id: str) -> None:
        for table in (self._asked, self._pending, self._shown):
            table.pop(call_id, None)

    def forget_gone(self) -> None:
        """Drop what is kept about calls the book no longer holds (their cards are closed)."""
        for call_id in [c for c in self._shown.keys() | self._asked.keys() if not self.book.knows(c)]:
            self.forget(call_id)

    @property
    def calls(self) -> int:
        """Calls with something kept (bounded by the book's open calls)."""
        return len(self._shown.keys() | self._asked.keys())

    def _start(self, call_id: str) -> None:
        contact, key = self._pending.pop(call_id)
        self._fetch(call_id, contact, key)
