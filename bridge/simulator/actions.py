"""The simulated PBX behind `AmiSimulator`: live state fed by the replayed events, and
the answers to AMI actions computed from it.

Shapes (header order, the wording of `Message`) and the seed queues are in
`bridge.simulator.shapes`.
Timestamps come from the replay's clock (recorded time, advanced at replay speed), so
generated events line up with the replayed ones a client already holds.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from functools import partial

from bridge.ami.message import AmiMessage
from bridge.simulator.shapes import (
    ASTERISK_VERSION,
    CHANNEL_ACTIONS,
    CHANNEL_FIELDS,
    DEVICE_NOT_INUSE,
    DEVICE_UNKNOWN,
    MEMBER_FIELDS,
    SEED_QUEUES,
    SNAPSHOT_PREFIXES,
    Answer,
    Pairs,
    error_answer,
    new_member,
    parse_caller_id,
    queue_average,
    reply,
    simple_answer,
    to_int,
    truthy,
)

__all__ = ["Answer", "Channel", "Clock", "Pairs", "PbxState", "Queue", "new_member", "reply"]


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


@dataclass
class PbxState:
    """Channels, queues and variables as the replayed events left them, plus action answers."""

    def __init__(self, start: float | None = None, rate: float = 1.0) -> None:
        start = time.time() if start is None else start
        self.clock = Clock(start, rate)
        self.channels: dict[str, Channel] = {}
        self.globals: dict[str, str] = {}
        self.queues: dict[str, Queue] = {}
        for name, (strategy, members) in SEED_QUEUES.items():
            queue = self.queues[name] = Queue(name, strategy)
            for interface, member_name in members:
                queue.members[interface] = new_member(interface, member_name, int(start))
        self._originated = 0

    def stamp(self) -> str:
        return f"{self.clock.now():.6f}"

    def event(self, name: str, privilege: str, fields: Pairs) -> Pairs:
        return [("Event", name), ("Privilege", privilege), ("Timestamp", self.stamp()), *fields]

    # ---- replayed events -> state ----------------------------------------------------

    def apply(self, msg: AmiMessage) -> None:
        if ts := msg.get("Timestamp"):
            with contextlib.suppress(ValueError):
                self.clock.advance(float(ts))
        name, channel = msg.event or "", msg.get("Channel", "")
        if name == "Newchannel":
            self.channels[channel] = Channel({}, self.clock.now())
        for prefix in SNAPSHOT_PREFIXES:
            snap = self.channels.get(msg.get(f"{prefix}Channel", ""))
            if snap is not None and f"{prefix}ChannelStateDesc" in msg:
                snap.fields.update((k, msg[prefix + k]) for k in CHANNEL_FIELDS if prefix + k in msg)
        chan = self.channels.get(channel)
        queue = self._queue(msg["Queue"]) if "Queue" in msg and name.startswith(("Queue", "Agent")) else None
        member = queue.members.get(msg.get("Interface", "")) if queue else None
        match name:
            case "Newexten" if chan:
                chan.application, chan.app_data = msg.get("Application", ""), msg.get("AppData", "")
            case "BridgeEnter" | "BridgeLeave" if chan:
                chan.bridge_id = msg.get("BridgeUniqueid", "") if name == "BridgeEnter" else ""
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
                member.update((k, msg[k]) for k in MEMBER_FIELDS if k in msg)
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

    def _queue(self, name: str) -> Queue:
        # A queue the seed does not know (another PBX's capture) appears when first named.
        return self.queues.setdefault(name, Queue(name, "ringall"))

    # ---- actions -> answers ----------------------------------------------------------

    def answer(self, action: AmiMessage) -> Answer:
        name = (action.get("Action") or "").strip().lower()
        handler = getattr(self, f"_act_{name}", None)
        if handler is None:
            return error_answer(action, "Invalid/unknown command")
        return handler(action)

    def _act_ping(self, action: AmiMessage) -> Answer:
        return simple_answer(action, "Success", None, [("Ping", "Pong"), ("Timestamp", self.stamp())])

    def _act_logoff(self, action: AmiMessage) -> Answer:
        return Answer([reply(action, "Goodbye", "Thanks for all the fish.")], close=True)

    def _act_events(self, action: AmiMessage) -> Answer:
        on = (action.get("EventMask") or "on").strip().lower() not in ("off", "0", "no", "false")
        return simple_answer(action, "Success", None, [("Events", "On" if on else "Off")])

    def _list(self, action: AmiMessage, start: str, items: list[Pairs], done: str,
              extra: Pairs | None = None) -> Answer:
        """A list reply: `EventList: start`, the items, then `<done>` with `ListItems`."""
        tail = self._tail(action)
        head = [("Response", "Success"), *tail, ("EventList", "start"), ("Message", start)]
        complete = [("Event", done), *tail, ("EventList", "Complete"),
                    ("ListItems", str(len(items))), *(extra or [])]
        return Answer([head, *items, complete])

    def _act_coreshowchannels(self, action: AmiMessage) -> Answer:
        now, tail, items = self.clock.now(), self._tail(action), []
        for chan in self.channels.values():
            secs = max(0, int(now - chan.created))
            items.append([("Event", "CoreShowChannel"), *tail,
                          *((k, chan.fields.get(k, "")) for k in CHANNEL_FIELDS),
                          ("Application", chan.application), ("ApplicationData", chan.app_data),
                          ("Duration", f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"),
                          ("BridgeId", chan.bridge_id)])
        return self._list(action, "Channels will follow", items, "CoreShowChannelsComplete")

    def _act_status(self, action: AmiMessage) -> Answer:
        wanted = action.get("Channel")
        if wanted and wanted not in self.channels:
            return error_answer(action, "No such channel")
        now, tail = self.clock.now(), self._tail(action)
        items = []
        for name, chan in self.channels.items():
            if wanted and name != wanted:
                continue
            f = chan.fields
            items.append([("Event", "Status"), ("Privilege", "Call"),
                          *((k, f.get(k, "")) for k in CHANNEL_FIELDS),
                          ("Type", name.split("/", 1)[0]), ("DNID", ""),
                          ("EffectiveConnectedLineNum", f.get("ConnectedLineNum", "")),
                          ("EffectiveConnectedLineName", f.get("ConnectedLineName", "")),
                          ("TimeToHangup", "0"), ("BridgeID", chan.bridge_id),
                          ("Application", chan.application), ("Data", chan.app_data),
                          ("Nativeformats", "(slin)"), ("Readformat", "slin"), ("Readtrans", ""),
                          ("Writeformat", "slin"), ("Writetrans", ""), ("Callgroup", "0"),
                          ("Pickupgroup", "0"), ("Seconds", str(max(0, int(now - chan.created)))),
                          *tail])
        return self._list(action, "Channel status will follow", items, "StatusComplete",
                          [("Items", str(len(items)))])

    @staticmethod
    def _tail(action: AmiMessage) -> Pairs:
        action_id = action.get("ActionID")
        return [("ActionID", action_id)] if action_id is not None else []

    def _selected_queues(self, action: AmiMessage) -> list[Queue]:
        wanted = action.get("Queue")
        return [q for q in self.queues.values() if not wanted or q.name == wanted]

    def _act_queuestatus(self, action: AmiMessage) -> Answer:
        tail, wanted_member = self._tail(action), action.get("Member")
        items: list[Pairs] = []
        for q in self._selected_queues(action):
            items.append([("Event", "QueueParams"), ("Queue", q.name), ("Max", "0"),
                          ("Strategy", q.strategy), ("Calls", str(len(q.callers))),
                          ("Holdtime", str(q.holdtime)), ("TalkTime", str(q.talktime)),
                          ("Completed", str(q.completed)), ("Abandoned", str(q.abandoned)),
                          ("ServiceLevel", "0"), ("ServicelevelPerf", "0.0"),
                          ("ServicelevelPerf2", "0.0"), ("Weight", "0"), *tail])
            for m in q.members.values():
                if wanted_member and wanted_member not in (m["Interface"], m["MemberName"]):
                    continue
                items.append([("Event", "QueueMember"), ("Queue", q.name), ("Name", m["MemberName"]),
                              ("Location", m["Interface"]),
                              *((k, m[k]) for k in MEMBER_FIELDS[2:] if k != "Ringinuse"), *tail])
            items.extend(self._queue_entries(q, tail))
        return self._list(action, "Queue status will follow", items, "QueueStatusComplete")

    def _queue_entries(self, q: Queue, tail: Pairs) -> list[Pairs]:
        """The callers waiting, as Asterisk's QueueEntry lists them (documented syntax:
        Queue, Position, Channel, Uniqueid, CallerID*, ConnectedLine*, Wait, Priority)."""
        now, entries = self.clock.now(), []
        for position, (channel, joined) in enumerate(sorted(q.callers.items(), key=lambda c: c[1]), 1):
            fields = chan.fields if (chan := self.channels.get(channel)) is not None else {}
            entries.append([("Event", "QueueEntry"), ("Queue", q.name), ("Position", str(position)),
                            ("Channel", channel), ("Uniqueid", fields.get("Uniqueid", "")),
                            *((k, fields.get(k, "<unknown>")) for k in (
                                "CallerIDNum", "CallerIDName", "ConnectedLineNum", "ConnectedLineName")),
                            ("Wait", str(max(0, int(now - joined)))), ("Priority", "0"), *tail])
        return entries

    def _act_queuesummary(self, action: AmiMessage) -> Answer:
        now, tail, items = self.clock.now(), self._tail(action), []
        for q in self._selected_queues(action):
            logged_in = [m for m in q.members.values() if m["Status"] not in ("5", "6")]
            available = [m for m in logged_in
                         if m["Status"] in (DEVICE_NOT_INUSE, DEVICE_UNKNOWN) and m["Paused"] == "0"]
            longest = max((int(now - t) for t in q.callers.values()), default=0)
            items.append([("Event", "QueueSummary"), ("Queue", q.name), ("LoggedIn", str(len(logged_in))),
                          ("Available", str(len(available))), ("Callers", str(len(q.callers))),
                          ("HoldTime", str(q.holdtime)), ("TalkTime", str(q.talktime)),
                          ("LongestHoldTime", str(longest)), *tail])
        return self._list(action, "Queue summary will follow", items, "QueueSummaryComplete")

    def _member_event(self, name: str, queue: Queue, member: dict[str, str]) -> Pairs:
        return self.event(name, "agent,all", [("Queue", queue.name), *member.items()])

    def _pause_device(self, queue: Queue, interface: str, paused: bool) -> Pairs:
        # app_queue's per-member pause device, reported just before the member event.
        return self.event("DeviceStateChange", "call,all",
                          [("Device", f"Queue:{queue.name}_pause_{interface}"),
                           ("State", "INUSE" if paused else "NOT_INUSE")])

    def _queue_target(self, action: AmiMessage, verb: str) -> tuple[Queue, str] | Answer:
        name, interface = action.get("Queue"), action.get("Interface")
        if not name or not interface:
            return error_answer(action, "'Queue' and 'Interface' must be set.")
        if (queue := self.queues.get(name)) is None:
            into = "to" if verb == "add" else "from"
            return error_answer(action, f"Unable to {verb} interface {into} queue: No such queue")
        return queue, interface

    def _act_queueadd(self, action: AmiMessage) -> Answer:
        if isinstance(target := self._queue_target(action, "add"), Answer):
            return target
        queue, interface = target
        if interface in queue.members:
            return error_answer(action, "Unable to add interface: Already there")
        paused = truthy(action.get("Paused"))
        member = new_member(interface, action.get("MemberName") or interface, int(self.clock.now()),
                            "dynamic", action.get("Penalty") or "0", "1" if paused else "0",
                            action.get("Reason", "") if paused else "")
        member["StateInterface"] = action.get("StateInterface") or interface
        queue.members[interface] = member
        return Answer([reply(action, message="Added interface to queue"),
                       self._pause_device(queue, interface, paused),
                       self._member_event("QueueMemberAdded", queue, member)])

    def _act_queueremove(self, action: AmiMessage) -> Answer:
        if isinstance(target := self._queue_target(action, "remove"), Answer):
            return target
        queue, interface = target
        if (member := queue.members.get(interface)) is None:
            return error_answer(action, "Unable to remove interface: Not there")
        if member["Membership"] != "dynamic":
            return error_answer(action, "Member not dynamic")
        del queue.members[interface]
        return Answer([reply(action, message="Removed interface from queue"),
                       self._member_event("QueueMemberRemoved", queue, member)])

    def _act_queuepause(self, action: AmiMessage) -> Answer:
        interface, raw = action.get("Interface"), action.get("Paused")
        if not interface or raw is None:
            return error_answer(action, "Need 'Interface' and 'Paused' parameters.")
        paused, events = truthy(raw), []
        for queue in self._selected_queues(action):
            if (member := queue.members.get(interface)) is None:
                continue
            member["Paused"] = "1" if paused else "0"
            member["PausedReason"] = action.get("Reason", "") if paused else ""
            if paused:
                member["LastPause"] = str(int(self.clock.now()))
            events += [self._pause_device(queue, interface, paused),
                       self._member_event("QueueMemberPause", queue, member)]
        if not events:
            return error_answer(action, "Interface not found")
        text = "Interface paused successfully" if paused else "Interface unpaused successfully"
        return Answer([reply(action, message=text), *events])

    def _act_originate(self, action: AmiMessage) -> Answer:
        target = action.get("Channel")
        if not target:
            return error_answer(action, "Channel not specified")
        self._originated += 1
        seq = self._originated
        # Local channels come up as the `;1` half of a pair, others as `<dial>-<seq>`.
        channel = f"{target}-{seq:08x}" + (";1" if target.startswith("Local/") else "")
        num, name = parse_caller_id(action.get("CallerID", ""))
        fields = [*self._tail(action), ("Response", "Success"), ("Channel", channel),
                  ("Context", action.get("Context", "")), ("Exten", action.get("Exten", "")),
                  ("Reason", "4"), ("Uniqueid", f"{int(self.clock.now())}.{seq}"),
                  ("CallerIDNum", num), ("CallerIDName", name)]
        # Stamped when sent: the call is "answered" a moment after the reply.
        event = partial(self.event, "OriginateResponse", "call,all", fields)
        return Answer([reply(action, message="Originate successfully queued")], later=[(0.05, event)])

    def _channel_action(self, action: AmiMessage) -> Answer:
        name = action.get("Action", "").strip().lower()
        message, unknown = CHANNEL_ACTIONS[name]
        channel = action.get("Channel")
        if not channel:
            return error_answer(action, "Channel not specified" if name == "redirect"
                                else "No channel specified")
        if channel not in self.channels:
            return error_answer(action, unknown.format(channel))
        if name in ("blindtransfer", "atxfer") and not action.get("Exten"):
            return error_answer(action, "No extension specified")
        if name == "mixmonitormute" and action.get("Direction", "").lower() not in ("read", "write", "both"):
            return error_answer(action, "No direction specified. Must be read, write or both")
        return simple_answer(action, "Success", message)

    _act_hangup = _act_redirect = _act_blindtransfer = _act_atxfer = _channel_action
    _act_mixmonitor = _act_stopmixmonitor = _act_mixmonitormute = _channel_action

    def _variables(self, action: AmiMessage) -> dict[str, str] | Answer:
        channel = action.get("Channel")
        if not channel:
            return self.globals
        chan = self.channels.get(channel)
        return error_answer(action, "No such channel") if chan is None else chan.variables

    def _act_setvar(self, action: AmiMessage) -> Answer:
        if not (variable := action.get("Variable")):
            return error_answer(action, "Variable not specified")
        store = self._variables(action)
        if isinstance(store, Answer):
            return store
        store[variable] = action.get("Value", "")
        return simple_answer(action, "Success", "Variable Set")

    def _act_getvar(self, action: AmiMessage) -> Answer:
        if not (variable := action.get("Variable")):
            return error_answer(action, "No variable specified")
        store = self._variables(action)
        if isinstance(store, Answer):
            return store
        return simple_answer(action, "Success", None,
                             [("Variable", variable), ("Value", store.get(variable, ""))])

    def _act_command(self, action: AmiMessage) -> Answer:
        command = " ".join((action.get("Command") or "").split())
        if command == "core show version":
            return simple_answer(action, "Success", "Command output follows",
                           [("Output", f"Asterisk {ASTERISK_VERSION} (callbridge AMI simulator)")])
        return simple_answer(action, "Error", "Command output follows", [("Output", (
            f"No such command '{command}' (type 'core show help {command}' for other possible commands)"))])
