"""Resyncs while calls hang up, on the real Asterisk: every call must be logged once, as the
hang-up it was, with Asterisk's times. Each hang-up is sent as a resync starts. A Hangup can
follow a CoreShowChannels list that no longer has its channel (Asterisk drops the channel
from its cache before its stasis thread queues the event); that window is short, so a run
rarely hits it (tests/test_call_resync.py plays it exactly). What this holds every run to:
a resync never ends, splits or duplicates a call that is hanging up around it."""

from __future__ import annotations

import asyncio

from tests.live.ami_driver import AmiDriver
from tests.live.checks import near
from tests.live.lab import LiveBridge
from tests.live.scenarios import TIMESTAMP_TOLERANCE, call_direct

OPERATORS = ("101", "102", "103", "104")


async def test_calls_hanging_up_during_resyncs_are_logged_as_hang_ups_at_their_time(
        ami: AmiDriver, bridge: LiveBridge) -> None:
    assert bridge.service is not None
    link = bridge.service.main
    # Twelve direct calls, answered; then each caller hangs up while a resync runs: the test
    # sends the Hangup and asks for the resync at once, so every hang-up races a snapshot
    # whatever the machine's pace (a count of resyncs in a fixed talk time was a timing bet).
    calls = await asyncio.gather(*(
        call_direct(ami, OPERATORS[i % 4], f"+7499700{i:04d}", f"Resync {i}", talk=120)
        for i in range(12)))
    await asyncio.gather(*(c.wait("DialEnd", DialStatus="ANSWER") for c in calls))
    for call in calls:
        caller = call.first("Newchannel", Channel=lambda name: name.endswith(";1"))["Channel"]
        synced, _ = await asyncio.gather(link.resync(), ami.ok("Hangup", Channel=caller))
        assert synced, "the bridge's AMI session ended mid-test"
    await asyncio.gather(*(c.ended(limit=30) for c in calls))

    for call in calls:
        line = await bridge.logged(call.linkedid)
        answered = call.first("DialEnd", DialStatus="ANSWER").timestamp
        assert (line["outcome"], line["ended_by"], line["caller_number"]) == (
            "answered", "hangup", call.number)
        near(line["talk_seconds"], call.ended_at - answered, TIMESTAMP_TOLERANCE,
             f"talk of {call.linkedid} vs DialEnd ANSWER -> last Hangup")
