"""Transfers, pickups and call forwarding in every shape Asterisk 11 to 22 sends them.

Real captures where we have them (blind_transfer, attended_transfer, blonde_transfer);
elsewhere streams built with tests/ami_shapes.py from the documented event fields (Asterisk's
AMI event docs, docs.asterisk.org, and the source that emits them), each citing its source.
"""

from __future__ import annotations

import pytest

from bridge.calls.events import CallAnswered, CallRingEnded, DomainEvent
from bridge.calls.record import CallRecord
from bridge.calls.replay import replay_bytes
from bridge.calls.tracker import CallTracker
from screenpop.cards import CardBook
from screenpop.messages import Card
from tests.ami_shapes import Pbx, run
from tests.capture_facts import capture_bytes as capture
from tests.capture_facts import capture_events

TRUNK, A101, B103 = "PJSIP/trunk-00000001", "PJSIP/101-00000002", "PJSIP/103-00000004"


def log(call: CallRecord) -> dict:
    d = call.replay_dict()
    return {k: d[k] for k in ("answered_by", "rung", "outcome", "transfers")}


def answered_by_101() -> Pbx:
    """An outside caller dials 101's PJSIP phone directly (Dial), who answers."""
    p = Pbx()
    p.new(TRUNK, number="+74951234567", name="Ivan Petrov", exten="800")
    p.new(A101, by=TRUNK, number="101", exten="101").dial_begin(TRUNK, A101, "101")
    p.tick(2).dial_end(TRUNK, A101, "ANSWER").up(TRUNK)
    return p.tick(3)


def consult_103_from_phone(p: Pbx, answer: bool = True) -> None:
    """101's phone puts the caller on hold and calls 103: a new call with its own Linkedid."""
    p.new("PJSIP/101-00000003", number="101", exten="103")
    p.new(B103, by="PJSIP/101-00000003", number="103", exten="103")
    p.dial_begin("PJSIP/101-00000003", B103, "103")
    if answer:
        p.tick(2).dial_end("PJSIP/101-00000003", B103, "ANSWER")
    p.tick(1)


def attended(p: Pbx, dest_type: str, *, transferee: bool = True, target: str | None = B103,
             result: str = "Success", **dest: str) -> None:
    """AttendedTransfer as main/stasis_bridges.c writes it (Asterisk 12-22): Orig/Second
    transferer snapshots, the optional Transferee*/TransferTarget* snapshots, DestType."""
    snaps = [p.snap(A101, "OrigTransferer"), p.snap("PJSIP/101-00000003", "SecondTransferer")]
    if transferee:
        snaps.append(p.snap(TRUNK, "Transferee"))
    if target:
        snaps.append(p.snap(target, "TransferTarget"))
    p.emit("AttendedTransfer", *snaps, Result=result, IsExternal="Yes", DestType=dest_type, **dest)


# -- real captures ------------------------------------------------------------------------


def test_blind_transfer_capture() -> None:
    (call,) = replay_bytes(capture("blind_transfer"))
    assert log(call) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                         "transfers": [{"kind": "blind", "from": "101", "to": "103"}]}


def test_attended_transfer_capture() -> None:
    (call,) = replay_bytes(capture("attended_transfer"))
    assert log(call) == {"answered_by": "102", "rung": ["102", "103"], "outcome": "answered",
                         "transfers": [{"kind": "attended", "from": "102", "to": "103"}]}


def test_blonde_transfer_capture_hands_caller_and_card_to_whoever_answers() -> None:
    """AttendedTransfer (DestType Bridge) while 103 still rings (TransferTargetChannelState
    Down); 103 answers 3.5 s later. His card carries Anna's note."""
    tracker, book = CallTracker(), CardBook()
    frames: list[Card] = []
    events: list[DomainEvent] = []
    for message in capture_events("blonde_transfer"):
        for event in tracker.handle(message):
            events.append(event)
            frames.extend(f for f in book.on_event(event) if isinstance(f, Card))
            if isinstance(event, CallAnswered) and event.operator == "101":
                frames.extend(f for f in book.set_note(event.call_id, "101", "Needs a new invoice")
                              if isinstance(f, Card))
    (call,) = [c for c in replay_bytes(capture("blonde_transfer"))]
    assert log(call) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                         "transfers": [{"kind": "attended", "from": "101", "to": "103"}]}
    answers = [e.operator for e in events if isinstance(e, CallAnswered)]
    assert answers == ["101", "103"]  # 103 answers after the transfer, not at it
    anna = [(f.state, f.state_reason) for f in frames if f.operator == "101"]
    assert anna[-1] == ("after_call", "transferred to 103")
    clara = [f for f in frames if f.operator == "103"]
    assert [f.state for f in clara] == ["ringing", "live", "after_call"]
    for card in clara:
        assert card.transfer is not None
        assert (card.transfer.kind, card.transfer.from_operator) == ("attended", "101")
        assert card.transfer.note == "Needs a new invoice"


