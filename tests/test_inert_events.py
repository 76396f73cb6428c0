"""Inert events (CallTracker.is_inert): dropped before the model, only their trace kept.

The model must come out exactly as if it had handled them (every capture, every call's
record and last-seen time, the PBX's last proof of life), and a cluster's follower fed
only what the owner publishes (the events its model took, the traces of the others) must
hold exactly the owner's state, lost calls' end times included."""

from __future__ import annotations

import json

import pytest

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallEnded, CallRinging, DomainEvent
from bridge.calls.inert_rules import touch_of
from bridge.calls.pipeline import CallPipeline
from cluster.stream_entries import pack_payload, unpack_payload
from tests.capture_facts import CAPTURES, capture_events


def run(events: list[AmiMessage], *, filtering: bool) -> tuple[CallPipeline, list[dict[str, object]]]:
    pipeline = CallPipeline()
    ended: list[dict[str, object]] = []

    def on_event(event: DomainEvent) -> None:
        if isinstance(event, CallEnded):
            ended.append(ended_row(event))

    pipeline.subscribe(on_event)
    if not filtering:
        pipeline.subscribe_raw(lambda event: None)  # reads every event: none is inert
    pipeline.feed_all(events)
    return pipeline, ended


def ended_row(event: DomainEvent) -> dict[str, object]:
    return {**event.call.replay_dict(), "last_seen_at": event.call.last_seen_at}


def state(pipeline: CallPipeline) -> tuple[object, ...]:
    tracker = pipeline.tracker
    live = sorted((c.call_id, json.dumps(c.snapshot().replay_dict(), sort_keys=True, default=str),
                   c.last_seen_at) for c in tracker.live_calls())
    return tuple(live), tracker.last_alive_at


@pytest.mark.parametrize("name", CAPTURES)
def test_dropping_inert_events_changes_nothing(name: str) -> None:
    events = capture_events(name)
    with_filter, ended = run(events, filtering=True)
    without, ended_all = run(events, filtering=False)
    assert state(with_filter) == state(without)
    with_filter.close_all()  # the PBX lost for good: live calls end at their last proof of life
    without.close_all()
    assert ended == ended_all
    assert without.events_inert == 0


def test_most_of_a_busy_pbx_is_inert() -> None:
    pipeline, _ = run(capture_events("burst_20_calls"), filtering=True)
    assert pipeline.events_inert / pipeline.events_in > 0.4


def test_a_raw_subscriber_keeps_the_events_it_names() -> None:
    seen: list[str] = []
    pipeline = CallPipeline()
    pipeline.subscribe_raw(lambda event: seen.append(event.event or ""), ("Newexten", "DeviceState*"))
    pipeline.feed_all(capture_events("queue_answered"))
    names = {e.event for e in capture_events("queue_answered")}
    assert {"Newexten", "DeviceStateChange"} <= set(seen)
    assert "Cdr" in names and "Cdr" not in seen  # inert, and nobody asked for it


@pytest.mark.parametrize("name", ["pbx_restart_part1", "burst_20_calls", "attended_transfer",
                                  "recording", "queue_abandoned"])
def test_a_follower_fed_what_the_owner_publishes_holds_the_owners_state(name: str) -> None:
    owner, follower = CallPipeline(), CallPipeline()
    owner_ended: list[dict[str, object]] = []
    follower_ended: list[dict[str, object]] = []
    for pipeline, out in ((owner, owner_ended), (follower, follower_ended)):
        pipeline.subscribe(lambda e, out=out: out.append(ended_row(e)) if isinstance(e, CallEnded) else None)
    published = 0
    for event in capture_events(name):
        # Through the stream's own encoding, as bridge.cluster_node publishes and reads.
        if owner.feed(event):
            follower.feed(unpack_payload(*pack_payload(event)))
            published += 1
        else:
            at, alive, channel = unpack_payload(*pack_payload(touch_of(event)))
            follower.touch((float(at), bool(alive), channel))
        assert state(follower) == state(owner)
    owner.close_all()
    follower.close_all()
    assert follower_ended == owner_ended and owner_ended
    assert published < owner.events_in
    # /metrics counts the same events on both (a trace stands for its event).
    assert (follower.events_in, follower.events_inert, follower.events_by_pbx) == (
        owner.events_in, owner.events_inert, owner.events_by_pbx)


def test_an_event_is_urgent_for_a_cluster_when_it_rang_an_operators_phone() -> None:
    rang = quiet = 0
    for name in CAPTURES:
        pipeline = CallPipeline()
        produced: list[DomainEvent] = []
        pipeline.subscribe(produced.append)
        for event in capture_events(name):
            before = len(produced)
            pipeline.feed(event)
            assert pipeline.last_rang == any(isinstance(e, CallRinging) for e in produced[before:]), event
            rang += pipeline.last_rang
            quiet += not pipeline.last_rang
    assert rang and quiet > rang


def test_the_owner_publishes_an_event_once_its_model_took_it_before_any_subscriber() -> None:
    pipeline = CallPipeline()
    order: list[tuple[str, object]] = []
    pipeline.subscribe(lambda e: order.append(("domain", type(e).__name__)))
    pipeline.subscribe_raw(lambda ev: order.append(("raw", ev.event)), ["QueueCallerJoin"])

    def taken(event: AmiMessage) -> None:  # what bridge.cluster_node publishes, and how urgently
        order.append(("taken", (event.event, pipeline.last_rang)))

    taken_count = inert = rings = 0
    for event in capture_events("queue_answered"):
        start = len(order)
        if not pipeline.feed(event, taken):
            inert += 1
            assert order[start:] == []  # an inert event: only its trace goes (PbxLink.on_touched)
            continue
        taken_count += 1
        assert order[start] == ("taken", (event.event, pipeline.last_rang))
        assert all(kind != "taken" for kind, _ in order[start + 1:])
        rings += ("domain", "CallRinging") in order[start:]
        if pipeline.last_rang:
            assert ("domain", "CallRinging") in order[start + 1:]
    assert taken_count and inert and rings
    assert ("raw", "QueueCallerJoin") in order
