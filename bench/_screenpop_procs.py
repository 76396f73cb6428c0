"""bench/screenpop_latency.py's other processes: the PBX (the AMI simulator) and the
operators' browsers (WebSocket clients), each pinned to its CPUs when asked."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import time
from typing import Any

import aiohttp

from bench._sampling import Frame, close_browsers, loop_lag, read_frames
from bench._screenpop_bridge import EXT_HEADER
from bridge.simulator.server import AmiSimulator

# A card frame at a browser: (received at, extension, card_id, version, state, caller lookup,
# history items)
FrameRow = tuple[float, str, str, int, str, str, int]


def pin(cpus: set[int] | None) -> None:
    if cpus:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(0, cpus)


class _DelayedSimulator(AmiSimulator):
    """Starts replaying `start_delay` s after the login, once the bridge's resync is done
    (events queued behind the resync would count its wait as latency)."""

    def __init__(self, *args: Any, start_delay: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_delay = start_delay
        self.cpu = 0.0  # CPU seconds of this process while replaying

    async def _replay(self, conn: Any, session: Any) -> None:
        await asyncio.sleep(self.start_delay)
        cpu0 = time.process_time()
        try:
            await super()._replay(conn, session)
        finally:
            self.cpu += time.process_time() - cpu0


def simulator_main(path: str, speed: float | None, start_delay: float, cpus: set[int] | None,
                   conn: Any) -> None:
    pin(cpus)
    with contextlib.suppress(OSError):
        os.nice(10)  # the load generator yields its CPU to the measuring clients when they wake
    asyncio.run(_simulator(path, speed, start_delay, conn))


async def _simulator(path: str, speed: float | None, start_delay: float, conn: Any) -> None:
    sim = _DelayedSimulator([path], speed=speed, loop=False, record=False, start_delay=start_delay)
    _, port = await sim.start()
    conn.send(port)
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    conn.send(sim.cpu)
    await sim.stop()


def clients_main(cpus: set[int] | None, conn: Any) -> None:
    pin(cpus)
    asyncio.run(_clients(conn))


async def _clients(conn: Any) -> None:
    loop = asyncio.get_running_loop()
    url, exts = await loop.run_in_executor(None, conn.recv)
    frames: list[Frame] = []
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    gate = asyncio.Semaphore(50)  # the server's listen backlog is 128

    async def connect(ext: str) -> aiohttp.ClientWebSocketResponse:
        async with gate:
            return await session.ws_connect(url, headers={EXT_HEADER: ext}, max_msg_size=0)

    sockets = await asyncio.gather(*(connect(ext) for ext in exts))
    readers = [asyncio.create_task(read_frames(i, ws, frames)) for i, ws in enumerate(sockets)]
    # The measuring side must not stall: no garbage collection here while frames arrive
    # (a full collection over 500 sockets' objects took ~80 ms; the run's garbage is small).
    gc.collect()
    gc.freeze()
    gc.disable()
    lag: list[float] = []
    lag_task = asyncio.create_task(loop_lag(lag))
    cpu0 = time.process_time()
    conn.send(("connected", len(sockets)))
    await loop.run_in_executor(None, conn.recv)  # "stop"
    lag_task.cancel()
    cpu = time.process_time() - cpu0
    closed_early = await close_browsers(readers, sockets, session)
    rows: list[FrameRow] = []
    hellos = 0
    for t, index, text in frames:
        frame = json.loads(text)
        if frame["type"] == "card":
            rows.append((t, exts[index], frame["card_id"], frame["version"], frame["state"],
                         frame["caller"]["lookup"], len(frame["history"])))
        elif frame["type"] == "hello":
            hellos += 1
    conn.send({"rows": rows, "hellos": hellos, "closed_early": closed_early, "loop_lag": lag, "cpu": cpu})
