"""Queue calls on the real Asterisk: answered, abandoned while waiting or ringing, queue
time-out, busy then the next operator, ring-all; each against what Asterisk stated."""

from __future__ import annotations

from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import NewContact
from tests.live.ami_driver import AmiDriver
from tests.live.checks import check_abandoned, check_answered_queue_call, near
from tests.live.lab import LiveBridge
from tests.live.scenarios import STATED_TOLERANCE, call_queue, ext_of, phone


async def test_queue_call_answered_is_logged_and_pops_the_crm_card(ami: AmiDriver,
                                                                   bridge: LiveBridge) -> None:
    crm = BuiltinCrm(bridge.store)
    await crm.create_contact(NewContact(display_name="Ivan Petrov (CRM)", company="Romashka",
                                        phones=["+74951234567"], tags=["VIP"]))
    anna, boris = await bridge.console("anna"), await bridge.console("boris")

    call = await call_queue(ami, "support", "+74951234567", "Иван Петров", talk=3)
    await call.ended()

    logged = await bridge.logged(call.linkedid)
    assert {k: logged[k] for k in ("caller_number", "caller_name", "queue", "dialed", "answered_by", "rung",
                                   "outcome", "internal", "transfers")} == {
        "caller_number": "+74951234567", "caller_name": "Иван Петров", "queue": "support", "dialed": None,
        "answered_by": "101", "rung": ["101"], "outcome": "answered", "internal": False, "transfers": []}
    assert call.rung() == ["101"]
    check_answered_queue_call(logged, call)

    card = await anna.wait_state(call.linkedid, "after_call")
    assert anna.states(call.linkedid) == ["ringing", "live", "after_call"]
    assert (card.operator, card.queue, card.caller.number) == ("101", "support", "+74951234567")
    assert (card.caller.name, card.caller.company, card.caller.vip, card.caller.lookup) == (
        "Ivan Petrov (CRM)", "Romashka", True, "found")
    assert anna.cards(call.linkedid)[0].ring_started_at is not None
    assert boris.cards(call.linkedid) == []  # nobody else's screen


async def test_abandoned_while_waiting_nobody_rung(ami: AmiDriver, bridge: LiveBridge) -> None:
    for ext in ("101", "102"):  # every member paused: the caller waits, no phone rings
        await ami.ok("QueuePause", Interface=f"Local/{ext}@agents/n", Paused="true", Queue="support")
    call = await call_queue(ami, "support", "+74957654321", "Waiting Caller", talk=2)
    await call.wait("QueueCallerAbandon")
    await call.ended()

    logged = await bridge.logged(call.linkedid)
    assert (logged["queue"], logged["rung"], logged["caller_number"]) == ("support", [], "+74957654321")
    assert call.rung() == []
    check_abandoned(logged, call)
    assert "QUEUESTATUS" not in [m.get("Variable") for m in call.events]  # the caller left himself


async def test_abandoned_while_ringing_withdraws_the_card(ami: AmiDriver, bridge: LiveBridge) -> None:
    await phone(ami, "101", ring=30)  # Anna's phone rings on; the caller gives up after ~3.5 s
    anna = await bridge.console("anna")
    call = await call_queue(ami, "support", "+74951110000", "Impatient Caller", talk=2)
    await call.wait("AgentCalled")
    await call.wait("QueueCallerAbandon")
    await call.ended()

    logged = await bridge.logged(call.linkedid)
    assert (logged["rung"], logged["queue"]) == (["101"], "support")
    assert call.rung() == ["101"]
    check_abandoned(logged, call)
    await anna.wait_state(call.linkedid, "withdrawn")
    assert anna.states(call.linkedid) == ["ringing", "withdrawn"]


async def test_queue_timeout_is_unanswered_with_its_reason_not_abandoned(ami: AmiDriver,
                                                                         bridge: LiveBridge) -> None:
    await phone(ami, "101", dead=True)
    await phone(ami, "102", ring=30)
    call = await call_queue(ami, "support", "+33142685300", "Patrick \"Paddy\" O'Brien", talk=20, qtimeout=3)
    abandon = await call.wait("QueueCallerAbandon")  # app_queue reports its time-out as an abandon
    status = await call.wait("VarSet", Variable="QUEUESTATUS")
    assert status["Value"] == "TIMEOUT"
    await call.ended()
    # The PBX ended it (Hangup() after Queue()), long before the caller's 20 s were up.
    assert call.ended_at - call.entered_at < 10

    logged = await bridge.logged(call.linkedid)
    assert (logged["outcome"], logged["outcome_reason"], logged["answered_by"], logged["talk_seconds"],
            logged["ended_by"]) == ("unanswered", "timeout", None, 0.0, "hangup")
    assert logged["rung"] == call.rung() == ["101", "102"]
    assert logged["caller_name"] == "Patrick \"Paddy\" O'Brien"
    near(logged["wait_seconds"], float(abandon["HoldTime"]), STATED_TOLERANCE, "wait vs HoldTime")


async def test_busy_operator_then_the_next_one_answers(ami: AmiDriver, bridge: LiveBridge) -> None:
    await phone(ami, "101", dead=True)
    anna, boris = await bridge.console("anna"), await bridge.console("boris")
    call = await call_queue(ami, "support", "+74951112200", "Busy Then Next", talk=2)
    await call.ended()

    logged = await bridge.logged(call.linkedid)
    assert call.first("DialEnd", DialStatus="BUSY")
    assert logged["rung"] == call.rung() == ["101", "102"]
    assert (logged["outcome"], logged["answered_by"]) == ("answered", "102")
    check_answered_queue_call(logged, call)
    await boris.wait_state(call.linkedid, "after_call")
    assert boris.states(call.linkedid) == ["ringing", "live", "after_call"]
    # Anna's phone answered Busy at once: her screen never showed the call as hers.
    assert "live" not in anna.states(call.linkedid)
    assert anna.states(call.linkedid)[-1:] in ([], ["withdrawn"])


async def test_ring_all_first_to_answer_takes_it_the_other_card_says_who(ami: AmiDriver,
                                                                         bridge: LiveBridge) -> None:
    await phone(ami, "103", ring=5)
    await phone(ami, "104", ring=1)
    clara, denis = await bridge.console("clara"), await bridge.console("denis")
    call = await call_queue(ami, "sales", "+380441234567", "Олена Коваль", talk=2)
    await call.ended()

    logged = await bridge.logged(call.linkedid)
    called = [ext_of(m["Interface"]) for m in call.all("AgentCalled")]
    assert sorted(called) == ["103", "104"]
    assert logged["rung"] == call.rung()
    assert (logged["queue"], logged["outcome"], logged["answered_by"]) == ("sales", "answered", "104")
    assert call.first("DialEnd", DialStatus="CANCEL")
    check_answered_queue_call(logged, call)
    await denis.wait_state(call.linkedid, "after_call")
    withdrawn = await clara.wait_state(call.linkedid, "withdrawn")
    assert "104" in (withdrawn.state_reason or "")
