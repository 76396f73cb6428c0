"""The lab Asterisk (../shared/asterisk) and the bridge under test, for the live group.

`LabPbx` runs one Asterisk with its own RUNDIR and AMI port (start.sh / stop.sh, never a copy
of them). `LiveBridge` is `bridge.service.BridgeService` on SQLite in the test's tmp dir with
the lab's AMI user, the console users of the lab dialplan, an operator's WebSocket and a
signed-in supervisor's tab. Skipped when no Asterisk is built, unless CALLBRIDGE_REQUIRE_ASTERISK=1
(CI): then it fails, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from argon2 import PasswordHasher

from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord
from bridge.service import BridgeService
from bridge.settings import load_settings
from screenpop.messages import Card
from web.users import UserStore

ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("CALLBRIDGE_LAB_ASTERISK_DIR") or ROOT.parent / "shared" / "asterisk")
PREFIX = Path(os.environ.get("CALLBRIDGE_ASTERISK_PREFIX") or "/opt/asterisk")
PASSWORD = "live-test-password"
USERS = [  # (username, role, display name, extensions): the lab dialplan's phones
    ("anna", "operator", "Anna Operator", ["101"]),
    ("boris", "operator", "Boris Operator", ["102"]),
    ("clara", "operator", "Clara Operator", ["103"]),
    ("denis", "operator", "Denis Operator", ["104"]),
    ("eve", "operator", "Eve Reserve", ["105"]),
    ("vera", "supervisor", "Vera Supervisor", ["201"]),
]


def asterisk_required() -> bool:
    return os.environ.get("CALLBRIDGE_REQUIRE_ASTERISK") == "1"


def require_asterisk() -> None:
    """Skip (laptop) or fail (CALLBRIDGE_REQUIRE_ASTERISK=1) when the lab PBX cannot run."""
    problem = None
    if not (PREFIX / "sbin" / "asterisk").is_file():
        problem = (f"no Asterisk in {PREFIX} (build it: PREFIX={PREFIX} bash {LAB_DIR / 'build.sh'}, "
                   "or run ./scripts/test)")
    elif not (LAB_DIR / "start.sh").is_file():
        problem = f"no lab scripts in {LAB_DIR} (set CALLBRIDGE_LAB_ASTERISK_DIR)"
    if problem is None:
        return
    if asterisk_required():
        pytest.fail(problem + " [required: CALLBRIDGE_REQUIRE_ASTERISK=1]", pytrace=False)
    pytest.skip(problem)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabPbx:
    """One lab Asterisk: RUNDIR of its own, AMI on 127.0.0.1:port."""

    def __init__(self, rundir: Path, port: int) -> None:
        self.rundir, self.port, self.host = rundir, port, "127.0.0.1"
        self.running = False
        self.killed_at: float | None = None

    async def _script(self, *args: str, limit: float = 60.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            "bash", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PREFIX": str(PREFIX)})
        async with asyncio.timeout(limit):
            out, _ = await proc.communicate()
        text = out.decode(errors="replace")
        assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{text}"
        return text

    async def start(self) -> None:
        out = await self._script(str(LAB_DIR / "start.sh"), str(self.rundir), str(self.port))
        assert "asterisk up" in out, out
        self.running = True

    async def stop(self, crash: bool = False) -> None:
        await self._script(str(LAB_DIR / "stop.sh"), str(self.rundir), *(["--crash"] if crash else []))
        if crash:  # dead by now (stamped before, a slow script start would let it live past it)
            self.killed_at = time.time()
        self.running = False

    def console_log(self) -> str:
        path = self.rundir / "console.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


class ConsoleTab:
    """An operator's console WebSocket: every frame it received, parsed."""

    def __init__(self, tab: Tab, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.tab, self.ws = tab, ws
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(json.loads(msg.data))

    def cards(self, call_id: str | None = None) -> list[Card]:
        return [Card.model_validate(f) for f in self.frames
                if f.get("type") == "card" and (call_id is None or f["call_id"] == call_id)]

    def states(self, call_id: str) -> list[str]:
        out: list[str] = []
        for card in self.cards(call_id):
            if not out or out[-1] != card.state:
                out.append(card.state)
        return out

    async def wait_state(self, call_id: str, state: str, limit: float = 20.0) -> Card:
        await until(lambda: state in self.states(call_id), limit,
                    f"{state!r} card for {call_id} (states so far: {self.states(call_id)})")
        return next(c for c in reversed(self.cards(call_id)) if c.state == state)

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


class Tab:
    """A signed-in browser (real login, cookies, CSRF token) on the bridge's web app."""

    def __init__(self, base_url: str) -> None:
        self.session = aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, username: str) -> Tab:
        page = await (await self.session.get("/login")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page[:500]
        resp = await self.session.post("/login", allow_redirects=False, data={
            "username": username, "password": PASSWORD, "csrf_token": token.group(1)})
        assert resp.status == 303, await resp.text()
        self.csrf = (await (await self.session.get("/api/session")).json())["csrf_token"]
        return self

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        resp = await self.session.post(path, data=json.dumps(body), headers={
            "X-CSRF-Token": self.csrf, "Content-Type": "application/json"})
        return resp.status, await resp.json()

    async def close(self) -> None:
        await self.session.close()


async def until(predicate: Any, limit: float = 20.0, what: str = "the condition") -> None:
    try:
        async with asyncio.timeout(limit):
            while not predicate():  # noqa: ASYNC110 (the bridge works on its own tasks)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit} s waiting for {what}") from None


def settings_for(pbx: LabPbx, tmp: Path, **overrides: Any) -> dict[str, Any]:
    """The bridge's settings for this lab PBX (as keyword arguments of load_settings)."""
    # Asterisk closes a recording file on its own thread after the hang-up: the check waits.
    recordings = {"policy": "none", "directory": str(pbx.rundir / "recordings"), "check_delay_seconds": 3.0}
    recordings.update(overrides.pop("recordings", {}))
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp / 'callbridge.sqlite3'}",
        "ami": {"host": pbx.host, "port": pbx.port, "username": "callbridge", "secret": "lab-secret",
                "ping_interval": 1.0, "ping_timeout": 2.0, "backoff_max": 0.5},
        "http": {"host": "127.0.0.1", "port": 0, "secure_cookie": False},
        "recordings": recordings,
    }
    values.update(overrides)
    return values


