"""The contract every CRM adapter implements, and the records that cross it.

Rules for implementers:
- Phone numbers given to an adapter are E.164 (`+74951234567`): the lookup service
  normalises caller IDs first (see `crm_adapters.phone_numbers`) and never asks about
  anonymous callers or internal extensions. An adapter that needs the national form
  derives it with `phone_numbers.national_variants`.
- Every failure leaves an adapter as a `crm_adapters.errors.CrmError` subclass; anything
  else is treated as a bug (logged with a traceback, counted as a failure).
- Times are timezone-aware (UTC); lists of interactions are newest first.
- Adapters hold no per-call cache: caching, time budget, single-flight and the circuit
  breaker live in `crm_adapters.lookup`, in front of every adapter alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crm_adapters.errors import CrmNotSupported

Direction = Literal["inbound", "outbound"]
# As in the call log (bridge.calls.record.Outcome), plus "busy"/"failed" for outbound calls.
CallOutcome = Literal["answered", "abandoned", "unanswered", "incomplete", "busy", "failed"]
InteractionKind = Literal["call", "note", "ticket", "deal", "email", "task", "other"]

VIP_TAG = "VIP"


class Contact(BaseModel):
    """A person (or company line) the CRM knows, as the operator's card shows it."""

    model_config = ConfigDict(frozen=True)

    id: str  # the CRM's own id, as text
    display_name: str
    company: str | None = None
    phones: list[str] = Field(default_factory=list)  # E.164 where the adapter could normalise
    email: str | None = None
    tags: list[str] = Field(default_factory=list)
    url: str | None = None  # opens the record in the CRM's own UI
    source: str = ""  # the adapter's name (set by the adapter)
    updated_at: AwareDatetime | None = None

    @property
    def vip(self) -> bool:
        return any(tag.casefold() == VIP_TAG.casefold() for tag in self.tags)


class Interaction(BaseModel):
    """One entry of a contact's history: a call, a note, a ticket, a deal."""

    model_config = ConfigDict(frozen=True)

    id: str  # unique within `source`
    kind: InteractionKind
    at: AwareDatetime
    summary: str = ""  # one line: a note's text, a ticket's subject, a call's outcome
    source: str = ""  # adapter name, or "call_log" for the bridge's own call log
    direction: Direction | None = None  # calls only
    operator: str | None = None
    duration_seconds: float | None = None
    outcome: str | None = None  # calls: CallOutcome; tickets/deals: their status
    url: str | None = None  # the item in the CRM's UI, or a call's recording
    call_id: str | None = None  # the bridge's call id (Linkedid): merges duplicates across sources


class NewContact(BaseModel):
    """What the operator typed on the card of an unknown caller."""

    model_config = ConfigDict(frozen=True)

    display_name: str = Field(min_length=1)
    phones: list[str] = Field(min_length=1)  # E.164
    company: str | None = None
    email: str | None = None
    tags: list[str] = Field(default_factory=list)
    note: str | None = None  # first note on the new contact


class FinishedCall(BaseModel):
    """A finished call to log back into the CRM."""

    model_config = ConfigDict(frozen=True)

    call_id: str  # the bridge's call id (Linkedid): lets an adapter stay idempotent
    direction: Direction
    number: str  # the customer's number, E.164
    operator: str | None = None  # extension (or name) of the operator who talked
    started_at: AwareDatetime
    duration_seconds: float = Field(0.0, ge=0)  # talk time
    outcome: CallOutcome
    recording_url: str | None = None
    note: str | None = None  # the operator's note
    contact_id: str | None = None  # the contact the card showed, if any (this adapter's id)


CallLogEntry = FinishedCall  # the other name for it


class CrmAdapter(ABC):
    """One CRM. Subclasses set `name` (unique among the configured adapters)."""

    name: str = "crm"
    # A read-only adapter sets these False; the service then skips it for writes.
    can_create_contacts: bool = True
    can_log_calls: bool = True

    async def open(self) -> None:  # noqa: B027  # optional hook: connect, log in
        """Acquire connections/tokens. Called once before the first request."""

    async def close(self) -> None:  # noqa: B027  # optional hook
        """Release connections. Called once at shutdown."""

    @abstractmethod
    async def find_contact(self, number: str) -> Contact | None:
        """The contact with this E.164 number, or None when not found.

        Several matches: return the one the adapter documents as best (e.g. the most
        recently updated); the card shows one contact.
        """

    def knows_not(self, number: str) -> bool:
        """True only when the adapter is sure, without asking its CRM, that no contact has this
        E.164 number (the built-in CRM keeps its numbers in memory): the card then pops at
        once, and `find_contact` still runs behind it. Optional: never sure by default."""
        return False

    @abstractmethod
    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        """The contact's last `limit` interactions here (calls, notes, tickets, deals), newest first."""

    @abstractmethod
    async def create_contact(self, new: NewContact) -> Contact:
        """Create a contact (raise CrmNotSupported if the CRM cannot)."""

    async def search(self, query: str, limit: int = 20) -> list[Contact]:
        """Contacts whose name contains `query`, or with a number matching it (the operator's
        search box), best first. Optional: an adapter without it says "search not supported"."""
        raise CrmNotSupported("search not supported", adapter=self.name)

    @abstractmethod
    async def log_call(self, call: FinishedCall) -> str | None:
        """Record a finished call; returns the CRM's id of what it created (None if it has none).

        Logging the same `call_id` twice must not create two entries where the CRM allows
        checking for that.
        """


def utc_now() -> datetime:
    return datetime.now(UTC)