# -- documented shapes: blind -----------------------------------------------------------------


@pytest.mark.parametrize("with_transferee", [True, False])
def test_blind_transfer_from_a_sip_phone(with_transferee: bool) -> None:
    """BlindTransfer fields per the Asterisk 16-22 AMI docs. Transferee* is optional: the
    event only carries it when the core knew the transferee (blind_transfer_to_ami)."""
    p = answered_by_101()
    snaps = [p.snap(A101, "Transferer")] + ([p.snap(TRUNK, "Transferee")] if with_transferee else [])
    p.emit("BlindTransfer", *snaps, Result="Success", IsExternal="Yes", Context="default", Extension="103")
    p.hangup(A101)
    p.new(B103, by=TRUNK, number="103", exten="103").dial_begin(TRUNK, B103, "103")
    p.tick(3).dial_end(TRUNK, B103, "ANSWER").tick(5).hangup(TRUNK, B103)
    (call,) = run(p.events)[0]
    assert log(call) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                         "transfers": [{"kind": "blind", "from": "101", "to": "103"}]}


@pytest.mark.parametrize("result", ["Fail", "Invalid", "Not Permitted"])
def test_failed_blind_transfer_is_no_transfer(result: str) -> None:
    p = answered_by_101()
    p.emit("BlindTransfer", p.snap(A101, "Transferer"), p.snap(TRUNK, "Transferee"), Result=result,
           IsExternal="No", Context="default", Extension="103")
    p.tick(5).hangup(TRUNK, A101)
    (call,) = run(p.events)[0]
    assert log(call) == {"answered_by": "101", "rung": ["101"], "outcome": "answered", "transfers": []}


# -- documented shapes: attended ------------------------------------------------------------


@pytest.mark.parametrize("with_snapshots", [True, False])
def test_attended_transfer_between_sip_phones_merges_bridges(with_snapshots: bool) -> None:
    """DestType Bridge, the consultation being 101's own new call (another Linkedid), as a
    SIP REFER with Replaces gives. Without Transferee*/TransferTarget* (optional in
    attended_transfer_to_ami) the caller's side and the consulted phone still decide."""
    p = answered_by_101()
    consult_103_from_phone(p)
    attended(p, "Bridge", transferee=with_snapshots, target=B103 if with_snapshots else None,
             DestBridgeUniqueid="b1")
    p.hangup(A101, "PJSIP/101-00000003").tick(10).hangup(TRUNK, B103)
    caller, consultation = run(p.events)[0]
    assert log(caller) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                           "transfers": [{"kind": "attended", "from": "101", "to": "103"}]}
    assert consultation.internal and consultation.transfers == []


def test_attended_transfer_linked_by_local_channels() -> None:
    """DestType Link (bridges that cannot merge are joined by a Local pair, LocalOne/LocalTwo
    snapshots; attended_transfer_bridge in main/bridge.c)."""
    p = answered_by_101()
    consult_103_from_phone(p)
    p.new("Local/_attended@transfer-00000005;1", by=TRUNK)
    p.new("Local/_attended@transfer-00000005;2", by=TRUNK)
    attended(p, "Link", **{**p.snap("Local/_attended@transfer-00000005;1", "LocalOne"),
                           **p.snap("Local/_attended@transfer-00000005;2", "LocalTwo")})
    p.hangup(A101, "PJSIP/101-00000003").tick(10)
    p.hangup(TRUNK, "Local/_attended@transfer-00000005;1", "Local/_attended@transfer-00000005;2", B103)
    caller = run(p.events)[0][0]
    assert log(caller)["transfers"] == [{"kind": "attended", "from": "101", "to": "103"}]
    assert log(caller)["rung"] == ["101", "103"]


