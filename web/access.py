"""Who may do what over HTTP: role checks on handlers (`require_role`), and the refusals
(401, 403) as JSON for the API and WebSockets or as a page for a browser, each 403 audited.

The sign-in itself (sessions, cookies, CSRF, the middleware that sets `request[USER_KEY]`) is
web.auth's; this module only reads what it set.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from web.users import ROLES, Role, User

# Who the request is from: set by the sign-in middleware (web.auth) when a session is valid,
# absent otherwise (`request.get(USER_KEY)` is then None).
USER_KEY = web.RequestKey("callbridge_user", User)

AUDIT = logging.getLogger("callbridge.audit")

# Each role's own page: where a login lands and where a refusal's "back" link leads. An
# admin answers no calls (his console would be empty): his is the user administration.
ROLE_HOME: dict[str, str] = {"operator": "/console", "supervisor": "/wallboard", "trainer": "/reviews",
                             "admin": "/admin/users"}

ROLES_ATTR = "__callbridge_roles__"

NO_STORE = {"Cache-Control": "no-store"}

Handler = Callable[..., Awaitable[web.StreamResponse]]


def is_api(path: str) -> bool:
    """JSON answers (401/403) rather than pages and redirects."""
    return path == "/api" or path.startswith("/api/") or path.startswith("/ws")


def who(request: web.Request) -> tuple[str, str]:
    user: User | None = request.get(USER_KEY)
    return (user.username, user.role) if user else ("-", "-")


def where(request: web.Request) -> str:
    # The raw (percent-encoded) path: a %0A in the URL cannot forge a log line.
    return f"{request.method} {request.rel_url.raw_path}"

_ROLE_REFUSED = "Your role may not do this."

_TITLES = {401: "Sign-in needed", 403: "Not for your role", 429: "Too many attempts"}

_HOME_LABELS = {"/console": "Back to your console", "/wallboard": "Back to the wallboard",
                "/reviews": "Back to the review room"}


@functools.cache
def _error_page_parts() -> tuple[str, str, str]:
    """web/static/forbidden.html, its style inlined, and the CSP that allows only that style."""
    from web.pages import STATIC_DIR

    style = (STATIC_DIR / "forbidden.css").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self'; base-uri 'none'; "
           "form-action 'self'; frame-ancestors 'none'")
    return (STATIC_DIR / "forbidden.html").read_text(encoding="utf-8"), style, csp


def error_page(request: web.Request, status: int, message: str) -> tuple[str, dict[str, str]]:
    """The page a browser gets for a refusal: what happened, and a link back to the user's
    own page (every text escaped: a path or name is never markup)."""
    template, style, csp = _error_page_parts()
    user: User | None = request.get(USER_KEY)
    home = ROLE_HOME.get(user.role, "/") if user else "/"
    if status == 403 and user is not None and message == _ROLE_REFUSED:
        message = f"Your role ({user.role}) may not open {request.path}. Ask an admin if you need it."
    body = template.format(title=_TITLES.get(status, "Error"), style=style, message=html.escape(message),
                           home=html.escape(home), home_label=_HOME_LABELS.get(home, "Home"))
    headers = {**NO_STORE, "Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}
    return body, headers


def error_response(request: web.Request, status: int, error: str, message: str,
                   exc: type[web.HTTPException] | None = None) -> web.Response:
    """JSON for /api and /ws, a styled page otherwise; an HTTPException instance if `exc` is given."""
    cls = exc or web.Response
    if is_api(request.path):
        body, ctype = web.json_response({"error": error, "message": message}).text, "application/json"
        headers = NO_STORE
    else:
        (body, headers), ctype = error_page(request, status, message), "text/html"
    kwargs: dict[str, Any] = {"text": body, "content_type": ctype, "headers": headers}
    return cls(**kwargs) if exc else web.Response(status=status, **kwargs)


def check_role(request: web.Request, *roles: Role) -> User:
    """The user if his role is one of `roles`; else raises 401 (no user) or 403 (audited)."""
    user: User | None = request.get(USER_KEY)
    if user is None:
        raise error_response(request, 401, "unauthenticated", "Please sign in.", web.HTTPUnauthorized)
    if user.role not in roles:
        AUDIT.warning("audit: user=%s role=%s denied %s", user.username, user.role, where(request))
        raise error_response(request, 403, "forbidden", _ROLE_REFUSED, web.HTTPForbidden)
    return user


def require_role(*roles: Role) -> Callable[[Handler], Handler]:
    """Decorator for a handler (function, or method of a class-based view): `@require_role("operator")`."""
    unknown = set(roles) - set(ROLES)
    if not roles or unknown:
        raise ValueError(f"require_role needs roles among {ROLES}, got {roles}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(*args: Any) -> web.StreamResponse:
            target = args[-1]
            check_role(target if isinstance(target, web.Request) else target.request, *roles)
            return await handler(*args)

        setattr(guarded, ROLES_ATTR, frozenset(roles))
        return guarded

    return decorate
