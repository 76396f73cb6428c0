"""Login, logout and session routes; `setup_auth()` puts them and the auth middleware on an app.

    auth = setup_auth(app, user_store, secure_cookie=False, session_max_age=12 * 3600)

- `GET /login`: the sign-in form (web/static/login.html); a signed-in user is sent on.
- `POST /login` (form: username, password, next, csrf_token): 303 to `next` (a local path
  only) or the role's home; 401 with the form again on a wrong password; 429 after
  `login_attempts` failures per username and client address within `login_window` seconds.
- `POST /logout` (CSRF token required): ends the session, 303 to /login (JSON if asked for).
- `GET /api/session`: `{"user", "display_name", "role", "extensions", "csrf_token", "expires_at"}`.
"""

from __future__ import annotations

import functools
import html
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from aiohttp import web

from web.auth import (
    AUDIT,
    AUTH_KEY,
    NO_STORE,
    ROLE_HOME,
    Auth,
    auth_middleware,
    require_role,
    safe_next,
)
from web.users import MAX_PASSWORD_LENGTH, ROLES, UserStore, normalize_username

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


class LoginThrottle:
    """Failed logins per (username, client address) in a sliding window, in memory.

    Keyed on the pair so an attacker cannot lock a colleague out from another desk.
    Checked before the password is verified: a blocked client learns nothing more."""

    def __init__(self, attempts: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:
        self.attempts, self.window, self.clock, self.max_keys = attempts, window, clock, max_keys
        self._failures: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.get(key, deque())
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        return times

    def retry_after(self, key: tuple[str, str]) -> float:
        """Seconds until this key may try again (0: now)."""
        times = self._recent(key)
        if len(times) < self.attempts:
            return 0.0
        return max(0.0, times[-self.attempts] + self.window - self.clock())

    def failed(self, key: tuple[str, str]) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            self._prune()
        times = self._recent(key)
        times.append(self.clock())
        self._failures[key] = times

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)

    def _prune(self) -> None:
        for key in list(self._failures):
            if not self._recent(key):
                del self._failures[key]
        while len(self._failures) >= self.max_keys:  # still full: forget the oldest entries
            del self._failures[next(iter(self._failures))]


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


def _home(role: str, next_path: str | None) -> str:
    target = safe_next(next_path)
    return target if target and target != "/" else ROLE_HOME.get(role, "/")


async def login_page(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    next_path = safe_next(request.query.get("next")) or ""
    user = request.get("user")
    if user is not None:
        return web.Response(status=302, headers={"Location": _home(user.role, next_path), **NO_STORE})
    return _login_page(auth, next_path=next_path)


async def login_submit(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    throttle = request.app[THROTTLE_KEY]
    form = await request.post()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", ""))) or ""
    remote = request.remote or "-"
    shown = username[:200]
    if not auth.login_token_ok(request, str(form.get("csrf_token", ""))):
        return _login_page(auth, status=403, username=shown, next_path=next_path,
                           error="The sign-in form had expired. Please enter your password again.")
    key = (normalize_username(username)[:200], remote)
    wait = throttle.retry_after(key)
    if wait > 0:
        seconds = math.ceil(wait)
        AUDIT.warning("audit: login throttled user=%s from %s", _log_safe(key[0]), remote)
        return _login_page(auth, status=429, username=shown, next_path=next_path,
                           headers={"Retry-After": str(seconds)},
                           error=f"Too many failed sign-in attempts. Please wait {seconds} seconds "
                                 "and try again.")
    if not username or not password or len(password) > MAX_PASSWORD_LENGTH:
        user = None
    else:
        user = await auth.users.authenticate(username, password)
    if user is None:
        throttle.failed(key)
        AUDIT.warning("audit: login failed user=%s from %s", _log_safe(key[0]), remote)
        return _login_page(auth, status=401, username=shown, next_path=next_path,
                           error="Wrong username or password.")
    throttle.succeeded(key)
    old = request.get("session")
    if old is not None:  # rotation: the session presented before this login ends here
        await auth.end_session(old.token_hash)
    await auth.purge_expired()
    token, _session = await auth.create_session(user.username, request.remote)
    AUDIT.info("audit: user=%s role=%s login from %s", user.username, user.role, remote)
    response = web.Response(status=303, headers={"Location": _home(user.role, next_path), **NO_STORE})
    auth.set_session_cookie(response, token)
    response.del_cookie(auth.login_cookie_name, path="/", secure=auth.secure_cookie, httponly=True,
                        samesite="Strict")
    return response


@require_role(*ROLES)
async def logout(request: web.Request) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    session = request["session"]
    await auth.end_session(session.token_hash)
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
    session = request["session"]
    user = session.user
    return web.json_response({"user": user.username, "display_name": user.display_name, "role": user.role,
                              "extensions": user.extensions, "csrf_token": session.csrf_token,
                              "expires_at": session.expires_at}, headers=NO_STORE)


async def login_css(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "login.css", headers={"Cache-Control": "no-cache"})


def setup_auth(app: web.Application, user_store: UserStore, *, secure_cookie: bool = True,
               session_max_age: int = 12 * 3600, idle_timeout: int = 30 * 60,
               allowed_origins: Iterable[str] = (), public_paths: Iterable[str] = (),
               login_attempts: int = 5, login_window: float = 60.0, secret: bytes | None = None,
               clock: Callable[[], float] = time.time) -> Auth:
    """Install the auth middleware and the login/logout/session routes on `app`.

    `public_paths`: more paths served without a session (a trailing "/" makes a prefix).
    `allowed_origins`: the public origin(s) when a proxy terminates TLS. `clock` (epoch
    seconds) drives session expiry and the login throttle (tests move it)."""
    auth = Auth(user_store, secure_cookie=secure_cookie, session_max_age=session_max_age,
                idle_timeout=idle_timeout, allowed_origins=allowed_origins, public_paths=public_paths,
                secret=secret, clock=clock)
    app[AUTH_KEY] = auth
    app[THROTTLE_KEY] = LoginThrottle(login_attempts, login_window, clock=clock)
    app.middlewares.append(auth_middleware)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/login.css", login_css)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/session", session_info)
    return auth
