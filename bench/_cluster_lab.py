"""The cluster bench's lab hands: each node's configuration, its readiness, the operators
it serves, the owner's death and the takeover's timing, the children's messages and the
call log once settled (bench/cluster.py runs them)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import create_async_engine

from bench import _screenpop_traffic as traffic_mod
from bench._cluster_browsers import Login
from bench._cluster_run import PBXES, Takeover
from bench._sampling import renice
from bridge.call_log.store import CallLogStore
from tests.cluster.harness import Node
from web.users import EXTENSIONS, SESSIONS, USERS

SECRET_KEY = "cluster-bench-secret-0123456789"
PASSWORD = "Cluster-bench-pw-2026"
COOKIE = "callbridge_session"  # the name without "__Host-": the nodes serve plain HTTP here


def prioritise(pids: dict[str, int], nice: int, pbxes: str) -> str:
    """The system under test (nodes, Redis) and the browsers that time it at `nice`, the load
    generators (the PBXes) staying where they put themselves (`pbxes` says how), this
    process's tap at 0. On hosts of their own nothing would share their CPUs; here a CPU's
    run queue decides who waits."""
    if nice == 0:
        return f"every process at nice 0 but the PBXes ({pbxes})"
    chosen = [n for n in pids if n.startswith(("node", "browsers")) or n == "redis-server"]
    try:
        for name in chosen:
            renice(pids[name], nice)
    except OSError as exc:  # negative nice values need root (CAP_SYS_NICE)
        return f"NOT set for all ({exc.strerror}: run as root for --priority {nice})"
    return (f"nodes, Redis and browsers at nice {nice}; the PBXes {pbxes}, the bench's tap and "
            "PostgreSQL at 0")



def node_config(name: str, directory: Path, port: int, redis_url: str, db_url: str,
                pbx_ports: dict[str, int], log_level: str, hot_standby: bool = True) -> Path:
    """Product defaults but for where things are (tests/cluster/harness.py's node_config
    shortens the lease and AMI timings for tests; a bench measures the defaults)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f'database_url = "{db_url}"', f'call_log_spool = "{directory / "spool.jsonl"}"',
        f'log_level = "{log_level}"',
        "[http]", 'host = "127.0.0.1"', f"port = {port}", "secure_cookie = false",
        f'secret_key = "{SECRET_KEY}"',
        "[recordings]", f'directory = "{directory / "recordings"}"',
        "[cluster]", f'node_id = "{name}"', f'redis_url = "{redis_url}"',
        f"hot_standby = {'true' if hot_standby else 'false'}",
    ]
    for pbx, pbx_port in pbx_ports.items():
        lines += ["[[pbx]]", f'id = "{pbx}"', 'host = "127.0.0.1"', f"port = {pbx_port}"]
    config = directory / "callbridge.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def alive(node: Node) -> bool:
    return node.process is not None and node.process.poll() is None


async def readyz(http: aiohttp.ClientSession, node: Node) -> dict[str, str] | None:
    """pbx -> state as the node's /readyz says, None while it does not answer."""
    try:
        async with http.get(node.base + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return (await resp.json()).get("pbx") or {}
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def wait_ready(http: aiohttp.ClientSession, node: Node, want: str, limit: float) -> None:
    """Until the node says `want` ("owner", connected or not, or "standby") of every PBX."""
    deadline = time.monotonic() + limit
    while True:
        if not alive(node):
            raise RuntimeError(f"{node.name} exited:\n{node.log_text[-3000:]}")
        states = await readyz(http, node)
        if states and all(states.get(p, "").startswith(want) for p in PBXES):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{node.name} not {want} of {PBXES} after {limit:g} s: {states}\n"
                               f"{node.log_text[-3000:]}")
        await asyncio.sleep(0.1)


async def seed_operators(db_url: str, per_pbx: int) -> list[Login]:
    """`per_pbx` operators on each PBX, each signed in once: [(token, username, pbx, ext)]."""
    password_hash = PasswordHasher().hash(PASSWORD)  # one hash for all: a log-in would verify it
    now = datetime.now(UTC)
    wanted = [(pbx, str(traffic_mod.FIRST_EXTENSION + i), f"{pbx[0]}{traffic_mod.FIRST_EXTENSION + i}")
              for pbx in PBXES for i in range(per_pbx)]
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(insert(USERS).returning(USERS.c.id, USERS.c.username), [
                {"username": name, "display_name": f"Operator {ext} ({pbx})", "role": "operator",
                 "password_hash": password_hash, "active": True, "created_at": now, "updated_at": now}
                for pbx, ext, name in wanted])
            ids = {name: uid for uid, name in result.all()}
            await conn.execute(insert(EXTENSIONS), [{"pbx": pbx, "extension": ext, "user_id": ids[name]}
                                                    for pbx, ext, name in wanted])
            logins: list[Login] = []
            sessions = []
            for pbx, ext, name in wanted:
                token = secrets.token_urlsafe(32)
                logins.append((token, name, pbx, ext))
                # web.auth keeps only the token's SHA-256 (hex) in the table.
                sessions.append({"token_hash": hashlib.sha256(token.encode()).hexdigest(),
                                 "user_id": ids[name], "csrf_token": secrets.token_urlsafe(32),
                                 "created_at": now, "last_seen_at": now, "remote": "127.0.0.1"})
            await conn.execute(insert(SESSIONS), sessions)
    finally:
        await engine.dispose()
    return logins


async def kill_and_time(http: aiohttp.ClientSession, owner: Node, survivors: list[Node],
                        limit: float = 30.0) -> Takeover:
    took = Takeover(time.time())
    owner.kill()
    start = time.monotonic()
    while len(took.owner) < len(PBXES) and time.monotonic() - start < limit:
        states = await asyncio.gather(*(readyz(http, n) for n in survivors))
        now = time.monotonic() - start
        for node, pbx_states in zip(survivors, states, strict=True):
            for pbx, state in (pbx_states or {}).items():
                if state.startswith("owner"):
                    took.lease.setdefault(pbx, now)
                    took.by.setdefault(pbx, node.name)
                if state == "owner":
                    took.owner.setdefault(pbx, now)
        await asyncio.sleep(0.05)
    return took


async def probe_nodes(http: aiohttp.ClientSession, nodes: list[Node],
                      into: dict[str, list[tuple[float, float]]], period: float = 0.1) -> None:
    """/healthz round trips (answered by the node's event loop, nothing else): how long a node's
    loop keeps a request waiting, sampled from outside (this process's own lag included)."""
    while True:
        for node in nodes:
            if not alive(node):
                continue
            t = time.perf_counter()
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(node.base + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    await resp.read()
                into.setdefault(node.name, []).append((time.time(), time.perf_counter() - t))
        await asyncio.sleep(period)


async def receive(pipe: Any, limit: float, what: str) -> Any:
    """The next message from a child process (polled: a thread blocked in recv() would outlive
    a failed run)."""
    deadline = time.monotonic() + limit
    while not pipe.poll():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no news after {limit:g} s of {what}")
        await asyncio.sleep(0.02)
    return pipe.recv()


async def settled_calls(db_url: str, expected: int, limit: float = 30.0) -> list[dict[str, Any]]:
    """The call log once `expected` calls are in it and none is live, or what it holds at `limit`."""
    store = CallLogStore(db_url)
    await store.open()
    try:
        deadline = time.monotonic() + limit
        while True:
            calls = await store.export()
            settled = len(calls) >= expected and all(c.ended_at is not None for c in calls)
            if settled or time.monotonic() > deadline:
                return [c.replay_dict() for c in calls]
            await asyncio.sleep(0.25)
    finally:
        await store.close()
