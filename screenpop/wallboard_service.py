"""The supervisor's wallboard and live control: the bridge's side of it.

A QueueBoard and a SpyBook fed by the pipeline (raw queue/ChanSpy/OriginateResponse events,
domain events); after every (re)connect the PBX's QueueStatus and channel list replace the
queues, live calls and spy sessions. A loop wakes on changes (a burst makes one frame) and
every second: alerts (logged, audited as "system"), then the listeners are told
(screenpop.wallboard_http pushes a frame to the pages if the picture changed). Supervisor
actions build the AMI action (bridge.supervision), send it through the injected
`send_action`, audit who did what to whom with the PBX's answer, and return that answer.
Board times are the PBX's clock (event Timestamps moved on by our clock), as in resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bridge.ami_actions import AmiActionTimeout, AmiError
from bridge.ami_message import AmiMessage
from bridge.call_record import CallRecord
from bridge.channel_names import OperatorDirectory
from bridge.domain_events import CallEnded, DomainEvent
from bridge.pipeline import CallPipeline
from bridge.queue_board import QueueBoard
from bridge.supervision import (
    SpyBook,
    SpyMode,
    SpySession,
    SupervisionSettings,
    queue_add_action,
    queue_pause_action,
    queue_remove_action,
    spy_action,
)
from bridge.wallboard_models import Alert, AlertThresholds, WallboardSnapshot
from screenpop.hub import ConsoleUser

if TYPE_CHECKING:
    from aiohttp import web

    from bridge.service import BridgeService

log = logging.getLogger("callbridge.wallboard")

SendAction = Callable[[dict[str, str]], Awaitable[AmiMessage]]
Names = Callable[[str], str | None]


class WallboardSettings(BaseModel):
    """`[wallboard]` of the main settings."""

    model_config = ConfigDict(extra="forbid")

    target_seconds: float = Field(30.0, gt=0)  # answered within this wait counts as on target
    after_call_seconds: float = Field(10.0, ge=0)  # an operator shows after-call work this long
    default_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    thresholds: dict[str, AlertThresholds] = Field(default_factory=dict)  # per queue, over the default
    alert_sound: bool = True  # the pages' alert sound starts on (each page can switch it off)
    tick_seconds: float = Field(1.0, gt=0)  # alerts and timers refresh this often
    coalesce_seconds: float = Field(0.05, ge=0)  # the rest of a burst joins the frame
    action_timeout: float = Field(10.0, gt=0)  # seconds to wait for the PBX's answer
    supervision: SupervisionSettings = Field(default_factory=SupervisionSettings)


class ActionResult(BaseModel):
    """The PBX's answer to one supervisor action, as the page shows it."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    action: str  # spy.listen|whisper|barge, spy.end, queue.add, queue.remove, queue.pause, queue.unpause
    target: str | None
    ami_action: str
    response: str  # the PBX's Response (Success, Error), or Timeout / Unavailable
    message: str  # the PBX's Message, or why there was no answer
    action_id: str | None = None  # the AMI ActionID (a spy's OriginateResponse carries it)
    detail: dict[str, Any] = Field(default_factory=dict)


class SupervisorError(Exception):
    """A refused action (never sent to the PBX); `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(slots=True)
class PendingSpy:
    """A spy we originated: the listener's phone rings until ChanSpyStart."""

    listener: str
    operator: str
    mode: SpyMode
    requested_by: str
    at: float


