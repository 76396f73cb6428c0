"""AMI connection layer: panoramisk's Manager with its weak spots fixed.

Public API::

    client = AmiClient(host, port, username, secret, *, ping_interval=10.0, ping_timeout=5.0,
                       action_timeout=10.0, backoff_initial=0.5, backoff_max=30.0,
                       fully_booted_timeout=10.0)
    client.on_event(handler)        # handler(event: AmiMessage), sync or async; one handler
    client.on_ready(coro_fn)        # async () -> None, after each login + FullyBooted
    client.on_disconnect(fn)        # (reason: str), sync or async, when a logged-in session ends
    client.on_alive(fn)             # (pbx_time: float), sync, on every Ping reply: the PBX's proof of life
    await client.start()            # connects in the background, returns at once
    await client.wait_ready(timeout) -> bool   # on_ready has run for the current session
    response = await client.send_action({"Action": "Originate", ...}, timeout=None, check=False)
    items = await client.send_list_action({"Action": "CoreShowChannels"}, timeout=None)
    await client.stop()
    await client.in_order(coro_fn)  # run in the consumer, in order with the events
    client.raw_sink = fn            # (arrived, [bytes]): a hot standby's events, undecoded
    client.connected / logged_in / ready / reconnects / last_error / status()

Ordering (bridge.ami.consumer): every event, the `on_ready` call, the `on_disconnect` call
and each `in_order(call)` go through ONE queue drained by ONE task, awaited one after
another. The handler therefore sees
`..., FullyBooted, <on_ready runs>, ...events..., <on_disconnect runs>, ...` exactly in
arrival order. `on_ready` may send actions (replies are routed straight from the socket,
not through the queue); events that arrive meanwhile wait in the queue, so a resync
from CoreShowChannels is applied before the events that follow it.

Actions: `send_action` returns the reply (`Response: Error` included, see `.success`);
with `check=True` a non-success reply raises `AmiActionError` carrying the PBX's
Message. `send_list_action` collects the list's events (without the initial response
and the `...Complete` event, which are `.response` and `.complete` of the returned
`AmiEventList`); an error reply always raises `AmiActionError`. List items answer the
action and are NOT given to the event handler. Every action is bounded by a timeout
(`action_timeout`, or `timeout=` per call): `AmiActionTimeout`. Actions pending when
the connection drops fail with `AmiConnectionLost` and are never re-sent; sending
while not logged in raises `AmiNotConnected` at once.

Connection: login, wait for `FullyBooted` (Asterisk sends it straight after login; if
it has not come within `fully_booted_timeout`, e.g. the AMI user lacks the `system`
read class, a warning is logged and the session is declared ready anyway), then a Ping
every `ping_interval`; a Ping unanswered within `ping_timeout` closes the connection.
A PBX that cannot be reached (connect refused, unreachable, timed out) is probed every
`probe_interval` (a refused connect costs nothing), so the bridge logs in within about
that long once it is back; the outage is one log line, then a reminder with its length
at most every `reminder_interval`. Failures that retrying fast cannot fix (login refused,
no login reply, a session that dies) are one log line each (no traceback) and a retry
after a backoff that doubles from `backoff_initial` up to `backoff_max` and is reset by
a successful login. The TCP connect is bounded by `action_timeout` too.

What of panoramisk this replaces, and why: the bridge.ami package docstring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from functools import partial
from typing import Any

from panoramisk.manager import Manager

from bridge.ami.actions import (
    ActionTracker,
    AmiActionError,
    AmiActionTimeout,
    AmiConnectionLost,
    AmiError,
    AmiEventList,
    AmiNotConnected,
    PendingAction,
    action_name,
)
from bridge.ami.consumer import _STOP, EventConsumer, _Marker
from bridge.ami.message import AmiMessage
from bridge.ami.outage_log import OutageLog, Unreachable, os_reason
from bridge.ami.protocol import AmiProtocol, ReadGate

__all__ = [
    "AmiActionError", "AmiActionTimeout", "AmiClient", "AmiConnectionLost", "AmiError",
    "AmiEventList", "AmiNotConnected",
]

log = logging.getLogger(__name__)

EventHandler = Callable[[AmiMessage], Awaitable[None] | None]
ReadyCallback = Callable[[], Awaitable[None]]
DisconnectCallback = Callable[[str], Awaitable[None] | None]


class _LoginFailed(AmiError):
    pass


class AmiClient(EventConsumer, Manager):
    """See the module docstring."""

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 ping_interval: float = 10.0, ping_timeout: float = 5.0, action_timeout: float = 10.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 fully_booted_timeout: float = 10.0, max_queued_events: int = 20_000,
                 probe_interval: float = 0.5, reminder_interval: float = 30.0) -> None:
        for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout),
                            ("action_timeout", action_timeout), ("backoff_initial", backoff_initial),
                            ("backoff_max", backoff_max), ("fully_booted_timeout", fully_booted_timeout),
                            ("probe_interval", probe_interval), ("reminder_interval", reminder_interval)):
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        super().__init__(host=host, port=port, username=username, secret=secret,
                         protocol_factory=AmiProtocol, log=log)
        # panoramisk registers FullyBooted -> send_awaiting_actions; we never re-send.
        self.callbacks.clear()
        self.patterns.clear()
        del self.on_disconnect  # panoramisk's instance attribute would hide our method
        self.address = f"{host}:{port}"
        self.username = username
        self.ping_interval = ping_interval  # type: ignore[assignment]  # panoramisk int()s these
        self.ping_timeout = ping_timeout
        self.action_timeout = action_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.fully_booted_timeout = fully_booted_timeout
        self.probe_interval = probe_interval
        self.reminder_interval = reminder_interval
        self._outage = OutageLog(log, probe_interval, reminder_interval)
        self.reconnects = 0
        self.last_error: str | None = None
        self.protocol: AmiProtocol | None = None
        self._tracker = ActionTracker()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._gate = ReadGate(max_queued_events)
        self._handler: EventHandler | None = None
        self._ready_cb: ReadyCallback | None = None
        self._disconnect_cb: DisconnectCallback | None = None
        self._alive_cb: Callable[[float], None] | None = None
        # A hot standby's sink: (arrival time, a read's undecoded events), see `keep_raw`.
        self.raw_sink: Callable[[float, list[bytes]], None] | None = None
        # > 0: the socket is read every `lazy_reads` s only (AmiProtocol._read_later).
        self.lazy_reads = 0.0
        self._ready = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._session = 0
        self._last_login_session = 0
        self._ready_marked = 0
        self._lost: asyncio.Future[str] | None = None
        self._booted: asyncio.Future[None] | None = None
        self._drop_reason: str | None = None
        self._stopping = False

    # -- registration -----------------------------------------------------------------
    def on_event(self, handler: EventHandler) -> EventHandler:
        self._handler = handler
        return handler

    def on_ready(self, callback: ReadyCallback) -> ReadyCallback:
        self._ready_cb = callback
        return callback

    def on_disconnect(self, callback: DisconnectCallback) -> DisconnectCallback:
        self._disconnect_cb = callback
        return callback

    def on_alive(self, callback: Callable[[float], None]) -> Callable[[float], None]:
        self._alive_cb = callback
        return callback

    # -- status -----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def logged_in(self) -> bool:
        return self.authenticated

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def backlog(self) -> int:
        """Events (and markers) read but not handled yet."""
        return self._queue.qsize()

    def status(self) -> dict[str, Any]:
        return {"connected": self.connected, "logged_in": self.logged_in, "ready": self.ready,
                "reconnects": self.reconnects, "last_error": self.last_error,
                "pending_actions": len(self._tracker), "queued_events": self._queue.qsize(),
                "read_pauses": self._gate.pauses}

    # -- lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        self.connect()

    def connect(self, *_: Any, **__: Any) -> asyncio.Task[None]:  # type: ignore[override]
        """Start the consumer and the connection supervisor (idempotent)."""
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume(), name="ami-events")
        if self._runner is None or self._runner.done():
            self._stopping = False
            self._runner = asyncio.create_task(self._run(), name="ami-connection")
        return self._runner

    async def wait_ready(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (API: bool, not raise)
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Close the connection, fail pending actions, deliver what is queued, then stop."""
        self._stopping = True
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            with suppress(asyncio.CancelledError):
                await runner
        self._tracker.fail_all(lambda p: AmiConnectionLost(p.action, p.action_id, "client stopped"))
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            self._queue.put_nowait(_STOP)
            if consumer is not asyncio.current_task():
                try:
                    await asyncio.wait_for(consumer, drain_timeout)
                except TimeoutError:
                    log.warning("AMI event handler still busy after %g s; stopped", drain_timeout)

    def read_promptly(self) -> None:
        """End lazy reading: what the kernel holds is read now, and every event as it comes."""
        self.lazy_reads = 0.0
        if self.protocol is not None:
            self.protocol.read_now()

    def read_gate_holds(self) -> AmiProtocol | None:
        """The connection the back-pressure gate paused, if any (it resumes it itself)."""
        return self._gate.paused_on

    # -- actions ----------------------------------------------------------------------
    # `timeout=` per call (ASYNC109): the action's own bound, reported in AmiActionTimeout.
    async def send_action(self, action: Mapping[str, Any], *,  # type: ignore[override]
                          timeout: float | None = None, check: bool = False) -> AmiMessage:  # noqa: ASYNC109
        return (await self._request(action, timeout, is_list=False)).checked_response(check)

    async def send_list_action(self, action: Mapping[str, Any], *,
                               timeout: float | None = None) -> AmiEventList:  # noqa: ASYNC109
        return (await self._request(action, timeout, is_list=True)).event_list()

    async def ping(self) -> AmiMessage:  # type: ignore[override]
        """One Ping, answered within `ping_timeout` or AmiActionTimeout."""
        pending = await self._request({"Action": "Ping"}, self.ping_timeout, is_list=False, login=True)
        return pending.checked_response(check=False)

    async def _request(self, action: Mapping[str, Any], seconds: float | None, *,
                       is_list: bool, login: bool = False) -> PendingAction:
        protocol = self.protocol
        if protocol is None or protocol.closed or not (login or self.authenticated):
            state = "logged in to" if protocol is not None and not protocol.closed else "connected to"
            raise AmiNotConnected(action_name(action), None, f"not {state} AMI at {self.address}")
        seconds = self.action_timeout if seconds is None else seconds
        self._gate.release()  # the reply must be able to come in
        return await self._tracker.request(action, protocol.send, seconds, is_list)

    # -- connection supervisor --------------------------------------------------------
    async def _run(self) -> None:
        delay = self.backoff_initial
        while True:
            session = self._session + 1
            unreachable = False
            try:
                reason = await self._connect_once()
                message = f"AMI connection to {self.address} lost: {reason}"
            except _LoginFailed as exc:
                message = f"AMI login to {self.address} as {self.username} failed: {exc}"
            except AmiConnectionLost as exc:  # during login
                message = f"AMI login to {self.address} as {self.username} failed: {exc.reason}"
            except AmiActionTimeout as exc:
                message = (f"AMI login to {self.address} as {self.username} failed: "
                           f"no reply within {exc.seconds:g} s")
            except Unreachable as exc:
                message = f"cannot reach AMI at {self.address}: {exc}"
                unreachable = True
            except OSError as exc:
                message = f"AMI session with {self.address} failed: {os_reason(exc)}"
            except Exception as exc:  # a bug: keep the traceback, keep reconnecting
                log.exception("AMI session with %s failed unexpectedly", self.address)
                message = f"AMI session failed: {exc!r}"
            if self._last_login_session == session:
                delay = self.backoff_initial  # this attempt logged in: start the backoff over
            self.last_error = message
            if unreachable:
                # Nothing answers: probing costs one refused connect, and finds the PBX back at once.
                self._outage.unreachable(message)
                await asyncio.sleep(self.probe_interval)
                continue
            self._outage.reached()
            log.warning("%s; retrying in %g s", message, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _connect_once(self) -> str:
        """One connection from TCP connect to its loss; returns why it was lost."""
        loop = asyncio.get_running_loop()
        self._session += 1
        self._lost = lost = loop.create_future()
        self._booted = booted = loop.create_future()
        self._drop_reason = None
        try:
            await asyncio.wait_for(
                loop.create_connection(partial(AmiProtocol, self), self.config["host"], self.config["port"]),
                self.action_timeout)
        except OSError as exc:  # refused, unreachable, or the connect timed out (TimeoutError)
            raise Unreachable(os_reason(exc)) from None
        try:
            response = (await self._request(
                {"Action": "Login", "Username": self.username, "Secret": self.config["secret"],
                 "Events": self.config["events"]}, None, is_list=False, login=True)).checked_response(False)
            if not response.success:
                raise _LoginFailed(response.get("Message") or f"Response: {response.response}")
            self.authenticated = True
            if self._last_login_session:
                self.reconnects += 1
            self._last_login_session = self._session
            self.last_error = None
            version = self.protocol.version if self.protocol else None
            outage = self._outage.reached()
            log.info("AMI logged in to %s as %s (%s)%s", self.address, self.username,
                     version or "no banner", outage)
            if not booted.done():
                await asyncio.wait({booted, lost}, timeout=self.fully_booted_timeout)
                if not booted.done() and not lost.done():
                    log.warning("no FullyBooted from AMI at %s within %g s (does %s have the 'system' "
                                "read class?); going on", self.address, self.fully_booted_timeout,
                                self.username)
            if not lost.done():
                self._mark_ready()
                await self._watchdog(lost)
        finally:
            if not lost.done():
                self._drop("client stopped" if self._stopping else "closed by the client")
                await asyncio.wait({lost}, timeout=1.0)
        return lost.result() if lost.done() else "closed by the client"

    async def _watchdog(self, lost: asyncio.Future[str]) -> None:
        # panoramisk pings and ignores the reply: a half-open connection looks alive forever.
        while True:
            done, _ = await asyncio.wait({lost}, timeout=self.ping_interval)
            if done:
                return
            try:
                reply = await self.ping()  # any reply, even an error, proves the PBX is there
                if self._alive_cb is not None:
                    try:
                        self._alive_cb(reply.timestamp)  # the reply's Timestamp: the PBX's clock
                    except Exception:
                        log.exception("AMI on_alive callback failed; continuing")
            except AmiActionTimeout:
                self._drop(f"no reply to Ping within {self.ping_timeout:g} s")
                await asyncio.wait({lost}, timeout=1.0)
            except AmiConnectionLost:
                pass  # `lost` is done; the next wait returns

    def _drop(self, reason: str) -> None:
        if self._drop_reason is None:
            self._drop_reason = reason
        if self.protocol is not None:
            self.protocol.close()

    # -- callbacks from the protocol --------------------------------------------------
    def _protocol_made(self, protocol: AmiProtocol) -> None:
        self.protocol = protocol
        self._connected = True

    def _message_received(self, protocol: AmiProtocol, message: AmiMessage) -> None:
        if protocol is not self.protocol or self._tracker.route(message):
            return
        if not message.is_event:
            log.debug("AMI reply that no action waits for: %r", message)
            return
        self.dispatch(message)
        if message.event == "FullyBooted" and self._booted is not None and not self._booted.done():
            self._booted.set_result(None)
            if self.authenticated:
                self._mark_ready()  # right behind FullyBooted in the queue

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._drop_reason or (f"{exc}" if exc else "connection closed by the PBX")
        was_logged_in = self.authenticated
        self._connected = False
        self.authenticated = False
        self._ready.clear()
        self._tracker.fail_all(lambda p: AmiConnectionLost(p.action, p.action_id, reason))
        self._gate.paused_on = None  # that socket is gone
        if was_logged_in:
            self._queue.put_nowait(_Marker("disconnect", self._session, reason))
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(reason)
