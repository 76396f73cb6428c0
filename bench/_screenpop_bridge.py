"""bench/screenpop_latency.py's bridge: the product's BridgeService with a stand-in for the
sign-in, a slow CRM, a stall watch and the probes that time each card."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.calls.events import CallAnswered, CallRinging, DomainEvent
from bridge.service import BridgeService
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.errors import CrmNotSupported
from recordings.plugin import attach_recordings
from screenpop.app import create_web_app
from screenpop.console_http import SCREENPOP_KEY
from screenpop.messages import Card
from web.access import USER_KEY

EXT_HEADER = "X-Bench-Ext"  # the operator's extension: what the bench's browsers send instead of a login


@dataclass(frozen=True)
class BenchUser:  # the shape of web.users.User the console needs
    username: str
    display_name: str
    role: str
    extensions: list[str]


class SlowCrm(CrmAdapter):
    """An external CRM that knows every caller and takes `delay` s for every request."""

    name = "slowcrm"
    can_create_contacts = False

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0

    async def find_contact(self, number: str) -> Contact | None:
        self.requests += 1
        await asyncio.sleep(self.delay)
        cid = number.lstrip("+")
        return Contact(id=cid, display_name=f"Client {number[-6:]}", phones=[number], company="Bench Ltd",
                       url=f"https://crm.example/c/{cid}", source=self.name)

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        self.requests += 1
        await asyncio.sleep(self.delay)
        now = datetime.now(UTC)
        return [Interaction(id=f"{contact.id}-{i}", kind="note", at=now - timedelta(days=i + 1),
                            summary=f"earlier contact {i}", source=self.name) for i in range(2)][:limit]

    async def create_contact(self, new: NewContact) -> Contact:
        raise CrmNotSupported("bench CRM", adapter=self.name)

    async def log_call(self, call: FinishedCall) -> str | None:
        await asyncio.sleep(self.delay)
        return call.call_id


class StallWatch:
    """`--stalls`: a thread that, whenever the bridge's event loop has not run a 2 ms
    heartbeat for `threshold` s, samples the loop thread's stack every 5 ms: where the
    loop's stalls are spent (sampled time per call site)."""

    ROOTS = ("/bridge/", "/screenpop/", "/crm_adapters/", "/aiohttp/", "/sqlalchemy/", "/aiosqlite/",
             "/pydantic/", "/phonenumbers/", "/asyncio/")

    def __init__(self, threshold: float = 0.02) -> None:
        self.threshold = threshold
        self.beat = time.perf_counter()
        self.sites: dict[str, float] = {}
        self.stalled = 0.0
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)

    async def heartbeat(self) -> None:
        self._thread.start()
        try:
            while True:
                self.beat = time.perf_counter()
                await asyncio.sleep(0.002)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        step = 0.005
        while not self._stop.wait(step):
            if time.perf_counter() - self.beat < self.threshold:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            where: list[str] = []
            while frame is not None and len(where) < 4:
                name = frame.f_code.co_filename
                root = next((r for r in self.ROOTS if r in name), None)
                if root is not None and not (root == "/asyncio/" and where):
                    where.append(f"{root.strip('/')}/{Path(name).name}:{frame.f_code.co_name}")
                frame = frame.f_back
            key = " <- ".join(where) or "?"
            self.sites[key] = self.sites.get(key, 0.0) + step
            self.stalled += step

    def report(self, top: int = 12) -> list[str]:
        lines = [f"  loop stalls > {self.threshold * 1000:.0f} ms, sampled: {self.stalled:.2f} s; by place "
                 "(innermost first):"]
        for key, seconds in sorted(self.sites.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {seconds:6.2f} s  {key}")
        return lines


@dataclass
class Probe:
    """What the bridge process records, all with time.time()."""

    current: float | None = None  # arrival of the AMI event being fed, while it is
    # card id -> arrivals of the AMI events that rang (or answered) it: what can pop a card
    causes: dict[str, list[float]] = field(default_factory=dict)
    rung: dict[str, int] = field(default_factory=dict)  # extension -> rings
    pushed: dict[tuple[str, int], tuple[float, float | None]] = field(default_factory=dict)
    queue_wait: list[float] = field(default_factory=list)  # arrival -> fed to the pipeline
    gc_pauses: list[float] = field(default_factory=list)  # full (generation 2) collections
    first_arrival: float | None = None
    last_fed: float = 0.0


class BenchBridge(BridgeService):
    """The bridge with the console app behind a stand-in auth (no user store), and probes."""

    def __init__(self, settings: Any, *, users: dict[str, BenchUser], clients_conn: Any) -> None:
        super().__init__(settings)
        self.users = users
        self.clients_conn = clients_conn
        self.probe = Probe()

    async def _start_web(self) -> None:
        users = self.users

        @web.middleware
        async def stand_in_auth(request: web.Request, handler: Callable) -> web.StreamResponse:
            request[USER_KEY] = users.get(request.headers.get(EXT_HEADER, ""))
            return await handler(request)

        app = create_web_app(self.pipeline, self.lookup, middlewares=[stand_in_auth])
        self.recorder = attach_recordings(self.parts(app), self.settings.recordings)
        self.web_runner = web.AppRunner(app, access_log=None)
        await self.web_runner.setup()
        site = web.TCPSite(self.web_runner, "127.0.0.1", 0)
        await site.start()
        port = self.web_runner.addresses[0][1]
        self.screenpop = app[SCREENPOP_KEY]
        self._instrument()
        # The browsers connect before the bridge logs in to the PBX (start() goes on after this).
        self.clients_conn.send((f"http://127.0.0.1:{port}/ws/console", list(users)))
        loop = asyncio.get_running_loop()
        kind, count = await loop.run_in_executor(None, self.clients_conn.recv)
        assert kind == "connected" and count == len(users), (kind, count)
        async with asyncio.timeout(30):
            while len(self.screenpop.hub.connections()) < len(users):  # noqa: ASYNC110 (no event)
                await asyncio.sleep(0.02)

    def _instrument(self) -> None:
        probe, pipeline, hub = self.probe, self.pipeline, self.screenpop.hub
        feed, push, now = pipeline.feed, hub.push, time.time

        def timed_feed(event: Any) -> None:
            arrived = event.received_at
            probe.queue_wait.append(now() - arrived)
            if probe.first_arrival is None:
                probe.first_arrival = arrived
            probe.current = arrived
            try:
                feed(event)
            finally:
                probe.current = None
                probe.last_fed = now()

        def rang(event: DomainEvent) -> None:
            if isinstance(event, CallRinging | CallAnswered) and probe.current is not None:
                probe.causes.setdefault(f"{event.call_id}:{event.operator}", []).append(probe.current)
                if isinstance(event, CallRinging):
                    probe.rung[event.operator] = probe.rung.get(event.operator, 0) + 1

        def timed_push(messages: Any) -> None:
            messages = list(messages)
            t = now()
            for m in messages:
                if isinstance(m, Card):
                    probe.pushed.setdefault((m.card_id, m.version), (t, probe.current))
            push(messages)

        gc_started = [0.0]

        def gc_timer(phase: str, info: dict[str, int]) -> None:
            if info.get("generation") == 2:
                if phase == "start":
                    gc_started[0] = time.perf_counter()
                else:
                    probe.gc_pauses.append(time.perf_counter() - gc_started[0])

        self.gc_timer = gc_timer
        gc.callbacks.append(gc_timer)
        pipeline.feed = timed_feed  # type: ignore[method-assign]
        pipeline.subscribe(rang)
        hub.push = timed_push  # type: ignore[method-assign]

    def idle(self) -> bool:
        busy_tasks = bool(self.screenpop._tasks) or bool(self.lookup._inflight)
        busy_conns = any(c._pending for c in self.screenpop.hub.connections())
        return not busy_tasks and not busy_conns and self.client._queue.empty()


async def seed_builtin(bridge: BenchBridge, callers: list[str]) -> float:
    """Every caller a contact of the built-in CRM (with a note: his card gets a history),
    then every number looked up once: the cache is warm. Returns the seconds it took."""
    started = time.perf_counter()
    lookup = bridge.lookup
    await lookup.open()
    builtin = lookup.adapters[0]
    for i, number in enumerate(callers):
        await builtin.create_contact(NewContact(display_name=f"Client {i:05d}", phones=[number],
                                                company="Bench Ltd", note="called about an invoice"))
    for number in callers:
        card = await lookup.lookup(number, wait=True)
        assert card.status == "found", card
    return time.perf_counter() - started
