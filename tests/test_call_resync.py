"""Resync after (re)connect: calls that started while we were away are attached, calls
that ended while we were away are closed; none is lost, none is duplicated."""

from __future__ import annotations

from bridge.ami.message import iter_capture
from bridge.calls.events import CallEnded
from bridge.calls.outage_rules import LATE_EVENT_MARGIN
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import FinishedCalls
from tests.capture_facts import capture_bytes

SNAPSHOT = "live_channels_snapshot"


def split_at_snapshot():
    """The capture's events before and after the CoreShowChannels reply, and the reply."""
    before, after, channels = [], [], []
    reached = False
    for msg in iter_capture(capture_bytes(SNAPSHOT)):
        if msg.event == "CoreShowChannel":
            channels.append(msg)
            reached = True
        elif msg.is_event and "ActionID" not in msg:
            (after if reached else before).append(msg)
    return before, after, channels


def pipeline_with_log() -> tuple[CallPipeline, FinishedCalls]:
    pipeline = CallPipeline()
    finished = FinishedCalls()
    pipeline.subscribe(finished)
    return pipeline, finished


def test_call_already_up_when_we_connect_is_attached_and_finished_once() -> None:
    before, after, channels = split_at_snapshot()
    assert len(channels) == 4
    pipeline, finished = pipeline_with_log()
    at = before[-1].timestamp
    pipeline.resync(channels, at)  # we connect mid-call: only the snapshot is known
    (call,) = pipeline.tracker.live_calls()
    assert call.call_id == "1795508402.68"
    assert call.attached_mid_call
    assert (call.caller_number, call.caller_name) == ("+74951230001", "Снимок Каналов")
    assert call.answered_by == "101"  # Anna's member channel shares the caller's bridge
    pipeline.feed_all(after)
    (done,) = finished.calls
    assert done.call_id == "1795508402.68"
    assert done.outcome == "answered" and done.answered_by == "101"
    assert done.attached_mid_call


def test_call_that_ended_while_we_were_away_is_closed_with_known_outcome() -> None:
    before, after, channels = split_at_snapshot()
    pipeline, finished = pipeline_with_log()
    pipeline.feed_all(before)  # saw it ring and be answered by Anna
    assert [c.answered_by for c in pipeline.tracker.live_calls()] == ["101"]
    pipeline.link_lost()  # the link drops right after the last event we saw ...
    pipeline.resync([], at=after[-1].timestamp)  # ... and on reconnect the PBX has no channels
    assert finished.calls == []  # held: a Hangup raised just before the list may follow it
    pipeline.note_alive(after[-1].timestamp + 3)  # the PBX's next word, well after the snapshot
    (done,) = finished.calls
    assert done.outcome == "answered" and done.ended_by == "pbx_lost"
    # It ends at the PBX's last proof of life, not at the resync: the outage is not talk.
    assert done.ended_at == before[-1].timestamp
    assert done.talk_seconds == round(before[-1].timestamp - done.answered_at, 1)
    pipeline.feed_all(after)  # late events of that call never resurrect it
    assert len(finished.calls) == 1
    assert pipeline.tracker.live_calls() == []


def test_unanswered_call_gone_while_away_is_incomplete() -> None:
    events = [m for m in iter_capture(capture_bytes("queue_answered")) if m.is_event]
    join = next(i for i, m in enumerate(events) if m.event == "QueueCallerJoin")
    pipeline, finished = pipeline_with_log()
    pipeline.feed_all(events[: join + 1])
    pipeline.resync([], at=events[join].timestamp + 30)
    pipeline.note_alive(events[join].timestamp + 33)
    (done,) = finished.calls
    assert done.outcome == "incomplete"  # we cannot know whether anybody answered


