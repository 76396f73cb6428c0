"""Every call-state rule, proven on the real Asterisk captures in tests/fixtures."""

from __future__ import annotations

import json

import pytest

from bridge.calls.events import CallAnswered, CallEnded, CallRingEnded, CallRinging, CallStarted
from bridge.calls.replay import replay_bytes, replay_events, to_json_line
from bridge.calls.tracker import CallTracker
from tests.capture_facts import CAPTURES, FIXTURES, capture_bytes, capture_events, events_named

OUTCOMES = {"answered", "abandoned", "unanswered", "incomplete"}


def calls_of(name: str) -> list[dict]:
    return [c.replay_dict() for c in replay_bytes(capture_bytes(name))]


def only(name: str) -> dict:
    (call,) = calls_of(name)
    return call


@pytest.mark.parametrize("name", CAPTURES)
def test_capture_produces_the_reviewed_call_log(name: str) -> None:
    """Golden files in fixtures/expected were reviewed line by line against the
    captures' README; any change in the model's output shows up here."""
    expected = (FIXTURES / "expected" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    got = [to_json_line(c) for c in replay_bytes(capture_bytes(name))]
    assert got == expected


def test_queue_answered_by_anna() -> None:
    call = only("queue_answered")
    assert call["call_id"] == "1795508277.0"
    assert (call["caller_number"], call["caller_name"]) == ("+74951234567", "Иван Петров")
    assert (call["queue"], call["dialed"]) == ("support", None)
    assert (call["answered_by"], call["rung"], call["outcome"]) == ("101", ["101"], "answered")
    # Asterisk's ANSWEREDTIME_MS for this call is 4400.
    assert call["talk_seconds"] == 4.4
    assert call["wait_seconds"] == 2.0


def test_queue_abandoned_after_busy_rounds() -> None:
    call = only("queue_abandoned")
    assert call["caller_number"] == "84957654321"
    assert call["caller_name"] is None  # `<unknown>` is no name
    assert call["rung"] == ["102", "101"]  # 14 busy rounds, each phone listed once
    assert (call["outcome"], call["answered_by"], call["talk_seconds"]) == ("abandoned", None, 0.0)


def test_ringall_rings_both_and_denis_answers() -> None:
    call = only("ringall_two_agents")
    assert (call["caller_name"], call["queue"]) == ("Олена Коваль", "sales")
    assert call["rung"] == ["103", "104"]
    assert call["answered_by"] == "104"


def test_ringall_domain_events_withdraw_the_other_ring() -> None:
    tracker = CallTracker()
    produced = [d for ev in capture_events("ringall_two_agents") for d in tracker.handle(ev)]
    kinds = [(type(d).__name__, getattr(d, "operator", None)) for d in produced
             if isinstance(d, (CallStarted, CallRinging, CallAnswered, CallRingEnded, CallEnded))]
    assert kinds == [
        ("CallStarted", None),
        ("CallRinging", "103"),
        ("CallRinging", "104"),
        ("CallAnswered", "104"),
        ("CallRingEnded", "103"),
        ("CallEnded", None),
    ]
    ring_end = next(d for d in produced if isinstance(d, CallRingEnded))
    assert ring_end.result == "CANCEL"


def test_direct_call_without_queue() -> None:
    call = only("direct_call")
    assert (call["queue"], call["dialed"], call["answered_by"]) == (None, "102", "102")
    assert call["caller_name"] == "ООО Ромашка"
    assert call["internal"] is False


def test_blind_transfer_from_anna_to_103() -> None:
    call = only("blind_transfer")
    assert call["answered_by"] == "101"
    assert call["rung"] == ["101", "103"]
    assert call["transfers"] == [{"kind": "blind", "from": "101", "to": "103"}]


def test_attended_transfer_from_boris_to_103() -> None:
    call = only("attended_transfer")
    assert call["answered_by"] == "102"
    assert call["rung"] == ["102", "103"]
    assert call["transfers"] == [{"kind": "attended", "from": "102", "to": "103"}]
    assert call["outcome"] == "answered"


def test_recording_file_is_linked() -> None:
    assert only("recording")["recording"] == "/var/spool/asterisk/monitor/call-1795508383.64.wav"
    assert only("recording_mute")["recording"] == "/var/spool/asterisk/monitor/call-1795509082.8.wav"


def test_recording_stops_with_explicit_stop_or_hangup() -> None:
    (explicit,) = replay_bytes(capture_bytes("recording"))
    (muted,) = replay_bytes(capture_bytes("recording_mute"))
    stop = events_named("recording", "MixMonitorStop")[0].timestamp
    assert explicit.recordings[0].stopped_at == stop
    assert explicit.recordings[0].operator == "102"
    # No MixMonitorStop: the recording ends when its channel hangs up.
    assert muted.recordings[0].stopped_at is not None
    assert muted.recordings[0].stopped_at <= muted.ended_at


def test_supervisor_spy_sessions_are_internal_calls() -> None:
    calls = calls_of("supervisor_whisper_barge")
    assert [c["caller_number"] for c in calls] == ["+74951230010", "202", "203"]
    assert [c["internal"] for c in calls] == [False, True, True]
    assert calls[0]["answered_by"] == "101"


def test_burst_two_answered_eighteen_abandoned() -> None:
    calls = calls_of("burst_20_calls")
    assert len(calls) == 20
    assert sorted(c["caller_name"] for c in calls) == sorted(f"Caller {i}" for i in range(20))
    answered = [c for c in calls if c["outcome"] == "answered"]
    assert sorted(c["answered_by"] for c in answered) == ["101", "102"]
    assert sum(c["outcome"] == "abandoned" for c in calls) == 18


@pytest.mark.parametrize("name", CAPTURES)
def test_durations_agree_with_asterisk_accounting(name: str) -> None:
    calls = {c.call_id: c for c in replay_bytes(capture_bytes(name))}
    for ev in events_named(name, "AgentConnect"):
        call = calls[ev["Linkedid"]]
        assert abs(call.wait_seconds - int(ev["HoldTime"])) <= 1.5
    for ev in events_named(name, "AgentComplete"):
        call = calls[ev["Linkedid"]]
        if ev["Reason"] != "transfer":  # after a transfer the talk goes on with someone else
            assert abs(call.talk_seconds - int(ev["TalkTime"])) <= 1.5
    # app_queue sends QueueCallerAbandon on a queue timeout too; QUEUESTATUS tells which.
    gave_up = {ev["Linkedid"]: ev["Value"] for ev in events_named(name, "VarSet")
               if ev.get("Variable") == "QUEUESTATUS"}
    for ev in events_named(name, "QueueCallerAbandon"):
        call = calls[ev["Linkedid"]]
        if ev["Linkedid"] in gave_up:
            assert (call.outcome, call.outcome_reason) == ("unanswered", gave_up[ev["Linkedid"]].lower())
        else:
            assert (call.outcome, call.outcome_reason) == ("abandoned", "caller_hangup")
        assert abs(call.wait_seconds - int(ev["HoldTime"])) <= 1.5
    for ev in events_named(name, "Cdr"):
        if ev["UniqueID"] in calls:  # the CDR of the call's first channel
            call = calls[ev["UniqueID"]]
            assert abs(call.ended_at - call.entered_at - int(ev["Duration"])) <= 1.5


@pytest.mark.parametrize("name", CAPTURES)
def test_attaching_mid_call_never_crashes_and_stays_consistent(name: str) -> None:
    events = capture_events(name)
    full = {c.call_id: c for c in replay_bytes(capture_bytes(name))}
    for k in range(len(events)):
        calls = replay_events(events[k:])
        ids = [c.call_id for c in calls]
        assert len(ids) == len(set(ids)), f"k={k}: a call was logged twice"
        for call in calls:
            assert call.outcome in OUTCOMES
            assert call.ended_at is not None and call.ended_at >= call.entered_at
            assert call.wait_seconds >= 0 and call.talk_seconds >= 0
            assert call.call_id in full, f"k={k}: invented call {call.call_id}"
            seen_start = any(
                e.event == "Newchannel" and e.get("Uniqueid") == call.call_id for e in events[k:]
            )
            if not seen_start:
                assert call.attached_mid_call, f"k={k}: {call.call_id} not marked attached"
            if call.outcome not in ("incomplete",) and not call.attached_mid_call:
                assert call.replay_dict() == full[call.call_id].replay_dict()


def test_replay_output_keys_are_exactly_the_documented_ones() -> None:
    line = json.loads(to_json_line(replay_bytes(capture_bytes("queue_answered"))[0]))
    assert list(line) == [
        "call_id", "pbx", "caller_number", "caller_name", "queue", "dialed", "answered_by", "rung",
        "outcome", "outcome_reason", "internal", "wait_seconds", "talk_seconds", "transfers",
        "recording", "ended_by", "started_at", "answered_at", "ended_at",
    ]
    # The times are ISO 8601 in UTC: queue_answered's call entered at 1795508277.41 (epoch).
    assert line["started_at"].endswith("Z") and line["started_at"].startswith("2026-11-24T")
