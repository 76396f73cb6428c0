"""Small helpers shared by the console's and the wallboard's WebSockets, and the registry of
every open page socket by session and by user.

The registry is what makes a session's sockets end with the session: logout, a disabled
user or a changed password (in this process: at once; from the CLI: at the next sweep),
idle or absolute expiry (the sweep), and it caps the sockets of one session and of one
user, closing the oldest with `CloseCode.TOO_MANY` (the page then stays closed instead of
reconnecting and pushing another tab out). The sweep reads the sessions without renewing
them: an open socket and its pings are not a person's activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from web.auth import AUTH_KEY, SESSION_KEY, AuthSession

log = logging.getLogger(__name__)

T = TypeVar("T")
CLOSE_GRACE = 1.0  # seconds a peer gets to answer our close frame before the TCP link is cut
_seq = count()


class CloseCode(enum.IntEnum):
    """Close codes the pages understand (4000-4999 are the application's)."""

    SESSION_CHANGED = 1008  # role or extensions changed: reconnect and get the new picture
    TOO_MANY = 4008  # more pages open than allowed: this one (the oldest) stays closed
    SESSION_ENDED = 4401  # logged out, expired or disabled: go to the login page


async def beside(helper: Coroutine[Any, Any, Any], main: Awaitable[T], *, name: str | None = None) -> T:
    """Await `main` while `helper` runs as a task beside it; the helper is cancelled after."""
    task = asyncio.create_task(helper, name=name)
    try:
        return await main
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def read_until_closed(ws: web.WebSocketResponse,
                            on_text: Callable[[str], Awaitable[None]] | None = None) -> None:
    """Read what the page sends until the socket closes: the pages act through POSTs, the
    socket only pushes; a text frame goes to `on_text` (e.g. the page's activity notice)."""
    async for msg in ws:
        if msg.type == WSMsgType.ERROR:
            break
        if msg.type == WSMsgType.TEXT and on_text is not None:
            await on_text(msg.data)


@dataclass(eq=False)
class OpenSocket:
    ws: web.WebSocketResponse
    session: str | None  # the session's token hash
    username: str
    transport: asyncio.BaseTransport | None = None
    # Given the session's fresh user at each sweep: False closes the socket (SESSION_CHANGED).
    still_ok: Callable[[Any], bool] | None = None
    seq: int = field(default_factory=lambda: next(_seq))


LiveSessions = Callable[[set[str]], Awaitable[dict[str, Any]]]


class SocketRegistry:
    def __init__(self, *, per_session: int = 4, per_user: int = 8) -> None:
        if per_session < 1 or per_user < 1:
            raise ValueError("socket caps must be at least 1")
        self.per_session, self.per_user = per_session, per_user
        self._open: dict[OpenSocket, None] = {}  # insertion order: oldest first
        self._closing: set[asyncio.Task[None]] = set()
        self.closed_for_cap = 0

    def __len__(self) -> int:
        return len(self._open)

    async def add(self, ws: web.WebSocketResponse, session: str | None, username: str, *,
                  transport: asyncio.BaseTransport | None = None,
                  still_ok: Callable[[Any], bool] | None = None) -> OpenSocket:
        """Register an open socket; the oldest beyond a cap are closed (TOO_MANY)."""
        entry = OpenSocket(ws, session, username, transport, still_ok)
        self._open[entry] = None
        excess: list[OpenSocket] = []
        if session is not None:
            excess += self._oldest([e for e in self._open if e.session == session], self.per_session)
        excess += self._oldest([e for e in self._open if e.username == username and e not in excess],
                               self.per_user)
        if excess:
            self.closed_for_cap += len(excess)
            log.warning("%s has more pages open than allowed: closing the %d oldest", username, len(excess))
            # In the background: a peer that never answers the close must not delay this page.
            task = asyncio.create_task(self._close(excess, CloseCode.TOO_MANY,
                                                   "too many pages open: this one, the oldest, closed"))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return entry

    @staticmethod
    def _oldest(entries: list[OpenSocket], cap: int) -> list[OpenSocket]:
        return entries[:max(0, len(entries) - cap)]

    def remove(self, entry: OpenSocket) -> None:
        self._open.pop(entry, None)

    def of_session(self, session: str) -> list[OpenSocket]:
        return [e for e in self._open if e.session == session]

    async def close_session(self, session: str, code: int = CloseCode.SESSION_ENDED,
                            reason: str = "session ended") -> None:
        await self._close(self.of_session(session), code, reason)

    async def close_user(self, username: str, code: int = CloseCode.SESSION_ENDED,
                         reason: str = "session ended") -> None:
        await self._close([e for e in self._open if e.username == username], code, reason)

    async def sweep(self, live: LiveSessions) -> int:
        """Close the sockets whose session ended (or whose user changed); how many."""
        sessions = {e.session for e in self._open if e.session is not None}
        if not sessions:
            return 0
        fresh = await live(sessions)
        ended = [e for e in self._open if e.session is not None and e.session not in fresh]
        changed = [e for e in self._open if e.session in fresh and e.still_ok is not None
                   and not e.still_ok(fresh[e.session])]
        await self._close(ended, CloseCode.SESSION_ENDED, "session ended")
        await self._close(changed, CloseCode.SESSION_CHANGED, "session changed")
        return len(ended) + len(changed)

    async def sweep_forever(self, live: LiveSessions, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep(live)
            except Exception as exc:  # the database hiccups: keep the sockets, try again later
                log.warning("open pages' session check failed: %s", exc)

    async def _close(self, entries: Iterable[OpenSocket], code: int, reason: str) -> None:
        entries = list(entries)
        for entry in entries:
            self.remove(entry)
        await asyncio.gather(*(_close_one(e, code, reason) for e in entries))


async def _close_one(entry: OpenSocket, code: int, reason: str) -> None:
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await entry.ws.close(code=code, message=reason.encode()[:120])
    except (TimeoutError, ConnectionError, RuntimeError):
        if entry.transport is not None:
            entry.transport.abort()  # a peer that reads nothing: cut the TCP connection


ACTIVITY = "activity"  # the frame type a page sends over its socket when its user acts


def activity_listener(request: web.Request) -> Callable[[str], Awaitable[None]] | None:
    """For a socket's text frames: `{"type": "activity"}` (the person typed or clicked)
    renews the session's idle timer like a request does, at most every `touch_interval`.
    Anything else, pings and the open socket itself renew nothing."""
    session: AuthSession | None = request.get(SESSION_KEY)
    auth = request.app.get(AUTH_KEY)
    if session is None or auth is None:
        return None
    last = [session.last_seen_at]

    async def on_text(text: str) -> None:
        try:
            kind = json.loads(text).get("type") if len(text) < 200 else None
        except (ValueError, AttributeError):
            return
        now = auth.clock()
        if kind != ACTIVITY or now - last[0] < auth.touch_interval:
            return
        last[0] = now
        if await auth.load_session(session.token_hash, touch=False) is not None:  # never revive an ended one
            await auth.touch(dataclasses.replace(session, last_seen_at=0.0))

    return on_text


SOCKETS_KEY = web.AppKey("callbridge_sockets", SocketRegistry)


def sockets_of(app: web.Application) -> SocketRegistry:
    """The app's registry (setup_auth makes it; pages without auth get an uncapped-by-session one)."""
    found = app.get(SOCKETS_KEY)
    if found is None:
        found = SocketRegistry()
        app[SOCKETS_KEY] = found
    return found
