"""Scenario steps for the lab dialplan (../shared/asterisk/README.md) on the live tests' own AMI
driver, and what Asterisk itself stated about a call (read from its events, apart from the bridge).

Event shapes follow the captures in ../shared/ami-captures/ (recorded from this very build).
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

from tests.live.ami_driver import AmiDriver, AmiMessage, where

# Asterisk states hold and talk times in whole seconds (time(NULL) differences): ~1 s either way.
STATED_TOLERANCE = 1.1
# The bridge's times come from the events' Timestamps, to a tenth of a second.
TIMESTAMP_TOLERANCE = 0.5


def caller_id(name: str | None, number: str | None) -> str:
    """The Originate CallerID for a true name: Asterisk's caller-id parser removes one level of
    backslash escaping, so a backslash is sent doubled (captures README, caller_names_escaped);
    quotes and apostrophes go as they are."""
    shown = (name or "").replace("\\", "\\\\")
    return f"{shown} <{number or ''}>".strip() if shown else f"<{number or ''}>"


def ext_of(channel_or_interface: str) -> str:
    """Local/101@agents-00000001;1 or Local/101@agents/n -> 101."""
    return channel_or_interface.split("/", 1)[1].split("@", 1)[0]


AGENT_COMPLETE_GRACE = 10.0  # seconds AgentComplete may trail the last Hangup


@dataclass
class Call:
    """One call the scenario placed: its Linkedid (the bridge's call id) and what was sent."""

    ami: AmiDriver
    linkedid: str
    channel: str  # the caller's phone (the Originate's ;1)
    number: str | None
    name: str | None
    tag: str  # the LIVECALL variable that names it in Asterisk's VarSet
    action_id: str  # the Originate's

    @property
    def events(self) -> list[AmiMessage]:
        return self.ami.of_call(self.linkedid)

    async def wait(self, event: str, limit: float = 30.0, count: int = 1, **fields: Any) -> AmiMessage:
        return await self.ami.wait_for(where(event, Linkedid=self.linkedid, **fields), limit, count=count,
                                       what=f"{event} {fields or ''} of call {self.linkedid}")

    async def ended(self, limit: float = 60.0) -> None:
        """Every channel of this call (its Linkedid) has hung up, as Asterisk says."""

        def over(_: AmiMessage) -> bool:
            made = {m["Uniqueid"] for m in self.events if m.event == "Newchannel"}
            gone = {m["Uniqueid"] for m in self.events if m.event == "Hangup"}
            return bool(made) and made <= gone

        def settled(_: AmiMessage) -> bool:
            kinds = {m.event for m in self.events}
            return "AgentConnect" not in kinds or "AgentComplete" in kinds

        await self.ami.wait_for(over, limit, what=f"the last hang-up of call {self.linkedid}")
        # app_queue's AgentComplete can come after the last Hangup: give it a moment, so the
        # checks that read it see it (they say so when it never came).
        with contextlib.suppress(AssertionError):
            await self.ami.wait_for(settled, AGENT_COMPLETE_GRACE,
                                    what=f"AgentComplete of call {self.linkedid}")

    # -- what Asterisk stated --------------------------------------------------------------
    async def originate_response(self, limit: float = 40.0) -> AmiMessage:
        return await self.ami.wait_for(where("OriginateResponse", ActionID=self.action_id), limit,
                                       what=f"OriginateResponse of call {self.linkedid}")

    def first(self, event: str, **fields: Any) -> AmiMessage:
        found = [m for m in self.events if where(event, **fields)(m)]
        assert found, f"Asterisk sent no {event} {fields} for call {self.linkedid}"
        return found[0]

    def all(self, event: str, **fields: Any) -> list[AmiMessage]:
        return [m for m in self.events if where(event, **fields)(m)]

    @property
    def entered_at(self) -> float:
        return min(m.timestamp for m in self.events if m.event == "Newchannel" and m.timestamp)

    @property
    def ended_at(self) -> float:
        return max(m.timestamp for m in self.events if m.event == "Hangup" and m.timestamp)

    def rung(self) -> list[str]:
        """Operators rung, in the order Asterisk rang them, once each (AgentCalled, DialBegin)."""
        out: list[str] = []
        for m in self.events:
            dest = None
            if m.event == "AgentCalled":
                dest = m.get("DestChannel") or m.get("Interface")
            elif m.event == "DialBegin" and "@agents-" in m.get("DestChannel", ""):
                dest = m["DestChannel"]
            if dest and ext_of(dest) not in out:
                out.append(ext_of(dest))
        return out


_tags = itertools.count(1)


async def originate(ami: AmiDriver, channel: str, number: str | None, name: str | None,
                    variables: dict[str, Any]) -> Call:
    """Originate a caller's phone into [caller] talk. The call is found by a variable of its own
    (LIVECALL) in Asterisk's VarSet, so a call whose Originate fails (a busy phone on a direct
    call never answers the caller's leg: OriginateResponse Failure, Uniqueid <unknown>) is found too."""
    tag = f"c{next(_tags)}"
    variables = {**variables, "LIVECALL": tag}
    fields: dict[str, Any] = {"Channel": channel, "Context": "caller", "Exten": "talk", "Priority": "1",
                              "Async": "true", "Variable": ",".join(f"{k}={v}" for k, v in variables.items())}
    if name is not None or number is not None:
        fields["CallerID"] = caller_id(name, number)
    reply = await ami.ok("Originate", **fields)
    named = await ami.wait_for(where("VarSet", Variable="LIVECALL", Value=tag),
                               what=f"the call {tag} to {channel}")
    return Call(ami, named["Linkedid"], channel, number, name, tag, reply["ActionID"])


async def call_queue(ami: AmiDriver, queue: str, number: str | None, name: str | None, *, talk: float = 3,
                     qtimeout: int | None = None) -> Call:
    """An inbound caller: Local/<queue>@inbound; he stays `talk` s after answering, then hangs up."""
    variables: dict[str, Any] = {"TALKSECS": talk}
    if qtimeout is not None:
        variables["QTIMEOUT"] = qtimeout
    return await originate(ami, f"Local/{queue}@inbound", number, name, variables)


async def call_direct(ami: AmiDriver, ext: str, number: str, name: str, *, talk: float = 3) -> Call:
    """A direct call to an operator's phone (Dial 20 s, no queue)."""
    return await originate(ami, f"Local/{ext}@direct", number, name, {"TALKSECS": talk})


async def phone(ami: AmiDriver, ext: str, *, ring: float | None = None, dead: bool | None = None) -> None:
    """Steer an operator's phone: ring N seconds before answering; busy (dead)."""
    if ring is not None:
        await ami.setvar(f"AGENT_RING_{ext}", str(ring))
    if dead is not None:
        await ami.setvar(f"AGENT_DEAD_{ext}", "1" if dead else "0")


async def queue_members(ami: AmiDriver, queue: str) -> dict[str, dict[str, str]]:
    """QueueStatus's members of a queue, by extension."""
    reply = await ami.ok("QueueStatus", Queue=queue)
    done = await ami.wait_for(where("QueueStatusComplete", ActionID=reply["ActionID"]), 15)
    members = [m for m in ami.events if m.event == "QueueMember" and m.get("ActionID") == reply["ActionID"]]
    assert done
    return {ext_of(m.get("StateInterface") or m["Location"]): m for m in members if m.get("Queue") == queue}
