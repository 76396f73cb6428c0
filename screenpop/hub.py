"""Browser connections of the operator console, and fan-out of card frames to them.

One WebSocket per browser tab; a user may have several. Each connection receives the
cards of the extensions bound to its user, on his PBX: connections are found by (PBX,
extension), so two operators with a 201 on two PBXes never see each other's cards.
`Hub.push` is synchronous and never waits on a socket (it runs inside the call pipeline):
frames go to a bounded per-connection buffer that a writer task drains. The buffer keeps
only the newest frame per card (a card frame is the whole card, so an older one is
worthless once a newer one waits), and a connection that still falls `queue_size` cards
behind, or whose socket does not take a frame within `send_timeout`, is closed: the
browser reconnects and its `Hello` brings it up to date. Dead peers are found by
WebSocket ping/pong (`heartbeat`).

The first frame is bounded (`bounded_hello`): every ringing and live card, but only the
newest `max_after_call` after-call cards and at most `max_hello_bytes` in all, so a page
opened many times over costs little each (the sockets per session and per user are capped
by web.ws_tasks.SocketRegistry).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import WSCloseCode, web

from bridge.calls.record import DEFAULT_PBX
from screenpop.card_ids import operator_of
from screenpop.messages import Card, CardRemoved, Hello
from web.users import SignedInUser, pbx_of
from web.ws_tasks import beside, read_until_closed

log = logging.getLogger(__name__)

_HELLO = "\0hello"  # buffer key of the Hello frame (card ids never start with NUL)
WITHDRAWN_KEPT = 32  # withdrawn card ids a connection remembers
BROADCAST_STEP = 100  # offers of frames that are no card per turn of the event loop


class Connection:
    def __init__(self, ws: web.WebSocketResponse, user: SignedInUser, *, queue_size: int,
                 send_timeout: float, transport: asyncio.BaseTransport | None = None,
                 pbx: str | None = None) -> None:
        self.ws = ws
        self.user = user
        self.pbx = pbx or pbx_of(user)
        self.extensions = frozenset(user.extensions)
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self._transport = transport
        # card id -> (frame text, card state or None for a removal)
        self._pending: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._wake = asyncio.Event()
        self.shown: set[str] = set()  # card ids this browser has on screen
        # Withdrawn lately (newest last): a later "answered by Boris" about one still goes out.
        self.withdrawn: OrderedDict[str, None] = OrderedDict()
        self.closing: str | None = None  # why we are closing it
        self.frames_sent = 0

    def offer(self, key: str, text: str, state: str | None) -> bool:
        """Queue a frame; False when this connection is too far behind (then it is dropped)."""
        if self.closing is not None:
            return True
        if key in self._pending:
            self._pending[key] = (text, state)  # the newer version replaces the waiting one
        elif len(self._pending) >= self.queue_size:
            return False
        else:
            self._pending[key] = (text, state)
        self._wake.set()
        return True

    def drop(self, reason: str) -> None:
        if self.closing is None:
            self.closing = reason
            self._pending.clear()
            self._wake.set()

    async def run(self, on_text: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Write queued frames and read what the browser sends (its activity notices go to
        `on_text`), until closed."""
        await beside(self._write_loop(), read_until_closed(self.ws, on_text),
                     name=f"console-ws {self.user.username}")

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and self.closing is None:
                key, (text, state) = self._pending.popitem(last=False)
                if not self._want(key, state):
                    continue
                try:
                    async with asyncio.timeout(self.send_timeout):
                        await self.ws.send_str(text)
                except TimeoutError:
                    self.drop(f"socket took no frame for {self.send_timeout:g} s")
                except (ConnectionError, RuntimeError) as exc:  # closed under us
                    self.drop(f"send failed: {exc}")
                else:
                    self.frames_sent += 1
            if self.closing is not None:
                await self._close()
                return

    def _want(self, key: str, state: str | None) -> bool:
        """Frames about a card this browser never had on screen are skipped: a ring that
        was over (busy, answered elsewhere) before the frame left shows nothing at all."""
        if key.startswith("\0"):  # hello, the operator's state, the clock
            return True
        if state == "withdrawn" or state is None:
            if key not in self.shown:
                return state == "withdrawn" and key in self.withdrawn
            self.shown.discard(key)
            if state == "withdrawn":
                self.withdrawn[key] = None
                while len(self.withdrawn) > WITHDRAWN_KEPT:
                    self.withdrawn.popitem(last=False)
        else:
            self.shown.add(key)
        return True

    async def _close(self) -> None:
        log.warning("console connection of %s dropped: %s", self.user.username, self.closing)
        try:
            async with asyncio.timeout(1.0):
                await self.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow, reconnect")
        except (TimeoutError, ConnectionError, RuntimeError):
            if self._transport is not None:
                self._transport.abort()  # a peer that reads nothing: cut the TCP connection


HISTORY_IN_SHORT = 3  # history items per card when the first frame is still too big


