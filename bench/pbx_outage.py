"""PBX outages through the real bridge (default AMI settings, call log on SQLite) against
the AMI simulator, measured in one run:

1. **PBX restart**: pbx_restart_part1.ami to the first connection, the PBX dies (the
   simulator closes it and refuses connections for `--outage` s), pbx_restart_part2.ami to
   the next one. Prints the calls logged / the calls there were (the captures' README: 3),
   the outage seconds counted as talk (the cut call's talk beyond what part 1's events
   prove; must be 0) and the reconnect time once the PBX is back (target < 1 s).
2. **Link drop**: queue_answered.ami; the simulator closes the socket right after
   AgentConnect and refuses connections for `--outage` s while the PBX lives on, then
   accepts again and the replay resumes. Talk must be the offline replay's, to the 0.1 s.

    python bench/pbx_outage.py [--outage 8] [--speed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bridge.ami.message import AmiMessage, iter_capture
from bridge.calls.record import CallRecord
from bridge.calls.replay import replay_bytes
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator, is_unsolicited

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
RESTART = [FIXTURES / "pbx_restart_part1.ami", FIXTURES / "pbx_restart_part2.ami"]
RESTART_CALLS = 3  # Giulia (cut by the crash), Marco and Sofia: the captures' README


@dataclass
class Result:
    scenario: str
    logged: int
    expected: int
    outage_as_talk: float  # seconds of talk beyond what the PBX's events prove
    reconnect: float | None  # seconds from the PBX accepting again to the bridge's login
    logins: int


def unsolicited(path: Path) -> list[AmiMessage]:
    return [m for m in iter_capture(path.read_bytes()) if is_unsolicited(m)]


async def settled(service: BridgeService, count: int, limit: float) -> list[CallRecord]:
    """The log once `count` calls have ended and none is live, or whatever it holds at `limit`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        await service.writer.flush()
        calls = await service.store.export()
        if (len(calls) >= count and all(c.ended_at is not None for c in calls)) or loop.time() > deadline:
            return calls
        await asyncio.sleep(0.05)


def reconnect_time(sim: AmiSimulator) -> float | None:
    if sim.up_at is None:
        return None
    after = [t for t in sim.login_times if t >= sim.up_at]
    return after[0] - sim.up_at if after else None


async def with_bridge(sim: AmiSimulator, db: Path) -> BridgeService:
    # The shipped AMI defaults (ping, back-off, probing): reconnect time is theirs.
    settings = load_settings(database_url=f"sqlite+aiosqlite:///{db}",
                             ami={"host": sim.host, "port": sim.port, "secret": "callbridge"},
                             http={"port": 0})
    service = BridgeService(settings)
    await service.start()
    return service


async def pbx_restart(outage: float, speed: float | None, workdir: Path) -> Result:
    part1 = unsolicited(RESTART[0])
    answered = next(m for m in part1 if m.event == "AgentConnect").timestamp
    proven = max(m.timestamp for m in part1 if "Timestamp" in m) - answered
    total = len(part1) + len(unsolicited(RESTART[1]))
    async with AmiSimulator(RESTART, speed=speed, per_connection=True, downtime=outage) as sim:
        service = await with_bridge(sim, workdir / "restart.sqlite3")
        try:
            await sim.wait_for_events(total, timeout=outage + 120)
            calls = await settled(service, RESTART_CALLS, limit=30)
        finally:
            await service.stop()
    ended = [c for c in calls if c.ended_at is not None]
    cut = [c for c in ended if c.answered_at is not None and abs(c.answered_at - answered) < 0.01]
    excess = max((c.talk_seconds - round(proven, 1) for c in cut), default=float("nan"))
    return Result("PBX restart (part1 -> dies -> part2)", len(ended), RESTART_CALLS,
                  max(0.0, round(excess, 1)), reconnect_time(sim), sim.logins)


async def link_drop(outage: float, speed: float | None, workdir: Path) -> Result:
    capture = FIXTURES / "queue_answered.ami"
    events = unsolicited(capture)
    connect_at = next(i for i, m in enumerate(events) if m.event == "AgentConnect")
    truth = {c.call_id: c.talk_seconds for c in replay_bytes(capture.read_bytes())}
    async with AmiSimulator([capture], speed=speed, drop_after_events=connect_at + 1) as sim:
        service = await with_bridge(sim, workdir / "link.sqlite3")
        try:
            await sim.wait_for_events(connect_at + 1, timeout=60)
            await sim.go_down()  # the link is gone (the simulator has just cut it); the PBX is not
            sim.drop_after_events = None
            await asyncio.sleep(outage)
            await sim.come_up()
            await sim.wait_for_events(len(events), timeout=120)
            calls = await settled(service, len(truth), limit=30)
        finally:
            await service.stop()
    ended = [c for c in calls if c.ended_at is not None]
    excess = max((c.talk_seconds - truth.get(c.call_id, 0.0) for c in ended), default=float("nan"))
    return Result("link drop mid-call, PBX up", len(ended), len(truth), max(0.0, round(excess, 1)),
                  reconnect_time(sim), sim.logins)


def show(result: Result) -> None:
    reconnect = "none" if result.reconnect is None else f"{result.reconnect:.3f} s"
    verdict = "ok" if result.reconnect is not None and result.reconnect < 1.0 else "MISSED"
    print(f"{result.scenario}:")
    print(f"  calls logged / all calls:   {result.logged} / {result.expected}")
    print(f"  outage counted as talk:     {result.outage_as_talk:.1f} s (must be 0)")
    print(f"  reconnect after PBX is back: {reconnect} (target < 1 s: {verdict}); logins {result.logins}")


async def main(outage: float, speed: float | None) -> int:
    with tempfile.TemporaryDirectory(prefix="pbx_outage_") as tmp:
        results = [await pbx_restart(outage, speed, Path(tmp)), await link_drop(outage, speed, Path(tmp))]
    print(f"outage {outage:g} s, replay speed {speed or 'max'}, default AMI settings")
    for result in results:
        show(result)
    good = all(r.logged == r.expected and r.outage_as_talk == 0 and r.reconnect is not None
               and r.reconnect < 1.0 for r in results)
    return 0 if good else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=8.0,
                        help="seconds the PBX refuses connections (long enough for back-off to grow)")
    parser.add_argument("--speed", type=float, default=0.0, help="replay speed; 0 = as fast as possible")
    parser.add_argument("--verbose", action="store_true", help="the bridge's log lines too")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(asyncio.run(main(args.outage, args.speed or None)))