def test_attended_transfer_into_a_ringing_dial_is_settled_by_the_answer() -> None:
    """DestType App (DestApp Dial, no TransferTarget*): 101 completes while 103 still rings
    (a blonde transfer from the phone). The caller is masqueraded into 101's dialling channel,
    and the Dial's masquerade datastore (main/stasis_channels.c) reports DialEnd NOANSWER for
    the old caller and DialBegin for the new one; 103 answers afterwards."""
    p = answered_by_101()
    consult_103_from_phone(p, answer=False)
    attended(p, "App", target=None, DestApp="Dial")
    p.hangup(A101)
    p.masquerade("PJSIP/101-00000003", TRUNK)
    p.dial_end("PJSIP/101-00000003", B103, "NOANSWER").dial_begin(TRUNK, B103, "103")
    p.hangup("PJSIP/101-00000003")
    p.tick(3).dial_end(TRUNK, B103, "ANSWER").tick(8).hangup(TRUNK, B103)
    caller = run(p.events)[0][0]
    assert log(caller) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                           "transfers": [{"kind": "attended", "from": "101", "to": "103"}]}


def test_threeway_attended_transfer_keeps_the_transferer_and_logs_no_transfer() -> None:
    """DestType Threeway (DestBridgeUniqueid, DestTransfererChannel; bridge_basic.c): all
    three stay in one conference, so nobody took the call over."""
    p = answered_by_101()
    consult_103_from_phone(p)
    attended(p, "Threeway", DestBridgeUniqueid="b1", DestTransfererChannel=A101)
    p.hangup("PJSIP/101-00000003").tick(10).hangup(TRUNK, A101, B103)
    caller, _consultation = run(p.events)[0]
    assert log(caller) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                           "transfers": []}


@pytest.mark.parametrize(("result", "dest_type"), [("Fail", "Fail"), ("Invalid", "Bridge"),
                                                    ("Not Permitted", "Bridge"), ("Success", "Fail")])
def test_failed_attended_transfer_is_no_transfer(result: str, dest_type: str) -> None:
    p = answered_by_101()
    consult_103_from_phone(p)
    attended(p, dest_type, result=result)
    p.hangup("PJSIP/101-00000003", B103).tick(5).hangup(TRUNK, A101)
    caller, _consultation = run(p.events)[0]
    assert log(caller) == {"answered_by": "101", "rung": ["101"], "outcome": "answered", "transfers": []}


@pytest.mark.parametrize(("kind", "fields"), [
    ("blind", {"TransferType": "Blind", "TransferExten": "103", "TransferContext": "default"}),
    ("attended", {"TransferType": "Attended"}),
])
def test_asterisk_11_transfer_event(kind: str, fields: dict[str, str]) -> None:
    """The old `Transfer` event (chan_sip, Asterisk 1.6-11): TransferMethod SIP, TransferType,
    Channel (the transferer), Uniqueid, SIP-Callid, TargetChannel, TargetUniqueid and, for a
    blind one, TransferExten/TransferContext. No Linkedid: known channel names place it.
    (The surrounding events are in the 12+ shape: Asterisk 11's channel events carry no
    Linkedid, which the model groups calls by.)"""
    p = answered_by_101()
    target = TRUNK if kind == "blind" else B103
    if kind == "attended":
        consult_103_from_phone(p)
    p.emit("Transfer", TransferMethod="SIP", Channel=A101, Uniqueid=p.chans[A101].uniqueid,
           **{"SIP-Callid": "abc@10.0.0.2"}, TargetChannel=target,
           TargetUniqueid=p.chans[target].uniqueid, **fields)
    p.hangup(A101)
    if kind == "blind":
        p.new(B103, by=TRUNK, number="103", exten="103").dial_begin(TRUNK, B103, "103")
        p.tick(2).dial_end(TRUNK, B103, "ANSWER")
    else:
        p.hangup("PJSIP/101-00000003")
    p.tick(5).hangup(TRUNK, B103)
    caller = run(p.events)[0][0]
    assert log(caller) == {"answered_by": "101", "rung": ["101", "103"], "outcome": "answered",
                           "transfers": [{"kind": kind, "from": "101", "to": "103"}]}


# -- pickups -----------------------------------------------------------------------------------


def ringing_101() -> Pbx:
    p = Pbx()
    p.new(TRUNK, number="+74951234567", name="Ivan Petrov", exten="800")
    p.new(A101, by=TRUNK, number="101", exten="101").dial_begin(TRUNK, A101, "101")
    p.tick(3).new("PJSIP/102-00000003", number="102", exten="*8")  # 102 dials the pickup code
    return p.tick(0.5)


