"""A PBX that restarts, crashes or drops the link: every call once, nothing invented.
Proven on pbx_restart_part1/part2 (two connections: the PBX was killed between them)."""

from __future__ import annotations

import pytest

from bridge.ami.message import AmiMessage
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import FinishedCalls, replay_bytes, replay_connections
from tests.capture_facts import capture_bytes, capture_events

PART1, PART2 = "pbx_restart_part1", "pbx_restart_part2"


def by_name(calls) -> dict:
    return {c.caller_name: c for c in calls}


def test_restart_logs_each_call_once_and_the_cut_call_without_the_outage() -> None:
    calls = replay_bytes(capture_bytes(PART1), capture_bytes(PART2))
    assert [c.caller_name for c in calls] == ["Giulia Rossi", "Marco Bianchi", "Sofia Esposito"]
    giulia, marco, sofia = calls
    part1 = capture_events(PART1)
    connect = next(e for e in part1 if e.event == "AgentConnect")
    # Giulia: answered by Anna, cut by the crash; ends at the PBX's last event (2.76 s in),
    # not when it came back (4.2 s after AgentConnect): the outage is not talk.
    assert (giulia.outcome, giulia.answered_by, giulia.ended_by) == ("answered", "101", "pbx_lost")
    assert giulia.ended_at == max(e.timestamp for e in part1 if "Timestamp" in e)
    assert 0 < giulia.talk_seconds <= 0.8
    assert giulia.answered_at == pytest.approx(connect.timestamp, abs=0.01)
    # Marco: a new call on the very same channel names.
    assert (marco.caller_number, marco.outcome, marco.answered_by) == ("+390298765432", "answered", "101")
    assert (marco.wait_seconds, marco.talk_seconds, marco.ended_by) == (2.0, 4.5, "hangup")
    assert (sofia.outcome, sofia.outcome_reason, sofia.rung) == ("abandoned", "caller_hangup", ["102", "101"])
    assert sofia.wait_seconds == 4.5


def test_restart_seen_without_fully_booted_still_keeps_the_new_calls() -> None:
    """A stream that lost FullyBooted: a Newchannel under a known name is a new channel."""
    part2 = [e for e in capture_events(PART2) if e.event != "FullyBooted"]
    calls = replay_connections([capture_events(PART1), part2])
    names = by_name(calls)
    assert set(names) == {"Giulia Rossi", "Marco Bianchi", "Sofia Esposito"}
    assert names["Giulia Rossi"].ended_by == "pbx_lost"
    assert names["Giulia Rossi"].talk_seconds <= 0.8
    assert names["Marco Bianchi"].talk_seconds == 4.5


def test_a_restart_clears_the_model_and_the_cut_call_is_closed_at_once() -> None:
    pipeline = CallPipeline()
    finished = FinishedCalls()
    pipeline.subscribe(finished)
    pipeline.feed_all(capture_events(PART1))
    assert [c.caller_name for c in pipeline.tracker.live_calls()] == ["Giulia Rossi"]
    pipeline.link_lost()
    part2 = capture_events(PART2)
    auth = next(i for i, e in enumerate(part2) if e.event == "SuccessfulAuth")
    pipeline.feed_all(part2[: auth + 1])  # FullyBooted (Uptime 0), then a dated event
    assert pipeline.tracker.live_calls() == []
    assert [c.caller_name for c in finished.calls] == ["Giulia Rossi"]
    assert pipeline.tracker.booted_at == pytest.approx(part2[auth].timestamp)


def test_ping_replies_prove_the_pbx_alive_and_bound_the_cut_call() -> None:
    part1 = capture_events(PART1)
    last = max(e.timestamp for e in part1 if "Timestamp" in e)
    pipeline = CallPipeline()
    finished = FinishedCalls()
    pipeline.subscribe(finished)
    pipeline.feed_all(part1)
    pipeline.note_alive(last + 3.0)  # a Ping answered 3 s after the last event
    pipeline.link_lost()
    pipeline.note_alive(last + 60.0)  # the new connection's replies must not count
    pipeline.resync([], at=last + 61.0)
    pipeline.note_alive(last + 64.0)  # the first word well after the snapshot settles the held call
    (giulia,) = finished.calls
    assert giulia.ended_at == last + 3.0
    assert giulia.ended_by == "pbx_lost"


def test_restored_call_older_than_the_boot_is_closed_where_the_log_last_saw_it() -> None:
    first = CallPipeline()
    first.feed_all(capture_events(PART1))
    (record,) = [c.snapshot() for c in first.tracker.live_calls()]

    restarted = CallPipeline()  # the bridge restarts; the PBX restarted meanwhile too
    finished = FinishedCalls()
    restarted.subscribe(finished)
    restarted.tracker.restore([record])
    restarted.feed_all(capture_events(PART2))
    giulia = by_name(finished.calls)["Giulia Rossi"]
    assert (giulia.ended_at, giulia.ended_by) == (record.last_seen_at, "pbx_lost")
    assert len(finished.calls) == 3


def test_a_bridge_reconnect_to_the_same_boot_keeps_its_calls() -> None:
    """FullyBooted after a mere link drop (the PBX kept running): nothing is closed."""
    events = capture_events("queue_answered")
    connect = next(i for i, e in enumerate(events) if e.event == "AgentConnect")
    pipeline = CallPipeline()
    pipeline.feed_all(events[: connect + 1])
    first_boot = pipeline.tracker.booted_at
    pipeline.link_lost()
    at = events[connect].timestamp
    uptime = at - first_boot
    pipeline.feed(AmiMessage.from_dict({"Event": "FullyBooted", "Uptime": f"{uptime + 5:.0f}"}))
    pipeline.feed(AmiMessage.from_dict({"Event": "SuccessfulAuth", "Timestamp": f"{at + 5:.6f}"}))
    assert [c.answered_by for c in pipeline.tracker.live_calls()] == ["101"]