def test_restored_calls_from_the_log_are_continued_or_closed() -> None:
    before, after, channels = split_at_snapshot()
    first, first_log = pipeline_with_log()
    first.feed_all(before)
    (live_record,) = [c.snapshot() for c in first.tracker.live_calls()]

    # The bridge restarts while the call is still up: the log's live call is continued.
    second, second_log = pipeline_with_log()
    second.tracker.restore([live_record])
    second.resync(channels, at=before[-1].timestamp + 1)
    assert second_log.calls == []
    second.feed_all(after)
    (done,) = second_log.calls
    assert done.call_id == live_record.call_id
    assert done.rings[0].started_at == live_record.rings[0].started_at  # history kept
    assert done.outcome == "answered" and not done.attached_mid_call

    # The bridge restarts after the call ended: the log's live call is closed.
    third, third_log = pipeline_with_log()
    third.tracker.restore([live_record])
    third.resync([], at=after[-1].timestamp + 5)
    third.note_alive(after[-1].timestamp + 8)
    (closed,) = third_log.calls
    assert closed.call_id == live_record.call_id and closed.outcome == "answered"
    # The bridge was down: the call ends where the log last saw it, not at the restart.
    assert (closed.ended_at, closed.ended_by) == (live_record.last_seen_at, "pbx_lost")


def test_resync_events_reach_subscribers() -> None:
    _, _, channels = split_at_snapshot()
    pipeline = CallPipeline()
    seen = []
    pipeline.subscribe(seen.append)
    pipeline.resync(channels, at=1.0)
    pipeline.resync([], at=2.0)
    pipeline.touch((5.0, True, None))  # an inert event's trace, dated well after the snapshot
    assert [type(e).__name__ for e in seen][0] == "CallStarted"
    assert isinstance(seen[-1], CallEnded)


def test_a_hangup_that_follows_the_list_ends_the_call_as_a_hang_up_at_its_time() -> None:
    """Asterisk writes an action's answer as it runs and the events raised meanwhile after
    it: the Hangups of a call gone just before the CoreShowChannels list can follow the
    list. Such a call is held, not closed as lost, until the PBX speaks of a later moment."""
    events = [m for m in iter_capture(capture_bytes("queue_answered")) if m.is_event and "ActionID" not in m]
    first_hangup = next(i for i, m in enumerate(events) if m.event in ("SoftHangupRequest", "Hangup"))
    whole, whole_log = pipeline_with_log()
    whole.feed_all(events)
    (expected,) = whole_log.calls

    pipeline, finished = pipeline_with_log()
    pipeline.feed_all(events[:first_hangup])
    # The list: every channel already gone from Asterisk's cache, but their Hangups are
    # dated when its stasis thread queues them, a moment later.
    snapshot_at = events[first_hangup].timestamp - 0.001
    pipeline.resync([], at=snapshot_at)
    assert finished.calls == [] and len(pipeline.tracker.live_calls()) == 1
    pipeline.feed_all(events[first_hangup:])  # the Hangups, written after the list
    (done,) = finished.calls
    assert done.ended_by == "hangup" and done.ended_at == expected.ended_at
    assert done.replay_dict() == expected.replay_dict()
    pipeline.note_alive(snapshot_at + 3)  # settles nothing more: the call is logged once
    assert len(finished.calls) == 1


def test_a_held_call_whose_hangup_never_comes_ends_lost_at_the_first_later_event() -> None:
    events = [m for m in iter_capture(capture_bytes("queue_answered")) if m.is_event and "ActionID" not in m]
    connect = next(i for i, m in enumerate(events) if m.event == "AgentConnect")
    pipeline, finished = pipeline_with_log()
    pipeline.feed_all(events[:connect + 1])
    pipeline.link_lost()
    snapshot_at = events[connect].timestamp + 20
    pipeline.resync([], at=snapshot_at)
    # Events dated just after the snapshot may be the late ones (Asterisk dates a Hangup when
    # its stasis thread queues it, after the channel left the list): they settle nothing.
    pipeline.note_alive(snapshot_at + LATE_EVENT_MARGIN)
    assert finished.calls == []
    pipeline.touch((snapshot_at + LATE_EVENT_MARGIN + 0.5, True, None))  # an inert event, later
    (done,) = finished.calls
    assert (done.ended_by, done.ended_at) == ("pbx_lost", events[connect].timestamp)
