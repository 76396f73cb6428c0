"""The supervisor's pages over HTTP: the wallboard, the supervisor view, their WebSocket, actions.

- `GET /wallboard`: big numbers for a screen across the room; `GET /supervisor`: the detailed
  view with the action buttons (web/static/wallboard.* and supervisor.*).
- `GET /ws/wallboard`: frames `{"type": "wallboard", ...}`, each the whole picture (the
  WallboardSnapshot plus `spies`, `activity`, `thresholds`, `alert_sound`, `pbx`,
  `server_time`, `timezone`: the zone the page shows times in; `at` is the PBX's clock, which
  the page's clock and timers run on): one at once, then whenever it changes (live timers change it every
  second). A page that falls behind only skips to the newest frame.
- `POST /api/supervisor/spy` {operator, mode: listen|whisper|barge, listener_extension?}
  (default listener: the supervisor's own first extension; a trainee's for shadowing; one
  session per listener: a second click switches its mode instead of calling again),
  `POST /api/supervisor/spy/end` {spyer_channel}, `POST /api/supervisor/spy/cancel`
  {listener_extension?} (a session whose phone still rings), `POST /api/supervisor/queue/add`
  {queue, extension, name, penalty}, `POST /api/supervisor/queue/remove` {queue, extension},
  `POST /api/supervisor/pause` {extension, paused, reason, queue?}. Answer: the ActionResult
  (the PBX's Response and Message) with `ok`; 200 when the PBX answered (whatever it said),
  504/503 when it did not, 400 for a bad body, 404 for an unknown spy session.

Every route is `require_role("supervisor", "admin")`; a refusal is a 403, the auth module's
log line and an audit-log row. CSRF on the POSTs is the auth middleware's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from aiohttp import WSCloseCode, web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from supervision.models import WallboardSnapshot
from supervision.pbx_actions import SpyMode
from supervision.wallboard_service import ActionResult, SupervisorError, WallboardService
from web.audit_log import require_role_audited
from web.pages import PAGE_HEADERS, STATIC_DIR
from web.ws_tasks import activity_listener, beside, read_until_closed, sockets_of

log = logging.getLogger(__name__)

ROLES = ("supervisor", "admin")
NO_STORE = {"Cache-Control": "no-store"}

Extension = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{2,8}$")]
QueueName = Annotated[str, StringConstraints(strip_whitespace=True,
                                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# Free text goes into AMI headers: no control characters (a CR/LF would forge a header).
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpyRequest(_Body):
    operator: Extension
    mode: SpyMode
    listener_extension: Extension | None = None


class SpyEndRequest(_Body):
    spyer_channel: str = Field(min_length=1, max_length=200)


class SpyCancelRequest(_Body):
    listener_extension: Extension | None = None


class QueueAddRequest(_Body):
    queue: QueueName
    extension: Extension
    name: Annotated[Text, StringConstraints(min_length=1)]
    penalty: int = Field(0, ge=0, le=1000)


class QueueRemoveRequest(_Body):
    queue: QueueName
    extension: Extension


class PauseRequest(_Body):
    extension: Extension
    paused: bool
    reason: Text = ""
    queue: QueueName | None = None


class WallboardHub:
    """The pages' sockets. Told by the service at each refresh; sends only a changed picture."""

    def __init__(self, service: WallboardService, *, heartbeat: float = 20.0,
                 send_timeout: float = 10.0) -> None:
        self.service, self.heartbeat, self.send_timeout = service, heartbeat, send_timeout
        self.connections: set[Connection] = set()
        service.listeners.append(self.publish)

    def frame(self, now: float | None = None) -> dict[str, Any]:
        service = self.service
        now = service.now() if now is None else now
        snap = service.snapshot(now)
        board = service.board
        thresholds = {q.name: board.thresholds.get(q.name, board.default_thresholds).model_dump(mode="json")
                      for q in snap.queues}
        connected = service.pbx_connected is None or service.pbx_connected()
        return {**snap.model_dump(mode="json"), "server_time": service.clock(),
                "spies": _spies(service, snap), "activity": list(service.activity), "thresholds": thresholds,
                "alert_sound": service.settings.alert_sound, "pbx": "connected" if connected else "lost",
                "timezone": str(service.tz)}

    def publish(self, now: float) -> None:
        if not self.connections:
            return
        frame = self.frame(now)
        key, text = _key(frame), json.dumps(frame, ensure_ascii=False)
        for conn in list(self.connections):
            if conn.last_key != key:  # the same picture again (only `at` moved) is not sent
                conn.offer(text, key)

    def attach(self, ws: web.WebSocketResponse, username: str) -> Connection:
        conn = Connection(ws, username, self.send_timeout)
        frame = self.frame()
        conn.offer(json.dumps(frame, ensure_ascii=False), _key(frame))  # the state now, not only what follows
        self.connections.add(conn)
        return conn

    async def close_all(self) -> None:
        await asyncio.gather(*(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
                               for c in list(self.connections)), return_exceptions=True)


