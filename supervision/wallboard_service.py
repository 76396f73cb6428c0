"""The supervisor's wallboard: the live picture fed by the pipeline, its alerts, and the
wiring into the bridge.

One site per PBX (supervision.pbx_site: a QueueBoard, a SpyBook, the spies ringing, the PBX's
clock), each fed by the pipeline's events of its PBX (raw queue/ChanSpy/OriginateResponse
events tagged `.pbx`, domain events by their call's `pbx`); after a PBX's (re)connect its
QueueStatus and channel list replace its queues, live calls and spy sessions, and nobody
else's. A loop wakes on changes (a burst makes one frame) and every second: alerts (logged,
audited as "system"), then the listeners are told (supervision.http pushes a frame to the
pages if the picture changed). Board times are each PBX's clock (event Timestamps moved on by
our clock), as in resync. "Today" is a calendar day in each PBX's zone (`pbx_settings`: its
`[[pbx]] timezone`, else the top-level `timezone`), and its operators are the extensions that
match its own `operator_pattern`; at start today's finished calls are counted again from the
call log, each on its PBX's board, today being decided by the injectable clock.

The supervisor actions (spy, queue members, pause) are in `supervision.supervisor_actions`,
the spy sessions' tracking in `supervision.spy_tracking`, `[wallboard]` settings in
`supervision.settings`; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import OperatorDirectory
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import DEFAULT_PBX, CallRecord
from supervision.models import Alert, WallboardSnapshot
from supervision.pbx_actions import SpyBook
from supervision.pbx_site import CLOCK_STEP_BACK, PbxSite
from supervision.queue_board import QueueBoard
from supervision.settings import WallboardSettings
from supervision.spy_tracking import SpyTracking
from supervision.supervisor_actions import (
    ActionResult,
    PendingSpy,
    SendAction,
    SupervisorActions,
    SupervisorError,
)
from web.features import PbxFacts
from web.users import resolve_pbx

# The AMI events on_ami_event reads ("*": a prefix).
RAW_EVENTS = ("Queue*", "Agent*", "ChanSpy*", "OriginateResponse", "Newchannel")

log = logging.getLogger("callbridge.wallboard")

__all__ = ["CLOCK_STEP_BACK", "ActionResult", "PendingSpy", "SupervisorError", "WallboardService",
           "WallboardSettings"]

Names = Callable[[str], str | None]


class WallboardService(SpyTracking, SupervisorActions):
    def __init__(self, settings: WallboardSettings | None = None, *, send_action: SendAction,
                 audit: Any | None = None, operators: OperatorDirectory | None = None,
                 caller_names: Names | None = None, operator_names: Names | None = None,
                 pbx_connected: Callable[..., bool] | None = None,
                 history: Callable[[datetime], Awaitable[list[CallRecord]]] | None = None,
                 clock: Callable[[], float] = time.time, timezone: str | tzinfo = UTC,
                 pbx_settings: Mapping[str, PbxFacts] | None = None) -> None:
        self.settings = settings or WallboardSettings()
        # `timezone` and `operators`: the top-level ones, for a PBX not in `pbx_settings`.
        self.tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.send_action, self.audit = send_action, audit  # audit: web.audit_log.AuditLog
        self.operators = operators or OperatorDirectory()
        self.pbx_settings = dict(pbx_settings or {})  # each PBX's pattern and zone (BridgeParts)
        self.caller_names, self.operator_names = caller_names, operator_names  # CRM / user store
        # pbx_connected(pbx): that PBX logged in and resynced (BridgeParts.pbx_ready)
        self.pbx_connected, self.history, self.clock = pbx_connected, history, clock
        # One site per PBX, the first (main) one first: the pipeline's models once attached.
        self.sites: dict[str, PbxSite] = {DEFAULT_PBX: self._new_site(DEFAULT_PBX)}
        self.pipeline: CallPipeline | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # actions the PBX's events call for
        self.activity: deque[dict[str, Any]] = deque(maxlen=40)  # alerts and actions, newest last
        self.listeners: list[Callable[[float], None]] = []  # told at each refresh (PBX time)
        self._audits: list[tuple[str, dict[str, Any]]] = []  # (action, record kwargs) to write
        # One writer at a time: a flush returns once the lines another flush took are written too.
        self._audit_writing = asyncio.Lock()
        self.owns: Callable[[str], bool] = lambda pbx: True  # this node writes for the PBX (BridgeParts)
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _new_site(self, pbx: str, id_prefix: str = "") -> PbxSite:
        s, facts = self.settings, self.pbx_settings.get(pbx)
        # Its own pattern and zone: another PBX's 2xx may be its operators, its midnight another.
        operators = OperatorDirectory(facts.operator_pattern) if facts else self.operators
        tz = ZoneInfo(facts.timezone) if facts else self.tz
        board = QueueBoard(operators, target_seconds=s.target_seconds,
                           after_call_seconds=s.after_call_seconds, thresholds=dict(s.thresholds),
                           default_thresholds=s.default_thresholds, tz=tz, policy=s.service_level,
                           pbx=pbx)
        return PbxSite(pbx, board, SpyBook.create(operators, id_prefix), id_prefix)

    # -- the PBXes ---------------------------------------------------------------------------

    @property
    def main(self) -> PbxSite:
        return next(iter(self.sites.values()))

    @property
    def pbxes(self) -> list[str]:
        return list(self.sites)

    def site(self, pbx: str | None = None) -> PbxSite:
        """A PBX's site (the first PBX's unless named); an unknown PBX is refused."""
        if not pbx:
            return self.main
        found = self.sites.get(pbx)
        if found is None:
            raise SupervisorError(f"No PBX {pbx[:40]!r} here (PBXes: {', '.join(self.sites)}).")
        return found

    def _site_of(self, pbx: str) -> PbxSite:
        """The site of an event's PBX: as the pipeline, the first one's when untagged or unknown."""
        return self.sites.get(pbx, self.main) if pbx else self.main

    # The first PBX's parts (the only PBX's, in a one-PBX configuration).
    @property
    def board(self) -> QueueBoard:
        return self.main.board

    @property
    def spies(self) -> SpyBook:
        return self.main.spies

    @property
    def pending(self) -> dict[str, PendingSpy]:
        return self.main.pending

    @property
    def spy_calls(self) -> set[str]:
        return self.main.spy_calls

    @property
    def requested_by(self) -> dict[str, str]:
        return self.main.requested_by

    def connected(self, pbx: str) -> bool:
        return self.pbx_connected is None or bool(self.pbx_connected(pbx))

    # -- wiring ----------------------------------------------------------------------------

    def attach(self, pipeline: CallPipeline) -> None:
        """Subscribe to the pipeline; its PBXes (one model each) become the board's sites."""
        self.pipeline = pipeline
        sites = {}
        for pbx, tracker in pipeline.trackers.items():
            site = self.sites.get(pbx) or self._new_site(pbx)
            site.id_prefix = site.spies.id_prefix = tracker.id_prefix
            sites[pbx] = site
        self.sites = sites
        pipeline.subscribe(self.on_call_event)
        pipeline.subscribe_raw(self.on_ami_event, RAW_EVENTS)

    async def start(self) -> None:
        if self.history is not None:
            await self._seed_today()
        self._task = asyncio.create_task(self._run(), name="wallboard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._tasks):
            task.cancel()
        await self._write_audits()

    async def _seed_today(self) -> None:
        """Today's figures survive a bridge restart: finished calls come from the call log,
        each counted on its own PBX's board from its own midnight (one query for all, from the
        earliest of the PBXes' midnights)."""
        assert self.history is not None
        now = self.clock()
        midnights = {pbx: site.today_starts(now) for pbx, site in self.sites.items()}
        try:
            records = await self.history(min(midnights.values()))
        except Exception as exc:  # the live picture still works without the morning's calls
            log.warning("today's figures not loaded from the call log: %s", exc)
            return
        for record in records:
            # "main" (rows from before PBX ids): the first PBX's; a PBX no longer configured: not shown
            site = self.sites.get(resolve_pbx(record.pbx, self.pbxes))
            if site is None or record.ended_at is None or record.call_id in site.board.live_calls:
                continue
            if record.entered_at < midnights[site.id].timestamp():  # before its PBX's own midnight
                continue
            site.board.handle_domain(CallEnded(at=record.ended_at, call=record))

    def today_starts(self, pbx: str | None = None) -> datetime:
        """Midnight of the clock's today in a PBX's zone (the first PBX's unless named)."""
        return self.site(pbx).today_starts(self.clock())

    def zone(self, pbx: str | None = None) -> tzinfo:
        """A PBX's zone (the first PBX's unless named): its "today", its clock on the pages."""
        return self.site(pbx).tz

    def now(self, pbx: str | None = None) -> float:
        """A PBX's clock (the first PBX's unless named): see supervision.pbx_site.PbxClock."""
        return self.site(pbx).clock.now(self.clock())

    # -- what the PBX says -----------------------------------------------------------------

    def on_call_event(self, event: DomainEvent) -> None:
        site = self._site_of(event.call.pbx)
        site.board.handle_domain(event)
        if isinstance(event, CallEnded):
            site.spy_calls.discard(event.call_id)
        self._dirty.set()

    def on_ami_event(self, ev: AmiMessage) -> None:
        site = self._site_of(ev.pbx)
        if "Timestamp" in ev:
            site.clock.seen(ev.timestamp, self.clock())
        name = ev.event or ""
        if name.startswith(("Queue", "Agent")):
            site.board.handle(ev)
            if name.startswith("QueueCaller"):  # a caller came or went: that queue's alerts at once
                self._check_alerts(site, self.now(site.id), ev.get("Queue"))
            # (a wait grows with time alone: the tick checks every queue each second)
        elif name.startswith("ChanSpy"):
            self._on_spy_event(site, ev)
        elif name == "OriginateResponse" and ev.action_id in site.pending:
            self._on_originate_response(site, ev)
        elif name == "Newchannel" and (site.pending or site.cancelled):
            self._on_listener_channel(site, ev)
        else:
            return
        self._dirty.set()

    def on_resync(self, channels: Iterable[AmiMessage], queue_status: Iterable[AmiMessage],
                  at: float, pbx: str | None = None) -> None:
        """After a PBX's (re)connect its lists are the truth for that PBX (BridgeParts.on_resync;
        its items are tagged with it). They are dated by the board's own PBX time, not `at`:
        right after a connect the link dates them by FullyBooted, which has no Timestamp, i.e.
        by our machine's clock."""
        channels, queue_status = list(channels), list(queue_status)
        tagged = pbx or next((item.pbx for item in (*channels, *queue_status) if item.pbx), "")
        if not tagged and len(self.sites) > 1:
            # Empty lists do not say whose they are: only the models (the truth for every PBX)
            # are read again; no PBX's queues or spy sessions are touched.
            for site in self.sites.values():
                self._resync_calls(site)
            self._dirty.set()
            return
        site = self._site_of(tagged)
        at = self.now(site.id)
        site.board.apply_queue_status(queue_status, at)
        self._resync_calls(site)
        self._resync_spies(site, channels, at)
        self._check_alerts(site, at)
        self._dirty.set()

    def _resync_calls(self, site: PbxSite) -> None:
        """The PBX's model was just resynced: its live calls are the truth."""
        tracker = self.pipeline.trackers.get(site.id) if self.pipeline is not None else None
        if tracker is None:
            return
        live = {c.call_id: c for c in (call.snapshot() for call in tracker.live_calls())}
        site.board.live_calls = live
        for calls in site.board.ringing.values():
            calls.intersection_update(live)

    # -- alerts, the picture -----------------------------------------------------------------

    def _check_alerts(self, site: PbxSite, now: float, queue: str | None = None) -> None:
        raised, cleared = site.board.evaluate_alerts(now, queue)
        for alert, state in [*((a, "raised") for a in raised), *((a, "cleared") for a in cleared)]:
            text = self._where(site) + _alert_text(alert, state)
            (log.warning if state == "raised" else log.info)("wallboard alert %s", text)
            self._note(f"alert.{state}", text, site, queue=alert.queue, alert=alert.kind)
            if not self.owns(site.id):
                continue  # in a cluster every node sees the alert; its owner audits it
            self._audits.append((f"alert.{state}", {
                "username": "system", "target": alert.queue, "result": alert.kind,
                "detail": {"value": alert.value, "limit": alert.limit, "pbx": site.id}}))

    def _where(self, site: PbxSite) -> str:
        """"b: " before a text about PBX b when there are several (names are per PBX)."""
        return f"{site.id}: " if len(self.sites) > 1 else ""

    def _note(self, kind: str, text: str, site: PbxSite | None = None, **extra: Any) -> None:
        site = site or self.main
        self.activity.append({"at": self.now(site.id), "kind": kind, "text": self._where(site) + text,
                              "pbx": site.id, **extra})

    async def _run(self) -> None:
        s = self.settings
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(s.tick_seconds):
                    await self._dirty.wait()
                await asyncio.sleep(s.coalesce_seconds)  # the rest of a burst joins this frame
            self._dirty.clear()
            try:
                await self.flush()
            except Exception:  # one bad refresh must not stop the wallboard
                log.exception("wallboard refresh failed")

    async def flush(self) -> None:
        """Alerts as of now, their audit lines written, the listeners told."""
        limit = self.settings.supervision.originate_timeout_ms / 1000 + 10
        for site in self.sites.values():
            now = self.now(site.id)
            site.pending = {k: p for k, p in site.pending.items() if now - p.at < limit}
            site.cancelled = {k: at for k, at in site.cancelled.items() if now - at < limit}
            self._check_alerts(site, now)
        await self._write_audits()
        now = self.now()
        for listener in list(self.listeners):
            listener(now)

    async def _write_audits(self) -> None:
        async with self._audit_writing:
            audits, self._audits = self._audits, []
            for action, fields in audits if self.audit is not None else ():
                try:
                    await self.audit.record(action=action, **fields)
                except Exception:
                    log.exception("audit line %s not written", action)

    def snapshot(self, now: float | None = None, pbx: str | None = None) -> WallboardSnapshot:
        """The boards of every PBX (or of `pbx` only) side by side, with the CRM's caller names,
        without the listeners' own calls. Each board is seen at its PBX's time; `now`, if given,
        is the first PBX's; the snapshot's `at` is the first shown PBX's."""
        sites = [self.site(pbx)] if pbx else list(self.sites.values())
        snaps = [self._site_snapshot(site, now if now is not None and site is self.main else None)
                 for site in sites]
        return snaps[0].model_copy(update={
            key: [item for snap in snaps for item in getattr(snap, key)]
            for key in ("queues", "operators", "live_calls", "alerts")})

    def _site_snapshot(self, site: PbxSite, now: float | None) -> WallboardSnapshot:
        snap = site.board.snapshot(self.now(site.id) if now is None else now)
        calls = [c.model_copy(update={"caller_name": self._caller(c.call_id, c.caller_name)})
                 for c in snap.live_calls if c.call_id not in site.spy_calls]
        operators = [o.model_copy(update={"name": o.name or self._names(self.operator_names, o.operator),
                                          "with_caller": self._caller(o.call_id, o.with_caller)})
                     for o in snap.operators]
        return snap.model_copy(update={"live_calls": calls, "operators": operators})

    def _caller(self, call_id: str | None, fallback: str | None) -> str | None:
        return (self._names(self.caller_names, call_id) if call_id else None) or fallback

    @staticmethod
    def _names(names: Names | None, key: str | None) -> str | None:
        if names is None or key is None:
            return None
        try:
            return names(key)
        except Exception:  # a name is a nicety: the number still shows
            return None

    def name_of(self, ext: str | None, pbx: str | None = None) -> str | None:
        board = self.site(pbx).board
        return (board.names.get(ext) if ext else None) or self._names(self.operator_names, ext)

    def label(self, ext: str | None, pbx: str | None = None) -> str:
        name = self.name_of(ext, pbx)
        return f"{name} ({ext})" if name else (ext or "?")


def _alert_text(alert: Alert, state: str) -> str:
    what = (f"{alert.value:g} callers waiting (limit {alert.limit:g})" if alert.kind == "callers_waiting"
            else f"longest wait {alert.value:g} s (limit {alert.limit:g} s)")
    return f"{alert.queue}: {what}" + (" — recovered" if state == "cleared" else "")
