"""The supervisor's pages over HTTP: the wallboard, the supervisor view, their WebSocket, actions.

- `GET /wallboard`: big numbers for a screen across the room; `GET /supervisor`: the detailed
  view with the action buttons (web/static/wallboard.* and supervisor.*).
- `GET /ws/wallboard[?pbx=ID]`: frames `{"type": "wallboard", ...}`, each the whole picture (the
  WallboardSnapshot plus `spies`, `activity`, `thresholds`, `alert_sound`, `pbx` ("connected"
  or "lost": every PBX shown), `pbxes` ([{id, state}] of every PBX, the first (main) one first),
  `clocks` ({id: that PBX's clock}), `pbx_filter` (the `pbx` asked for, or null), `server_time`,
  `timezone`: the zone the page shows times in (the first shown PBX's), `timezones` ({id: that
  PBX's zone}, its "today"); `at` is the (first shown) PBX's clock, which
  the page's clock and timers run on): one at once, then whenever it changes (live timers change
  it every second). A page that falls behind only skips to the newest frame. Every queue,
  operator, live call, alert, spy session and activity line names its `pbx` (queue names and
  extensions are per PBX); `?pbx=ID` keeps one PBX's (an unknown one: 400).
- `GET /api/wallboard[?pbx=ID]`: the same picture once, as JSON.
- `POST /api/supervisor/spy` {operator, mode: listen|whisper|barge, listener_extension?}
  (default listener: the supervisor's own first extension; a trainee's for shadowing; one
  session per listener: a second click switches its mode instead of calling again),
  `POST /api/supervisor/spy/end` {spyer_channel}, `POST /api/supervisor/spy/cancel`
  {listener_extension?} (a session whose phone still rings), `POST /api/supervisor/queue/add`
  {queue, extension, name, penalty}, `POST /api/supervisor/queue/remove` {queue, extension},
  `POST /api/supervisor/pause` {extension, paused, reason, queue?}. Each body may name the
  `pbx` of its target (default: the first PBX); the action goes to that PBX and its audit line
  names it. Answer: the ActionResult (the PBX's Response and Message, `pbx`) with `ok`; 200
  when the PBX answered (whatever it said), 504/503 when it did not, 400 for a bad body or an
  unknown PBX, 404 for an unknown spy session.

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
from web.access import USER_KEY
from web.audit_log import require_role_audited
from web.auth import SESSION_KEY
from web.pages import PAGE_HEADERS, STATIC_DIR
from web.ws_tasks import activity_listener, beside, read_until_closed, sockets_of

log = logging.getLogger(__name__)

ROLES = ("supervisor", "admin")
NO_STORE = {"Cache-Control": "no-store"}

Extension = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\d{2,8}$")]
QueueName = Annotated[str, StringConstraints(strip_whitespace=True,
                                             pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
PbxId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]
# Free text goes into AMI headers: no control characters (a CR/LF would forge a header).
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pbx: PbxId | None = None  # the target's PBX (queues, extensions and channels are per PBX)


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

    def frame(self, now: float | None = None, pbx: str | None = None) -> dict[str, Any]:
        """The picture of every PBX, or of `pbx` only (SupervisorError if unknown); `now`: the
        first PBX's time."""
        service = self.service
        snap = service.snapshot(now, pbx)
        board = service.board
        thresholds = {q.name: board.thresholds.get(q.name, board.default_thresholds).model_dump(mode="json")
                      for q in snap.queues}
        shown = [pbx] if pbx else service.pbxes
        states = {p: "connected" if service.connected(p) else "lost" for p in service.pbxes}
        activity = [a for a in service.activity if pbx is None or a.get("pbx") == pbx]
        return {**snap.model_dump(mode="json"), "server_time": service.clock(),
                "spies": _spies(service, snap, shown), "activity": activity, "thresholds": thresholds,
                "alert_sound": service.settings.alert_sound,
                "pbx": "connected" if all(states[p] == "connected" for p in shown) else "lost",
                "pbxes": [{"id": p, "state": state} for p, state in states.items()],
                "clocks": {p: service.now(p) for p in service.pbxes}, "pbx_filter": pbx,
                "timezone": str(service.zone(pbx)),
                "timezones": {p: str(service.zone(p)) for p in service.pbxes}}

    def publish(self, now: float) -> None:
        if not self.connections:
            return
        frames: dict[str | None, tuple[str, str]] = {}  # one frame per PBX filter the pages asked for
        for conn in list(self.connections):
            if conn.pbx not in frames:
                frame = self.frame(now, conn.pbx)
                frames[conn.pbx] = (_key(frame), json.dumps(frame, ensure_ascii=False))
            key, text = frames[conn.pbx]
            if conn.last_key != key:  # the same picture again (only `at` moved) is not sent
                conn.offer(text, key)

    def attach(self, ws: web.WebSocketResponse, username: str, pbx: str | None = None) -> Connection:
        conn = Connection(ws, username, self.send_timeout, pbx)
        frame = self.frame(pbx=pbx)
        conn.offer(json.dumps(frame, ensure_ascii=False), _key(frame))  # the state now, not only what follows
        self.connections.add(conn)
        return conn

    async def close_all(self) -> None:
        await asyncio.gather(*(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
                               for c in list(self.connections)), return_exceptions=True)


