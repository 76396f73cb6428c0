"""The supervisor's wallboard: the live picture fed by the pipeline, its alerts, and the
wiring into the bridge.

A QueueBoard and a SpyBook fed by the pipeline (raw queue/ChanSpy/OriginateResponse events,
domain events); after every (re)connect the PBX's QueueStatus and channel list replace the
queues, live calls and spy sessions. A loop wakes on changes (a burst makes one frame) and
every second: alerts (logged, audited as "system"), then the listeners are told
(supervision.http pushes a frame to the pages if the picture changed).
Board times are the PBX's clock (event Timestamps moved on by our clock), as in resync.
"Today" is a calendar day in the configured `timezone`; at start today's finished calls are
counted again from the call log, today being decided by the injectable clock.

The supervisor actions (spy, queue members, pause) are in `supervision.supervisor_actions`,
`[wallboard]` settings in `supervision.settings`; their names are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import OperatorDirectory
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import CallRecord
from supervision.models import Alert, WallboardSnapshot
from supervision.pbx_actions import SpyBook, SpySession, spy_mode_of
from supervision.queue_board import QueueBoard
from supervision.settings import WallboardSettings
from supervision.supervisor_actions import (
    ActionResult,
    PendingSpy,
    SendAction,
    SupervisorActions,
    SupervisorError,
)

log = logging.getLogger("callbridge.wallboard")

__all__ = ["ActionResult", "PendingSpy", "SupervisorError", "WallboardService", "WallboardSettings"]

Names = Callable[[str], str | None]
# A PBX time this far behind the board's is the PBX's clock set back, not a late event.
CLOCK_STEP_BACK = 5.0


class WallboardService(SupervisorActions):
    def __init__(self, settings: WallboardSettings | None = None, *, send_action: SendAction,
                 audit: Any | None = None, operators: OperatorDirectory | None = None,
                 caller_names: Names | None = None, operator_names: Names | None = None,
                 pbx_connected: Callable[[], bool] | None = None,
                 history: Callable[[datetime], Awaitable[list[CallRecord]]] | None = None,
                 clock: Callable[[], float] = time.time, timezone: str | tzinfo = UTC) -> None:
        self.settings = s = settings or WallboardSettings()
        self.tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.send_action, self.audit = send_action, audit  # audit: web.audit_log.AuditLog
        self.operators = operators or OperatorDirectory()
        self.caller_names, self.operator_names = caller_names, operator_names  # CRM / user store
        self.pbx_connected, self.history, self.clock = pbx_connected, history, clock
        self.board = QueueBoard(self.operators, target_seconds=s.target_seconds,
                                after_call_seconds=s.after_call_seconds, thresholds=dict(s.thresholds),
                                default_thresholds=s.default_thresholds, tz=self.tz, policy=s.service_level)
        self.spies = SpyBook.create(self.operators)
        self.pipeline: CallPipeline | None = None
        self.pending: dict[str, PendingSpy] = {}  # by the Originate's ActionID
        self.requested_by: dict[str, str] = {}  # listener extension -> who set his session up
        self.cancelled: dict[str, float] = {}  # listener -> when his ringing session was cancelled
        self._tasks: set[asyncio.Task[Any]] = set()  # actions the PBX's events call for
        self.spy_calls: set[str] = set()  # Linkedids of the listeners' own calls: not callers
        self.activity: deque[dict[str, Any]] = deque(maxlen=40)  # alerts and actions, newest last
        self.listeners: list[Callable[[float], None]] = []  # told at each refresh (PBX time)
        self._audits: list[tuple[str, dict[str, Any]]] = []  # (action, record kwargs) to write
        self._last_event: tuple[float, float] | None = None  # (PBX time, our time)
        self._now = 0.0
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- wiring ----------------------------------------------------------------------------

    def attach(self, pipeline: CallPipeline) -> None:
        self.pipeline = pipeline
        pipeline.subscribe(self.on_call_event)
        pipeline.subscribe_raw(self.on_ami_event)

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
        """Today's figures survive a bridge restart: finished calls come from the call log."""
        assert self.history is not None
        try:
            records = await self.history(self.today_starts())
        except Exception as exc:  # the live picture still works without the morning's calls
            log.warning("today's figures not loaded from the call log: %s", exc)
            return
        for record in records:
            if record.ended_at is not None and record.call_id not in self.board.live_calls:
                self.board.handle_domain(CallEnded(at=record.ended_at, call=record))

    def today_starts(self) -> datetime:
        """Midnight of the clock's today in the configured zone (where a DST change skips
        midnight, zoneinfo gives the first moment of the day)."""
        today = datetime.fromtimestamp(self.clock(), self.tz).date()
        return datetime.combine(today, datetime.min.time(), tzinfo=self.tz)

    def now(self) -> float:
        """The PBX's clock: its last event's Timestamp moved on by our elapsed time. Not
        backwards for an event that took a while to reach us (a wait must not shorten: alerts
        flap), but a PBX clock that was set back (a replay starting again in the present after
        running ahead, an NTP step) is followed: an old clock never makes a long wait."""
        if self._last_event is None:
            return self.clock()
        pbx_at, our_at = self._last_event
        pbx_now = pbx_at + max(0.0, self.clock() - our_at)
        self._now = pbx_now if pbx_now < self._now - CLOCK_STEP_BACK else max(self._now, pbx_now)
        return self._now

    # -- what the PBX says -----------------------------------------------------------------

    def on_call_event(self, event: DomainEvent) -> None:
        self.board.handle_domain(event)
        if isinstance(event, CallEnded):
            self.spy_calls.discard(event.call_id)
        self._dirty.set()

    def on_ami_event(self, ev: AmiMessage) -> None:
        if "Timestamp" in ev:
            self._last_event = (ev.timestamp, self.clock())
        name = ev.event or ""
        if name.startswith(("Queue", "Agent")):
            self.board.handle(ev)
            self._check_alerts(self.now())  # at once, not at the next tick
        elif name.startswith("ChanSpy"):
            self._on_spy_event(ev)
        elif name == "OriginateResponse" and ev.action_id in self.pending:
            self._on_originate_response(ev)
        elif name == "Newchannel" and (self.pending or self.cancelled):
            self._on_listener_channel(ev)
        else:
            return
        self._dirty.set()

    def on_resync(self, channels: Iterable[AmiMessage], queue_status: Iterable[AmiMessage],
                  at: float) -> None:
        """After a (re)connect the PBX's lists are the truth (BridgeService.resync_listeners).
        They are dated by the board's own PBX time, not `at`: right after a connect the service
        dates them by FullyBooted, which has no Timestamp, i.e. by our machine's clock."""
        at = self.now()
        self.board.apply_queue_status(list(queue_status), at)
        if self.pipeline is not None:  # the model was just resynced: its live calls are the truth
            live = {c.call_id: c.snapshot() for c in self.pipeline.tracker.live_calls()}
            self.board.live_calls = live
            for calls in self.board.ringing.values():
                calls.intersection_update(live)
        self._resync_spies(list(channels), at)
        self._check_alerts(at)
        self._dirty.set()

    def _listener_prefix(self, listener: str) -> str:
        """How the PBX names the listener's channels: `Local/202@supervisor-…;1`, `PJSIP/202-…`."""
        dialled = self.settings.supervision.supervisor_channel.format(ext=listener)
        tech, _, resource = dialled.partition("/")
        return f"{tech}/{resource.split('/', 1)[0] if tech == 'Local' else resource}-"

    def _on_listener_channel(self, ev: AmiMessage) -> None:
        """The phone a spy Originate rings: kept to cancel it; rung after a cancel: hung up."""
        channel = ev.get("Channel") or ""
        for pending in self.pending.values():
            if pending.channel is None and channel.startswith(self._listener_prefix(pending.listener)):
                pending.channel = channel
                return
        for listener in self.cancelled:
            if channel.startswith(self._listener_prefix(listener)):
                self._in_background(self.send_action({"Action": "Hangup", "Channel": channel}))
                return

    def _in_background(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as exc:  # the PBX's answer is in the audit when it matters
                log.warning("wallboard action failed: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_spy_event(self, ev: AmiMessage) -> None:
        session = self.spies.handle(ev)
        if session is None:
            return
        who, whom = self.label(session.supervisor), self.label(session.operator)
        if ev.event == "ChanSpyStart":
            if ev.get("SpyerLinkedid"):
                self.spy_calls.add(ev["SpyerLinkedid"])
            found = self.pending_of(session.supervisor or "")
            self.pending = {k: p for k, p in self.pending.items() if p.listener != session.supervisor}
            if found is not None:  # ours: started with `d`, in the mode of the Originate
                pending = found[1]
                session = session.model_copy(update={"switchable": True, "mode": pending.started_as})
                self.spies.sessions[session.spyer_channel] = session
                if pending.mode != pending.started_as and pending.user is not None:
                    self._in_background(self.switch_spy(pending.user, session, pending.mode))
            elif (session.supervisor or "") in self.cancelled:  # cancelled, answered all the same
                self._in_background(self.send_action(self.spies.hangup_action(session)))
            verb = {"listen": "listening to", "whisper": "whispering to", "barge": "barging in on"}
            self._note("spy.started", f"{who} is {verb.get(session.mode or '', 'spying on')} {whom}")
        else:
            self._note("spy.stopped", f"{who} stopped listening to {whom}")

    def _on_originate_response(self, ev: AmiMessage) -> None:
        if ev.get("Uniqueid"):
            self.spy_calls.add(ev["Uniqueid"])
        if ev.response == "Success":
            return  # ChanSpyStart follows
        pending = self.pending.pop(ev.action_id or "")
        answer = f"{ev.response}: Reason {ev.get('Reason', '?')}"
        self._note("spy.failed", f"{self.label(pending.listener)} did not answer the {pending.mode} call")
        self._audits.append(("spy.originate_response", {
            "username": pending.requested_by, "target": pending.operator, "result": answer,
            "detail": {"listener": pending.listener, "mode": pending.mode}}))

    def _resync_spies(self, channels: list[AmiMessage], at: float) -> None:
        """A live ChanSpy channel is a session (its options tell the mode); the rest ended."""
        live = {ch["Channel"]: ch for ch in channels if ch.get("Channel")}
        for spyer in [s for s in self.spies.sessions if s not in live]:
            del self.spies.sessions[spyer]
        for name, ch in live.items():
            if ch.get("Application") != "ChanSpy" or name in self.spies.sessions:
                continue
            target, _, options = (ch.get("ApplicationData") or "").partition(",")
            operator = self.operators.operator_of(target)
            call_id = next((c.get("Linkedid") for c in live.values() if operator is not None
                            and c.get("Application") != "ChanSpy" and c.get("Linkedid") != ch.get("Linkedid")
                            and self.operators.operator_of(c["Channel"]) == operator), None)
            mode, switchable = spy_mode_of(options)
            self.spies.sessions[name] = SpySession(
                spyer_channel=name, supervisor=self.operators.operator_of(name), operator=operator,
                call_id=call_id, mode=mode, started_at=at - _seconds(ch.get("Duration")),
                switchable=switchable)
            if ch.get("Linkedid"):
                self.spy_calls.add(ch["Linkedid"])

    # -- alerts, the picture -----------------------------------------------------------------

    def _check_alerts(self, now: float) -> None:
        raised, cleared = self.board.evaluate_alerts(now)
        for alert, state in [*((a, "raised") for a in raised), *((a, "cleared") for a in cleared)]:
            text = _alert_text(alert, state)
            (log.warning if state == "raised" else log.info)("wallboard alert %s", text)
            self._note(f"alert.{state}", text, queue=alert.queue, alert=alert.kind)
            self._audits.append((f"alert.{state}", {
                "username": "system", "target": alert.queue, "result": alert.kind,
                "detail": {"value": alert.value, "limit": alert.limit}}))

    def _note(self, kind: str, text: str, **extra: Any) -> None:
        self.activity.append({"at": self.now(), "kind": kind, "text": text, **extra})

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
        now = self.now()
        limit = self.settings.supervision.originate_timeout_ms / 1000 + 10
        self.pending = {k: p for k, p in self.pending.items() if now - p.at < limit}
        self.cancelled = {k: at for k, at in self.cancelled.items() if now - at < limit}
        self._check_alerts(now)
        await self._write_audits()
        for listener in list(self.listeners):
            listener(now)

    async def _write_audits(self) -> None:
        audits, self._audits = self._audits, []
        for action, fields in audits if self.audit is not None else ():
            try:
                await self.audit.record(action=action, **fields)
            except Exception:
                log.exception("audit line %s not written", action)

    def snapshot(self, now: float | None = None) -> WallboardSnapshot:
        """The board with the CRM's caller names, without the listeners' own calls."""
        snap = self.board.snapshot(self.now() if now is None else now)
        calls = [c.model_copy(update={"caller_name": self._caller(c.call_id, c.caller_name)})
                 for c in snap.live_calls if c.call_id not in self.spy_calls]
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

    def name_of(self, ext: str | None) -> str | None:
        return (self.board.names.get(ext) if ext else None) or self._names(self.operator_names, ext)

    def label(self, ext: str | None) -> str:
        name = self.name_of(ext)
        return f"{name} ({ext})" if name else (ext or "?")

def _seconds(value: str | None) -> float:
    """CoreShowChannel's `Duration: HH:MM:SS`."""
    try:
        hours, minutes, seconds = (int(p) for p in (value or "").split(":"))
    except ValueError:
        return 0.0
    return float(hours * 3600 + minutes * 60 + seconds)


def _alert_text(alert: Alert, state: str) -> str:
    what = (f"{alert.value:g} callers waiting (limit {alert.limit:g})" if alert.kind == "callers_waiting"
            else f"longest wait {alert.value:g} s (limit {alert.limit:g} s)")
    return f"{alert.queue}: {what}" + (" — recovered" if state == "cleared" else "")
