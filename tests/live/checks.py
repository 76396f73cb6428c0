"""Assertions shared by the live tests: the bridge's numbers against what Asterisk stated."""

from __future__ import annotations

from typing import Any

from tests.live.scenarios import STATED_TOLERANCE, TIMESTAMP_TOLERANCE, Call, ext_of


def near(value: float, expected: float, tolerance: float, what: str) -> None:
    assert abs(value - expected) <= tolerance, (
        f"{what}: bridge says {value}, Asterisk {expected} (±{tolerance})")


def check_answered_queue_call(logged: dict[str, Any], call: Call) -> None:
    """wait/talk against AgentConnect HoldTime / AgentComplete TalkTime and the event Timestamps."""
    connect = call.first("AgentConnect")
    # Asterisk states the talk time in AgentComplete, but the lab PBX now and then sends none
    # for a call (seen after the member's Local pair hung up first); the event Timestamps
    # below are checked either way.
    completes = call.all("AgentComplete")
    assert logged["answered_by"] == ext_of(connect["Interface"])
    assert (logged["outcome"], logged["outcome_reason"], logged["ended_by"]) == ("answered", None, "hangup")
    near(logged["wait_seconds"], float(connect["HoldTime"]), STATED_TOLERANCE,
         "wait vs AgentConnect HoldTime")
    near(logged["wait_seconds"], connect.timestamp - call.entered_at, TIMESTAMP_TOLERANCE,
         "wait vs the first Newchannel -> AgentConnect Timestamps")
    if completes:
        near(logged["talk_seconds"], float(completes[0]["TalkTime"]), STATED_TOLERANCE,
             "talk vs AgentComplete TalkTime")
    near(logged["talk_seconds"], call.ended_at - connect.timestamp, TIMESTAMP_TOLERANCE,
         "talk vs AgentConnect -> last Hangup Timestamps")


def check_abandoned(logged: dict[str, Any], call: Call) -> None:
    abandon = call.first("QueueCallerAbandon")
    assert (logged["outcome"], logged["outcome_reason"], logged["answered_by"], logged["talk_seconds"],
            logged["ended_by"]) == ("abandoned", "caller_hangup", None, 0.0, "hangup")
    near(logged["wait_seconds"], float(abandon["HoldTime"]), STATED_TOLERANCE,
         "wait vs QueueCallerAbandon HoldTime")
    near(logged["wait_seconds"], call.ended_at - call.entered_at, TIMESTAMP_TOLERANCE,
         "wait vs first Newchannel -> last Hangup")
