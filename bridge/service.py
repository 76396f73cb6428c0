"""The running bridge: AMI connection -> pipeline -> subscribers (call log, log lines).

`callbridge serve` runs this against real PBXes; `callbridge demo` against the AMI
simulator. Each PBX has its own link (bridge.pbx_link: AMI connection, resync, health)
feeding its model in the one call pipeline, whose domain events every feature sees.

Stopping is bounded (`STOP_BUDGET`): with a database that hangs or refuses writes, the
finished calls not yet committed stay in the call log's spool and are written at the
next start.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import text

from bridge.ami.client import AmiClient
from bridge.ami.message import AmiMessage
from bridge.call_log.log_lines import CallLogLines
from bridge.call_log.spool import CallLogSpool, default_spool_path
from bridge.call_log.store import CallLogStore
from bridge.call_log.writer import CallLogWriter
from bridge.calls.pipeline import CallPipeline
from bridge.calls.tracker import CallTracker
from bridge.cluster_node import ClusterNode
from bridge.gc_schedule import CollectorSchedule
from bridge.metrics import BridgeMetrics
from bridge.pbx_link import PbxLink, ResyncListener
from bridge.settings import CallbridgeSettings, ConfigError
from crm_adapters.lookup import LookupService
from recordings.plugin import attach_recordings
from reports.plugin import attach_reports
from screenpop.app import console_cluster, console_names, console_resync, create_web_app
from screenpop.console_http import SCREENPOP_KEY
from supervision.plugin import attach_wallboard
from web.admin_http import attach_admin
from web.features import BridgeParts, PbxFacts
from web.ops_http import OPS_PATHS, add_ops_routes
from web.pages import add_favicon
from web.users import UserStore
from web.ws_tasks import SOCKETS_KEY

log = logging.getLogger("callbridge")

STOP_BUDGET = 2.0  # seconds the call log may take to drain at stop before the spool keeps the rest
_CLOSE_BUDGET = 1.0  # each database-backed part's close, so a hung database cannot hold the exit
_WEB_BUDGET = 2.0  # the web app's cleanup: browsers closed, every feature stopped
_READY_DB_BUDGET = 2.0  # /readyz's database check: within a load balancer's usual probe timeout


class BridgeService:
    def __init__(self, settings: CallbridgeSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock  # our clock, handed to the features (tests pass a recorded one)
        self.store = CallLogStore(settings.database_url)
        spool = settings.call_log_spool or default_spool_path(settings.database_url)
        self.writer = CallLogWriter(self.store, spool=CallLogSpool(spool))
        pbxes = settings.pbxes()
        # One model per PBX in one pipeline; all PBXes but the first prefix their call ids
        # with their own id (two Asterisks may hand out the same Uniqueid).
        self.pipeline = CallPipeline(trackers=[
            CallTracker(p.operator_pattern or settings.operator_pattern, pbx=p.id,
                        id_prefix="" if i == 0 else f"{p.id}:") for i, p in enumerate(pbxes)])
        self.links = {p.id: PbxLink(p, self.pipeline) for p in pbxes}
        self.main = next(iter(self.links.values()))
        # Several nodes: each PBX's link runs on its owner only (bridge.cluster_node).
        self.owned_listeners: list[Callable[[str], Awaitable[Any]]] = []  # BridgeParts.on_owned
        self.cluster = (ClusterNode(settings.cluster, settings.database_url, self.pipeline, self.links,
                                    self.store, self.writer, self.owned_listeners)
                        if settings.cluster.redis_url else None)
        self.lookup = LookupService.from_settings(settings.crm, self.store)
        self.metrics = BridgeMetrics(self)
        self.web_runner: web.AppRunner | None = None
        self.web_address: tuple[str, int] | None = None
        self.stuck: list[str] = []  # what did not finish within its budget at stop()
        self.gc = CollectorSchedule()

    @property
    def client(self) -> AmiClient:
        """The first PBX's AMI client (the only one in a one-PBX configuration)."""
        return self.main.client

    async def start(self) -> None:
        await self.store.open()
        await self.writer.start()  # first writes the finished calls a previous run left in the spool
        # A spooled call may still be live in the database (its end never got there): it is finished.
        live = [c for c in await self.store.live_calls() if c.call_id not in self.writer.recovered]
        if live:
            log.info("%d calls were live when the bridge last stopped; the PBX will tell", len(live))
        for tracker in self.pipeline.trackers.values():
            tracker.restore(live)
        self.pipeline.subscribe(self.writer.handle)
        self.pipeline.subscribe(CallLogLines(self.cluster.owns if self.cluster is not None else None))
        await self.lookup.open()
        await self._start_web()
        if self.cluster is not None:
            await self.cluster.start()  # stands by for each PBX; its lock's holder runs the link
        else:
            for link in self.links.values():
                await link.start()
        # Everything made so far (imports, settings, the web app) lives as long as the
        # process: frozen out of the collector, which runs on a timer from now on.
        self.gc.start()
        log.info("bridge started: %s %s, call log %s", "PBXes" if len(self.links) > 1 else "PBX",
                 ", ".join(self.links), self.store.engine.url.render_as_string(hide_password=True))

    async def _start_web(self) -> None:
        http = self.settings.http
        self.users = UserStore(self.store)
        # The console (auth and the operators' cards) is the app every other page joins.
        app = create_web_app(self.pipeline, self.lookup, user_store=self.users,
                             auth_options={"secure_cookie": http.secure_cookie,
                                           "session_max_age": http.session_max_age,
                                           "idle_timeout": http.idle_timeout,
                                           "trusted_proxies": [str(n) for n in http.trusted_proxies],
                                           "public_paths": OPS_PATHS,
                                           "allowed_origins": http.public_origins,
                                           # a cluster's nodes share the keys and the throttle
                                           "secret": http.secret_key.get_secret_value().encode()
                                           if http.secret_key is not None else None,
                                           "redis": self.cluster.redis if self.cluster is not None else None},
                             send_action=self.send_action, store=self.store,
                             console=self.settings.console)
        add_favicon(app)  # every page's icon (web.pages)
        parts = self.parts(app)
        caller_names, operator_names = console_names(app)
        parts.on_resync(console_resync(app))  # the operators' own states after every connect
        console_cluster(app, parts)  # a PBX's owner asks the CRM for every node
        # Every feature attaches the same way (web.features): subscribed to the model, its
        # routes on the app, its start and stop with the app's.
        self.recorder = attach_recordings(parts, self.settings.recordings)
        self.wallboard = attach_wallboard(parts, self.settings.wallboard, caller_names=caller_names,
                                          operator_names=operator_names)
        self.reports = attach_reports(parts, self.settings.reports)
        attach_admin(parts, self.users)
        add_ops_routes(app, readiness=self.readiness, registry=self.metrics.registry,
                       allowed=tuple(http.ops_networks), trusted_proxies=tuple(http.trusted_proxies))
        self.lookup.on_request_time = self.metrics.observe_crm_request
        app[SCREENPOP_KEY].on_pop = self.metrics.observe_card_pop
        self.web_runner = web.AppRunner(app, access_log=None)
        await self.web_runner.setup()
        site = web.TCPSite(self.web_runner, http.host, http.port)
        try:
            await site.start()
        except OSError as exc:  # one line naming the option, not a traceback (issue 13)
            await self.web_runner.cleanup()
            self.web_runner = None
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror or exc})"
            raise ConfigError(f"the web port {http.host}:{http.port} {why}: choose another with "
                              "--http-port N (or [http] port in the configuration)") from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.web_address = sockets[0].getsockname()[:2] if sockets else (http.host, http.port)
        log.info("web console on http://%s:%s/ (operators: /console)", *self.web_address)

    async def send_action(self, action: dict[str, str], timeout: float | None = None,  # noqa: ASYNC109
                          pbx: str | None = None) -> AmiMessage:
        """An action to a PBX (the first one unless named); in a cluster, by its owner."""
        link = self.links.get(pbx, self.main) if pbx else self.main
        if self.cluster is not None:
            return await self.cluster.send_action(action, timeout, link.id)
        return await link.send_action(action, timeout=timeout)

    def pbx_ready(self, pbx: str | None = None) -> bool:
        """The PBX (every PBX unless named) is logged in and resynced."""
        if pbx:
            return pbx in self.links and self._ready(pbx)
        return all(self._ready(p) for p in self.links)

    def _ready(self, pbx: str) -> bool:
        return self.cluster.pbx_ready(pbx) if self.cluster is not None else self.links[pbx].ready

    def owns(self, pbx: str) -> bool:
        """Whether this node writes for the PBX (always, but in a cluster: its owner only)."""
        return self.cluster is None or self.cluster.owns(pbx)

    def on_resync(self, listener: ResyncListener) -> None:
        for link in self.links.values():
            link.resync_listeners.append(listener)

    def pbx_status(self, pbx: str) -> dict[str, Any]:
        link = self.links[pbx]
        return {"connected": link.ready, "owner": self.owns(pbx),
                "standby_session": link.standing_by and link.client.ready,
                "events": self.pipeline.events_by_pbx.get(pbx, 0),
                "live_calls": len(self.pipeline.trackers[pbx].live_calls())}

    def metrics_snapshot(self) -> dict[str, Any]:
        """Read by /metrics (bridge.metrics) at each scrape."""
        sockets = self.web_runner.app.get(SOCKETS_KEY) if self.web_runner is not None else None
        return {
            "pbx": {pbx: self.pbx_status(pbx) for pbx in self.links},
            "call_log": {"pending": self.writer.pending, "failures": self.writer.failures,
                         "written": self.writer.calls_written},
            "websockets": len(sockets) if sockets is not None else 0,
            "crm_breakers": {name: b.state for name, b in self.lookup.breakers.items()},
        }

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """/readyz: the database answers, and each PBX is connected as its owner here (or,
        in a cluster, stood by for another node)."""
        database = await _database_answers(self.store)
        pbxes = {}
        for pbx in self.links:
            status = self.pbx_status(pbx)
            pbxes[pbx] = ("standby" if not status["owner"] else "owner" if status["connected"]
                          else "owner, not connected")
        ready = database and all(state in ("owner", "standby") for state in pbxes.values())
        details: dict[str, Any] = {"database": "ok" if database else "unreachable", "pbx": pbxes}
        if self.cluster is not None:  # a node cut from Redis neither follows its PBXes nor routes actions
            # Its own AMI session per PBX it follows (cluster.standby): without it a takeover
            # still works, resyncing only.
            details["standby_sessions"] = {pbx: "logged in" if link.client.ready else "not logged in"
                                           for pbx, link in self.links.items() if link.standing_by}
            redis = await self.cluster.redis_answers()
            ready = ready and redis
            details["redis"] = "ok" if redis else "unreachable"
        return ready, details

    def parts(self, app: web.Application) -> BridgeParts:
        """What a feature may use of this bridge (web.features)."""
        return BridgeParts(
            pipeline=self.pipeline, store=self.store, app=app, send_action=self.send_action,
            pbx_ready=self.pbx_ready, on_resync=self.on_resync,
            operator_pattern=self.settings.operator_pattern, timezone=self.settings.timezone,
            clock=self.clock, pbxes=tuple(self.links), owns=self.owns,
            on_owned=self.owned_listeners.append,
            **({"share": self.cluster.share, "on_shared": self.cluster.on_shared} if self.cluster else {}),
            pbx_settings={p.id: PbxFacts(p.operator_pattern or self.settings.operator_pattern,
                                         p.timezone or self.settings.timezone)
                          for p in self.settings.pbxes()})  # pbxes(): the defaults filled in

    async def stop(self) -> None:
        if self.cluster is not None:
            await _bounded(self.cluster.stop(), _WEB_BUDGET, "cluster leases and streams", self.stuck)
        for link in self.links.values():
            await link.stop()
        if self.web_runner is not None:  # the features stop with the app (the recorder saves its rows)
            await _bounded(self.web_runner.cleanup(), _WEB_BUDGET, "web server and features", self.stuck)
        if not await self.writer.stop(give_up_after=STOP_BUDGET):
            self.stuck.append("call log writer")
        await _bounded(self.lookup.close(), _CLOSE_BUDGET, "CRM lookup", self.stuck)
        await _bounded(self.store.close(), _CLOSE_BUDGET, "call log database", self.stuck)
        await self.gc.stop()
        log.info("bridge stopped%s", f" (gave up on: {', '.join(self.stuck)})" if self.stuck else "")


async def _database_answers(store: CallLogStore) -> bool:
    try:
        async with asyncio.timeout(_READY_DB_BUDGET), store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # unreachable, refused, timed out: all "no"
        return False


async def _bounded(work: Awaitable[object], seconds: float, what: str, stuck: list[str]) -> None:
    """Await `work` at most `seconds`; past that, abandon it (not waiting for its cancellation,
    which a driver blocked on a locked database may not honour soon) and note it in `stuck`."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        stuck.append(what)
        log.warning("stopping: %s did not close within %g s; abandoned", what, seconds)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("stopping: closing %s failed: %s", what, task.exception())


async def run_until_stopped(settings: CallbridgeSettings, service: BridgeService | None = None) -> None:
    service = service or BridgeService(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
        if service.stuck:
            # A database that hangs keeps its driver's threads (and asyncio.run's teardown,
            # which awaits the abandoned tasks) busy for many seconds more. Finished calls
            # are fsync'd in the spool, so leave now rather than wait for it.
            log.warning("exiting without waiting for the database; finished calls are in the spool")
            logging.shutdown()
            os._exit(0)
