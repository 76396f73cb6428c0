"""The operator console's WebSocket protocol: JSON messages as pydantic models.

Server -> browser only (state changes go through CSRF-protected HTTP POSTs):

- `hello`: sent once per connection: who is logged in, and every card he should see now
  (a reconnecting browser gets the card of the call in progress back at once).
- `card`: the whole card of one call for this operator, sent whenever anything on it
  changes (ring, CRM answer, answer, transfer, hang-up). The browser replaces the card
  with the same `card_id`; `version` only grows, so a late frame never undoes a newer one.
- `card_removed`: the operator closed the card (after-call work done) on another tab, or
  it closed itself (the wrap-up time is over).
- `agent_state`: the operator's own state in his queues (paused with a reason, available).
- `clock`: the PBX's clock moved against the server's (timers count in the PBX's clock).

The browser sends only `{"type": "activity"}` (the person typed or clicked: keeps his
session alive), at most once a minute.

Every text field that came from a caller or a CRM (names, companies, notes) is data:
the page must render it as text, never as HTML.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.calls.record import DEFAULT_PBX

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
    summary: str = ""  # what the CRM says (a note's text, a ticket's subject, a call's outcome)
    url: str | None = None
    note: str = ""  # notes only: a note's text, the note logged with a call
    detail: str | None = None  # what happened: "answered, talked 4:05", a ticket's subject
    transfers: list[str] = Field(default_factory=list)  # "blind transfer Anna Operator → Boris"
    call_id: str | None = None


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
    pbx: str = DEFAULT_PBX  # the PBX the call is on (the operator's: his extension is that PBX's)
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
    closes_at: float | None = None  # after-call: when the card closes itself (PBX clock)


class Hello(_Frozen):
    type: Literal["hello"] = "hello"
    user: str
    display_name: str
    role: Literal["operator", "supervisor", "trainer", "admin"]
    pbx: str = DEFAULT_PBX  # the PBX his extensions are on
    extensions: list[str]
    cards: list[Card]
    server_time: float  # epoch seconds, so timers run from the server's clock
    # The PBX's clock minus the server's (card times are the PBX's): timers count
    # pbx_now = browser_now + (server_time - browser_now_at_hello) + pbx_offset.
    pbx_offset: float = 0.0
    console: ConsoleInfo | None = None
    agent: AgentState | None = None


class ConsoleInfo(_Frozen):
    """What the console offers this user (from `[console]`)."""

    wrapup_seconds: float
    wrapup_codes: list[str] = Field(default_factory=list)
    pause_reasons: list[str] = Field(default_factory=list)
    can_pause: bool = False  # the PBX can be asked (and the user has an extension)
    can_dial: bool = False
    pbxes: list[str] = Field(default_factory=list)  # the PBXes when several (cards then show theirs)


class QueueMembership(_Frozen):
    queue: str
    paused: bool
    reason: str | None = None


class AgentState(_Frozen):
    """The operator's own state in his queues (from the PBX's queue member events)."""

    type: Literal["agent_state"] = "agent_state"
    extension: str
    known: bool = False  # no queue member event seen yet for him
    paused: bool = False  # paused in every queue he is a member of
    reason: str | None = None
    queues: list[QueueMembership] = Field(default_factory=list)


class Clock(_Frozen):
    """Sent when the PBX's clock offset changed (see Hello.pbx_offset)."""

    type: Literal["clock"] = "clock"
    server_time: float
    pbx_offset: float


class CardRemoved(_Frozen):
    type: Literal["card_removed"] = "card_removed"
    card_id: str
    pbx: str = Field(DEFAULT_PBX, exclude=True)  # whose pages it goes to (the hub's, not the page's)


ServerMessage = Hello | Card | CardRemoved | AgentState | Clock
Hello.model_rebuild()


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
    wrapup_code: str | None = Field(None, max_length=60)


class PauseRequest(_Frozen):
    paused: bool
    reason: str | None = Field(None, max_length=60)


class DialRequest(_Frozen):
    number: str = Field(min_length=1, max_length=40)
