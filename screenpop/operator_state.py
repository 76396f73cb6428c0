"""What the console knows beyond cards: which PBX a user or an event is on, each PBX's clock
against ours, and each operator's own state in his queues (paused with a reason, or
available), from the raw AMI queue events of his PBX.

All pure bookkeeping (no I/O); the screen-pop service pushes what changed."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.ami.message import AmiMessage
from bridge.calls.record import DEFAULT_PBX
from screenpop.messages import AgentState, QueueMembership
from web.users import pbx_of, resolve_pbx

CLOCK_STEP = 2.0  # seconds: a smaller move of the PBX's offset is event latency, not its clock


class PbxClock:
    """The PBX's clock minus ours, from the times of events as they arrive (a ring or an
    answer is seen within milliseconds). Changes by less than CLOCK_STEP are jitter."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall
        self.offset = 0.0
        self.known = False
        self.told = 0.0  # the offset the open pages have (a Hello before any event says 0)

    def observe(self, pbx_at: float) -> bool:
        """Take an event's PBX time, seen now; True when the pages must be told: the offset
        moved by CLOCK_STEP or more from what they have. A PBX whose clock is ours (NTP)
        is thus never announced to every page at its first ring, a burst of a frame per
        page that the first cards waited behind (bench/cluster.py)."""
        offset = pbx_at - self.wall()
        if self.known and abs(offset - self.offset) < CLOCK_STEP:
            return False
        self.offset, self.known = round(offset, 3), True
        if abs(self.offset - self.told) < CLOCK_STEP:
            return False
        self.told = self.offset
        return True


class PbxScope:
    """The PBXes the console serves, the first the main one (the pipeline's, once attached):
    whose PBX a user or an event is on, and each PBX's clock."""

    def __init__(self, wall: Callable[[], float], ids: tuple[str, ...] = (DEFAULT_PBX,)) -> None:
        self.wall = wall
        self.ids = ids
        self.clocks: dict[str, PbxClock] = {}

    @property
    def main(self) -> str:
        return self.ids[0]

    @property
    def several(self) -> bool:
        return len(self.ids) > 1

    def of_user(self, user: Any) -> str:
        """The PBX of his extensions ("main", the default, is the first PBX)."""
        return resolve_pbx(pbx_of(user), self.ids)

    def of_event(self, pbx: str) -> str:
        """The PBX an AMI event came from ("": untagged, the main one's)."""
        return pbx or self.main

    def clock(self, pbx: str) -> PbxClock:
        found = self.clocks.get(pbx)
        if found is None:
            found = self.clocks[pbx] = PbxClock(self.wall)
        return found


MEMBER_EVENTS = ("QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause", "QueueMember")


def interface_pattern(template: str) -> re.Pattern[str]:
    """"Local/{ext}@agents/n" -> a regex whose `ext` group is the extension."""
    before, _, after = template.partition("{ext}")
    return re.compile(f"^{re.escape(before)}(?P<ext>[0-9A-Za-z_*#-]+){re.escape(after)}$", re.IGNORECASE)


@dataclass
class _Member:
    paused: bool = False
    reason: str | None = None


@dataclass
class AgentStates:
    """Per PBX and extension, per queue: paused or not, and why (QueueMember* events)."""

    member_interface: str
    _pattern: re.Pattern[str] = field(init=False)
    # (pbx, ext) -> queue -> member
    _members: dict[tuple[str, str], dict[str, _Member]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pattern = interface_pattern(self.member_interface)

    def extension_of(self, interface: str) -> str | None:
        found = self._pattern.match(interface.strip())
        return found.group("ext") if found else None

    def on_event(self, ev: AmiMessage, pbx: str = DEFAULT_PBX) -> str | None:
        """Take a raw AMI event of that PBX; the extension whose state changed, if any."""
        name = ev.event or ""
        if name not in (*MEMBER_EVENTS, "QueueMemberRemoved") or "Queue" not in ev:
            return None
        ext = self.extension_of(ev.get("Interface") or ev.get("Location") or ev.get("StateInterface") or "")
        if ext is None:
            return None
        queues = self._members.setdefault((pbx, ext), {})
        before = self.state(ext, pbx)
        if name == "QueueMemberRemoved":
            queues.pop(ev["Queue"], None)
        else:
            member = queues.setdefault(ev["Queue"], _Member())
            member.paused = ev.get("Paused", "1" if member.paused else "0") == "1"
            reason = (ev.get("PausedReason") or "").strip() or None
            member.reason = (reason or member.reason) if member.paused else None
        return ext if self.state(ext, pbx) != before else None

    def state(self, ext: str, pbx: str = DEFAULT_PBX) -> AgentState:
        queues = self._members.get((pbx, ext))
        if queues is None:
            return AgentState(extension=ext)
        members = [QueueMembership(queue=q, paused=m.paused, reason=m.reason)
                   for q, m in sorted(queues.items())]
        paused = bool(members) and all(m.paused for m in members)
        reasons = [m.reason for m in members if m.paused and m.reason]
        return AgentState(extension=ext, known=True, paused=paused, reason=reasons[0] if reasons else None,
                          queues=members)
