"""The wallboard with two PBXes: queue names, extensions and channels are each PBX's own, so
two "support" queues stay two; a filter shows one PBX; one PBX's resync or outage never
touches the other's figures; a supervisor action goes to its target's PBX and its audit line
names it.

The pipeline is the bridge's: one model per PBX (`CallTracker(pbx=...)`, the second one's call
ids prefixed "b:"), fed the captures' events tagged with their PBX as each PBX's link tags them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from bridge.ami.message import AmiMessage
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import replay_bytes
from bridge.calls.tracker import CallTracker
from supervision.http import WallboardHub
from supervision.wallboard_service import SupervisorError, WallboardService
from tests.capture_facts import capture_bytes, capture_events
from tests.test_spy_sessions import FakePbx, chanspy_start
from tests.test_wallboard_service import RECORDED_AT, FakeAudit

SAM = SimpleNamespace(username="sam", display_name="Sam Supervisor", role="supervisor", extensions=["202"])


def tagged(capture: str, pbx: str) -> list[AmiMessage]:
    """A capture's events as PBX `pbx`'s link hands them on."""
    events = capture_events(capture)
    for ev in events:
        ev.pbx = pbx
    return events


def two_pbxes(**options: Any) -> tuple[WallboardService, CallPipeline, FakePbx, FakeAudit]:
    pbx, audit = FakePbx(), FakeAudit()
    service = WallboardService(send_action=pbx, audit=audit, clock=lambda: RECORDED_AT, **options)
    pipeline = CallPipeline(trackers=[CallTracker(pbx="a"), CallTracker(pbx="b", id_prefix="b:")])
    service.attach(pipeline)
    return service, pipeline, pbx, audit


def queues(service: WallboardService, pbx: str | None = None) -> dict[tuple[str, str], Any]:
    return {(q.pbx, q.name): q for q in service.snapshot(pbx=pbx).queues}


def test_two_pbxes_with_the_same_queue_name_are_kept_apart() -> None:
    service, pipeline, _, _ = two_pbxes()
    assert service.pbxes == ["a", "b"]
    pipeline.feed_all(tagged("queue_answered", "a"))  # answered by 101 on a
    b_events = tagged("queue_abandoned", "b")  # the caller gives up on b
    join = next(i for i, ev in enumerate(b_events) if ev.event == "QueueCallerJoin")
    pipeline.feed_all(b_events[: join + 1])
    waiting = queues(service)
    assert (waiting[("a", "support")].waiting, waiting[("b", "support")].waiting) == (0, 1)
    (live,) = service.snapshot().live_calls
    assert (live.pbx, live.call_id.startswith("b:"), live.queue) == ("b", True, "support")

    pipeline.feed_all(b_events[join + 1:])
    figures = {key: (q.calls_today, q.answered_today, q.abandoned_today)
               for key, q in queues(service).items()}
    assert figures == {("a", "support"): (1, 1, 0), ("b", "support"): (1, 0, 1)}
    anna = [(o.pbx, o.calls_today) for o in service.snapshot().operators if o.operator == "101"]
    assert ("a", 1) in anna and all(calls == 0 for pbx, calls in anna if pbx == "b")

    # The filter: one PBX's figures only, the same as in the whole picture.
    assert list(queues(service, "b")) == [("b", "support")]
    assert queues(service, "b")[("b", "support")] == queues(service)[("b", "support")]
    assert {o.pbx for o in service.snapshot(pbx="a").operators} == {"a"}
    with pytest.raises(SupervisorError):
        service.snapshot(pbx="c")


def test_a_resync_of_one_pbx_leaves_the_others_queues_and_calls_alone() -> None:
    service, pipeline, _, _ = two_pbxes()
    events = tagged("queue_abandoned", "a")
    join = next(i for i, ev in enumerate(events) if ev.event == "QueueCallerJoin")
    pipeline.feed_all(events[: join + 1])  # a caller waits on a
    params = AmiMessage([("Event", "QueueParams"), ("Queue", "support"), ("Calls", "0")])
    params.pbx = "b"
    service.on_resync([], [params], RECORDED_AT)  # b reconnected: its "support" has nobody
    assert queues(service)[("a", "support")].waiting == 1
    assert [c.pbx for c in service.snapshot().live_calls] == ["a"]
    service.on_resync([], [], RECORDED_AT)  # whose empty lists? the models are read again, no more
    assert queues(service)[("a", "support")].waiting == 1


def test_one_pbx_down_shows_as_such_and_the_other_keeps_its_figures() -> None:
    down = {"b"}
    service, pipeline, _, _ = two_pbxes(pbx_connected=lambda pbx: pbx not in down)
    pipeline.feed_all(tagged("queue_answered", "a"))
    pipeline.feed_all(tagged("queue_abandoned", "b"))
    hub = WallboardHub(service)
    frame = hub.frame()
    assert frame["pbx"] == "lost" and frame["pbxes"] == [{"id": "a", "state": "connected"},
                                                         {"id": "b", "state": "lost"}]
    assert {(q["pbx"], q["name"]) for q in frame["queues"]} == {("a", "support"), ("b", "support")}
    only_a = hub.frame(pbx="a")
    assert (only_a["pbx"], only_a["pbx_filter"]) == ("connected", "a")
    assert {q["pbx"] for q in only_a["queues"]} == {"a"} and set(only_a["clocks"]) == {"a", "b"}
    down.clear()
    assert hub.frame()["pbx"] == "connected"


async def test_supervisor_actions_go_to_the_targets_pbx_and_are_audited_with_it() -> None:
    service, _, pbx, audit = two_pbxes()
    result = await service.pause(SAM, "101", True, "lunch", pbx="b")
    assert (result.ok, result.pbx, pbx.to) == (True, "b", ["b"])
    assert (audit.lines[-1]["action"], audit.lines[-1]["detail"]["pbx"]) == ("queue.pause", "b")
    await service.queue_add(SAM, "support", "105", "Reserve Eve", pbx="b")
    await service.queue_remove(SAM, "support", "105")  # no PBX named: the first
    assert pbx.to == ["b", "b", "a"] and audit.lines[-1]["detail"]["pbx"] == "a"
    assert service.activity[-1]["pbx"] == "a" and service.activity[-1]["text"].startswith("a: ")
    with pytest.raises(SupervisorError) as refused:
        await service.pause(SAM, "101", True, pbx="nowhere")
    assert refused.value.status == 400 and pbx.to == ["b", "b", "a"]  # never sent


async def test_spy_sessions_are_per_pbx() -> None:
    service, _, pbx, audit = two_pbxes()
    await service.spy(SAM, "101", "listen", pbx="b")
    assert (pbx.to, list(service.site("b").pending), service.site("a").pending) == (["b"], ["a1"], {})
    start = AmiMessage([("Event", "ChanSpyStart"), ("Timestamp", f"{RECORDED_AT:.6f}"),
                        ("SpyerChannel", "Local/202@supervisor-0000000a;1"),
                        ("SpyeeChannel", "Local/101@agents-00000003;1"), ("SpyeeLinkedid", "900.1"),
                        ("SpyerLinkedid", "1000.5")])
    start.pbx = "b"
    service.on_ami_event(start)
    (session,) = service.site("b").spies.sessions.values()
    assert (session.call_id, service.site("b").spy_calls) == ("b:900.1", {"b:1000.5"})
    assert service.site("a").spies.sessions == {} and service.site("b").pending == {}
    frame = WallboardHub(service).frame()
    assert [(s["pbx"], s["listener"], s["operator"]) for s in frame["spies"]] == [("b", "202", "101")]
    assert WallboardHub(service).frame(pbx="a")["spies"] == []
    with pytest.raises(SupervisorError):  # a's has no such session: nothing hung up on a
        await service.end_spy(SAM, session.spyer_channel, pbx="a")
    result = await service.end_spy(SAM, session.spyer_channel, pbx="b")
    assert result.ok and pbx.to == ["b", "b"] and pbx.sent[-1]["Action"] == "Hangup"
    assert [line["detail"]["pbx"] for line in audit.lines] == ["b", "b"]


async def test_todays_figures_come_back_from_the_call_log_onto_each_pbxs_board() -> None:
    (call,) = replay_bytes(capture_bytes("queue_answered"))
    on_a = call.model_copy(update={"pbx": "a"})
    on_b = call.model_copy(update={"pbx": "b", "call_id": f"b:{call.call_id}"})
    gone = call.model_copy(update={"pbx": "old", "call_id": f"old:{call.call_id}"})  # no longer configured
    asked: list[Any] = []

    async def history(since: Any) -> list[Any]:
        asked.append(since)
        return [on_a, on_b, on_b.model_copy(update={"call_id": "b:2.2"}), gone]

    service, _, _, _ = two_pbxes(history=history)
    await service.start()
    await service.stop()
    assert len(asked) == 1  # one query for every PBX
    assert {key: q.calls_today for key, q in queues(service).items()} == {("a", "support"): 1,
                                                                          ("b", "support"): 2}


async def test_calls_from_before_pbx_ids_count_on_the_first_pbxs_board() -> None:
    (call,) = replay_bytes(capture_bytes("queue_answered"))  # pbx "main": written by a one-PBX bridge

    async def history(since: Any) -> list[Any]:
        return [call]

    service, _, _, _ = two_pbxes(history=history)
    await service.start()
    await service.stop()
    assert {key: q.calls_today for key, q in queues(service).items()} == {("a", "support"): 1}


def test_a_pbx_that_comes_back_with_no_channels_and_no_queues_ends_its_spy_sessions() -> None:
    """Empty lists say nothing about whose they are; the link's PBX id does (ResyncListener)."""
    service, _, _, _ = two_pbxes()
    for pbx in ("a", "b"):
        start = chanspy_start()
        start.pbx = pbx
        service.on_ami_event(start)
    assert {pbx: len(service.site(pbx).spies.sessions) for pbx in ("a", "b")} == {"a": 1, "b": 1}
    service.on_resync([], [], RECORDED_AT, "b")  # b restarted: nothing up, no queue configured
    assert {pbx: len(service.site(pbx).spies.sessions) for pbx in ("a", "b")} == {"a": 1, "b": 0}
