"""A node taking a PBX over (bridge.cluster_node.PbxSeat) with what it learnt following the
last owner's stream: a call its model saw end, which the dead owner never wrote ended, is
written as the model saw it (not revived and ended again at the resync, `pbx_lost`); a
call its model never saw is restored from the call log; the PBX's clock comes from the
stream, so the takeover's resync is dated in it. No Redis, no PBX: their parts are stubs."""

from __future__ import annotations

from typing import Any

import pytest

import bridge.cluster_node as cluster_node
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import CallRecord
from bridge.calls.replay import capture_events
from bridge.calls.tracker import CallTracker
from bridge.cluster_node import ClusterNode
from bridge.pbx_link import PbxLink
from bridge.settings import PbxSettings
from cluster.settings import ClusterSettings
from cluster.stream_entries import StreamEntry
from tests.capture_facts import capture_bytes


class Stub:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.published: list[tuple[str, Any]] = []
        self.urgent: list[bool] = []  # per published entry: to go at once, or may wait

    async def start(self) -> None: ...

    async def stop(self, *args: Any, **kwargs: Any) -> None: ...

    def publish(self, kind: str, payload: Any, *, epoch: int, urgent: bool = True) -> int:
        self.published.append((kind, payload))
        self.urgent.append(urgent)
        return len(self.published)


class Log:
    """The call log as the dead owner left it: `live` were written live, never ended."""

    def __init__(self, live: list[CallRecord]) -> None:
        self.live = live

    async def live_calls(self, pbx: str | None = None) -> list[CallRecord]:
        return [r for r in self.live if pbx is None or r.pbx == pbx]


class Writer:
    def __init__(self) -> None:
        self.submitted: list[CallRecord] = []
        self.accepts = lambda pbx: True
        self.guard = None

    def submit(self, record: CallRecord) -> None:
        if self.accepts(record.pbx):
            self.submitted.append(record)


def events(name: str) -> list[Any]:
    return [m for m in capture_events(capture_bytes(name)) if m.is_event and "ActionID" not in m]


def live_snapshot(name: str, upto_event: str) -> CallRecord:
    """The call as an owner wrote it while live (after `upto_event`)."""
    tracker, evs = CallTracker(), events(name)
    for ev in evs[: next(i for i, m in enumerate(evs) if m.event == upto_event) + 1]:
        tracker.handle(ev)
    (call,) = tracker.live_calls()
    return call.snapshot()


def seat_of(monkeypatch: pytest.MonkeyPatch, log: Log) -> tuple[Any, CallPipeline, Writer]:
    monkeypatch.setattr(cluster_node, "PbxStreamPublisher", Stub)
    monkeypatch.setattr(cluster_node, "ActionServer", Stub)
    pipeline = CallPipeline(trackers=[CallTracker(pbx="main")])
    link = PbxLink(PbxSettings(id="main"), pipeline)

    async def no_pbx() -> None: ...

    link.start = no_pbx  # type: ignore[method-assign]
    writer = Writer()
    node = ClusterNode(ClusterSettings(node_id="n2", redis_url="redis://127.0.0.1:1/0"),
                       "postgresql+asyncpg://u:p@127.0.0.1:1/db", pipeline, {"main": link},
                       log, writer)  # type: ignore[arg-type]
    return node.seats["main"], pipeline, writer


def follow(seat: Any, evs: list[Any]) -> None:
    for seq, ev in enumerate(evs, 1):
        seat._on_entry(StreamEntry(f"1-{seq}", "event", 1, seq, "n1", ev))


async def test_a_call_the_follower_saw_end_is_written_as_it_ended_not_revived(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log([live_snapshot("queue_answered", "AgentConnect")])  # the dead owner's last write
    seat, pipeline, writer = seat_of(monkeypatch, log)
    evs = events("queue_answered")
    follow(seat, evs)  # the whole call, hang-up included, came through the stream
    assert pipeline.live_calls() == [] and writer.submitted == []  # not ours to write yet

    await seat._acquired(2)

    assert pipeline.live_calls() == []  # not revived (a resync would end it "pbx_lost")
    (written,) = writer.submitted
    assert (written.call_id, written.outcome, written.ended_by, written.talk_seconds) == (
        "1795508277.0", "answered", "hangup", 4.4)
    # The PBX's clock came with the stream: the takeover's resync is dated in it.
    last_stamp = max(m.timestamp for m in evs if "Timestamp" in m)
    assert abs(seat.link.pbx_now() - last_stamp) < 60


async def test_a_call_the_follower_never_saw_is_restored_for_the_resync(
        monkeypatch: pytest.MonkeyPatch) -> None:
    record = live_snapshot("queue_answered", "AgentConnect")
    seat, pipeline, writer = seat_of(monkeypatch, Log([record]))

    await seat._acquired(2)

    assert [c.snapshot().call_id for c in pipeline.live_calls()] == [record.call_id]
    assert writer.submitted == []
