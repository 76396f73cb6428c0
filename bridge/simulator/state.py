"""The simulated PBX's live state: channels, queues and variables as the replayed events
left them, its clock, and the counters a real Asterisk run numbers its channels with.

The action answers built on it are in `bridge.simulator.actions` (and the modules it
combines); wire shapes and seed queues in `bridge.simulator.shapes`.
Timestamps come from the replay's clock (recorded time, advanced at replay speed), so
generated events line up with the replayed ones a client already holds.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bridge.ami.message import AmiMessage
from bridge.simulator.shapes import (
    CHANNEL_FIELDS,
    MEMBER_FIELDS,
    SEED_QUEUES,
    SNAPSHOT_PREFIXES,
    Answer,
    Later,
    Pairs,
    new_member,
    queue_average,
    to_int,
)

# What a supervisor's QueueAdd / QueuePause sets on a member, which the replay then keeps.
OVERRIDDEN_MEMBER_FIELDS = ("MemberName", "Membership", "Penalty", "Paused", "PausedReason", "LastPause",
                            "LoginTime")
# `<tech>/<resource>-<8 hex digits>[;1|;2]`: Asterisk's channel names (Local: core_unreal.c).
_CHANNEL_SEQ = re.compile(r"^(\w+)/.*-([0-9a-f]{8})(?:;[12])?$")
_UNIQUEID = re.compile(r"^(\d+)\.(\d+)$")


class Clock:
    """Recorded time: jumps to each replayed event's Timestamp, runs at `rate` in between."""

    def __init__(self, start: float, rate: float) -> None:
        self.rate = rate
        self.advance(start)

    def advance(self, ts: float) -> None:
        self._ts, self._wall = ts, time.monotonic()

    def now(self) -> float:
        return self._ts + (time.monotonic() - self._wall) * self.rate


@dataclass
class Channel:
    fields: dict[str, str]
    created: float
    application: str = ""
    app_data: str = ""
    bridge_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    mixmonitors: int = 0  # MixMonitors running on it (StopMixMonitor needs one)


@dataclass
class Queue:
    name: str
    strategy: str
    members: dict[str, dict[str, str]] = field(default_factory=dict)  # by Interface
    callers: dict[str, float] = field(default_factory=dict)  # channel -> joined at
    holdtime: int = 0
    talktime: int = 0
    completed: int = 0
    abandoned: int = 0


class Headers:
    """An event's headers looked up as AmiMessage does (exact name, else any case; the first
    of repeated names), without AmiMessage's scan of every name on a miss: apply() asks for
    many a header an event lacks (Dest*, LocalOne*, ...), at every replayed event."""

    __slots__ = ("_exact", "_folded")

    def __init__(self, msg: AmiMessage) -> None:
        pairs = msg.pairs[::-1]  # the first of repeated names is assigned last: it wins
        self._exact = dict(pairs)
        self._folded = {k.lower(): v for k, v in pairs}

    def find(self, key: str) -> str | None:
        value = self._exact.get(key)
        return self._folded.get(key.lower()) if value is None else value

    def get(self, key: str, default: str = "") -> str:
        value = self.find(key)
        return default if value is None else value

    def __getitem__(self, key: str) -> str:
        if (value := self.find(key)) is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: str) -> bool:
        return key in self._exact or key.lower() in self._folded

    def pick(self, names: Sequence[tuple[str, str, str]]) -> list[tuple[str, str]]:
        """(as, value) of each (name, name lowered, as) the event has: a snapshot's fields."""
        exact, folded, found = self._exact, self._folded, []
        for name, lowered, key in names:
            if (value := exact.get(name)) is not None or (value := folded.get(lowered)) is not None:
                found.append((key, value))
        return found


