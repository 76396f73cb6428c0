"""The running bridge: AMI connection -> pipeline -> subscribers (call log, log lines).

`callbridge serve` runs this against a real PBX; `callbridge demo` against the AMI
simulator. On every (re)connect it resyncs from CoreShowChannels/QueueStatus so calls
that started or ended while we were away are neither lost nor duplicated.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time

from aiohttp import web

from bridge.ami_actions import AmiError
from bridge.ami_client import AmiClient
from bridge.ami_message import AmiMessage
from bridge.call_events_log import log_call_event
from bridge.call_log_store import CallLogStore
from bridge.call_log_writer import CallLogWriter
from bridge.call_state import CallTracker
from bridge.pipeline import CallPipeline
from bridge.settings import CallbridgeSettings
from crm_adapters.lookup import LookupService

log = logging.getLogger("callbridge")


class BridgeService:
    def __init__(self, settings: CallbridgeSettings) -> None:
        self.settings = settings
        self.store = CallLogStore(settings.database_url)
        self.writer = CallLogWriter(self.store)
        self.pipeline = CallPipeline(CallTracker(settings.operator_pattern))
        ami = settings.ami
        self.client = AmiClient(
            ami.host, ami.port, ami.username, ami.secret.get_secret_value(),
            ping_interval=ami.ping_interval, ping_timeout=ami.ping_timeout,
            action_timeout=ami.action_timeout, backoff_max=ami.backoff_max,
        )
        self.queue_status: list[AmiMessage] = []
        self.lookup = LookupService.from_settings(settings.crm, self.store)
        self.web_runner: web.AppRunner | None = None
        # Called after each resync with (channels, queue status, PBX time): the wallboard
        # replaces its queue picture from the QueueStatus answer.
        self.resync_listeners: list = []
        self.web_address: tuple[str, int] | None = None
        # (PBX timestamp, our clock) of the last event: resync times use the PBX's clock.
        self._last_event: tuple[float, float] | None = None
        # A resync snapshot waits for the events that reached us before it (they sit in
        # the client's queue), so the model sees the PBX's history in its true order.
        self._pending_resync: tuple[list[AmiMessage], int] | None = None
        self._events_handled = 0

    async def start(self) -> None:
        await self.store.open()
        live = await self.store.live_calls()
        if live:
            log.info("%d calls were live when the bridge last stopped; the PBX will tell", len(live))
        self.pipeline.tracker.restore(live)
        await self.writer.start()
        self.pipeline.subscribe(self.writer.handle)
        self.pipeline.subscribe(log_call_event)
        await self.lookup.open()
        await self._start_recorder()
        await self._start_web()
        self.client.on_event(self._on_event)
        self.client.on_ready(self._resync)
        self.client.on_disconnect(self._on_disconnect)
        await self.client.start()
        # Everything made so far (imports, settings, the web app) lives as long as the
        # process: keep it out of the collector, whose full passes over it stalled the
        # event loop for ~100-190 ms (bench/screenpop.py), to ~11 ms.
        gc.collect()
        gc.freeze()
        log.info("bridge started: AMI %s:%s, call log %s", self.settings.ami.host,
                 self.settings.ami.port, self.store.engine.url.render_as_string(hide_password=True))

    async def _start_recorder(self) -> None:
        from recordings.recorder import Recorder
        from recordings.store import RecordingStore

        self.recording_store = RecordingStore(self.store)
        self.recorder = Recorder(self.settings.recordings, self.client.send_action, self.recording_store)
        await self.recorder.start()
        self.pipeline.subscribe(self.recorder.handle)
        self.pipeline.subscribe_raw(self.recorder.on_ami_event)

    def _add_recordings(self, app: web.Application) -> None:
        from bridge.audit_log import AuditLog
        from recordings.http import RecordingsApi, setup_recordings
        from recordings.review_store import ReviewStore

        settings = self.settings.recordings
        self.audit = AuditLog(self.store)
        reviews = ReviewStore(self.store, settings.review_criteria)
        setup_recordings(app, RecordingsApi(settings, self.recording_store, reviews, self.audit,
                                            self.store, self.recorder))

    async def _start_web(self) -> None:
        from screenpop.app import create_web_app
        from screenpop.users import UserStore

        self.users = UserStore(self.store)
        http = self.settings.http
        app = create_web_app(self.pipeline, self.lookup, user_store=self.users,
                             auth_options={"secure_cookie": http.secure_cookie,
                                           "session_max_age": http.session_max_age})
        self._add_recordings(app)
        from recordings.pages import add_review_pages
        from screenpop.wallboard_service import attach_wallboard

        self.wallboard = attach_wallboard(self, app)

        add_review_pages(app)
        self.web_runner = web.AppRunner(app, access_log=None)
        await self.web_runner.setup()
        site = web.TCPSite(self.web_runner, http.host, http.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.web_address = sockets[0].getsockname()[:2] if sockets else (http.host, http.port)
        log.info("web console on http://%s:%s/ (operators: /console)", *self.web_address)

    async def stop(self) -> None:
        await self.client.stop()
        if self.web_runner is not None:
            await self.web_runner.cleanup()
        await self.writer.stop()
        if getattr(self, "recorder", None) is not None:
            await self.recorder.stop()
        await self.lookup.close()
        await self.store.close()
        log.info("bridge stopped")

    def _on_event(self, event: AmiMessage) -> None:
        if self._pending_resync is not None and self._events_handled >= self._pending_resync[1]:
            self._apply_resync(self._pending_resync[0])
        self._events_handled += 1
        self._last_event = (event.timestamp, time.time())
        self.pipeline.feed(event)

    def _pbx_now(self) -> float:
        """Resync time in the PBX's clock: its last Timestamp moved on by our elapsed time."""
        if self._last_event is None:
            return time.time()
        pbx_at, our_at = self._last_event
        return pbx_at + (time.time() - our_at)

    async def _resync(self) -> None:
        try:
            channels = await self.client.send_list_action({"Action": "CoreShowChannels"})
            self.queue_status = list(await self.client.send_list_action({"Action": "QueueStatus"}))
        except AmiError as exc:
            log.warning("resync after connect failed: %s; live state may lag until the next one", exc)
            return
        # The snapshot is the PBX right after the events dispatched before its reply;
        # those still queued behind this callback must reach the model first.
        if channels.stream_position > self._events_handled:
            self._pending_resync = (list(channels), channels.stream_position)
        else:
            self._apply_resync(list(channels))

    def _apply_resync(self, channels: list[AmiMessage]) -> None:
        self._pending_resync = None
        before = len(self.pipeline.tracker.live_calls())
        self.pipeline.resync(channels, self._pbx_now())
        after = len(self.pipeline.tracker.live_calls())
        for listener in self.resync_listeners:
            try:
                listener(channels, self.queue_status, self._pbx_now())
            except Exception:
                log.exception("resync listener %r failed", listener)
        log.info("resynced with the PBX: %d live channels, %d live calls (was %d), %d queue entries",
                 len(channels), after, before, len(self.queue_status))

    def _on_disconnect(self, reason: str) -> None:
        if reason == "client stopped":
            return  # our own shutdown, not a lost PBX
        log.warning("lost the PBX (%s); calls stay open until the resync after reconnecting", reason)


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
