"""Build AMI event streams in the shapes Asterisk documents, for call classes we have no
capture of. Channels get Uniqueid/Linkedid the way Asterisk gives them (a channel created
on behalf of another inherits its Linkedid); each event carries the channel snapshot
fields (`Channel`, `Uniqueid`, `Linkedid`, ..., or with a prefix such as `Dest`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.record import CallRecord
from bridge.calls.tracker import CallTracker


@dataclass
class _Chan:
    uniqueid: str
    linkedid: str
    number: str
    name: str
    exten: str
    state: str = "Down"


@dataclass
class Pbx:
    now: float = 1_800_000_000.0
    events: list[AmiMessage] = field(default_factory=list)
    chans: dict[str, _Chan] = field(default_factory=dict)
    _seq: int = 0

    def tick(self, seconds: float) -> Pbx:
        self.now += seconds
        return self

    def snap(self, channel: str, prefix: str = "") -> dict[str, str]:
        c = self.chans[channel]
        return {f"{prefix}Channel": channel, f"{prefix}ChannelState": "6" if c.state == "Up" else "0",
                f"{prefix}ChannelStateDesc": c.state, f"{prefix}CallerIDNum": c.number,
                f"{prefix}CallerIDName": c.name, f"{prefix}Context": "default", f"{prefix}Exten": c.exten,
                f"{prefix}Priority": "1", f"{prefix}Uniqueid": c.uniqueid, f"{prefix}Linkedid": c.linkedid}

    def emit(self, event: str, *snapshots: dict[str, str], **fields: str) -> Pbx:
        headers = {"Event": event, "Privilege": "call,all", "Timestamp": f"{self.now:.6f}"}
        for snap in snapshots:
            headers.update(snap)
        headers.update(fields)
        self.events.append(AmiMessage.from_dict(headers))
        return self

    def new(self, channel: str, *, by: str | None = None, number: str = "", name: str = "",
            exten: str = "s") -> Pbx:
        uniqueid = f"{self.now:.0f}.{self._seq}"
        self._seq += 1
        linkedid = self.chans[by].linkedid if by else uniqueid
        self.chans[channel] = _Chan(uniqueid, linkedid, number, name, exten)
        return self.emit("Newchannel", self.snap(channel))

    def up(self, channel: str) -> Pbx:
        self.chans[channel].state = "Up"
        return self.emit("Newstate", self.snap(channel))

    def dial_begin(self, caller: str, peer: str, dialstring: str = "") -> Pbx:
        return self.emit("DialBegin", self.snap(caller), self.snap(peer, "Dest"), DialString=dialstring)

    def dial_end(self, caller: str, peer: str, status: str, forward: str | None = None) -> Pbx:
        if status == "ANSWER":
            self.chans[peer].state = "Up"
        extra = {"Forward": forward} if forward else {}
        return self.emit("DialEnd", self.snap(caller), self.snap(peer, "Dest"), DialStatus=status, **extra)

    def hangup(self, *channels: str, cause: str = "16") -> Pbx:
        for channel in channels:
            self.emit("Hangup", self.snap(channel), Cause=cause, **{"Cause-txt": "Normal Clearing"})
            del self.chans[channel]
        return self

    def masquerade(self, original: str, clone: str) -> None:
        """What main/channel.c does to names, Uniqueid and Linkedid (no AMI event of its
        own in Asterisk 12+): `original` takes the clone's name and ids, and the reverse."""
        o, c = self.chans.pop(original), self.chans.pop(clone)
        self.chans[clone] = _Chan(c.uniqueid, c.linkedid, o.number, o.name, o.exten, o.state)
        self.chans[original] = _Chan(o.uniqueid, o.linkedid, c.number, c.name, c.exten, c.state)


def run(events: list[AmiMessage], pattern: str = r"^\d{3}$") -> tuple[list[CallRecord], list[DomainEvent]]:
    """(the calls that ended, in start order; every domain event) for a stream."""
    tracker = CallTracker(pattern)
    produced = [d for ev in events for d in tracker.handle(ev)]
    ended = [d.call for d in produced if isinstance(d, CallEnded)]
    return sorted(ended, key=lambda c: (c.entered_at, c.call_id)), produced
