"""A simulated PBX for bench/cluster.py, in a process of its own: the product's AMI simulator
replaying one traffic file at recorded speed, its times moved to the present.

It loads its traffic first and listens only once the bench says go (the nodes, probing
meanwhile, log in within their probe interval: the owner, and the others' hot standbys),
then replays from `START_DELAY` s after the last of them logged in: the owner's resync is
done by then, and the shift to the present, taken at the first login, is taken for the
moment the first event goes out, so the PBX's clock is ours (to the simulator's whole
second, give or take the logins' spread). Started earlier, the PBX would speak in the time
of the login, as far behind ours as the bench's set-up took.

One PBX for every session (`shared`), as a real Asterisk: every node logged in hears the
same events, and when the owner dies the PBX goes on talking; what it says until the new
owner is up reaches only the standbys' sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

from bridge.simulator.server import AmiSimulator

START_DELAY = 1.0  # seconds from the login to the first event


def pbx_main(path: str, port: int, speed: float, logins: int, conn: Any, idle: bool = True) -> None:
    """The load generator gives way to the nodes and browsers it measures: `idle`, it runs
    only on a CPU nobody else wants (SCHED_IDLE; at nice +10 a PBX woken by its timer still
    took the CPU from a node mid-ring); else at nice +10."""
    with contextlib.suppress(OSError):
        if idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.nice(10)
    asyncio.run(_pbx(path, port, speed, logins, conn))


async def _pbx(path: str, port: int, speed: float, logins: int, conn: Any) -> None:
    loop = asyncio.get_running_loop()
    sim = AmiSimulator([path], speed=speed, loop=False, record=False, port=port,
                       now=lambda: time.time() + START_DELAY, shared=True)
    sim.batch_limit = 1  # each event in its own write, as Asterisk sends them: arrivals are timed
    sim.hold_replay(0)  # every connection waits at event 0 until released
    conn.send(("loaded", len(sim.events)))
    command = await loop.run_in_executor(None, conn.recv)
    assert command == "go", command
    await sim.start()
    await sim.wait_for_logins(logins, timeout=60)
    await asyncio.sleep(START_DELAY)
    cpu0, started = time.process_time(), time.time()
    sim.hold_replay(None)
    conn.send(("started", started))
    # Done when the PBX has said everything.
    while not any(s.finished for s in sim.sessions):  # noqa: ASYNC110 (the simulator has no such event)
        await asyncio.sleep(0.05)
    # The seconds every time of the traffic was moved by: the offline replay needs the same.
    shift = int(sim.sessions[0].offset(0, 0))
    conn.send(("done", {"started": started, "finished": time.time(), "logins": sim.logins, "shift": shift,
                        "cpu": time.process_time() - cpu0}))
    await loop.run_in_executor(None, conn.recv)  # "stop"
    await sim.stop()
