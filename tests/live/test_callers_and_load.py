"""Who is calling, and many at once, on the real Asterisk: withheld numbers, escaped names,
20 calls at the same moment."""

from __future__ import annotations

import asyncio

from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import NewContact
from tests.live.ami_driver import AmiDriver, where
from tests.live.checks import check_abandoned, check_answered_queue_call, near
from tests.live.lab import LiveBridge
from tests.live.scenarios import STATED_TOLERANCE, call_queue, ext_of


async def test_withheld_numbers_never_match_a_crm_contact(ami: AmiDriver, bridge: LiveBridge) -> None:
    crm = BuiltinCrm(bridge.store)  # contacts a sloppy match could hit
    await crm.create_contact(NewContact(display_name="Anonymous Ltd", phones=["+74950000000"]))
    await crm.create_contact(NewContact(display_name="Unknown Person", phones=["+74951000000"]))
    anna, boris = await bridge.console("anna"), await bridge.console("boris")
    for number, name in ((None, None), ("anonymous", "Anonymous")):
        call = await call_queue(ami, "support", number, name, talk=1)
        connect = await call.wait("AgentConnect")
        assert connect["CallerIDNum"] in ("<unknown>", "anonymous")
        await call.ended()
        logged = await bridge.logged(call.linkedid)
        assert logged["outcome"] == "answered"
        assert not any(ch.isdigit() for ch in logged["caller_number"] or ""), logged
        console = {"101": anna, "102": boris}[ext_of(connect["Interface"])]
        card = await console.wait_state(call.linkedid, "after_call")
        for seen in console.cards(call.linkedid):
            assert seen.caller.contact_id is None and seen.caller.crm_url is None, seen.caller
        assert card.caller.lookup == "anonymous", card.caller
        assert card.caller.name not in ("Anonymous Ltd", "Unknown Person")


NAMES = [  # (queue, number, the true name: what the caller's phone sent)
    ("support", "+12125550147", 'Anna "Annie" Smith'),
    ("support", "+33559123456", "D'Artagnan"),
    ("sales", "+442079460123", "Back\\Slash Co"),
    ("sales", "+302101234567", "Ζωή Παπαδοπούλου — 王芳"),
]


async def test_names_with_quotes_apostrophes_backslashes_and_other_scripts_arrive_true(
        ami: AmiDriver, bridge: LiveBridge) -> None:
    consoles = {ext: await bridge.console(user) for ext, user in
                (("101", "anna"), ("102", "boris"), ("103", "clara"), ("104", "denis"))}
    calls = []
    for queue, number, name in NAMES:  # one after the other is answered: each finds a free phone
        call = await call_queue(ami, queue, number, name, talk=2)
        await call.wait("AgentConnect")
        calls.append(call)
    escaped = calls[0].first("AgentConnect")["CallerIDName"]
    assert escaped == 'Anna \\"Annie\\" Smith'  # what AMI carries (ast_escape_c)
    for call, (queue, number, name) in zip(calls, NAMES, strict=True):
        await call.ended()
        logged = await bridge.logged(call.linkedid)
        assert (logged["caller_name"], logged["caller_number"], logged["queue"]) == (name, number, queue)
        check_answered_queue_call(logged, call)
        card = await consoles[logged["answered_by"]].wait_state(call.linkedid, "after_call")
        assert (card.caller.name, card.caller.number) == (name, number)


async def test_twenty_calls_at_once_each_logged_once_as_asterisk_settled_it(ami: AmiDriver,
                                                                            bridge: LiveBridge) -> None:
    numbers = [f"+7495000{i:04d}" for i in range(20)]
    calls = await asyncio.gather(*(call_queue(ami, "support", n, f"Caller {i}", talk=3)
                                   for i, n in enumerate(numbers)))
    await asyncio.gather(*(c.ended(limit=60) for c in calls))
    logged = {c.linkedid: await bridge.logged(c.linkedid, limit=60) for c in calls}

    exported = [r for r in await bridge.export() if r["call_id"] in logged]
    assert sorted(r["call_id"] for r in exported) == sorted(logged)  # each exactly once
    assert sorted(r["caller_number"] for r in exported) == numbers
    joins = ami.find(where("QueueCallerJoin", Queue="support"))
    assert len({j["Linkedid"] for j in joins} & set(logged)) == 20
    answered = [c for c in calls if c.all("AgentConnect")]
    assert answered, "nobody answered: the scenario did not run as meant"
    for call in calls:
        line = logged[call.linkedid]
        assert line["caller_number"] == call.number and line["queue"] == "support"
        if call.all("AgentConnect"):
            check_answered_queue_call(line, call)
        else:
            check_abandoned(line, call)
            assert line["rung"] == call.rung()
    # What Asterisk itself counted for the queue in this run
    abandoned = [c for c in calls if c.all("QueueCallerAbandon")]
    assert len(answered) + len(abandoned) == 20
    assert sum(r["outcome"] == "answered" for r in exported) == len(answered)
    assert sum(r["outcome"] == "abandoned" for r in exported) == len(abandoned)
    stated = [float(m["HoldTime"]) for c in calls
              for m in c.all("QueueCallerAbandon") + c.all("AgentConnect")]
    near(max(r["wait_seconds"] for r in exported), max(stated), STATED_TOLERANCE, "the longest wait")