@pytest.mark.parametrize("shape", ["dial-masquerade", "answer-only", "asterisk-11"])
def test_pickup_is_answered_by_the_operator_who_picked_up(shape: str) -> None:
    """ast_do_pickup (main/pickup.c): the picker's channel is moved into the ringing one
    (names, Uniqueid and Linkedid swap), then `Pickup` (Channel = the picker as named before,
    Target* = the ringing phone; Asterisk 11: only Channel and TargetChannel). Asterisk 13+
    also has the caller's Dial report DialEnd CANCEL for 101 and DialBegin for the moved
    channel (dial masquerade datastore); the Dial then reads the answer."""
    p = ringing_101()
    picker = "PJSIP/102-00000003"
    p.masquerade(A101, picker)  # A101's channel struct now goes by the picker's name
    if shape == "dial-masquerade":
        p.dial_end(TRUNK, A101, "CANCEL").dial_begin(TRUNK, picker, "101")
    if shape == "asterisk-11":
        p.emit("Pickup", Channel=picker, TargetChannel=A101)
    else:
        p.emit("Pickup", p.snap(picker), p.snap(A101, "Target"))
    p.dial_end(TRUNK, picker, "ANSWER").hangup(A101, cause="26")
    p.tick(6).hangup(TRUNK, picker)
    calls, events = run(p.events)
    caller = next(c for c in calls if c.caller_number == "+74951234567")
    assert log(caller) == {"answered_by": "102", "rung": ["101", "102"], "outcome": "answered",
                           "transfers": []}
    assert caller.talk_seconds == pytest.approx(6.0, abs=0.01)
    assert [e.operator for e in events if isinstance(e, CallAnswered)] == ["102"]
    # 102's *8 was only the way in: it is not a second conversation of six seconds.
    assert all(c.talk_seconds < 1 for c in calls if c is not caller)


def test_pickup_of_a_queue_members_phone_credits_the_picker_not_the_member() -> None:
    """A queue rings member Local/101@agents/n, whose ;2 dials the phone; 102 picks the phone
    up. app_queue then reports AgentConnect for the member channel (Local/101@agents-…;1)."""
    p = Pbx()
    p.new(TRUNK, number="+74951234567", exten="800")
    member, phone, picker = "Local/101@agents-00000005;1", "PJSIP/101-00000007", "PJSIP/102-00000008"
    p.new(member, by=TRUNK).new("Local/101@agents-00000005;2", by=TRUNK)
    p.emit("AgentCalled", p.snap(TRUNK), p.snap(member, "Dest"), Queue="support",
           Interface="Local/101@agents/n", MemberName="Anna")
    p.dial_begin(TRUNK, member, "101@agents/n")
    p.new(phone, by=TRUNK, number="101").dial_begin("Local/101@agents-00000005;2", phone, "101")
    p.tick(3).new(picker, number="102", exten="*8").tick(0.5)
    p.masquerade(phone, picker)
    p.dial_end("Local/101@agents-00000005;2", phone, "CANCEL")
    p.dial_begin("Local/101@agents-00000005;2", picker, "101")
    p.emit("Pickup", p.snap(picker), p.snap(phone, "Target"))
    p.dial_end("Local/101@agents-00000005;2", picker, "ANSWER").hangup(phone, cause="26")
    p.dial_end(TRUNK, member, "ANSWER")
    p.emit("AgentConnect", p.snap(TRUNK), p.snap(member, "Dest"), Queue="support",
           Interface="Local/101@agents/n", MemberName="Anna", HoldTime="3", RingTime="3")
    p.tick(5).hangup(TRUNK, member, "Local/101@agents-00000005;2", picker)
    calls, events = run(p.events)
    caller = next(c for c in calls if c.caller_number == "+74951234567")
    assert (caller.answered_by, caller.rung) == ("102", ["101", "102"])
    assert [e.operator for e in events if isinstance(e, CallAnswered)] == ["102"]


# -- call forwarding ----------------------------------------------------------------------------