class WallboardService:
    def __init__(self, settings: WallboardSettings | None = None, *, send_action: SendAction,
                 audit: Any | None = None, operators: OperatorDirectory | None = None,
                 caller_names: Names | None = None, operator_names: Names | None = None,
                 pbx_connected: Callable[[], bool] | None = None,
                 history: Callable[[datetime], Awaitable[list[CallRecord]]] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = s = settings or WallboardSettings()
        self.send_action, self.audit = send_action, audit  # audit: bridge.audit_log.AuditLog
        self.operators = operators or OperatorDirectory()
        self.caller_names, self.operator_names = caller_names, operator_names  # CRM / user store
        self.pbx_connected, self.history, self.clock = pbx_connected, history, clock
        self.board = QueueBoard(self.operators, target_seconds=s.target_seconds,
                                after_call_seconds=s.after_call_seconds, thresholds=dict(s.thresholds),
                                default_thresholds=s.default_thresholds)
        self.spies = SpyBook.create(self.operators)
        self.pipeline: CallPipeline | None = None
        self.pending: dict[str, PendingSpy] = {}  # by the Originate's ActionID
        self.requested_by: dict[str, str] = {}  # listener extension -> who set his session up
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
        await self._write_audits()

    async def _seed_today(self) -> None:
        """Today's figures survive a bridge restart: finished calls come from the call log."""
        assert self.history is not None
        try:  # a day and a half back: the board keeps days apart by itself
            records = await self.history(datetime.fromtimestamp(self.clock() - 36 * 3600, UTC))
        except Exception as exc:  # the live picture still works without the morning's calls
            log.warning("today's figures not loaded from the call log: %s", exc)
            return
        for record in records:
            if record.ended_at is not None and record.call_id not in self.board.live_calls:
                self.board.handle_domain(CallEnded(at=record.ended_at, call=record))

    def now(self) -> float:
        """The PBX's clock: its last event's Timestamp moved on by our elapsed time. Never
        backwards: an event that took a while to reach us must not shorten a wait (alerts flap)."""
        if self._last_event is None:
            return self.clock()
        pbx_at, our_at = self._last_event
        self._now = max(self._now, pbx_at + max(0.0, self.clock() - our_at))
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
        else:
            return
        self._dirty.set()

    def on_resync(self, channels: Iterable[AmiMessage], queue_status: Iterable[AmiMessage],
                  at: float) -> None:
        """After a (re)connect the PBX's lists are the truth (BridgeService.resync_listeners)."""
        self._last_event = (at, self.clock())
        self.board.apply_queue_status(list(queue_status), at)
        if self.pipeline is not None:  # the model was just resynced: its live calls are the truth
            live = {c.call_id: c.snapshot() for c in self.pipeline.tracker.live_calls()}
            self.board.live_calls = live
            for calls in self.board.ringing.values():
                calls.intersection_update(live)
        self._resync_spies(list(channels), at)
        self._check_alerts(at)
        self._dirty.set()

    def _on_spy_event(self, ev: AmiMessage) -> None:
        session = self.spies.handle(ev)
        if session is None:
            return
        who, whom = self.label(session.supervisor), self.label(session.operator)
        if ev.event == "ChanSpyStart":
            if ev.get("SpyerLinkedid"):
                self.spy_calls.add(ev["SpyerLinkedid"])
            self.pending = {k: p for k, p in self.pending.items() if p.listener != session.supervisor}
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
            mode: SpyMode = "barge" if "B" in options else "whisper" if "w" in options else "listen"
            self.spies.sessions[name] = SpySession(
                spyer_channel=name, supervisor=self.operators.operator_of(name), operator=operator,
                call_id=call_id, mode=mode, started_at=at - _seconds(ch.get("Duration")))
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

    # -- actions ---------------------------------------------------------------------------------

    async def spy(self, user: ConsoleUser, operator: str, mode: SpyMode, listener: str | None = None,
                  remote: str | None = None) -> ActionResult:
        """Ring `listener` (default: the user's own first extension; a trainee's for shadowing),
        ChanSpy on `operator` in `mode`. A session live on that phone ends first (a switch)."""
        listener = listener or (user.extensions[0] if user.extensions else None)
        if not listener:
            raise SupervisorError("You have no extension of your own: say which phone should listen.")
        if listener == operator:
            raise SupervisorError("An operator cannot listen to his own calls.")
        action = _build(spy_action, self.settings.supervision, listener, operator, mode, user.display_name)
        ended = [await self._end(user, s, remote, "switch") for s in self.spies.of_supervisor(listener)]
        self.spies.requested_mode(listener, mode)
        detail = {"listener": listener, "shadowing": listener not in user.extensions,
                  "ended": [r.model_dump() for r in ended]}
        result = await self.run_action(user, f"spy.{mode}", operator, action, remote, detail)
        if result.ok and result.action_id:
            self.pending[result.action_id] = PendingSpy(listener, operator, mode, user.username, self.now())
            self.requested_by[listener] = user.username
        return result

    async def end_spy(self, user: ConsoleUser, spyer_channel: str, remote: str | None = None) -> ActionResult:
        session = self.spies.sessions.get(spyer_channel)
        if session is None:  # only a known session's channel: this is no general Hangup
            raise SupervisorError("No such spy session (it may have ended already).", 404)
        return await self._end(user, session, remote, "end")

    async def _end(self, user: ConsoleUser, spy: SpySession, remote: str | None, why: str) -> ActionResult:
        hangup, detail = self.spies.hangup_action(spy), {"spyer_channel": spy.spyer_channel,
                                                         "listener": spy.supervisor, "reason": why}
        return await self.run_action(user, "spy.end", spy.operator, hangup, remote, detail)

    async def queue_add(self, user: ConsoleUser, queue: str, extension: str, name: str, penalty: int = 0,
                        remote: str | None = None) -> ActionResult:
        action = _build(queue_add_action, self.settings.supervision, queue, extension, name, penalty)
        detail = {"queue": queue, "extension": extension, "name": name, "penalty": penalty}
        return await self.run_action(user, "queue.add", f"{queue}:{extension}", action, remote, detail)

    async def queue_remove(self, user: ConsoleUser, queue: str, extension: str,
                           remote: str | None = None) -> ActionResult:
        action = _build(queue_remove_action, self.settings.supervision, queue, extension)
        detail = {"queue": queue, "extension": extension}
        return await self.run_action(user, "queue.remove", f"{queue}:{extension}", action, remote, detail)

    async def pause(self, user: ConsoleUser, extension: str, paused: bool, reason: str = "",
                    queue: str | None = None, remote: str | None = None) -> ActionResult:
        action = _build(queue_pause_action, self.settings.supervision, extension, paused, reason, queue)
        what = "queue.pause" if paused else "queue.unpause"
        detail = {"extension": extension, "reason": reason, "queue": queue}
        return await self.run_action(user, what, extension, action, remote, detail)

    async def run_action(self, user: ConsoleUser, what: str, target: str | None, action: Mapping[str, str],
                         remote: str | None, detail: dict[str, Any] | None = None) -> ActionResult:
        """Send one AMI action, audit it with the PBX's answer, note it for the pages."""
        reply: AmiMessage | None = None
        try:
            reply = await self.send_action(dict(action))
        except AmiActionTimeout as exc:
            response, message = "Timeout", str(exc)
        except AmiError as exc:
            response, message = "Unavailable", str(exc)
        else:
            response, message = reply.response or "?", reply.get("Message") or ""
        result = ActionResult(ok=reply is not None and reply.success, action=what, target=target,
                              ami_action=action["Action"], response=response, message=message,
                              action_id=reply.action_id if reply is not None else None, detail=detail or {})
        answer = f"{response}: {message}" if message else response
        self._note(what, f"{user.display_name or user.username}: {what} {target or ''} -> {answer}",
                   user=user.username)
        self._dirty.set()
        if self.audit is not None:  # awaited: an action that cannot be audited fails loudly
            await self.audit.record(user.username, what, role=str(user.role), target=target, result=answer,
                                    detail={**(detail or {}), "ami": dict(action)}, remote=remote)
        return result


def _build(make: Callable[..., dict[str, str]], *args: Any) -> dict[str, str]:
    try:
        return make(*args)
    except ValueError as exc:  # not an extension: never reaches the PBX
        raise SupervisorError(str(exc)) from None


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


def attach_wallboard(service: BridgeService, app: web.Application,
                     settings: WallboardSettings | None = None) -> WallboardService:
    """Wire the wallboard into the bridge and its web app: call it in `_start_web` right
    after `create_web_app` (before the runner is set up)."""
    from bridge.audit_log import AuditLog
    from screenpop.console_http import SCREENPOP_KEY
    from screenpop.wallboard_http import SERVICE_KEY, add_wallboard_routes

    if (attached := app.get(SERVICE_KEY)) is not None:  # once per app, whoever calls it first
        return attached
    settings = settings or getattr(service.settings, "wallboard", None) or WallboardSettings()
    screenpop = app.get(SCREENPOP_KEY)

    def crm_name(call_id: str) -> str | None:
        found = screenpop.book.caller(call_id) if screenpop is not None else None
        return found.contact.display_name if found is not None and found.contact is not None else None

    async def send(action: dict[str, str]) -> AmiMessage:
        return await service.client.send_action(action, timeout=settings.action_timeout)

    wallboard = WallboardService(
        settings, send_action=send, audit=AuditLog(service.store),
        operators=OperatorDirectory(service.settings.operator_pattern), caller_names=crm_name,
        operator_names=screenpop.book.operator_names if screenpop is not None else None,
        pbx_connected=lambda: service.client.ready, history=service.store.export)
    wallboard.attach(service.pipeline)
    service.resync_listeners.append(wallboard.on_resync)
    add_wallboard_routes(app, wallboard)
    return wallboard
