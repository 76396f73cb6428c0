"""Pop rules (screenpop.cards.CardBook) on the real Asterisk captures: which operator gets
which card states, in which order, and nobody else gets anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from bridge.calls.events import CallAnswered, CallRinging, CallTransferred, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events
from crm_adapters.contract import Contact, Interaction
from crm_adapters.lookup import CallerCard
from screenpop.card_ids import operator_of
from screenpop.cards import CardBook, format_number
from screenpop.messages import Card, CardRemoved
from tests.capture_facts import CAPTURES, capture_bytes

Hook = Callable[[DomainEvent, CardBook], list]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def replay(name: str, book: CardBook | None = None, hook: Hook | None = None) -> tuple[list, list, CardBook]:
    """(frames the book emitted, domain events, book) for a capture run through a pipeline."""
    book = book if book is not None else CardBook()
    frames: list[Card | CardRemoved] = []
    events: list[DomainEvent] = []

    def subscriber(event: DomainEvent) -> None:
        events.append(event)
        frames.extend(book.on_event(event))
        if hook is not None:
            frames.extend(hook(event, book))

    pipeline = CallPipeline()
    pipeline.subscribe(subscriber)
    for message in capture_events(capture_bytes(name)):
        if message.is_event:
            pipeline.feed(message)
    pipeline.close_all()
    return frames, events, book


def by_operator(frames: list) -> dict[str, list[tuple[str, str | None]]]:
    seen: dict[str, list[tuple[str, str | None]]] = {}
    for f in frames:
        assert isinstance(f, Card)
        seen.setdefault(f.operator, []).append((f.state, f.state_reason))
    return seen


def states(frames: list) -> dict[str, list[str]]:
    return {op: [s for s, _ in seq] for op, seq in by_operator(frames).items()}


def test_queue_answered_pops_for_anna_only() -> None:
    frames, _, book = replay("queue_answered")
    assert states(frames) == {"101": ["ringing", "live", "after_call"]}
    first, live, after = frames
    assert {f.card_id for f in frames} == {f"{first.call_id}:101"}
    assert [f.version for f in frames] == [1, 2, 3]
    assert first.caller.number_display == "+7 495 123-45-67"
    assert first.caller.name == "Иван Петров" and first.caller.lookup == "pending"
    assert first.queue == "support" and first.ring_started_at is not None and first.answered_at is None
    assert live.answered_at is not None and live.wait_seconds == pytest.approx(2.0, abs=0.1)
    assert after.ended_at is not None and after.state_reason is None
    # The after-call card stays (for the note) and is what a reconnecting browser gets.
    assert book.cards_for(["101"]) == [after]
    assert book.cards_for(["102", "103"]) == []


def test_ring_all_withdraws_the_card_of_the_phone_that_did_not_answer() -> None:
    frames, _, book = replay("ringall_two_agents")
    assert by_operator(frames) == {
        "103": [("ringing", None), ("withdrawn", "answered by Denis Operator (104)")],
        "104": [("ringing", None), ("live", None), ("after_call", None)],
    }
    # Both rang at once: both ringing cards go out before the answer.
    assert [f.state for f in frames[:2]] == ["ringing", "ringing"]
    # The withdrawn card was sent once and is gone: nothing of it in a Hello.
    assert book.cards_for(["103"]) == []
    assert [c.state for c in book.cards_for(["103", "104"])] == ["after_call"]


def _note_after_answer(operator: str, text: str) -> Hook:
    def hook(event: DomainEvent, book: CardBook) -> list:
        if isinstance(event, CallAnswered) and event.operator == operator:
            return book.set_note(event.call_id, operator, text)
        return []
    return hook


def test_blind_transfer_card_follows_the_call_with_anna_and_her_note() -> None:
    frames, events, book = replay("blind_transfer", hook=_note_after_answer("101", "Wants a refund"))
    assert by_operator(frames) == {
        "101": [("ringing", None), ("live", None), ("live", None), ("after_call", "transferred to 103")],
        "103": [("ringing", None), ("live", None), ("after_call", None)],
    }
    anna = [f for f in frames if f.operator == "101"]
    assert anna[2].note == "Wants a refund" and anna[1].note == ""
    transfer = next(e for e in events if isinstance(e, CallTransferred))
    assert anna[3].ended_at == transfer.at  # her part ended at the transfer
    clara = [f for f in frames if f.operator == "103"]
    for card in clara:
        assert card.transfer is not None
        t = card.transfer
        assert (t.kind, t.from_operator, t.from_name) == ("blind", "101", "Anna Operator")
        assert t.note == "Wants a refund"
        assert card.note == ""  # her own note starts empty
    # Anna finishes her note after the transfer: Clara's card shows the new text at once.
    call_id = clara[0].call_id
    updates = book.set_note(call_id, "101", "Wants a refund; order 1234")
    assert {(u.operator, u.state) for u in updates} == {("101", "after_call"), ("103", "after_call")}
    assert next(u for u in updates if u.operator == "103").transfer.note == "Wants a refund; order 1234"


def test_attended_transfer_consultation_rings_clara_with_boris_note() -> None:
    frames, _, book = replay("attended_transfer", hook=_note_after_answer("102", "VIP, be nice"))
    assert by_operator(frames) == {
        "102": [("ringing", None), ("live", None), ("live", None), ("after_call", "transferred to 103")],
        "103": [("ringing", None), ("live", None), ("after_call", None)],
    }
    order = [(f.operator, f.state) for f in frames]
    # Clara's phone rings (the consultation) while Boris still talks; his card leaves on completion.
    assert order.index(("103", "ringing")) < order.index(("102", "after_call"))
    assert order.index(("103", "live")) < order.index(("102", "after_call"))
    for card in (f for f in frames if f.operator == "103"):
        assert card.transfer is not None
        assert (card.transfer.kind, card.transfer.from_operator, card.transfer.from_name) == (
            "attended", "102", "Boris Operator")
        assert card.transfer.note == "VIP, be nice"
    assert sorted(c.operator for c in book.cards_for(["101", "102", "103", "104"])) == ["102", "103"]


def test_abandoned_call_rings_and_withdraws_each_attempt_and_leaves_nothing() -> None:
    frames, events, book = replay("queue_abandoned")
    rings = [e for e in events if isinstance(e, CallRinging)]
    seen = by_operator(frames)
    assert set(seen) == {"101", "102"}
    for op in ("101", "102"):
        attempts = sum(1 for e in rings if e.operator == op)
        assert attempts == 7
        assert seen[op] == [("ringing", None), ("withdrawn", "phone busy")] * attempts
        versions = [f.version for f in frames if f.operator == op]
        assert versions == list(range(1, 2 * attempts + 1))  # one card id, versions only grow
    assert frames[0].caller.number_display == "+7 495 765-43-21" and frames[0].caller.name is None
    assert book.cards_for(["101", "102"]) == [] and book.open_calls == 0  # nothing left, call forgotten


CALL_CAPTURES = [n for n in CAPTURES if n not in ("queue_ops",)]


@pytest.mark.parametrize("name", CALL_CAPTURES)
def test_card_invariants_on_every_capture(name: str) -> None:
    frames, events, _ = replay(name)
    rings: dict[tuple[str, str], int] = {}
    for e in events:
        if isinstance(e, CallRinging):
            rings[(e.call_id, e.operator)] = rings.get((e.call_id, e.operator), 0) + 1
    last: dict[str, Card] = {}
    pops: dict[tuple[str, str], int] = {}
    allowed = {None: {"ringing", "live"}, "ringing": {"ringing", "live", "withdrawn"},
               "live": {"live", "after_call"}, "after_call": {"after_call", "ringing"},
               "withdrawn": {"ringing"}}
    for f in frames:
        assert isinstance(f, Card)
        assert operator_of(f.card_id) == f.operator and f.card_id.startswith(f.call_id + ":")
        prev = last.get(f.card_id)
        assert f.version == (prev.version + 1 if prev else 1)  # versions only grow
        assert f.state in allowed[prev.state if prev else None], (prev, f)
        if prev is not None:
            assert f.model_copy(update={"version": prev.version}) != prev  # never the same card twice
        if f.state == "ringing" and (prev is None or prev.state != "ringing"):
            pops[(f.call_id, f.operator)] = pops.get((f.call_id, f.operator), 0) + 1
        last[f.card_id] = f
    # One ringing card per ring, and only for phones that rang.
    assert pops == {k: v for k, v in rings.items() if k in pops}
    assert set(pops) <= set(rings)


def _found(number: str, final: bool = True, lookup_id: int = 7) -> CallerCard:
    contact = Contact(id="42", display_name="Ivan Petrov", company="Romashka LLC", tags=["VIP", "wholesale"],
                      url="https://crm.example/contacts/42", source="builtin", phones=["+74951234567"])
    return CallerCard(lookup_id=lookup_id, number=number, e164="+74951234567", status="found",
                      contact=contact, source="builtin", final=final)


def test_crm_answers_update_the_card_in_place() -> None:
    book = CardBook()
    updates: list = []

    def hook(event: DomainEvent, book: CardBook) -> list:
        if isinstance(event, CallRinging):  # the CRM was slower than the budget
            pending = CallerCard(lookup_id=7, number=event.call.caller_number, status="pending", final=False)
            updates.extend(book.on_caller(event.call_id, pending))
            updates.extend(book.on_caller(event.call_id, _found(event.call.caller_number)))
            # the in-budget answer overtaken by its own final one changes nothing
            updates.extend(book.on_caller(event.call_id, pending))
            items = [Interaction(id=str(i), kind="note", at=datetime(2026, 1, i, tzinfo=UTC), summary=f"n{i}",
                                 operator="102", source="builtin") for i in range(1, 15)]
            updates.extend(book.on_history(event.call_id, items, "42"))
            updates.extend(book.on_history(event.call_id, items, "other contact"))  # stale: ignored
        return []

    frames, _, _ = replay("queue_answered", book, hook)
    assert [(u.state, u.caller.lookup, u.version) for u in updates] == [("ringing", "found", 2),
                                                                        ("ringing", "found", 3)]
    found = updates[0].caller
    assert (found.name, found.company, found.vip, found.crm_url, found.contact_id, found.contact_source) == (
        "Ivan Petrov", "Romashka LLC", True, "https://crm.example/contacts/42", "42", "builtin")
    assert found.tags == ["wholesale"]  # the "VIP" tag is the VIP badge: shown once
    history = updates[1].history
    # Newest first, whatever order the CRM gave them in (here oldest first).
    assert len(history) == 10 and history[0].summary == "n14" and history[0].at.startswith("2026-01-14T")
    assert [f.caller.name for f in frames] == ["Иван Петров", "Ivan Petrov", "Ivan Petrov"]
    # An answer about another number (the caller id changed meanwhile) is ignored.
    assert book.on_caller(frames[0].call_id, _found("+74950000000")) == []


def test_after_call_cards_expire_or_are_dismissed_and_the_call_is_forgotten() -> None:
    clock = Clock()
    book = CardBook(after_call_seconds=60, clock=clock)
    frames, _, _ = replay("ringall_two_agents", book)
    call_id = frames[0].call_id
    assert book.dismiss(call_id, "103") is None  # withdrawn: nothing to close
    clock.now += 59
    assert book.expire() == []
    clock.now += 1
    assert book.expire() == [CardRemoved(card_id=f"{call_id}:104")]
    assert book.open_calls == 0 and not book.knows(call_id)

    frames, _, _ = replay("queue_answered", book)
    call_id = frames[0].call_id
    assert book.rang(call_id, "101") and not book.rang(call_id, "102")
    assert book.dismiss(call_id, "101") == CardRemoved(card_id=f"{call_id}:101")
    assert book.cards_for(["101"]) == [] and book.open_calls == 0


def test_cards_are_only_for_their_operator_and_hello_lists_live_cards() -> None:
    book = CardBook()
    cards_at_answer: list[Card] = []

    def hook(event: DomainEvent, book: CardBook) -> list:
        if isinstance(event, CallAnswered):
            cards_at_answer.extend(book.cards_for(["101", "102", "103", "104"]))
        return []

    replay("ringall_two_agents", book, hook)
    assert [(c.operator, c.state) for c in cards_at_answer] == [("104", "live")]


@pytest.mark.parametrize(("raw", "shown"), [
    ("+74951234567", "+7 495 123-45-67"), ("84957654321", "+7 495 765-43-21"),
    ("+380441234567", "+380 44 123 4567"), ("101", "101"), (None, "Unknown number"),
    ("anonymous", "Unknown number"), ("<unknown>", "Unknown number"),
])
def test_number_formatting(raw: str | None, shown: str) -> None:
    assert format_number(raw, "RU") == shown


def test_history_shows_a_logged_note_once_and_operators_by_name() -> None:
    from datetime import UTC, datetime

    from crm_adapters.contract import Interaction
    from screenpop.cards import history_item, without_echoed_notes

    at = datetime(2026, 11, 24, 9, 45, tzinfo=UTC)
    items = [
        Interaction(id="n1", kind="note", at=at, summary="Wants the invoice re-sent", operator="101"),
        Interaction(id="c1", kind="call", at=at, summary="Wants the invoice re-sent", operator="101",
                    outcome="answered", call_id="1795508277.0"),
        Interaction(id="n0", kind="note", at=at, summary="Prefers e-mail", operator="102"),
    ]
    shown = without_echoed_notes(items)
    assert [i.id for i in shown] == ["c1", "n0"]
    names = {"101": "Anna Operator"}.get
    assert history_item(shown[0], names).operator == "Anna Operator"
    assert history_item(shown[1], names).operator == "102"  # unknown extension: as it is


def test_history_reads_at_a_glance_newest_first_notes_once_transfers_shown() -> None:
    from datetime import timedelta

    from screenpop.cards import history_items

    t1 = datetime(2026, 11, 24, 9, 45, tzinfo=UTC)
    two_notes = "Anna Operator (101): Wants a refund\nBoris (102): Refund approved"
    items = [  # as two sources give them: each newest first, not merged
        Interaction(id="c1", kind="call", at=t1, summary=two_notes, source="builtin", operator="102",
                    outcome="answered", duration_seconds=245, call_id="1795508277.0"),
        Interaction(id="n2", kind="note", at=t1 + timedelta(seconds=90), summary="Refund approved",
                    operator="102", source="builtin"),
        Interaction(id="n1", kind="note", at=t1 + timedelta(seconds=20), summary="Wants a refund",
                    operator="101", source="builtin"),
        Interaction(id="n0", kind="note", at=t1 - timedelta(days=3), summary="Prefers e-mail",
                    operator="103", source="builtin"),
        Interaction(id="t1", kind="ticket", at=t1 + timedelta(hours=2), summary="Refund #5531",
                    outcome="open", source="odoo"),
        Interaction(id="1795508277.0", kind="call", at=t1, summary="answered by 101, talked 245 s",
                    source="call_log", operator="101", outcome="answered", duration_seconds=245,
                    call_id="1795508277.0"),
        Interaction(id="1795000000.1", kind="call", at=t1 - timedelta(days=5), summary="abandoned after 40 s",
                    source="call_log", outcome="abandoned", call_id="1795000000.1"),
    ]
    names = {"101": "Anna Operator", "102": "Boris"}.get
    shown = history_items(items, 10, names, {"1795508277.0": [("blind", "101", "102")]})
    assert [(h.kind, h.note, h.detail) for h in shown] == [
        ("ticket", "", "Refund #5531 · open"),
        ("call", two_notes, "answered, talked 4:05"),  # both operators' notes, each shown once
        ("note", "Prefers e-mail", None),
        ("call", "", "abandoned"),  # the call log's own words are no note
    ]
    assert shown[1].operator == "Boris" and shown[1].transfers == ["blind transfer Anna Operator → Boris"]
    assert [h.at for h in shown] == sorted((h.at for h in shown), reverse=True)
    assert len(history_items(items, 2, names)) == 2


def test_a_ring_that_ended_unanswered_later_says_who_took_the_call() -> None:
    from bridge.calls.events import CallRingEnded
    from bridge.calls.record import CallRecord, RingRecord

    def rec(**kw: object) -> CallRecord:
        base: dict[str, object] = {"call_id": "c1", "caller_number": "+74951234567", "queue": "support",
                                   "entered_at": 1000.0}
        return CallRecord.model_validate({**base, **kw})

    def run(answer_at: float) -> dict[str, list[tuple[str, str | None]]]:
        book = CardBook(operator_names={"102": "Boris"}.get)
        r101 = RingRecord(operator="101", queue="support", started_at=1001.0)
        r102 = RingRecord(operator="102", queue="support", started_at=answer_at - 2)
        frames = []
        frames += book.on_event(CallRinging(at=1001.0, call=rec(rung=["101"], rings=[r101]), operator="101",
                                            queue="support"))
        frames += book.on_event(CallRingEnded(at=1016.0, call=rec(rung=["101"], rings=[r101]), operator="101",
                                              result="NOANSWER"))
        both = rec(rung=["101", "102"], rings=[r101, r102])
        frames += book.on_event(CallRinging(at=answer_at - 2, call=both, operator="102", queue="support"))
        answered = rec(rung=["101", "102"], rings=[r101, r102], answered_at=answer_at, answered_by="102")
        frames += book.on_event(CallAnswered(at=answer_at, call=answered, operator="102"))
        assert book.cards_for(["101"]) == []  # told once, kept nowhere
        return by_operator(frames)

    assert run(1019.0)["101"] == [("ringing", None), ("withdrawn", "not answered"),
                                  ("withdrawn", "answered by Boris (102)")]
    assert run(1019.0)["102"] == [("ringing", None), ("live", None)]
    assert run(1080.0)["101"] == [("ringing", None), ("withdrawn", "not answered")]  # long after: no news


def test_after_call_cards_say_when_they_close_themselves() -> None:
    frames, _, _ = replay("queue_answered", CardBook(after_call_seconds=90))
    after = frames[-1]
    assert after.state == "after_call" and after.ended_at is not None
    assert after.closes_at == pytest.approx(after.ended_at + 90)
    assert all(f.closes_at is None for f in frames[:-1])


def test_expiry_closes_the_due_after_call_cards_of_many_calls_in_the_order_they_began() -> None:
    clock = Clock()
    book = CardBook(after_call_seconds=60, clock=clock)

    def after_call_cards(name: str) -> list[CardRemoved]:
        last: dict[str, str] = {}
        for frame in replay(name, book)[0]:
            if isinstance(frame, Card):
                last[frame.card_id] = frame.state
        return [CardRemoved(card_id=c) for c, state in last.items() if state == "after_call"]

    first = after_call_cards("ringall_two_agents")  # at 100
    clock.now = 130.0
    dismissed = after_call_cards("queue_answered")
    clock.now = 150.0
    transferred = after_call_cards("blind_transfer")  # the transferer's and the target's
    assert len(first) == 1 and len(dismissed) == 1 and len(transferred) == 2
    assert book.dismiss(*dismissed[0].card_id.rsplit(":", 1)) == dismissed[0]

    clock.now = 159.9
    assert book.expire() == []
    clock.now = 160.0
    assert book.expire() == first
    clock.now = 209.9  # the dismissed card's time passes: nothing left of it to close
    assert book.expire() == []
    clock.now = 210.0
    assert sorted(book.expire(), key=lambda r: r.card_id) == sorted(transferred, key=lambda r: r.card_id)
    assert book.open_calls == 0 and book.expire() == []
