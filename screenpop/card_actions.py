"""What an operator does to his own card: a note, a new contact, closing it (with a wrap-up code).

- Notes: kept on the card (and carried to the next operator on a transfer), stored in the
  built-in CRM as a note interaction (by contact, or by number for an unknown caller) and,
  once the call has ended, logged to the CRM with the call (`LookupService.log_call`).
- New contacts from the card of an unknown caller go through `LookupService.create_contact`
  (which drops the cached "not found") and turn the card into the found caller's.
- Only a call that rang one of the user's extensions on his PBX is his to act on (403).

Mixed into screenpop.screenpop_service.ScreenPopService, whose book, notes and CRM it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crm_adapters.contract import NewContact
from crm_adapters.errors import CrmError, CrmNotSupported, CrmRejected
from crm_adapters.lookup import CallerCard, LogResult
from crm_adapters.phone_numbers import normalize
from screenpop.call_notes import NoteNotSaved
from web.users import SignedInUser

if TYPE_CHECKING:
    from screenpop.screenpop_service import ScreenPopService


class ScreenPopError(Exception):
    """A refused console action; `status` is the HTTP status it maps to."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class CardActions:
    def extension_for(self: ScreenPopService, user: SignedInUser, call_id: str) -> str:
        """The user's extension this call rang (his card's, if he has one); else 403/404."""
        record = self.book.record(call_id)
        if record is None:
            raise ScreenPopError(f"no open call {call_id}", 404)
        # His 201 is not the 201 of another PBX.
        mine = record.pbx == self.pbxes.of_user(user)
        rung = [ext for ext in user.extensions if mine and self.book.rang(call_id, ext)]
        if not rung:
            raise ScreenPopError(f"call {call_id} did not ring your extension", 403)
        with_card = [ext for ext in rung if self.book.card(call_id, ext) is not None]
        return (with_card or rung)[0]

    async def save_note(self: ScreenPopService, user: SignedInUser, call_id: str,
                        text: str) -> dict[str, Any]:
        ext = self.extension_for(user, call_id)
        text = text.strip()
        try:
            await self.call_notes.store(call_id, ext, text)
        except NoteNotSaved as exc:
            raise ScreenPopError(str(exc), 503) from exc
        self._push(self.book.set_note(call_id, ext, text))
        record = self.book.record(call_id)
        logged: LogResult | None = None
        if record is not None and not record.live:
            logged = await self.call_notes.log_finished(record, self.call_notes.of_call(call_id),
                                                        self.book.caller(call_id))
        return {"card": self.book.card(call_id, ext), "crm": logged}

    async def create_contact(self: ScreenPopService, user: SignedInUser, call_id: str, name: str,
                             company: str | None) -> dict[str, Any]:
        ext = self.extension_for(user, call_id)
        record, found = self.book.record(call_id), self.book.caller(call_id)
        assert record is not None
        if found is not None and found.contact is not None and not found.stale:
            raise ScreenPopError(f"the caller is already a contact: {found.contact.display_name}", 409)
        e164 = normalize(record.caller_number, self.region)
        if e164 is None:
            raise ScreenPopError("the caller's number is withheld or not a phone number: "
                                 "a contact needs one", 400)
        new = NewContact(display_name=name.strip(), phones=[e164], company=(company or "").strip() or None)
        try:
            contact = await self.lookup.create_contact(new)
        except (CrmRejected, CrmNotSupported) as exc:
            raise ScreenPopError(f"the CRM did not create the contact: {exc}", 400) from exc
        except CrmError as exc:
            raise ScreenPopError(f"the CRM did not create the contact: {exc}", 503) from exc
        card = CallerCard(number=record.caller_number, e164=e164, status="found", contact=contact,
                          source=contact.source)
        self._answered_here(record.pbx, call_id, record.caller_number, card)
        return {"contact": contact, "card": self.book.card(call_id, ext)}

    async def dismiss(self: ScreenPopService, user: SignedInUser, call_id: str,
                      wrapup_code: str | None = None) -> bool:
        """Close the user's after-call card of this call (False: nothing left to close), with
        the wrap-up code he chose: kept with his note and logged with the call."""
        ext = self.extension_for(user, call_id)
        card = self.book.card(call_id, ext)
        if card is not None and card.state != "after_call":
            raise ScreenPopError(f"the call is still {card.state.replace('_', ' ')}: "
                                 "only an after-call card can be closed", 409)
        code = (wrapup_code or "").strip() or None
        codes = self.console.wrapup_codes
        if code is not None and codes and code not in codes:
            raise ScreenPopError(f"unknown wrap-up code {code!r}: one of {', '.join(codes)}", 400)
        record, found = self.book.record(call_id), self.book.caller(call_id)
        if code is not None and card is not None:
            self.book.set_wrapup(call_id, ext, code)
        notes = self.call_notes.of_call(call_id)  # before the book may forget the call
        removed = self.book.dismiss(call_id, ext)
        if removed is not None:
            self._push([removed])
            if not self.book.knows(call_id):
                self.card_history.forget(call_id)
            if code is not None:
                await self.call_notes.store_wrapup(call_id, ext, code)
                if record is not None and not record.live:
                    await self.call_notes.log_finished(record, notes, found)
        return removed is not None
