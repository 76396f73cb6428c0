"""Login, logout and session routes; `setup_auth()` puts them and the auth middleware on an app.

    auth = setup_auth(app, user_store, secure_cookie=False, session_max_age=12 * 3600)

- `GET /login`: the sign-in form (web/static/login.html); a signed-in user is sent on.
- `POST /login` (form: username, password, next, csrf_token): 303 to `next` (a local path
  only) or the role's home; 401 with the form again on a wrong password; 429 with
  Retry-After while a login limit holds (web.login_throttle: per account, per address,
  global; a device cookie from an earlier login of the account passes the first three).
- `POST /logout` (CSRF token required): ends the session and closes its open pages' sockets,
  303 to /login (JSON if asked for).
- `GET /api/session`: `{"user", "display_name", "role", "extensions", "csrf_token", "expires_at"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from web.access import AUDIT, NO_STORE, ROLE_HOME, USER_KEY, require_role
from web.auth import AUTH_KEY, SESSION_KEY, Auth, auth_middleware, safe_next
from web.login_throttle import LoginThrottle, address_key, parse_networks, seconds
from web.shared_state import RedisCounters
from web.users import ROLES, UserStore, normalize_username
from web.ws_tasks import SOCKETS_KEY, CloseCode, SocketRegistry, sockets_of

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
# The login page runs no script and loads only its stylesheet; nobody may frame it.
LOGIN_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


THROTTLE_KEY = web.AppKey("callbridge_login_throttle", LoginThrottle)


@functools.cache
def _template() -> str:
    return (STATIC / "login.html").read_text(encoding="utf-8")


def _log_safe(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text[:64])


def _login_page(auth: Auth, *, status: int = 200, error: str = "", username: str = "", next_path: str = "",
                headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(status=status, content_type="text/html",
                            headers={**LOGIN_HEADERS, **(headers or {})})
    token = auth.set_login_nonce(response)  # a fresh form token every time the form is shown
    error_block = f'<p class="error" id="login-error" role="alert">{html.escape(error)}</p>' if error else ""
    response.text = (_template().replace("{{error_block}}", error_block)
                     .replace("{{csrf_token}}", html.escape(token))
                     .replace("{{username}}", html.escape(username))
                     .replace("{{next}}", html.escape(next_path))
                     # After a failed try the username is filled in: the cursor goes to the password.
                     .replace("{{focus_username}}", "" if username else " autofocus")
                     .replace("{{focus_password}}", " autofocus" if username else "")
                     .replace("{{described_by}}", ' aria-describedby="login-error"' if error else ""))
    return response


LANDING = ROLE_HOME  # where a login lands when no page was asked for


def _home(role: str, next_path: str | None) -> str:
    target = safe_next(next_path)
    return target if target and target != "/" else LANDING.get(role, "/")


async def login_page(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    next_path = safe_next(request.query.get("next")) or ""
    user = request.get(USER_KEY)
    if user is not None:
        return web.Response(status=302, headers={"Location": _home(user.role, next_path), **NO_STORE})
    return _login_page(auth, next_path=next_path)


async def login_submit(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    throttle = request.app[THROTTLE_KEY]
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", ""))) or ""
    remote = auth.client_address(request)
    shown = username[:200]
    if not auth.login_token_ok(request, str(form.get("csrf_token", ""))):
        return _login_page(auth, status=403, username=shown, next_path=next_path,
                           error="The sign-in form had expired. Please enter your password again.")
    name, where = normalize_username(username)[:200], address_key(remote)
    device = throttle.device_id(request.cookies.get(auth.device_cookie_name), name)
    verdict = await throttle.check(name, where, device)
    if verdict.retry_after > 0:
        wait = seconds(verdict.retry_after)
        AUDIT.warning("audit: login throttled (%s limit) user=%s from %s", verdict.limit, _log_safe(name),
                      remote)
        return _login_page(auth, status=429, username=shown, next_path=next_path,
                           headers={"Retry-After": str(wait)},
                           error=f"Too many failed sign-in attempts. Please wait {wait} seconds "
                                 "and try again.")
    # Always one argon2 verification: empty, unknown and over-long passwords cost the same.
    user = await auth.users.authenticate(username, password)
    if user is None:
        await throttle.failed(name, where, device)
        AUDIT.warning("audit: login failed user=%s from %s", _log_safe(name), remote)
        return _login_page(auth, status=401, username=shown, next_path=next_path,
                           error="Wrong username or password.")
    await throttle.succeeded(name, device)
    old = request.get(SESSION_KEY)
    if old is not None:  # rotation: the session presented before this login ends here
        await auth.end_session(old.token_hash)
        await sockets_of(request.app).close_session(old.token_hash, CloseCode.SESSION_ENDED,
                                                    "signed in again")
    await auth.purge_expired()
    token, _session = await auth.create_session(user.username, remote)
    AUDIT.info("audit: user=%s role=%s login from %s", user.username, user.role, remote)
    response = web.Response(status=303, headers={"Location": _home(user.role, next_path), **NO_STORE})
    auth.set_session_cookie(response, token)
    response.set_cookie(auth.device_cookie_name, throttle.device_token(user.username), path="/",
                        max_age=int(throttle.device_max_age), secure=auth.secure_cookie, httponly=True,
                        samesite="Strict")
    response.del_cookie(auth.login_cookie_name, path="/", secure=auth.secure_cookie, httponly=True,
                        samesite="Strict")
    return response


@require_role(*ROLES)
async def logout(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    session = request[SESSION_KEY]
    await auth.end_session(session.token_hash)
    # Its open pages stop at once (a logged-out console must not keep receiving callers' names).
    await sockets_of(request.app).close_session(session.token_hash, CloseCode.SESSION_ENDED, "logged out")
    AUDIT.info("audit: user=%s role=%s logout", session.user.username, session.user.role)
    if "application/json" in request.headers.get("Accept", ""):
        response: web.Response = web.json_response({"logged_out": True}, headers=NO_STORE)
    else:
        response = web.Response(status=303, headers={"Location": "/login", **NO_STORE})
    # Cards and notes may sit in the browser's storage and cache on a shared desk.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    auth.clear_session_cookie(response)
    return response


@require_role(*ROLES)
async def session_info(request: web.Request) -> web.StreamResponse:
    session = request[SESSION_KEY]
    user = session.user
    return web.json_response({"user": user.username, "display_name": user.display_name, "role": user.role,
                              "extensions": user.extensions, "csrf_token": session.csrf_token,
                              "expires_at": session.expires_at}, headers=NO_STORE)


async def login_css(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "login.css", headers={"Cache-Control": "no-cache"})


def setup_auth(app: web.Application, user_store: UserStore, *, secure_cookie: bool = True,
               session_max_age: int = 12 * 3600, idle_timeout: int = 30 * 60,
               allowed_origins: Iterable[str] = (), public_paths: Iterable[str] = (),
               login_attempts: int = 5, login_window: float = 60.0, address_attempts: int = 20,
               global_attempts: int = 300, trusted_proxies: Iterable[str] = (),
               sockets_per_session: int = 4, sockets_per_user: int = 8, sweep_interval: float = 2.0,
               secret: bytes | None = None, redis: Redis | RedisCluster | None = None,
               clock: Callable[[], float] = time.time) -> Auth:
    """Install the auth middleware and the login/logout/session routes on `app`.

    `public_paths`: more paths served without a session (a trailing "/" makes a prefix).
    `allowed_origins`: the public origin(s) when a proxy terminates TLS. `trusted_proxies`:
    addresses or networks whose `X-Forwarded-For` is believed (nobody's by default).
    `login_attempts` failures per account (`address_attempts` per address), then a delay of
    `login_window` seconds doubling per failure; `global_attempts` failures a minute over
    everybody (web.login_throttle). `sockets_per_session` / `sockets_per_user`: open pages
    before the oldest is closed; `sweep_interval`: how often open pages' sessions are checked.
    `clock` (epoch seconds) drives session expiry and the login throttle (tests move it).

    A cluster: `secret` (at least 16 bytes, the same on every node) signs the login form's
    token and the device cookies and keys the throttle's slots, so a form or cookie from one
    node is good on another; `redis` (a `redis.asyncio` client) shares the login throttle's
    counters (web.shared_state). Without them: a random secret and counters per process."""
    if secret is not None and len(secret) < 16:
        raise ValueError("the shared secret key must be at least 16 bytes")
    if redis is not None and not secret:  # random per node: no two nodes would agree on a slot
        raise ValueError("a login throttle shared through Redis needs the nodes' shared secret key")
    auth = Auth(user_store, secure_cookie=secure_cookie, session_max_age=session_max_age,
                idle_timeout=idle_timeout, allowed_origins=allowed_origins, public_paths=public_paths,
                secret=secret, clock=clock, trusted_proxies=parse_networks(trusted_proxies))
    app[AUTH_KEY] = auth
    app[THROTTLE_KEY] = LoginThrottle(account_free=login_attempts, address_free=address_attempts,
                                      base_delay=login_window, global_limit=global_attempts,
                                      secret=auth.secret, clock=clock,
                                      shared=RedisCounters(redis) if redis is not None else None)
    sockets = SocketRegistry(per_session=sockets_per_session, per_user=sockets_per_user)
    app[SOCKETS_KEY] = sockets
    app.middlewares.append(auth_middleware)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/login.css", login_css)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/session", session_info)

    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        # A user disabled or his password changed in this process: his pages close at once
        # (from the CLI, another process, the sweep finds it within `sweep_interval`).
        user_store.session_listeners.append(sockets.close_user)
        task = asyncio.create_task(sockets.sweep_forever(auth.live_sessions, sweep_interval),
                                   name="session sweep")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(ValueError):
                user_store.session_listeners.remove(sockets.close_user)

    app.cleanup_ctx.append(sweeper)
    return auth
