"""One PBX's part of the wallboard. Pure: no I/O.

Queue names, extensions, channel names and Linkedids are a PBX's own (two PBXes may both
have a "support" queue, an extension 101 and a channel `PJSIP/101-00000001`), so each PBX
has its own board, spy sessions, spies ringing, and clock; the wallboard service keeps one
`PbxSite` per PBX and puts their pictures side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from bridge.calls.channel_names import OperatorDirectory
from supervision.pbx_actions import SpyBook, SpyMode
from supervision.queue_board import QueueBoard
from web.users import SignedInUser

# A PBX time this far behind the board's is the PBX's clock set back, not a late event.
CLOCK_STEP_BACK = 5.0


@dataclass(slots=True)
class PendingSpy:
    """A spy we originated: the listener's phone rings until ChanSpyStart."""

    listener: str
    operator: str
    mode: SpyMode  # the mode wanted now: a click while the phone rings changes it
    requested_by: str
    at: float
    started_as: SpyMode | None = None  # the mode the Originate's ChanSpy options start in
    channel: str | None = None  # the listener's channel being rung (its Newchannel), to cancel it
    user: SignedInUser | None = None  # who asked (a switch made when the session starts is his)


@dataclass(slots=True)
class PbxClock:
    """A PBX's clock: its last event's Timestamp moved on by our elapsed time. Each PBX has
    its own: two PBXes' clocks a few seconds apart must not look like one set back and forth."""

    last_event: tuple[float, float] | None = None  # (PBX time, our time)
    latest: float = 0.0

    def seen(self, pbx_at: float, ours: float) -> None:
        self.last_event = (pbx_at, ours)

    def now(self, ours: float) -> float:
        """Not backwards for an event that took a while to reach us (a wait must not shorten:
        alerts flap), but a PBX clock that was set back (a replay starting again in the present
        after running ahead, an NTP step) is followed: an old clock never makes a long wait."""
        if self.last_event is None:
            return ours
        pbx_at, our_at = self.last_event
        pbx_now = pbx_at + max(0.0, ours - our_at)
        self.latest = pbx_now if pbx_now < self.latest - CLOCK_STEP_BACK else max(self.latest, pbx_now)
        return self.latest


@dataclass(slots=True)
class PbxSite:
    id: str
    board: QueueBoard
    spies: SpyBook
    id_prefix: str = ""  # its calls' ids in the records: "<pbx>:<Linkedid>" on all PBXes but the first
    clock: PbxClock = field(default_factory=PbxClock)
    pending: dict[str, PendingSpy] = field(default_factory=dict)  # by the Originate's ActionID
    requested_by: dict[str, str] = field(default_factory=dict)  # listener extension -> who set it up
    cancelled: dict[str, float] = field(default_factory=dict)  # listener -> when his ringing one ended
    spy_calls: set[str] = field(default_factory=set)  # call ids (prefixed) of the listeners' own calls

    @property
    def operators(self) -> OperatorDirectory:
        """Its extensions that are operators' phones: its own `operator_pattern`."""
        return self.board.operators

    @property
    def tz(self) -> tzinfo:
        """Its zone: where its "today" starts, what its clock shows."""
        return self.board.tz

    def today_starts(self, now: float) -> datetime:
        """Midnight of `now`'s day in its zone (where a DST change skips midnight, zoneinfo
        gives the first moment of the day)."""
        today = datetime.fromtimestamp(now, self.tz).date()
        return datetime.combine(today, datetime.min.time(), tzinfo=self.tz)

    def call_id(self, linkedid: str) -> str:
        """A Linkedid of this PBX as the call records name it."""
        return self.id_prefix + linkedid

    def pending_of(self, listener: str) -> tuple[str, PendingSpy] | None:
        return next(((k, p) for k, p in self.pending.items() if p.listener == listener), None)