def bounded_hello(hello: Hello, max_after_call: int, max_bytes: int) -> tuple[Hello, str]:
    """The Hello with its after-call cards cut to the newest `max_after_call`, then fewer and
    shorter histories until its JSON fits `max_bytes` (live and ringing cards always stay)."""
    live = [c for c in hello.cards if c.state != "after_call"]
    done = sorted((c for c in hello.cards if c.state == "after_call"),
                  key=lambda c: c.ended_at or c.entered_at, reverse=True)[:max(0, max_after_call)]
    trimmed = hello.model_copy(update={"cards": live + done})
    text = trimmed.model_dump_json()
    while len(text) > max_bytes and done:
        done.pop()  # the oldest after-call card first
        trimmed = hello.model_copy(update={"cards": live + done})
        text = trimmed.model_dump_json()
    if len(text) > max_bytes:
        short = [c.model_copy(update={"history": c.history[:HISTORY_IN_SHORT]}) for c in live]
        trimmed = hello.model_copy(update={"cards": short})
        text = trimmed.model_dump_json()
    return trimmed, text


class Hub:
    def __init__(self, *, queue_size: int = 256, heartbeat: float = 20.0, send_timeout: float = 10.0,
                 max_after_call: int = 10, max_hello_bytes: int = 64 * 1024) -> None:
        self.queue_size = queue_size
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        self.max_after_call = max_after_call
        self.max_hello_bytes = max_hello_bytes
        self._by_extension: dict[tuple[str, str], set[Connection]] = {}  # (pbx, extension) ->
        self._all: set[Connection] = set()
        self.dropped = 0
        # Told each page's first frame once it is registered (its cards' history is due).
        self.on_attach: Callable[[Hello], None] | None = None
        self._paced: deque[tuple[Connection, str, str]] = deque()  # send()'s offers still to make
        self._step_due = False

    def attach(self, ws: web.WebSocketResponse, user: SignedInUser, hello: Hello,
               transport: asyncio.BaseTransport | None = None, pbx: str | None = None) -> Connection:
        """Register a prepared WebSocket of a user on `pbx` (default: his own); its first frame
        is `hello`. Synchronous, so the `Hello` snapshot and the frames pushed after it cannot
        cross."""
        conn = Connection(ws, user, queue_size=self.queue_size, send_timeout=self.send_timeout,
                          transport=transport, pbx=pbx)
        hello, text = bounded_hello(hello, self.max_after_call, self.max_hello_bytes)
        conn.offer(_HELLO, text, None)
        conn.shown.update(card.card_id for card in hello.cards)
        self._all.add(conn)
        for ext in conn.extensions:
            self._by_extension.setdefault((conn.pbx, ext), set()).add(conn)
        if self.on_attach is not None:
            self.on_attach(hello)
        return conn

    def detach(self, conn: Connection) -> None:
        self._all.discard(conn)
        for ext in conn.extensions:
            conns = self._by_extension.get((conn.pbx, ext))
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    del self._by_extension[(conn.pbx, ext)]

    def watching(self, pbx: str, extension: str) -> bool:
        """Is a page of this (PBX, extension) open on this node? (Cheap: one dict lookup.)"""
        return any(c.closing is None for c in self._by_extension.get((pbx, extension), ()))

    def push(self, messages: Iterable[Card | CardRemoved]) -> None:
        """Send each card to the connections of its operator's extension on its PBX. Never blocks."""
        for message in messages:
            if isinstance(message, Card):
                ext, state = message.operator, message.state
            else:
                ext, state = operator_of(message.card_id), None
            conns = self._by_extension.get((message.pbx, ext))
            if not conns:
                continue
            text = message.model_dump_json()
            for conn in list(conns):
                if not conn.offer(message.card_id, text, state):
                    self.dropped += 1
                    conn.drop(f"more than {self.queue_size} cards waiting")

    def send(self, key: str, text: str, extension: str | None = None, pbx: str | None = None) -> None:
        """A frame that is no card (the operator's state, the clock) to the connections of one
        extension of `pbx` (the main one if None), of every user on `pbx`, or to all; `key`
        (starting with NUL) keeps only the newest waiting one.

        Paced, unlike cards: at most BROADCAST_STEP of these offers per turn of the event
        loop, in the order sent. A frame to 1,000 pages at once (the clock; the operators'
        states as a busy PBX starts) is ~30-60 ms of socket writes, which a card popping
        meanwhile would wait behind; paced, the card goes out between two steps."""
        if extension is not None:
            targets = list(self._by_extension.get((pbx or DEFAULT_PBX, extension), ()))
        else:
            targets = [c for c in self._all if pbx is None or c.pbx == pbx]
        self._paced.extend((conn, key, text) for conn in targets)
        if not self._step_due:  # else the step already due takes these in their turn
            self._step()

    def _step(self) -> None:
        self._step_due = False
        for _ in range(min(BROADCAST_STEP, len(self._paced))):
            conn, key, text = self._paced.popleft()
            if not conn.offer(key, text, "frame"):
                self.dropped += 1
                conn.drop(f"more than {self.queue_size} cards waiting")
        if not self._paced or self._step_due:
            return
        try:
            asyncio.get_running_loop().call_soon(self._step)
            self._step_due = True
        except RuntimeError:  # no loop (an offline use): all at once
            self._step()

    def connections(self, extension: str | None = None, pbx: str = DEFAULT_PBX) -> list[Connection]:
        if extension is None:
            return list(self._all)
        return list(self._by_extension.get((pbx, extension), ()))

    async def close_all(self) -> None:
        """Server shutdown: say goodbye to every browser (they reconnect to the next run)."""
        conns = list(self._all)
        for conn in conns:
            conn.closing = conn.closing or "server shutdown"
        await asyncio.gather(*(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
                               for c in conns), return_exceptions=True)
