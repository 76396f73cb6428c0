"""Login sessions, the auth middleware, role checks and CSRF for the console's aiohttp app.

Sessions are server-side rows (`auth_sessions`), not an encrypted cookie: logout, a
password change or `user disable` must end a session at once, on every tab and every
stolen copy, and a stateless cookie stays valid until it expires. The cookie holds only a
random 256-bit token; the table keeps its SHA-256, so a database dump opens no session.
Each request reads the session joined with the user, so a role or extension change
applies on the next request. The cookie is HttpOnly, SameSite=Lax, Secure unless
configured off (the localhost demo), and `__Host-` prefixed when Secure (no subdomain can
plant or shadow it); it has no Max-Age, so it dies with the browser (shared desks), while
the server enforces the idle and absolute expiry. Login always issues a fresh token and
drops the one presented (no session fixation).

CSRF: every POST/PUT/PATCH/DELETE of a session needs the session's token in the
`X-CSRF-Token` header (or a `csrf_token` form field), compared in constant time; the page's
JS reads it from `GET /api/session`. As defence in depth a request whose Origin (else
Referer) is another origin is refused, and so is a cross-origin WebSocket handshake.

WebSocket handlers: the middleware authenticates the handshake (401 without a session),
`@require_role(...)` checks the role, and the socket joins the app's SocketRegistry
(web.ws_tasks), which closes it when its session ends: logout, a disabled user, idle or
absolute expiry (`live_sessions`, swept every few seconds). Reading a session for a socket
never renews it: idle is about the person, so only requests (and the page's activity
notice, `touch`) move `last_seen_at`, not an open tab or its pings.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, urlsplit

from aiohttp import web
from sqlalchemy import delete, or_, select, update

from bridge.calls.record import DEFAULT_PBX
from web.access import AUDIT, NO_STORE, ROLES_ATTR, USER_KEY, Handler, error_response, is_api, where, who
from web.login_throttle import Network, client_address
from web.session_sweep import SessionSweep
from web.users import EXTENSIONS, SESSIONS, USERS, User, UserStore

__all__ = ["AUTH_KEY", "Auth", "AuthSession", "User", "auth_middleware", "revalidate", "safe_next",
           "unguarded_routes"]

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CSRF_HEADER, CSRF_FIELD = "X-CSRF-Token", "csrf_token"
DEFAULT_PUBLIC = frozenset({"/login", "/login.css", "/favicon.ico"})
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32,64}")



@dataclass(frozen=True)
class AuthSession:
    token_hash: str
    user: User
    csrf_token: str
    created_at: float  # epoch seconds
    expires_at: float  # the absolute end; idle expiry may come first
    last_seen_at: float = 0.0  # epoch seconds of the last activity (the idle timer's start)


SESSION_KEY = web.RequestKey("callbridge_session", AuthSession)  # set with USER_KEY, or absent

_SWEEP_STEP = 200  # sessions per query of the open pages' sweep


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else None




def safe_next(value: str | None) -> str | None:
    """`value` if it is a path on this site (never `//host`, `/\\host` or a URL), else None."""
    if not value or len(value) > 2000 or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return None
    return value


class Auth:
    """The session store and policy one app uses (`setup_auth` makes it: `app[AUTH_KEY]`)."""

    def __init__(self, users: UserStore, *, secure_cookie: bool = True, session_max_age: int = 12 * 3600,
                 idle_timeout: int = 30 * 60, allowed_origins: Iterable[str] = (),
                 public_paths: Iterable[str] = (), secret: bytes | None = None,
                 clock: Callable[[], float] = time.time, trusted_proxies: tuple[Network, ...] = ()) -> None:
        if session_max_age <= 0 or idle_timeout <= 0:
            raise ValueError("session_max_age and idle_timeout must be positive")
        self.users = users
        self.secure_cookie = secure_cookie
        self.session_max_age = session_max_age
        self.idle_timeout = idle_timeout
        # last_seen_at is written at most this often: not one UPDATE per request.
        self.touch_interval = max(1, min(60, idle_timeout // 4))
        # Behind a TLS-terminating proxy the app sees http://: list the public origin here.
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        public = set(DEFAULT_PUBLIC) | set(public_paths)
        self.public_paths = frozenset(p for p in public if not p.endswith("/"))
        self.public_prefixes = tuple(p for p in public if p.endswith("/"))
        # Signs the login form's CSRF token; per process unless given (several workers: share one).
        self.secret = secret or secrets.token_bytes(32)
        self.clock = clock
        self._sweep = SessionSweep(self)  # the open pages' reads (live_sessions)
        # Only these peers' X-Forwarded-For is believed (web.login_throttle.client_address).
        self.trusted_proxies = trusted_proxies
        prefix = "__Host-" if secure_cookie else ""
        self.cookie_name = f"{prefix}callbridge_session"
        self.login_cookie_name = f"{prefix}callbridge_login"
        self.device_cookie_name = f"{prefix}callbridge_device"

    def client_address(self, request: web.Request) -> str:
        return client_address(request, self.trusted_proxies)

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or path.startswith(self.public_prefixes)

    def same_origin(self, request: web.Request) -> bool:
        """False if the browser says the request comes from another origin (or an opaque one)."""
        origin = request.headers.get("Origin")
        if origin is None:
            referer = request.headers.get("Referer")
            if not referer:
                return True  # not a browser: the CSRF token still guards
            origin = _origin(referer) or "null"
        origin = origin.rstrip("/").lower()
        return origin in self.allowed_origins or origin == f"{request.scheme}://{request.host}".lower()

    # -- sessions ------------------------------------------------------------------------

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def create_session(self, username: str, remote: str | None) -> tuple[str, AuthSession]:
        """A new session for an (authenticated) user: (cookie token, session)."""
        token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), self._now()
        async with self.users.engine.begin() as conn:
            uid = (await conn.execute(select(USERS.c.id).where(USERS.c.username == username,
                                                               USERS.c.active.is_(True)))).scalar_one()
            await conn.execute(SESSIONS.insert().values(token_hash=_hash_token(token), user_id=uid,
                                                        csrf_token=csrf, created_at=now, last_seen_at=now,
                                                        remote=(remote or "")[:64] or None))
        session = await self.load_session(_hash_token(token))
        assert session is not None
        return token, session

    async def session_for_token(self, token: str | None) -> AuthSession | None:
        if not token or not _TOKEN.fullmatch(token):
            return None
        return await self.load_session(_hash_token(token))

    async def _read_sessions(self, token_hashes: Iterable[str]) -> tuple[dict[str, AuthSession], list[str]]:
        """The live sessions among these (user active, neither idle nor too old), and the
        expired ones' hashes; no writes."""
        query = (select(SESSIONS.c.token_hash, SESSIONS.c.csrf_token, SESSIONS.c.created_at,
                        SESSIONS.c.last_seen_at, USERS.c.username, USERS.c.display_name, USERS.c.role,
                        EXTENSIONS.c.pbx, EXTENSIONS.c.extension)
                 .select_from(SESSIONS.join(USERS, USERS.c.id == SESSIONS.c.user_id)
                              .outerjoin(EXTENSIONS, EXTENSIONS.c.user_id == USERS.c.id))
                 .where(SESSIONS.c.token_hash.in_(list(token_hashes)), USERS.c.active.is_(True))
                 .order_by(SESSIONS.c.token_hash, EXTENSIONS.c.pbx, EXTENSIONS.c.extension))
        async with self.users.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        now, found, expired = self._now(), {}, []
        # Rows come ordered by session: one pass.
        for token_hash, group in itertools.groupby(rows, key=lambda r: r.token_hash):
            mine = list(group)
            first = mine[0]
            expires = first.created_at + timedelta(seconds=self.session_max_age)
            if now >= expires or now >= first.last_seen_at + timedelta(seconds=self.idle_timeout):
                expired.append(token_hash)
                continue
            pbx = next((r.pbx for r in mine if r.pbx is not None), DEFAULT_PBX)  # his extensions' PBX
            # Rows of our own tables, checked when written: no validation again.
            user = User.model_construct(
                username=first.username, display_name=first.display_name, role=first.role, pbx=pbx,
                extensions=[r.extension for r in mine if r.extension is not None and r.pbx == pbx])
            found[token_hash] = AuthSession(token_hash, user, first.csrf_token, first.created_at.timestamp(),
                                            expires.timestamp(), first.last_seen_at.timestamp())
        return found, expired

    async def live_sessions(self, token_hashes: set[str]) -> dict[str, User]:
        """Token hash -> user for the sessions still live (for the open pages' sweep)."""
        found: dict[str, User] = {}
        hashes = sorted(token_hashes)
        # Bounded IN lists; and a node with 1,000 open pages reads them in short steps, so
        # cards wait a few ms for the loop, not tens of ms (bench/cluster.py).
        for i in range(0, len(hashes), _SWEEP_STEP):
            found.update(await self._sweep.live(hashes[i:i + _SWEEP_STEP]))
        self._sweep.keep_only(token_hashes)
        return found

    async def load_session(self, token_hash: str, *, touch: bool = True) -> AuthSession | None:
        """The live session with this token hash (its user active), else None; ends expired ones.
        `touch`: this is the person's activity (a request), which renews the idle timer."""
        live, expired = await self._read_sessions([token_hash])
        session = live.get(token_hash)
        if expired:
            await self.end_session(token_hash)
        if session is None:
            return None
        if touch:
            await self.touch(session)
        return session

    async def touch(self, session: AuthSession) -> None:
        """Activity: restart the idle timer (written at most every `touch_interval`)."""
        now = self._now()
        if now.timestamp() - session.last_seen_at >= self.touch_interval:
            async with self.users.engine.begin() as conn:
                await conn.execute(update(SESSIONS).where(SESSIONS.c.token_hash == session.token_hash)
                                   .values(last_seen_at=now))

    async def end_session(self, token_hash: str) -> None:
        async with self.users.engine.begin() as conn:
            await conn.execute(delete(SESSIONS).where(SESSIONS.c.token_hash == token_hash))

    async def purge_expired(self) -> int:
        now = self._now()
        async with self.users.engine.begin() as conn:
            result = await conn.execute(delete(SESSIONS).where(or_(
                SESSIONS.c.created_at <= now - timedelta(seconds=self.session_max_age),
                SESSIONS.c.last_seen_at <= now - timedelta(seconds=self.idle_timeout))))
        return result.rowcount or 0

    def set_session_cookie(self, response: web.StreamResponse, token: str) -> None:
        response.set_cookie(self.cookie_name, token, path="/", secure=self.secure_cookie, httponly=True,
                            samesite="Lax")

    def clear_session_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.cookie_name, path="/", secure=self.secure_cookie, httponly=True,
                            samesite="Lax")

    # -- the login form's CSRF token (no session yet: an HMAC of a nonce cookie) ---------

    def login_token(self, nonce: str) -> str:
        return hmac.new(self.secret, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()

    def login_token_ok(self, request: web.Request, token: str) -> bool:
        nonce = request.cookies.get(self.login_cookie_name, "")
        return bool(_TOKEN.fullmatch(nonce)) and hmac.compare_digest(self.login_token(nonce).encode(),
                                                                     token.encode())

    def set_login_nonce(self, response: web.StreamResponse) -> str:
        """A fresh nonce cookie; returns the token the form must send back."""
        nonce = secrets.token_urlsafe(32)
        response.set_cookie(self.login_cookie_name, nonce, path="/", max_age=3600, secure=self.secure_cookie,
                            httponly=True, samesite="Strict")
        return self.login_token(nonce)


AUTH_KEY = web.AppKey("callbridge_auth", Auth)


















def unguarded_routes(app: web.Application) -> list[str]:
    """Routes that are neither public nor under `require_role`: for a test that asserts none."""
    auth = app[AUTH_KEY]
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix") or "?"
        if auth.is_public(path) or route.method == "HEAD":
            continue
        if not hasattr(route.handler, ROLES_ATTR):
            found.append(f"{route.method} {path}")
    return found


async def revalidate(request: web.Request) -> User | None:
    """Re-read the request's session (e.g. from a WebSocket loop): the user, or None if it ended."""
    session: AuthSession | None = request.get(SESSION_KEY)
    if session is None:
        return None
    fresh = await request.app[AUTH_KEY].load_session(session.token_hash, touch=False)  # not activity
    return fresh.user if fresh else None


async def _csrf_ok(request: web.Request, session: AuthSession) -> bool:
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        field = (await request.post()).get(CSRF_FIELD)  # parsed once: the handler gets it cached
        token = field if isinstance(field, str) else None
    return token is not None and hmac.compare_digest(token.encode(), session.csrf_token.encode())


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location, **NO_STORE})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH_KEY]
    unsafe = request.method not in SAFE_METHODS
    websocket = request.headers.get("Upgrade", "").lower() == "websocket"
    if (unsafe or websocket) and not auth.same_origin(request):
        origin = request.headers.get("Origin") or request.headers.get("Referer") or ""
        AUDIT.warning("audit: cross-origin %s refused (origin %r)", where(request), origin[:200])
        return error_response(request, 403, "cross_origin", "Cross-origin request refused.")

    token = request.cookies.get(auth.cookie_name)
    session = await auth.session_for_token(token)
    if session is not None:
        request[SESSION_KEY] = session
        request[USER_KEY] = session.user
    if auth.is_public(request.path):
        return await handler(request)
    if session is None:
        if is_api(request.path):
            response = error_response(request, 401, "unauthenticated", "Please sign in.")
        elif request.method in ("GET", "HEAD"):
            response = _redirect("/login?next=" + quote(safe_next(request.path_qs) or "/", safe="/"))
        else:
            response = _redirect("/login", 303)
        if token is not None:
            auth.clear_session_cookie(response)  # expired or ended: stop sending it
        return response
    if unsafe and not await _csrf_ok(request, session):
        AUDIT.warning("audit: user=%s role=%s csrf refused %s", *who(request), where(request))
        return error_response(request, 403, "csrf", "Missing or wrong CSRF token: reload the page.")
    return await handler(request)