class Connection:
    """One page: only the newest frame waits (each frame is the whole picture)."""

    def __init__(self, ws: web.WebSocketResponse, username: str, send_timeout: float) -> None:
        self.ws, self.username, self.send_timeout = ws, username, send_timeout
        self._text: str | None = None
        self._wake = asyncio.Event()
        self.last_key: str | None = None  # the picture last offered
        self.frames_sent = 0

    def offer(self, text: str, key: str) -> None:
        self._text, self.last_key = text, key
        self._wake.set()

    async def run(self, on_text: Callable[[str], Awaitable[None]] | None = None) -> None:
        await beside(self._write_loop(), read_until_closed(self.ws, on_text),
                     name=f"wallboard-ws {self.username}")

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            text, self._text = self._text, None
            if text is None:
                continue
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self.ws.send_str(text)
            except TimeoutError:
                log.warning("wallboard of %s took no frame in %g s", self.username, self.send_timeout)
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow, reconnect")
                return
            except (ConnectionError, RuntimeError):  # closed under us
                return
            self.frames_sent += 1


def _key(frame: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in frame.items() if k not in ("at", "server_time")}, sort_keys=True)


def _spies(service: WallboardService, snap: WallboardSnapshot) -> list[dict[str, Any]]:
    """Who listens to which call: live sessions, then the phones still ringing for one."""
    callers = {c.call_id: c.caller_name or c.caller_number for c in snap.live_calls}
    views = [{"state": "live", "spyer_channel": s.spyer_channel, "listener": s.supervisor,
              "listener_name": service.name_of(s.supervisor), "operator": s.operator,
              "operator_name": service.name_of(s.operator), "call_id": s.call_id,
              "caller": callers.get(s.call_id or ""), "mode": s.mode, "since": s.started_at,
              "requested_by": service.requested_by.get(s.supervisor or ""), "switchable": s.switchable}
             for s in sorted(service.spies.sessions.values(), key=lambda s: s.started_at)]
    views += [{"state": "calling", "spyer_channel": None, "listener": p.listener,
               "listener_name": service.name_of(p.listener), "operator": p.operator,
               "operator_name": service.name_of(p.operator), "call_id": None, "caller": None,
               "mode": p.mode, "since": p.at, "requested_by": p.requested_by}
              for p in service.pending.values()]
    return views


SERVICE_KEY = web.AppKey("wallboard", WallboardService)
HUB_KEY = web.AppKey("wallboard_hub", WallboardHub)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_error(status: int, error: str, message: str) -> web.Response:
    return web.json_response({"error": error, "message": message}, status=status, headers=NO_STORE)


def supervisors_only(handler: Handler) -> Handler:
    """`require_role("supervisor", "admin")`, and a refusal also goes to the audit log table."""
    return require_role_audited(*ROLES, action="supervisor.denied",
                                audit=lambda request: request.app[SERVICE_KEY].audit)(handler)