@pytest.mark.parametrize(("forward", "new_channel"), [
    ("105", "Local/105@default-00000006;1"),  # redirect_method=user (PJSIP default), chan_dahdi
    ("PJSIP/101/sip:105@10.0.0.5", "PJSIP/101-00000006"),  # redirect_method=uri_core
])
def test_forwarding_phone_is_rung_and_the_target_answers(forward: str, new_channel: str) -> None:
    """do_forward (apps/app_dial.c): DialEnd CANCEL with `Forward`, then DialBegin from the
    same caller to the new channel. With uri_core the new channel is named after the
    forwarding endpoint (101), so only `Forward` says it rings 105."""
    p = Pbx()
    p.new(TRUNK, number="+74951234567", exten="800")
    p.new(A101, by=TRUNK, number="101").dial_begin(TRUNK, A101, "101")
    p.tick(1).new(new_channel, by=TRUNK, number="105")
    p.dial_end(TRUNK, A101, "CANCEL", forward=forward).dial_begin(TRUNK, new_channel, forward)
    p.hangup(A101)
    p.tick(2).dial_end(TRUNK, new_channel, "ANSWER").tick(4).hangup(TRUNK, new_channel)
    calls, events = run(p.events)
    (call,) = calls
    assert log(call) == {"answered_by": "105", "rung": ["101", "105"], "outcome": "answered",
                         "transfers": []}
    assert [(e.operator, e.result) for e in events if isinstance(e, CallRingEnded)] == [("101", "FORWARD")]
    assert call.rings[0].result == "FORWARD"


def test_forward_to_an_outside_number_is_answered_by_no_operator() -> None:
    """Forward to a mobile (no operator's extension): 101 rang, the call was answered."""
    p = Pbx()
    p.new(TRUNK, number="+74951234567", exten="800")
    p.new(A101, by=TRUNK, number="101").dial_begin(TRUNK, A101, "101")
    out = "PJSIP/101-00000006"  # uri_core: named after the forwarding endpoint
    p.tick(1).new(out, by=TRUNK, number="+79161234567")
    p.dial_end(TRUNK, A101, "CANCEL", forward="PJSIP/101/sip:+79161234567@gw").dial_begin(TRUNK, out, "x")
    p.hangup(A101).tick(2).dial_end(TRUNK, out, "ANSWER").tick(4).hangup(TRUNK, out)
    (call,) = run(p.events)[0]
    assert log(call) == {"answered_by": None, "rung": ["101"], "outcome": "answered", "transfers": []}
    assert call.talk_seconds == pytest.approx(4.0, abs=0.01)


def test_forwarded_call_nobody_answers_is_unanswered() -> None:
    """101 forwards to 105, whose phone rings out: the system gave up, not the caller."""
    p = Pbx()
    p.new(TRUNK, number="+74951234567", exten="800")
    p.new(A101, by=TRUNK, number="101").dial_begin(TRUNK, A101, "101")
    target = "Local/105@default-00000006;1"
    p.tick(1).new(target, by=TRUNK, number="105")
    p.dial_end(TRUNK, A101, "CANCEL", forward="105").dial_begin(TRUNK, target, "105")
    p.hangup(A101).tick(20).dial_end(TRUNK, target, "NOANSWER").hangup(target, TRUNK)
    (call,) = run(p.events)[0]
    assert (call.outcome, call.outcome_reason, call.rung) == ("unanswered", "noanswer", ["101", "105"])


# -- renames -----------------------------------------------------------------------------------


def test_renamed_channel_keeps_its_call_and_ring() -> None:
    """`Rename` (Channel, Newname, Uniqueid; main/channel.c): Asterisk 11 masquerades renamed
    the clone `<MASQ>` then `<ZOMBIE>`; later events use the new name."""
    p = Pbx()
    p.new(TRUNK, number="+74951234567", exten="800")
    p.new(A101, by=TRUNK, number="101").dial_begin(TRUNK, A101, "101")
    p.emit("Rename", Channel=A101, Newname="PJSIP/101-0000000a", Uniqueid=p.chans[A101].uniqueid)
    p.chans["PJSIP/101-0000000a"] = p.chans.pop(A101)
    p.tick(2).dial_end(TRUNK, "PJSIP/101-0000000a", "ANSWER").tick(3)
    p.hangup("PJSIP/101-0000000a", TRUNK)
    (call,) = run(p.events)[0]
    assert log(call) == {"answered_by": "101", "rung": ["101"], "outcome": "answered", "transfers": []}
    assert call.talk_seconds == pytest.approx(3.0, abs=0.01)
