"""Operators' browsers for bench/cluster.py: one process per node, each holding the console
WebSockets (`/ws/console`) of its operators, signed in by a session cookie the bench made.

Each frame is stamped with time.time() the moment the socket's reader wakes up with it, and
parsed only after the run (the reading side does as little as it can while it measures).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
from typing import Any

import aiohttp

from bench._sampling import Frame, close_browsers, loop_lag, read_frames

# (token, username, pbx, extension) of one browser
Login = tuple[str, str, str, str]
# (received at, browser index, card_id, version, state, pbx, operator, caller lookup)
FrameRow = tuple[float, int, str, int, str, str, str, str]


def browsers_main(conn: Any) -> None:
    asyncio.run(_browsers(conn))


async def _browsers(conn: Any) -> None:
    loop = asyncio.get_running_loop()
    base, cookie_name, logins = await loop.run_in_executor(None, conn.recv)
    logins = [tuple(x) for x in logins]
    url = base.replace("http", "ws", 1) + "/ws/console"
    frames: list[Frame] = []
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    gate = asyncio.Semaphore(50)  # the node's listen backlog is 128
    hellos: dict[int, dict[str, Any]] = {}

    async def connect(index: int, login: Login) -> aiohttp.ClientWebSocketResponse:
        token = login[0]
        async with gate:
            ws = await session.ws_connect(url, origin=base, max_msg_size=0,
                                          headers={"Cookie": f"{cookie_name}={token}"})
            hello = await ws.receive_json(timeout=30)
        hellos[index] = hello
        return ws

    sockets = await asyncio.gather(*(connect(i, login) for i, login in enumerate(logins)))
    readers = [asyncio.create_task(read_frames(i, ws, frames)) for i, ws in enumerate(sockets)]
    # Whom the node took each browser for: a user on the wrong PBX gets the wrong cards.
    wrong_pbx = sum(hellos[i].get("pbx") != logins[i][2] for i in range(len(logins)))
    wrong_user = sum(hellos[i].get("user") != logins[i][1] for i in range(len(logins)))
    # No garbage collection while measuring: a full pass over 1,000 sockets' objects stalls
    # the loop for tens of ms (bench/screenpop_latency.py); the run's garbage is small.
    gc.collect()
    gc.freeze()
    gc.disable()
    lag: list[float] = []
    # Every 20 ms: 1,000 sockets' process woken 200 times a second to measure itself took
    # a CPU from the nodes it measures.
    lag_task = asyncio.create_task(loop_lag(lag, period=0.02))
    cpu0 = time.process_time()
    conn.send(("connected", len(sockets), wrong_pbx, wrong_user))
    await loop.run_in_executor(None, conn.recv)  # "stop"
    lag_task.cancel()
    cpu = time.process_time() - cpu0
    closed_early = await close_browsers(readers, sockets, session)
    rows: list[FrameRow] = []
    other: dict[str, int] = {}
    for t, index, text in frames:
        frame = json.loads(text)
        kind = frame.get("type", "?")
        if kind == "card":
            rows.append((t, index, frame["card_id"], frame["version"], frame["state"], frame.get("pbx", ""),
                         frame["operator"], frame["caller"]["lookup"]))
        else:
            other[kind] = other.get(kind, 0) + 1
    conn.send({"rows": rows, "other": other, "closed_early": closed_early, "loop_lag": lag, "cpu": cpu})
