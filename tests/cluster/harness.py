"""A cluster on this machine, as in production: bridge nodes are `callbridge serve`
processes, PBXes are AMI simulator processes, and they share a real PostgreSQL (the
`callbridge_cluster` database that .ci/postgres.sh makes, wiped per lab) and a real
redis-server (tests.cluster.redis_server)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.db_fixtures import pg_required, pg_url

CALLBRIDGE = str(Path(sys.executable).parent / "callbridge")
SECRET_KEY = "cluster-lab-secret-0123456789"
PASSWORD = "Cluster-lab-pw-2026"


def cluster_db_url(name: str = "callbridge_cluster") -> str:
    """A database of the test server that .ci/postgres.sh makes: `callbridge_cluster` (the
    bench) or `callbridge_cluster_test` (the tests). The nodes are processes: they cannot
    share a test's private schema."""
    return re.sub(r"/[^/]+$", f"/{name}", pg_url())


async def wipe_database(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def fresh_database(name: str = "callbridge_cluster_test") -> str:
    """The URL of that database, emptied; skips (a laptop) or fails (CI) without PostgreSQL."""
    url = cluster_db_url(name)
    try:
        await wipe_database(url)
    except OSError as exc:
        if pg_required():
            raise
        pytest.skip(f"no PostgreSQL for the cluster test: {exc}")
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Pbx:
    """An AMI simulator process replaying `captures` at `speed`: one PBX shared by every
    login, as a real Asterisk (the owner's session and the others' hot standbys get the
    same events, and it goes on while nobody listens), starting once `logins` sessions
    are in (every node's)."""

    id: str
    captures: list[Path]
    directory: Path
    speed: float = 1.0
    logins: int = 1
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.directory / f"pbx-{self.id}.log", "ab")  # noqa: SIM115 (the process's)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge.simulator", "--port", str(self.port), "--speed", str(self.speed),
             "--shared", "--start-after-logins", str(self.logins), *map(str, self.captures)],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@dataclass
class Node:
    name: str
    directory: Path
    config: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_text(self) -> str:
        path = self.directory / "node.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        log = open(self.directory / "node.log", "ab")  # noqa: SIM115 (the process's)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen([CALLBRIDGE, "serve", "--config", str(self.config)],
                                        cwd=self.directory, stdout=log, stderr=subprocess.STDOUT, env=env)

    def freeze(self) -> None:
        """SIGSTOP: a hung process; its sockets stay open, so it keeps its locks and sessions."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        """SIGKILL: no goodbye to PostgreSQL, Redis or the PBX (the kernel closes its sockets)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    async def readyz(self) -> dict[str, Any] | None:
        try:
            async with aiohttp.ClientSession() as http, http.get(self.base + "/readyz") as resp:
                return await resp.json()
        except (aiohttp.ClientError, OSError):
            return None


def wait_for_port(port: int, limit: float = 15.0) -> None:
    stop_at = time.monotonic() + limit
    while time.monotonic() < stop_at:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {limit} s")


def node_config(name: str, directory: Path, port: int, redis_url: str, db_url: str, pbxes: list[Pbx]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f'database_url = "{db_url}"',
        f'call_log_spool = "{directory / "spool.jsonl"}"',
        "[http]", 'host = "127.0.0.1"', f"port = {port}", "secure_cookie = false",
        f'secret_key = "{SECRET_KEY}"',
        "[recordings]", f'directory = "{directory / "recordings"}"', 'policy = "all"',
        "[cluster]", f'node_id = "{name}"', f'redis_url = "{redis_url}"',
        "lease_check_interval = 0.5", "lease_check_timeout = 1.0", "lease_retry_interval = 0.5",
    ]
    for pbx in pbxes:
        lines += ["[[pbx]]", f'id = "{pbx.id}"', 'host = "127.0.0.1"', f"port = {pbx.port}",
                  "ping_interval = 1.0", "ping_timeout = 1.0", "backoff_max = 0.5", "probe_interval = 0.2"]
    config = directory / "callbridge.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


class Operator:
    """A browser of one operator: signed in on one node, its console WebSocket open."""

    def __init__(self, node: Node, username: str) -> None:
        self.node, self.username = node, username
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.cards: dict[str, dict[str, Any]] = {}  # card_id -> newest card
        self.frames: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def sign_in(self) -> None:
        async with self.http.get(self.node.base + "/login") as page:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await page.text())
        assert token is not None, "no login form"
        form = {"username": self.username, "password": PASSWORD, "csrf_token": token.group(1)}
        async with self.http.post(self.node.base + "/login", data=form, allow_redirects=False) as resp:
            assert resp.status in (302, 303), f"login of {self.username}: {resp.status}"

    async def open_console(self) -> dict[str, Any]:
        self.ws = await self.http.ws_connect(self.node.base.replace("http", "ws") + "/ws/console",
                                             origin=self.node.base)
        hello = await self.ws.receive_json(timeout=10)
        assert hello["type"] == "hello", hello
        for card in hello["cards"]:
            self.cards[card["card_id"]] = card
        self._reader = asyncio.create_task(self._read())
        return hello

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = msg.json()
            frame["_at"] = time.time()
            self.frames.append(frame)
            if frame["type"] == "card":
                self.cards[frame["card_id"]] = frame

    async def reconnect(self, node: Node) -> dict[str, Any]:
        """The browser's socket drops and it reconnects, through the load balancer, to `node`
        (same session cookie: sessions are database rows every node reads)."""
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        self.node, self.cards = node, {}
        return await self.open_console()

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with self.http.get(self.node.base + "/api/session") as resp:
            csrf = (await resp.json())["csrf_token"]
        async with self.http.post(self.node.base + path, json=body,
                                  headers={"X-CSRF-Token": csrf, "Origin": self.node.base}) as resp:
            return resp.status, await resp.json()

    async def wait_for_frame(self, predicate: Any, after: int = 0, limit: float = 20.0) -> dict[str, Any]:
        """The first frame from index `after` on that `predicate` accepts."""
        async with asyncio.timeout(limit):
            while True:
                for frame in self.frames[after:]:
                    if predicate(frame):
                        return frame
                await asyncio.sleep(0.02)

    async def wait_for_card(self, call_id: str, state: str, limit: float = 20.0,
                            **fields: Any) -> dict[str, Any]:
        async with asyncio.timeout(limit):
            while True:
                for card in self.cards.values():
                    if (card["call_id"] == call_id and card["state"] == state
                            and all(card.get(k) == v for k, v in fields.items())):
                        return card
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()
