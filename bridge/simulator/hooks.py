"""What tests observe and steer in `AmiSimulator`: the actions it received, the events it
sent, logins, canned or withheld answers, and waits on any of these (no polling: every
change wakes the waiters)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from bridge.ami.message import AmiMessage
from bridge.simulator.shapes import Pairs


def action_name(message: AmiMessage) -> str:
    return (message.get("Action") or "").strip().lower()


class SimulatorHooks:
    def __init__(self) -> None:
        self.actions: list[AmiMessage] = []
        self.sent_events: list[AmiMessage] = []  # replayed capture events, every connection's
        # (shared mode: each event the PBX said, once, whoever listened)
        self.sent_event_bytes: list[bytes] = []
        self.generated_events: list[AmiMessage] = []  # events made from actions
        self.logins = 0
        self.login_times: list[float] = []  # time.monotonic() of every accepted login
        self._overrides: dict[str, Pairs] = {}
        self._ignored: set[str] = set()
        self._cursors: dict[str, int] = {}
        self.stripped: dict[str, tuple[str, ...]] = {}  # event name -> header prefixes left out
        self.held_at: int | None = None  # hold_replay: each connection stops after so many events
        self.made_held = False  # hold_made_events: the PBX's own later events wait
        self._changed = asyncio.Event()

    def set_response(self, action: str, headers: Mapping[str, str] | Pairs | None) -> None:
        """Answer `action` (after login) with `headers` instead; ActionID is added after the
        first header. No side effects or events. `None` restores the normal answer."""
        if headers is None:
            self._overrides.pop(action.lower(), None)
        else:
            pairs = headers.items() if isinstance(headers, Mapping) else headers
            self._overrides[action.lower()] = list(pairs)

    def strip_fields(self, event: str, *prefixes: str) -> None:
        """Replay `event` without the headers starting with `prefixes` (none: as recorded),
        e.g. `strip_fields("AttendedTransfer", "TransferTarget")`: the shape Asterisk sends
        when the transfer had no target channel snapshot (main/stasis_bridges.c)."""
        if prefixes:
            self.stripped[event.lower()] = prefixes
        else:
            self.stripped.pop(event.lower(), None)

    def hold_replay(self, after: int | None) -> None:
        """Hold every connection's replay once it has sent `after` events (None: go on), e.g.
        to act on a call while it is up, then let the capture end it: no race with the replay.
        Shared mode: the PBX's one replay, once it has said `after` events."""
        self.held_at = after
        self._notify()

    async def replay_gate(self, sent: int) -> None:
        """Wait while a replay that has sent `sent` events is held (`hold_replay`)."""
        while self.held_at is not None and sent >= self.held_at:
            await self._changed.wait()

    def hold_made_events(self, hold: bool = True) -> None:
        """Hold the events the PBX makes later on its own (an Originate's answer, ChanSpy's
        start, ...) until released; the replay and action replies go on."""
        self.made_held = hold
        self._notify()

    async def made_events_gate(self) -> None:
        while self.made_held:
            await self._changed.wait()

    def ignore_action(self, action: str, ignore: bool = True) -> None:
        """Never answer `action` (still recorded in `actions`): for client timeouts."""
        (self._ignored.add if ignore else self._ignored.discard)(action.lower())

    async def wait_for_action(self, name: str, timeout: float = 5.0) -> AmiMessage:  # noqa: ASYNC109
        """The next `name` action not yet returned by this method, waiting if need be."""
        key = name.lower()

        def find() -> int | None:
            for index in range(self._cursors.get(key, 0), len(self.actions)):
                if action_name(self.actions[index]) == key:
                    return index
            return None

        index = await self._wait_until(find, timeout, f"a {name} action")
        self._cursors[key] = index + 1
        return self.actions[index]

    async def wait_for_events(self, count: int, timeout: float = 5.0) -> list[AmiMessage]:  # noqa: ASYNC109
        """Wait until `count` replayed events have been sent (over all connections)."""
        await self._wait_until(lambda: len(self.sent_events) >= count or None, timeout,
                               f"{count} replayed events")
        return self.sent_events[:count]

    async def wait_for_logins(self, count: int, timeout: float | None = 5.0) -> int:  # noqa: ASYNC109
        """Wait until `count` logins have been accepted in all (`timeout` None: however long)."""
        return await self._wait_until(lambda: self.logins if self.logins >= count else None, timeout,
                                      f"{count} logins")

    async def _wait_until(self, predicate: Callable[[], int | bool | None],
                          timeout: float | None, what: str) -> int:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                while (found := predicate()) is None:
                    await self._changed.wait()
        except TimeoutError:
            raise TimeoutError(f"no {what} within {timeout}s") from None
        return int(found)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
