"""The simulated PBX's queue actions (app_queue): QueueStatus, QueueSummary, QueueAdd,
QueueRemove, QueuePause, with the events a real PBX sends for them, in the shapes of
queue_ops.ami (reply first, then DeviceStateChange and the member event)."""

from __future__ import annotations

from bridge.ami.message import AmiMessage
from bridge.simulator.shapes import (
    DEVICE_NOT_INUSE,
    DEVICE_UNKNOWN,
    MEMBER_FIELDS,
    Answer,
    Pairs,
    error_answer,
    new_member,
    reply,
    truthy,
)
from bridge.simulator.state import PbxCore, Queue


class QueueActions(PbxCore):
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
        self.keep_member(queue.name, interface, member)
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
        self.keep_member(queue.name, interface, None)
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
            if paused:
                member["LastPause"] = str(int(self.clock.now()))
            # app_queue's set_queue_member_pause: an unpause's Reason is shown in its event
            # only, then cleared; a pause keeps its reason.
            member["PausedReason"] = action.get("Reason", "")
            events += [self._pause_device(queue, interface, paused),
                       self._member_event("QueueMemberPause", queue, member)]
            if not paused:
                member["PausedReason"] = ""
            self.keep_member(queue.name, interface, member)
        if not events:
            return error_answer(action, "Interface not found")
        text = "Interface paused successfully" if paused else "Interface unpaused successfully"
        return Answer([reply(action, message=text), *events])
