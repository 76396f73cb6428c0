"""The hot standby's ground (cluster.standby) on the real Asterisk: two manager sessions of
the same user hear the same events in the same order, so a standby session can take over
from where the owner's last publication was, and the model comes out as the owner's
would have: the call logged exactly as a model fed every event logs it."""

from __future__ import annotations

import json

from bridge.ami.client import AmiClient
from bridge.ami.message import AmiMessage
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.inert_rules import touch_of
from bridge.calls.pipeline import CallPipeline
from cluster.standby import HotStandby
from tests.live.ami_driver import AmiDriver
from tests.live.lab import LabPbx, until
from tests.live.scenarios import call_queue


def logged_calls(events: list[AmiMessage]) -> list[str]:
    pipeline = CallPipeline()
    ended: list[str] = []

    def on_event(event: DomainEvent) -> None:
        if isinstance(event, CallEnded):
            ended.append(json.dumps(event.call.replay_dict(), sort_keys=True, default=str))

    pipeline.subscribe(on_event)
    pipeline.feed_all(events)
    return ended


async def session(pbx: LabPbx, heard: list[AmiMessage]) -> AmiClient:
    client = AmiClient(pbx.host, pbx.port, "callbridge", "lab-secret")
    client.on_event(heard.append)
    await client.start()
    assert await client.wait_ready(15), client.last_error
    return client


async def test_two_sessions_hear_one_sequence_and_a_standby_splices_after_the_owner(
        pbx: LabPbx, ami: AmiDriver) -> None:
    owner_heard: list[AmiMessage] = []
    standby_heard: list[AmiMessage] = []
    standby = await session(pbx, standby_heard)  # logged in first, as a follower is
    owner = await session(pbx, owner_heard)
    try:
        call = await call_queue(ami, "support", "+74951234567", "Standby Caller", talk=2)
        await call.ended()
        last = call.events[-1]
        for heard in (owner_heard, standby_heard):
            await until(lambda heard=heard: any(m.pairs == last.pairs for m in heard), 10,
                        "the call's last event")
    finally:
        await owner.stop()
        await standby.stop()

    # From the owner's login on, both sessions heard the same events, pair for pair.
    owner_events = [m for m in owner_heard if m.event != "FullyBooted"]
    first = next(i for i, m in enumerate(standby_heard) if m.pairs == owner_events[0].pairs)
    common = len(owner_events)
    assert [m.pairs for m in standby_heard[first:first + common]] == [m.pairs for m in owner_events]
    assert sum(1 for m in owner_events if m.get("Linkedid") == call.linkedid) > 20

    # The owner dies mid-call, having published only up to the answer: the standby splices.
    answered = next(i for i, m in enumerate(owner_events) if m.event == "AgentConnect")
    model = CallPipeline()
    published = [("event", e) if model.feed(e) else ("seen", list(touch_of(e)))
                  for e in owner_heard[: owner_heard.index(owner_events[answered]) + 1]]
    log = HotStandby()
    for event in standby_heard:
        log.heard(event)
    for kind, payload in published:
        log.published(kind, payload)
    missed = log.missed()
    assert missed is not None
    assert [m.pairs for m in missed] == [m.pairs for m in owner_events[answered + 1:]]

    spliced = [*owner_heard[: owner_heard.index(owner_events[answered]) + 1], *missed]
    expected = logged_calls(owner_heard)
    assert logged_calls(spliced) == expected
    (record,) = [json.loads(r) for r in expected if json.loads(r)["call_id"] == call.linkedid]
    assert (record["outcome"], record["answered_by"]) == ("answered", "101")
