"""A small AMI connection of the live tests' own: independent of the bridge's client.

It logs in, sends actions (each with its own ActionID, answered by a future) and keeps every
event Asterisk sends, in order, so a scenario can wait for the event it needs (always with a
time-out, never a fixed sleep) and read what Asterisk itself stated (AgentConnect HoldTime,
AgentComplete TalkTime, QueueCallerAbandon HoldTime, transfers, Cdr, Timestamps).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Iterable
from typing import Any

DEFAULT_TIMEOUT = 30.0


class AmiMessage(dict[str, str]):
    """One AMI message: the first value of each key; every (key, value) pair in `pairs`."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = pairs
        for key, value in pairs:
            self.setdefault(key, value)

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def timestamp(self) -> float | None:
        value = self.get("Timestamp")
        return float(value) if value else None


def parse_block(block: bytes) -> AmiMessage:
    pairs = []
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value[1:] if value.startswith(" ") else value))
    return AmiMessage(pairs)


class AmiError(Exception):
    pass


Match = Callable[[AmiMessage], bool]


def where(event: str, **fields: str | Callable[[str], bool]) -> Match:
    """A predicate on an event's name and fields (a value, or a test of the value)."""

    def match(msg: AmiMessage) -> bool:
        if msg.event != event:
            return False
        for key, want in fields.items():
            have = msg.get(key)
            if have is None:
                return False
            if callable(want):
                if not want(have):
                    return False
            elif have != want:
                return False
        return True

    return match


class AmiDriver:
    """Connect, log in, then `action(...)` and `wait_for(...)`."""

    def __init__(self, host: str, port: int, username: str = "callbridge",
                 secret: str = "lab-secret") -> None:
        self.host, self.port, self.username, self.secret = host, port, username, secret
        self.events: list[AmiMessage] = []
        self.banner = ""
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[AmiMessage]] = {}
        self._changed = asyncio.Condition()
        self._reader_task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.closed = asyncio.Event()

    async def connect(self, limit: float = 10.0) -> AmiDriver:
        async with asyncio.timeout(limit):
            reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self.banner = (await reader.readline()).decode().strip()
        if not self.banner.startswith("Asterisk Call Manager/"):
            raise AmiError(f"not an AMI banner: {self.banner!r}")
        self._reader_task = asyncio.create_task(self._read(reader), name=f"ami-driver-{self.port}")
        reply = await self.action("Login", Username=self.username, Secret=self.secret)
        if reply.get("Response") != "Success":
            raise AmiError(f"login refused: {reply}")
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    async def __aenter__(self) -> AmiDriver:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                try:
                    block = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                msg = parse_block(block[:-4])
                if not msg.pairs:
                    continue
                action_id = msg.get("ActionID")
                if "Event" not in msg and action_id in self._replies:
                    future = self._replies.pop(action_id)
                    if not future.done():
                        future.set_result(msg)
                    continue
                async with self._changed:
                    self.events.append(msg)
                    self._changed.notify_all()
        finally:
            self.closed.set()
            for future in self._replies.values():
                if not future.done():
                    future.set_exception(AmiError("AMI connection closed"))
            async with self._changed:
                self._changed.notify_all()

    # -- actions ---------------------------------------------------------------------------
    async def action(self, name: str, limit: float = 15.0, **fields: Any) -> AmiMessage:
        """Send one action; its reply (`Response: ...`). Repeated keys: pass a list."""
        assert self._writer is not None, "not connected"
        action_id = f"live-{next(self._ids)}"
        lines = [f"Action: {name}", f"ActionID: {action_id}"]
        for key, value in fields.items():
            for one in value if isinstance(value, list | tuple) else [value]:
                lines.append(f"{key}: {one}")
        future: asyncio.Future[AmiMessage] = asyncio.get_running_loop().create_future()
        self._replies[action_id] = future
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self._writer.drain()
        async with asyncio.timeout(limit):
            reply = await future
        reply["ActionID"] = action_id
        return reply

    async def ok(self, name: str, **fields: Any) -> AmiMessage:
        reply = await self.action(name, **fields)
        if reply.get("Response") != "Success":
            raise AmiError(f"{name} {fields} refused: {dict(reply)}")
        return reply

    async def setvar(self, variable: str, value: str) -> None:
        """A global variable (no channel)."""
        await self.ok("Setvar", Variable=variable, Value=value)

    # -- events ----------------------------------------------------------------------------
    def find(self, match: Match, since: int = 0) -> list[AmiMessage]:
        return [m for m in self.events[since:] if match(m)]

    async def wait_for(self, match: Match, limit: float = DEFAULT_TIMEOUT, since: int = 0,
                       count: int = 1, what: str = "") -> AmiMessage:
        """The `count`-th event (from index `since`) that matches; AssertionError on time-out."""
        try:
            async with asyncio.timeout(limit), self._changed:
                while True:
                    found = self.find(match, since)
                    if len(found) >= count:
                        return found[count - 1]
                    if self.closed.is_set():
                        raise AssertionError(f"AMI connection closed while waiting for {what or match}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"Asterisk never sent {what or 'the awaited event'} within {limit} s "
                                 f"({len(self.events)} events seen)") from None

    async def wait_all(self, matches: Iterable[Match], limit: float = DEFAULT_TIMEOUT) -> list[AmiMessage]:
        return [await self.wait_for(m, limit) for m in matches]

    def of_call(self, linkedid: str) -> list[AmiMessage]:
        return [m for m in self.events if m.get("Linkedid") == linkedid]
