"""A cluster's owner working through a backlog of AMI events publishes each as its model takes
it and runs its own subscribers after (bridge.calls.pipeline's `holding`, bridge.pbx_link):
the subscribers must see exactly what they would have seen, in the same order, and the
backlog's rings must be published before any subscriber's work on them."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from bridge.calls.events import CallRinging, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.tracker import CallTracker
from bridge.pbx_link import HELD_MAX, PbxLink
from bridge.settings import PbxSettings
from tests.capture_facts import CAPTURES, capture_events


def watched(pipeline: CallPipeline) -> list[tuple[Any, ...]]:
    """What the subscribers see, in order: domain events (with the AMI event being fed then)
    and the raw events."""
    seen: list[tuple[Any, ...]] = []

    def on_domain(event: DomainEvent) -> None:
        current = pipeline.current.pairs if pipeline.current is not None else None
        seen.append((type(event).__name__, event.call_id,
                     json.dumps(event.call.replay_dict(), sort_keys=True, default=str), current))

    pipeline.subscribe(on_domain)
    pipeline.subscribe_raw(lambda ev: seen.append(("raw", ev.pairs)), ["Queue*", "Agent*"])
    return seen


@pytest.mark.parametrize("name", CAPTURES)
def test_subscribers_held_back_see_what_they_would_have_seen_in_order(name: str) -> None:
    plain, held = CallPipeline(), CallPipeline()
    plain_seen, held_seen = watched(plain), watched(held)
    rng = random.Random(name)
    holds = 0
    for event in capture_events(name):
        plain.feed(event)
        held.holding = rng.random() < 0.7  # runs of held events, as backlogs come and go
        held.feed(event)
        holds += bool(held.held)
        held.holding = False
        if rng.random() < 0.1:
            held.release()
    plain.close_all()
    held.close_all()  # releases what is still held first
    assert held.held == [] and holds
    assert held_seen == plain_seen and plain_seen


def test_the_backlogs_rings_are_published_before_any_subscriber_runs_and_released_after() -> None:
    async def scenario() -> None:
        pipeline = CallPipeline(trackers=[CallTracker(pbx="main")])
        link = PbxLink(PbxSettings(id="main"), pipeline)
        order: list[tuple[str, str]] = []
        link.on_fed = lambda ev: order.append(("published", ev.event or ""))
        pipeline.subscribe(lambda e: order.append(("subscriber", type(e).__name__)))
        link.client._queue.put_nowait("more read behind")  # a backlog: the consumer is not through
        events = [e for e in capture_events("queue_answered") if e.is_event]
        for event in events:
            event.pbx = "main"
            link._feed(event)
        published = sum(kind == "published" for kind, _ in order)
        assert published and order == [("published", e) for _, e in order]  # no subscriber yet
        await asyncio.sleep(0)
        assert pipeline.held  # still a backlog: still held
        link.client._queue.get_nowait()  # the backlog is through
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert pipeline.held == []
        subscribers = [name for kind, name in order if kind == "subscriber"]
        assert CallRinging.__name__ in subscribers and order[published:] == [
            ("subscriber", name) for name in subscribers]

        # Without a backlog nothing is held: each event's subscribers run at once.
        order.clear()
        for event in [e for e in capture_events("ringall_two_agents") if e.is_event]:
            event.pbx = "main"
            link._feed(event)
            assert pipeline.held == []
        assert ("subscriber", CallRinging.__name__) in order

    asyncio.run(scenario())


def test_an_owner_holds_at_most_held_max_events_then_catches_up() -> None:
    async def scenario() -> None:
        pipeline = CallPipeline(trackers=[CallTracker(pbx="main")])
        link = PbxLink(PbxSettings(id="main"), pipeline)
        link.on_fed = lambda ev: None
        ran: list[str] = []
        pipeline.subscribe_raw(lambda ev: ran.append(ev.event or ""))  # every event counts
        link.client._queue.put_nowait("a backlog that never drains")
        events = [e for e in capture_events("burst_20_calls") if e.is_event]
        fed = 0
        while fed <= HELD_MAX:
            for event in events:
                event.pbx = "main"
                link._feed(event)
                fed += 1
        assert len(pipeline.held) <= HELD_MAX and len(ran) + len(pipeline.held) == fed and ran

    asyncio.run(scenario())


def test_nothing_held_means_no_more_release_rounds_even_with_a_backlog_left() -> None:
    async def scenario() -> None:
        pipeline = CallPipeline(trackers=[CallTracker(pbx="main")])
        link = PbxLink(PbxSettings(id="main"), pipeline)
        link.on_fed = lambda ev: None
        link.client._queue.put_nowait("read, never handled: the link stopped")
        for event in [e for e in capture_events("queue_answered") if e.is_event]:
            event.pbx = "main"
            link._feed(event)
        assert pipeline.held
        pipeline.release()  # as PbxLink.stop and stand_by do
        await asyncio.sleep(0)
        assert not link._release_due  # the scheduled round ended: no call_soon every turn

    asyncio.run(scenario())
