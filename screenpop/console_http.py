"""The operator console's HTTP side: the page, its WebSocket, its JSON actions, its static files.

- `GET /console`: the page (web/static/console.html; a placeholder if it is missing).
- `GET /ws/console`: the WebSocket. First frame `hello` (user + every card he has now),
  then `card` / `card_removed` frames for the extensions bound to the user on his PBX,
  whatever his role (a supervisor sees the cards of the extensions bound to him, no others).
- `POST /api/notes` {call_id, text}, `POST /api/contacts` {call_id, name, company},
  `POST /api/cards/dismiss` {call_id, wrapup_code}, and the operator's own actions
  (screenpop.console_actions: `POST /api/console/pause`, `POST /api/console/dial`,
  `GET /api/console/search?q=`): JSON bodies checked by the pydantic models of
  screenpop.messages. 400: bad JSON or fields (the message says which); 403: the call
  did not ring one of the user's extensions; 404: no such open call; 409: not possible in
  the card's state; 501: no CRM can search; 502: the PBX refused; 503: the CRM, the
  database or the PBX link failed.
- `GET /static/<file>`: the console's assets.

Who the user is comes from `request[USER_KEY]` (web.access; set by the auth middleware,
web.auth); every route is under `require_role`. CSRF checks of the POSTs are the
middleware's too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from screenpop.card_actions import ScreenPopError
from screenpop.console_actions import ACTIONS_KEY, ConsoleActions
from screenpop.messages import DialRequest, DismissRequest, NewContactRequest, NoteRequest, PauseRequest
from screenpop.screenpop_service import ScreenPopService
from web.access import USER_KEY, require_role
from web.auth import SESSION_KEY
from web.pages import PAGE_HEADERS, STATIC_DIR
from web.users import ROLES, SignedInUser
from web.ws_tasks import activity_listener, sockets_of

log = logging.getLogger(__name__)

SCREENPOP_KEY = web.AppKey("screenpop", ScreenPopService)
STATIC_KEY = web.AppKey("screenpop_static", Path)


PLACEHOLDER = ("<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Callbridge console</title>"
               "<main><h1>Callbridge console</h1><p>The console page is not installed "
               "(web/static/console.html).</p></main></html>")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Action = Callable[[web.Request, ScreenPopService, SignedInUser], Awaitable[dict[str, Any]]]
Model = TypeVar("Model", bound=BaseModel)
_ERRORS = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
           409: "conflict", 501: "not_supported", 502: "pbx_refused", 503: "unavailable"}


def _any_role(handler: Handler) -> Handler:
    """Every signed-in role may use the console; what he sees depends on his extensions."""
    return require_role(*ROLES)(handler)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": _ERRORS.get(status, "error"), "message": message}, status=status,
                             headers={"Cache-Control": "no-store"})


def _user(request: web.Request) -> SignedInUser | None:
    return request.get(USER_KEY)


async def _body(request: web.Request, model: type[Model]) -> Model:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ScreenPopError("the body must be a JSON object") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise ScreenPopError(f"invalid request: {problems}") from None


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _action(run: Action) -> Handler:
    """A JSON action: the user, the service, errors as JSON with their status."""

    async def handler(request: web.Request) -> web.StreamResponse:
        user = _user(request)
        if user is None:
            return error(401, "Please sign in.")
        try:
            result = await run(request, request.app[SCREENPOP_KEY], user)
        except ScreenPopError as exc:
            if exc.status == 403:
                log.warning("user %s refused: %s", user.username, exc.message)
            return error(exc.status, exc.message)
        return web.json_response({"ok": True, **{k: _dump(v) for k, v in result.items()}},
                                 headers={"Cache-Control": "no-store"})

    handler.__name__ = run.__name__
    return _any_role(handler)


@_action
async def post_note(request: web.Request, service: ScreenPopService, user: SignedInUser) -> dict[str, Any]:
    body = await _body(request, NoteRequest)
    return await service.save_note(user, body.call_id, body.text)


@_action
async def post_contact(request: web.Request, service: ScreenPopService, user: SignedInUser) -> dict[str, Any]:
    body = await _body(request, NewContactRequest)
    if not body.name.strip():
        raise ScreenPopError("invalid request: name: the name is empty")
    return await service.create_contact(user, body.call_id, body.name, body.company)


@_action
async def post_dismiss(request: web.Request, service: ScreenPopService, user: SignedInUser) -> dict[str, Any]:
    body = await _body(request, DismissRequest)
    return {"removed": await service.dismiss(user, body.call_id, body.wrapup_code)}


@_action
async def post_pause(request: web.Request, service: ScreenPopService, user: SignedInUser) -> dict[str, Any]:
    body = await _body(request, PauseRequest)
    return await request.app[ACTIONS_KEY].pause(user, body.paused, body.reason, request.remote)


@_action
async def post_dial(request: web.Request, service: ScreenPopService, user: SignedInUser) -> dict[str, Any]:
    body = await _body(request, DialRequest)
    return await request.app[ACTIONS_KEY].dial(user, body.number, request.remote)


@_action
async def get_search(request: web.Request, service: ScreenPopService, user: SignedInUser) -> dict[str, Any]:
    return await request.app[ACTIONS_KEY].search(request.query.get("q", ""))


async def console_page(request: web.Request) -> web.StreamResponse:
    page = request.app[STATIC_KEY] / "console.html"
    if page.is_file():
        return web.FileResponse(page, headers=PAGE_HEADERS)
    return web.Response(text=PLACEHOLDER, content_type="text/html", headers=PAGE_HEADERS)


async def static_file(request: web.Request) -> web.StreamResponse:
    root = request.app[STATIC_KEY].resolve()
    path = (root / request.match_info["path"]).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers=PAGE_HEADERS)


async def console_ws(request: web.Request) -> web.StreamResponse:
    user = _user(request)
    if user is None:
        return error(401, "Please sign in.")
    service = request.app[SCREENPOP_KEY]
    ws = web.WebSocketResponse(heartbeat=service.hub.heartbeat, max_msg_size=4096)
    await ws.prepare(request)
    session = request.get(SESSION_KEY)
    pbx = service.pbxes.of_user(user)
    extensions = (pbx, sorted(user.extensions))
    # The session's end (logout, expiry, disabled) closes it; a change of the user's
    # extensions or of their PBX too (the browser reconnects and gets the new cards); the
    # oldest of too many pages of one session or user is closed.
    entry = await sockets_of(request.app).add(
        ws, session.token_hash if session is not None else None, user.username, transport=request.transport,
        still_ok=lambda fresh: (service.pbxes.of_user(fresh), sorted(fresh.extensions)) == extensions)
    since = session.created_at if session is not None else None  # no cards from before his login
    hello = service.since_login(service.hello(user), since)
    conn = service.hub.attach(ws, user, hello, transport=request.transport, pbx=pbx)
    try:
        await conn.run(activity_listener(request))
    finally:
        sockets_of(request.app).remove(entry)
        service.hub.detach(conn)
    return ws


def add_console_routes(app: web.Application, service: ScreenPopService, *,
                       static_dir: Path = STATIC_DIR, actions: ConsoleActions | None = None) -> None:
    app[SCREENPOP_KEY] = service
    app[STATIC_KEY] = static_dir
    app[ACTIONS_KEY] = actions or ConsoleActions(service, None, None)
    sockets_of(app)  # made now, before the app is frozen (setup_auth's, if it ran first)
    app.router.add_get("/console", _any_role(console_page))
    app.router.add_get("/ws/console", _any_role(console_ws))
    app.router.add_post("/api/notes", post_note)
    app.router.add_post("/api/contacts", post_contact)
    app.router.add_post("/api/cards/dismiss", post_dismiss)
    app.router.add_post("/api/console/pause", post_pause)
    app.router.add_post("/api/console/dial", post_dial)
    app.router.add_get("/api/console/search", get_search)
    app.router.add_get("/static/{path:.+}", _any_role(static_file))
