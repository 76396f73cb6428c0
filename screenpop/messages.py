"""The operator console's WebSocket protocol: JSON messages as pydantic models.

Server -> browser only (state changes go through CSRF-protected HTTP POSTs):

- `hello`: sent once per connection: who is logged in, and every card he should see now
  (a reconnecting browser gets the card of the call in progress back at once).
- `card`: the whole card of one call for this operator, sent whenever anything on it
  changes (ring, CRM answer, answer, transfer, hang-up). The browser replaces the card
  with the same `card_id`; `version` only grows, so a late frame never undoes a newer one.
- `card_removed`: the operator closed the card (after-call work done) on another tab.

Every text field that came from a caller or a CRM (names, companies, notes) is data:
the page must render it as text, never as HTML.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CardState = Literal["ringing", "live", "after_call", "withdrawn"]
LookupState = Literal["found", "not_found", "pending", "unavailable", "colleague", "anonymous", "invalid"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class CallerView(_Frozen):
    number: str | None = None  # as received from the PBX
    number_display: str  # formatted for reading ("+7 495 123-45-67"), or "Unknown number"
    name: str | None = None  # from the CRM, else the caller-id name, else None
    company: str | None = None
    tags: list[str] = Field(default_factory=list)
    vip: bool = False
    crm_url: str | None = None  # opens the contact in the CRM's own UI
    contact_id: str | None = None
    contact_source: str | None = None  # which adapter knows him ("builtin", "odoo", ...)
    lookup: LookupState = "pending"  # "pending": looking up...; "unavailable": CRM down
    stale: bool = False  # the last known good answer while the CRM fails


class HistoryItem(_Frozen):
    at: str  # ISO 8601, UTC
    kind: str  # call, note, ticket, deal, ...
    operator: str | None = None
    outcome: str | None = None
    summary: str = ""  # a note's text, a ticket's subject
    url: str | None = None


class TransferView(_Frozen):
    kind: Literal["blind", "attended"]
    from_operator: str | None
    from_name: str | None = None
    note: str | None = None  # the previous operator's note, so the caller never repeats


class Card(_Frozen):
    type: Literal["card"] = "card"
    card_id: str  # "<call_id>:<operator extension>"
    version: int  # grows with every change of this card
    call_id: str
    operator: str  # the extension whose phone this card is for
    state: CardState
    state_reason: str | None = None  # e.g. "answered by Anna Operator (101)"
    caller: CallerView
    queue: str | None = None
    dialed: str | None = None
    entered_at: float  # epoch seconds (PBX clock): the browser shows waiting/talk timers
    ring_started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    wait_seconds: float = 0.0
    transfer: TransferView | None = None
    history: list[HistoryItem] = Field(default_factory=list)
    note: str = ""  # this operator's note on this call, as last saved
    recording: bool = False


class Hello(_Frozen):
    type: Literal["hello"] = "hello"
    user: str
    display_name: str
    role: Literal["operator", "supervisor", "trainer", "admin"]
    extensions: list[str]
    cards: list[Card]
    server_time: float  # epoch seconds, so timers run from the server's clock


class CardRemoved(_Frozen):
    type: Literal["card_removed"] = "card_removed"
    card_id: str


ServerMessage = Hello | Card | CardRemoved


# HTTP request bodies (JSON), each checked against the session's CSRF token.


class NoteRequest(_Frozen):
    call_id: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=4000)


class NewContactRequest(_Frozen):
    call_id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    company: str | None = Field(None, max_length=200)


class DismissRequest(_Frozen):
    call_id: str = Field(min_length=1, max_length=64)