Run = Callable[[WallboardService, Any, Any, str | None], Awaitable[ActionResult]]


def _action(model: type[BaseModel], run: Run) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            body = model.model_validate(await request.json())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json_error(400, "bad_request", "The body must be a JSON object.")
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                                 for e in exc.errors())
            return _json_error(400, "bad_request", f"Invalid request: {problems}")
        try:
            result = await run(request.app[SERVICE_KEY], request["user"], body, request.remote)
        except SupervisorError as exc:
            return _json_error(exc.status, "refused", exc.message)
        status = {"Timeout": 504, "Unavailable": 503}.get(result.response, 200)
        return web.json_response(result.model_dump(mode="json"), status=status, headers=NO_STORE)

    return supervisors_only(handler)


post_spy = _action(SpyRequest, lambda s, u, b, r: s.spy(u, b.operator, b.mode, b.listener_extension, r))
post_spy_end = _action(SpyEndRequest, lambda s, u, b, r: s.end_spy(u, b.spyer_channel, r))
post_spy_cancel = _action(SpyCancelRequest, lambda s, u, b, r: s.cancel_spy(u, b.listener_extension, r))
post_queue_add = _action(QueueAddRequest,
                         lambda s, u, b, r: s.queue_add(u, b.queue, b.extension, b.name, b.penalty, r))
post_queue_remove = _action(QueueRemoveRequest, lambda s, u, b, r: s.queue_remove(u, b.queue, b.extension, r))
post_pause = _action(PauseRequest, lambda s, u, b, r: s.pause(u, b.extension, b.paused, b.reason, b.queue, r))


def _page(name: str, static_dir: Path) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        path = static_dir / name
        if not path.is_file():
            raise web.HTTPNotFound(text=f"{name} is not installed")
        return web.FileResponse(path, headers=PAGE_HEADERS)

    page.__name__ = f"page_{name.replace('.', '_')}"
    return supervisors_only(page)


@supervisors_only
async def wallboard_ws(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    ws = web.WebSocketResponse(heartbeat=hub.heartbeat, max_msg_size=4096)
    await ws.prepare(request)
    user, session = request["user"], request.get("session")
    # Closed when the session ends or the user is no longer a supervisor (web.ws_tasks);
    # the oldest of too many pages of one session or user is closed.
    entry = await sockets_of(request.app).add(
        ws, session.token_hash if session is not None else None, user.username, transport=request.transport,
        still_ok=lambda fresh: fresh.role in ROLES)
    conn = hub.attach(ws, user.username)
    try:
        await conn.run(activity_listener(request))
    finally:
        sockets_of(request.app).remove(entry)
        hub.connections.discard(conn)
    return ws


def add_wallboard_routes(app: web.Application, service: WallboardService, *,
                         static_dir: Path = STATIC_DIR) -> WallboardHub:
    """The pages, socket and actions on `app`; the service starts and stops with it.
    Assets are served by the console's `/static/` route (screenpop.console_http)."""
    hub = WallboardHub(service)
    app[SERVICE_KEY], app[HUB_KEY] = service, hub
    sockets_of(app)  # made now, before the app is frozen
    app.router.add_get("/wallboard", _page("wallboard.html", static_dir))
    app.router.add_get("/supervisor", _page("supervisor.html", static_dir))
    app.router.add_get("/ws/wallboard", wallboard_ws)
    app.router.add_post("/api/supervisor/spy", post_spy)
    app.router.add_post("/api/supervisor/spy/end", post_spy_end)
    app.router.add_post("/api/supervisor/spy/cancel", post_spy_cancel)
    app.router.add_post("/api/supervisor/queue/add", post_queue_add)
    app.router.add_post("/api/supervisor/queue/remove", post_queue_remove)
    app.router.add_post("/api/supervisor/pause", post_pause)

    async def lifecycle(app: web.Application) -> Any:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    async def close_pages(app: web.Application) -> None:
        await hub.close_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_pages)
    return hub
