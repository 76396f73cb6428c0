"""What the benches' processes sample on themselves while they measure: the machine's busy
CPU time, their event loop's lag, and WebSocket frames stamped the moment they arrive."""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

import aiohttp

# (received at, browser index, frame text)
Frame = tuple[float, int, str]
_ENDED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED,
          aiohttp.WSMsgType.ERROR)


def renice(pid: int, nice: int) -> None:
    """Set the nice value of every thread of a process (Linux schedules threads: setting it
    on the pid alone leaves the others where they were). OSError when not allowed."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.setpriority(os.PRIO_PROCESS, int(tid), nice)


def machine_pace(rounds: int = 5) -> float:
    """CPU ms a fixed piece of Python work takes here, at best of `rounds` (lower: faster).
    This machine's pace drifts by a third between hours (the host's other tenants): runs
    are comparable only at a similar pace."""
    best = math.inf
    for _ in range(rounds):
        started = time.process_time()
        table: dict[str, int] = {}
        for i in range(200_000):
            key = f"Uniqueid-{i % 997}"
            table[key] = table.get(key, 0) + len(key)
        best = min(best, time.process_time() - started)
    return best * 1000


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def loop_lag(samples: list[float], period: float = 0.005) -> None:
    """How late the event loop wakes a task up: what a frame arriving then waits, at least."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        samples.append(max(0.0, loop.time() - due))


async def read_frames(index: int, ws: aiohttp.ClientWebSocketResponse, frames: list[Frame]) -> None:
    """Every text frame of one socket, stamped with time.time() first thing (parsed later:
    the reading side does as little as it can while it measures), until it closes."""
    now, append = time.time, frames.append
    while True:
        msg = await ws.receive()
        t = now()
        if msg.type is aiohttp.WSMsgType.TEXT:
            append((t, index, msg.data))
        elif msg.type in _ENDED:
            return


async def close_browsers(readers: list[asyncio.Task[None]], sockets: list[aiohttp.ClientWebSocketResponse],
                         session: aiohttp.ClientSession) -> int:
    """End a browsers' process: its readers stopped, its sockets and session closed. How many
    readers had ended before (their socket closed early)."""
    closed_early = sum(r.done() for r in readers)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await session.close()
    return closed_early
