"""Playing a `ReplaySession`: when its next event is due (the recorded gaps at `speed`), the
event as it goes out (relabelled, moved in time, headers stripped, hidden if an action hung
its channel up) and its effect on the PBX state.

Used by both replays of `AmiSimulator`: one per connection, and the shared PBX's
(`bridge.simulator.broadcast`). Paced events already due are taken in batches, so a replay
that is behind, or whose events come a few hundred microseconds apart, writes them in one
send instead of waking up and writing once per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from bridge.simulator.replay import CaptureEvent, ReplaySession, without_fields
from bridge.simulator.state import Headers

MAX_BATCH = 128  # events taken at once: actions get in between batches
# An event due this soon goes with the one being written: a busy PBX's events come a few
# hundred microseconds apart, and a wake-up and a write for each cost more than the wait.
EARLY = 0.002


class Settings(Protocol):
    """What a player reads of its simulator, at every event (they may change while it runs)."""

    speed: float | None
    capture_gap: float
    # Events written at once, at most: 1 writes each on its own, as Asterisk does (manager.c
    # sends each event of a session's queue with its own write); benches that time the
    # bridge from an event's arrival want that.
    batch_limit: int
    stripped: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Played:
    item: CaptureEvent  # as it goes out
    upcoming: CaptureEvent  # as recorded (paces the next one)
    hidden: bool  # about a channel an action hung up: the PBX no longer says it
    headers: Headers  # item's, for the state (looked up once)


class Player:
    def __init__(self, session: ReplaySession, settings: Settings) -> None:
        self.session, self.settings = session, settings
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time()
        self._due_for: int | None = None  # the position `_due` was worked out for
        self._paced = False

    def due_at(self) -> float | None:
        """The loop time the next event is due at; None: unpaced (no speed, no Timestamp)."""
        session = self.session
        if self._due_for != session.position:
            self._due_for = session.position
            upcoming, speed, last = session.next_event(), self.settings.speed, session.last
            stamp = upcoming.timestamp
            self._paced = bool(speed) and stamp is not None
            if speed and stamp is not None and last is not None and last.timestamp is not None:
                # Paced on the recorded times (a capture's gaps are the same however its
                # times are moved); a new capture or pass starts `capture_gap` later.
                same_run = last.capture == upcoming.capture and session.position % len(session.events)
                gap = max(0.0, stamp - last.timestamp) if same_run else self.settings.capture_gap
                self._due = max(self._due, self._loop.time() - 0.05) + gap / speed  # not bursty on lag
        return self._due if self._paced else None

    def ready(self) -> bool:
        """Whether the next event joins the batch being written: it is due (within EARLY).
        Unpaced, never: the loop gets a turn after every event, as it always did, so a client
        in the same process handles each as it comes (the bridge's tests count on it)."""
        due = self.due_at()
        return due is not None and due <= self._loop.time() + EARLY

    async def wait(self) -> None:
        """Until the next event is due; unpaced, one turn of the loop (actions get in)."""
        due = self.due_at()
        if due is None:
            await asyncio.sleep(0)
        elif (delay := due - self._loop.time()) > 0:
            await asyncio.sleep(delay)

    def prepare(self) -> Played:
        """The next event as it goes out. Rewritten only now, after the wait, so a capture
        moved to the present starts when its first event really goes out."""
        session = self.session
        upcoming, item = session.next_event(), session.relabelled_next()
        if prefixes := self.settings.stripped.get((item.message.event or "").lower()):
            item = without_fields(item, prefixes)
        headers = Headers(item.message)
        return Played(item, upcoming, headers.find("Channel") in session.state.hung_up, headers)

    def commit(self, played: Played) -> None:
        """`played` went out: the PBX state follows it, the session moves past it."""
        self.session.state.apply(played.item.message, played.headers)
        self.session.position += 1
        self.session.last = played.upcoming

    def batch(self, room: int, visible: bool) -> list[Played]:
        """The events due now, committed: at least one, at most `room` said ones (`visible`
        and not hidden) and MAX_BATCH in all. Ends after an event that left follow-ups
        (ChanSpy's), so they go out right after it, as when every event had its own write."""
        taken: list[Played] = []
        said = 0
        while True:
            played = self.prepare()
            self.commit(played)
            taken.append(played)
            said += visible and not played.hidden
            limit = min(MAX_BATCH, self.settings.batch_limit)
            if (said >= room or len(taken) >= limit or self.session.finished
                    or self.session.state.later or not self.ready()):
                return taken