class Connection:
    """One page: only the newest frame waits (each frame is the whole picture)."""

    def __init__(self, ws: web.WebSocketResponse, username: str, send_timeout: float,
                 pbx: str | None = None) -> None:
        self.ws, self.username, self.send_timeout = ws, username, send_timeout
        self.pbx = pbx  # the one PBX this page shows (None: all)
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
    """What makes a picture new: not the clocks, which move every second."""
    return json.dumps({k: v for k, v in frame.items() if k not in ("at", "server_time", "clocks")},
                      sort_keys=True)


def _spies(service: WallboardService, snap: WallboardSnapshot, pbxes: list[str]) -> list[dict[str, Any]]:
    """Who listens to which call on each PBX: live sessions, then the phones still ringing for one."""
    callers = {c.call_id: c.caller_name or c.caller_number for c in snap.live_calls}
    views: list[dict[str, Any]] = []
    for pbx in pbxes:
        site = service.site(pbx)
        views += [{"state": "live", "pbx": pbx, "spyer_channel": s.spyer_channel, "listener": s.supervisor,
                   "listener_name": service.name_of(s.supervisor, pbx), "operator": s.operator,
                   "operator_name": service.name_of(s.operator, pbx), "call_id": s.call_id,
                   "caller": callers.get(s.call_id or ""), "mode": s.mode, "since": s.started_at,
                   "requested_by": site.requested_by.get(s.supervisor or ""), "switchable": s.switchable}
                  for s in sorted(site.spies.sessions.values(), key=lambda s: s.started_at)]
        views += [{"state": "calling", "pbx": pbx, "spyer_channel": None, "listener": p.listener,
                   "listener_name": service.name_of(p.listener, pbx), "operator": p.operator,
                   "operator_name": service.name_of(p.operator, pbx), "call_id": None, "caller": None,
                   "mode": p.mode, "since": p.at, "requested_by": p.requested_by}
                  for p in site.pending.values()]
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
            result = await run(request.app[SERVICE_KEY], request[USER_KEY], body, request.remote)
        except SupervisorError as exc:
            return _json_error(exc.status, "refused", exc.message)
        status = {"Timeout": 504, "Unavailable": 503}.get(result.response, 200)
        return web.json_response(result.model_dump(mode="json"), status=status, headers=NO_STORE)

    return supervisors_only(handler)


post_spy = _action(SpyRequest,
                   lambda s, u, b, r: s.spy(u, b.operator, b.mode, b.listener_extension, r, pbx=b.pbx))
post_spy_end = _action(SpyEndRequest, lambda s, u, b, r: s.end_spy(u, b.spyer_channel, r, pbx=b.pbx))
post_spy_cancel = _action(SpyCancelRequest,
                          lambda s, u, b, r: s.cancel_spy(u, b.listener_extension, r, pbx=b.pbx))
post_queue_add = _action(QueueAddRequest, lambda s, u, b, r: s.queue_add(u, b.queue, b.extension, b.name,
                                                                         b.penalty, r, pbx=b.pbx))
post_queue_remove = _action(QueueRemoveRequest,
                            lambda s, u, b, r: s.queue_remove(u, b.queue, b.extension, r, pbx=b.pbx))
post_pause = _action(PauseRequest, lambda s, u, b, r: s.pause(u, b.extension, b.paused, b.reason, b.queue, r,
                                                             pbx=b.pbx))


def _page(name: str, static_dir: Path) -> Handler:
    async def page(request: web.Request) -> web.StreamResponse:
        path = static_dir / name
        if not path.is_file():
            raise web.HTTPNotFound(text=f"{name} is not installed")
        return web.FileResponse(path, headers=PAGE_HEADERS)

    page.__name__ = f"page_{name.replace('.', '_')}"
    return supervisors_only(page)


def _pbx_filter(request: web.Request) -> str | None:
    """`?pbx=ID`: one PBX's picture (None: every PBX's); SupervisorError for an unknown one."""
    unknown = sorted(set(request.query) - {"pbx"})
    if unknown:
        raise SupervisorError(f"unknown parameter(s): {', '.join(k[:40] for k in unknown)}")
    pbx = request.query.get("pbx") or None
    return None if pbx is None else request.app[SERVICE_KEY].site(pbx).id


@supervisors_only
async def get_wallboard(request: web.Request) -> web.StreamResponse:
    try:
        pbx = _pbx_filter(request)
    except SupervisorError as exc:
        return _json_error(exc.status, "bad_request", exc.message)
    return web.json_response(request.app[HUB_KEY].frame(pbx=pbx), headers=NO_STORE)


@supervisors_only
async def wallboard_ws(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    try:
        pbx = _pbx_filter(request)
    except SupervisorError as exc:
        return _json_error(exc.status, "bad_request", exc.message)
    ws = web.WebSocketResponse(heartbeat=hub.heartbeat, max_msg_size=4096)
    await ws.prepare(request)
    user, session = request[USER_KEY], request.get(SESSION_KEY)
    # Closed when the session ends or the user is no longer a supervisor (web.ws_tasks);
    # the oldest of too many pages of one session or user is closed.
    entry = await sockets_of(request.app).add(
        ws, session.token_hash if session is not None else None, user.username, transport=request.transport,
        still_ok=lambda fresh: fresh.role in ROLES)
    conn = hub.attach(ws, user.username, pbx)
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
    app.router.add_get("/api/wallboard", get_wallboard)
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
