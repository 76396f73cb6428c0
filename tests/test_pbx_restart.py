"""A PBX that dies mid-call and restarts, through the real bridge: the simulator serves
pbx_restart_part1.ami to the first connection, closes it (the PBX died), refuses
connections for a while, then serves pbx_restart_part2.ami to the next one.

The call log must hold the three calls the captures' README states: Giulia's, cut by the
crash, exactly once, answered by 101, ended at the PBX's last proof of life (never the
outage counted as talk) and marked `pbx_lost`; Marco's and Sofia's after the restart,
on the very same channel names, as new calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.ami.message import AmiMessage
from bridge.calls.record import CallRecord
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES, capture_events

RESTART = [FIXTURES / "pbx_restart_part1.ami", FIXTURES / "pbx_restart_part2.ami"]
OUTAGE = 1.5  # wall seconds the PBX refuses connections: time a wrong model would count as talk
GIULIA, MARCO, SOFIA = "+390612345678", "+390298765432", "+393331234567"


def settings_for(host: str, port: int, db: Path):
    return load_settings(database_url=f"sqlite+aiosqlite:///{db}",
                         ami={"host": host, "port": port, "secret": "callbridge", "ping_interval": 1.0,
                              "ping_timeout": 1.0, "backoff_max": 0.5},
                         http={"port": 0})


def unsolicited(name: str) -> list[AmiMessage]:
    return [m for m in capture_events(name) if "ActionID" not in m and m.event != "FullyBooted"]


def proven_talk() -> float:
    """What part 1's events prove of Giulia's talk: AgentConnect to the last Timestamp."""
    events = unsolicited("pbx_restart_part1")
    connect = next(m for m in events if m.event == "AgentConnect")
    return max(m.timestamp for m in events if "Timestamp" in m) - connect.timestamp


async def settled_log(service: BridgeService, limit: float = 30.0) -> list[CallRecord]:
    """The call log once three calls have ended and none is live (or what it held at the limit)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        await service.writer.flush()
        calls = await service.store.export()
        if len(calls) >= 3 and all(c.ended_at is not None for c in calls):
            return calls
        if loop.time() > deadline:
            return calls
        await asyncio.sleep(0.05)


async def test_pbx_restart_logs_every_call_once_and_no_outage_as_talk(tmp_path: Path) -> None:
    part1, part2 = unsolicited("pbx_restart_part1"), unsolicited("pbx_restart_part2")
    async with AmiSimulator(RESTART, speed=None, per_connection=True, downtime=OUTAGE) as sim:
        service = BridgeService(settings_for(*sim.address, tmp_path / "log.sqlite3"))
        await service.start()
        try:
            await sim.wait_for_events(len(part1) + len(part2), timeout=30.0)
            calls = await settled_log(service)
            live_in_model = service.pipeline.tracker.live_calls()
        finally:
            await service.stop()
    assert sim.logins >= 2 and sim.runs.run == 1  # the bridge saw both PBX runs
    summary = [(c.caller_number, c.outcome, c.ended_at is not None) for c in calls]
    assert len(calls) == 3, f"expected Giulia, Marco and Sofia once each, logged: {summary}"
    assert live_in_model == [], "a call stayed live after the restart"
    by_caller = {c.caller_number: c for c in calls}
    assert set(by_caller) == {GIULIA, MARCO, SOFIA}, summary

    giulia, marco, sofia = by_caller[GIULIA], by_caller[MARCO], by_caller[SOFIA]
    assert (giulia.caller_name, giulia.queue, giulia.rung) == ("Giulia Rossi", "support", ["101"])
    assert (giulia.outcome, giulia.answered_by) == ("answered", "101")
    assert abs(giulia.wait_seconds - 2.0) <= 0.2
    proven = proven_talk()
    assert 0.7 <= proven <= 0.8
    # Ended at the last proof of life: not before it, and never the outage (1.5 s + reconnect).
    assert proven - 0.15 <= giulia.talk_seconds <= proven + 0.15, giulia.talk_seconds
    assert giulia.ended_by == "pbx_lost"

    assert marco.call_id != giulia.call_id  # same channel names, a new call
    assert (marco.caller_name, marco.outcome, marco.answered_by, marco.rung) == (
        "Marco Bianchi", "answered", "101", ["101"])
    assert abs(marco.wait_seconds - 2.0) <= 0.2 and abs(marco.talk_seconds - 4.5) <= 0.2
    assert marco.ended_by == "hangup"

    assert (sofia.caller_name, sofia.outcome, sofia.answered_by) == ("Sofia Esposito", "abandoned", None)
    assert sofia.rung == ["102", "101"]
    assert abs(sofia.wait_seconds - 4.5) <= 0.2 and sofia.talk_seconds == 0
    assert sofia.ended_by == "hangup"
    assert all(c.transfers == [] for c in calls)