async def add_users(database_url: str) -> None:
    store = CallLogStore(database_url)
    await store.open()
    try:  # cheap hashes: the login is tested elsewhere, not argon2's cost
        users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        for name, role, display, exts in USERS:
            if await users.get(name) is None:
                await users.add(name, PASSWORD, role=role, display_name=display, extensions=exts)
    finally:
        await store.close()


class LiveBridge:
    """BridgeService against the lab PBX, with helpers to read what it made of the calls."""

    def __init__(self, pbx: LabPbx, tmp: Path, **overrides: Any) -> None:
        self.pbx, self.tmp = pbx, tmp
        self.values = settings_for(pbx, tmp, **overrides)
        self.settings = load_settings(**self.values)
        self.service: BridgeService | None = None
        self.tabs: list[Tab] = []
        self.consoles: list[ConsoleTab] = []

    async def start(self) -> LiveBridge:
        await add_users(self.settings.database_url)
        self.service = BridgeService(self.settings)
        await self.service.start()
        assert await self.service.client.wait_ready(30), "the bridge never logged in to the lab PBX"
        # The snapshot after login waits for the events queued before it (issue 10: "at once").
        await until(lambda: getattr(self.service, "_pending_resync", None) is None, 10, "the bridge's resync")
        assert self.service.web_address is not None
        self.base_url = "http://{}:{}".format(*self.service.web_address)
        return self

    async def stop(self) -> None:
        for console in self.consoles:
            await console.close()
        for tab in self.tabs:
            await tab.close()
        if self.service is not None:
            await self.service.stop()

    @property
    def store(self) -> CallLogStore:
        assert self.service is not None
        return self.service.store

    async def tab(self, username: str) -> Tab:
        tab = await Tab(self.base_url).login(username)
        self.tabs.append(tab)
        return tab

    async def console(self, username: str) -> ConsoleTab:
        tab = await self.tab(username)
        ws = await tab.session.ws_connect("/ws/console")
        console = ConsoleTab(tab, ws)
        self.consoles.append(console)
        await until(lambda: console.frames, 10, f"{username}'s console hello")
        assert console.frames[0]["type"] == "hello"
        return console

    async def record(self, call_id: str, limit: float = 30.0) -> CallRecord:
        """The call as the log stores it, once it has ended."""
        assert self.service is not None
        deadline = time.monotonic() + limit
        while True:
            await self.service.writer.flush()
            found = await self.store.get(call_id)
            if found is not None and found.ended_at is not None:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"call {call_id} never reached the log as ended (stored: {found})")
            await asyncio.sleep(0.1)

    async def logged(self, call_id: str, limit: float = 30.0) -> dict[str, Any]:
        """The call's exported line (CallRecord.replay_dict(), as `calls export` prints it)."""
        await self.record(call_id, limit)
        exported = [c.replay_dict() for c in await self.store.export() if c.call_id == call_id]
        assert len(exported) == 1, f"call {call_id} exported {len(exported)} times"
        return exported[0]

    async def export(self) -> list[dict[str, Any]]:
        assert self.service is not None
        await self.service.writer.flush()
        return [c.replay_dict() for c in await self.store.export() if c.ended_at is not None]