def _names(prefix: str, fields: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    return tuple((prefix + k, (prefix + k).lower(), k) for k in fields)


# Per snapshot prefix: its channel's header, the header saying it is a snapshot, its fields.
_SNAPSHOTS = [(f"{p}Channel", f"{p}ChannelStateDesc", _names(p, CHANNEL_FIELDS)) for p in SNAPSHOT_PREFIXES]
_MEMBER_NAMES = _names("", MEMBER_FIELDS)


class Counters:
    """A PBX run's numbering: one Uniqueid counter shared by every channel
    (channel_internal_api.c `uniqueint`) and a name sequence per channel technology
    (Local pairs: core_unreal.c `name_sequence`)."""

    def __init__(self) -> None:
        self.uniqueid = 0
        self.sequence: dict[str, int] = {}

    def saw(self, message: AmiMessage) -> None:
        """Count past a channel the PBX made (a Newchannel)."""
        if m := _UNIQUEID.match(message.get("Uniqueid", "")):
            self.uniqueid = max(self.uniqueid, int(m[2]) + 1)
        if m := _CHANNEL_SEQ.match(message.get("Channel", "")):
            self.sequence[m[1]] = max(self.sequence.get(m[1], 0), int(m[2], 16) + 1)

    def next_uniqueids(self, count: int) -> list[int]:
        start, self.uniqueid = self.uniqueid, self.uniqueid + count
        return list(range(start, start + count))

    def next_sequence(self, tech: str) -> int:
        seq = self.sequence.get(tech, 0)
        self.sequence[tech] = seq + 1
        return seq


class PbxCore:
    """State fed by the replayed events, and the helpers every action answer uses."""

    def __init__(self, start: float | None = None, rate: float = 1.0,
                 used: Iterable[AmiMessage] = ()) -> None:
        start = time.time() if start is None else start
        self.clock = Clock(start, rate)
        self.channels: dict[str, Channel] = {}
        self.globals: dict[str, str] = {}
        self.queues: dict[str, Queue] = {}
        self.hung_up: set[str] = set()  # channels an action hung up: their replay is over
        self.later: list[Later] = []  # events the state made due later: the server sends them
        # Members a supervisor's action changed, by (queue, interface): what he set (None:
        # he removed the member). The replay's later words about them keep his changes.
        self.member_overrides: dict[tuple[str, str], dict[str, str] | None] = {}
        for name, (strategy, members) in SEED_QUEUES.items():
            queue = self.queues[name] = Queue(name, strategy)
            for interface, member_name in members:
                queue.members[interface] = new_member(interface, member_name, int(start))
        # Our own channels are numbered after every one the capture's PBX run made (ids a
        # replay is yet to send included), so none of ours can collide with one of its.
        self.counters = Counters()
        for message in used:
            if message.event == "Newchannel":
                self.counters.saw(message)

    def stamp(self) -> str:
        return f"{self.clock.now():.6f}"

    def event(self, name: str, privilege: str, fields: Pairs) -> Pairs:
        return [("Event", name), ("Privilege", privilege), ("Timestamp", self.stamp()), *fields]

    def take_later(self) -> list[Later]:
        later, self.later = self.later, []
        return later

    def watch(self, msg: AmiMessage) -> None:
        """A replayed event, before it is applied (ChanSpy watches its channels)."""

    def hangup_spy(self, channel: str, cause: int) -> list[Pairs] | None:
        """A Hangup action's events when `channel` runs ChanSpy (else None)."""
        return None

    def snapshot(self, channel: str) -> Pairs:
        """The channel's fields as Asterisk's events print them (Channel ... Linkedid)."""
        chan = self.channels[channel]
        return [(k, chan.fields.get(k, channel if k == "Channel" else "")) for k in CHANNEL_FIELDS]

    # ---- replayed events -> state ----------------------------------------------------

    def apply(self, event: AmiMessage, headers: Headers | None = None) -> None:
        """`event` replayed (`headers`: its own, if the caller has them already)."""
        msg = Headers(event) if headers is None else headers
        if ts := msg.get("Timestamp"):
            with contextlib.suppress(ValueError):
                self.clock.advance(float(ts))
        self.watch(event)
        name, channel = event.event or "", msg.get("Channel", "")
        if name == "Newchannel":
            self.channels[channel] = Channel({}, self.clock.now())
            self.counters.saw(event)
        for named, state, names in _SNAPSHOTS:
            snap = self.channels.get(msg.get(named))
            if snap is not None and state in msg:
                snap.fields.update(msg.pick(names))
        chan = self.channels.get(channel)
        queue = self._queue(msg["Queue"]) if "Queue" in msg and name.startswith(("Queue", "Agent")) else None
        member = queue.members.get(msg.get("Interface", "")) if queue else None
        match name:
            case "Newexten" if chan:
                chan.application, chan.app_data = msg.get("Application", ""), msg.get("AppData", "")
            case "BridgeEnter" | "BridgeLeave" if chan:
                chan.bridge_id = msg.get("BridgeUniqueid", "") if name == "BridgeEnter" else ""
            case "MixMonitorStart" if chan:
                chan.mixmonitors += 1
            case "MixMonitorStop" if chan:
                chan.mixmonitors = max(0, chan.mixmonitors - 1)
            case "Hangup":
                self.channels.pop(channel, None)
            case "VarSet":
                store = self.globals if channel == "none" else chan.variables if chan else {}
                store[msg.get("Variable", "")] = msg.get("Value", "")
            case "QueueCallerJoin" if queue:
                queue.callers[channel] = self.clock.now()
            case "QueueCallerLeave" | "QueueCallerAbandon" if queue:
                queue.callers.pop(channel, None)
                queue.abandoned += name == "QueueCallerAbandon"
            case "QueueMemberAdded" | "QueueMemberStatus" | "QueueMemberPause" if queue:
                interface = msg.get("Interface", "")
                member = queue.members.setdefault(interface, new_member(interface, interface, 0))
                member.update(msg.pick(_MEMBER_NAMES))
            case "QueueMemberRemoved" if queue:
                queue.members.pop(msg.get("Interface", ""), None)
            case "AgentConnect" if queue:  # no QueueMemberStatus tells of InCall
                if member is not None:
                    member["InCall"] = "1"
                first = queue.completed + queue.abandoned == 0
                queue.holdtime = queue_average(queue.holdtime, to_int(msg.get("HoldTime")), first)
            case "AgentComplete" if queue:
                if member is not None:
                    member["InCall"] = "0"
                queue.completed += 1
                queue.talktime = queue_average(queue.talktime, to_int(msg.get("TalkTime")),
                                               queue.completed == 1)

    def keep_member(self, queue: str, interface: str, member: dict[str, str] | None) -> None:
        """A supervisor's action set this member (or removed it: None); the replay keeps it."""
        self.member_overrides[(queue, interface)] = None if member is None else {
            k: member[k] for k in OVERRIDDEN_MEMBER_FIELDS if k in member}

    def member_event_kept(self, msg: AmiMessage) -> Pairs | None:
        """A replayed QueueMember* event about a member a supervisor's action changed, as this
        PBX would say it: his pause, reason, name and membership stay (a removed member stays
        removed); the device's own state (Status, InCall, calls taken) is the replay's.
        None when the event is about no such member (it goes out as recorded)."""
        name = msg.event or ""
        if not name.startswith("QueueMember") or name == "QueueMember":
            return None
        key = (msg.get("Queue", ""), msg.get("Interface", ""))
        if key not in self.member_overrides:
            return None
        kept = self.member_overrides[key]
        pairs = list(msg.pairs)
        if kept is None:  # he removed the member: the replay cannot bring it back
            return [("Event", "QueueMemberRemoved"), *((k, v) for k, v in pairs if k != "Event")]
        pairs = [(k, kept.get(k, v)) for k, v in pairs]
        if name == "QueueMemberRemoved":  # he added it: it stays, as it is
            pairs[0] = ("Event", "QueueMemberStatus")
        return pairs

    def _queue(self, name: str) -> Queue:
        # A queue the seed does not know (another PBX's capture) appears when first named.
        return self.queues.setdefault(name, Queue(name, "ringall"))

    # ---- actions -> answers ----------------------------------------------------------

    @staticmethod
    def _tail(action: AmiMessage) -> Pairs:
        action_id = action.get("ActionID")
        return [("ActionID", action_id)] if action_id is not None else []

    def _list(self, action: AmiMessage, start: str, items: list[Pairs], done: str,
              extra: Pairs | None = None) -> Answer:
        """A list reply: `EventList: start`, the items, then `<done>` with `ListItems`."""
        tail = self._tail(action)
        head = [("Response", "Success"), *tail, ("EventList", "start"), ("Message", start)]
        complete = [("Event", done), *tail, ("EventList", "Complete"),
                    ("ListItems", str(len(items))), *(extra or [])]
        return Answer([head, *items, complete])
