"""The AMI simulator, seen from a plain asyncio client: banner and login, byte-exact
replay, action answers in the captures' shapes, live state, faults, timing, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.ami.message import AmiFramer, AmiMessage, encode_message, iter_capture
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES, capture_bytes

BANNER = b"Asterisk Call Manager/13.0.0\r\n"
CALLER = "Снимок Каналов"


def expected_blocks(name: str) -> list[bytes]:
    """The capture's unsolicited events as raw bytes, cut independently of the simulator."""
    blocks = capture_bytes(name).split(b"\r\n", 1)[1].split(b"\r\n\r\n")[:-1]
    out = []
    for block in blocks:
        headers = block.decode().split("\r\n")
        if headers[0].startswith("Event: ") and headers[0] != "Event: FullyBooted" and not any(
            h.startswith("ActionID: ") for h in headers
        ):
            out.append(block + b"\r\n\r\n")
    return out


def capture_messages(name: str, event: str) -> list[AmiMessage]:
    return [m for m in iter_capture(capture_bytes(name)) if m.event == event]


def events_before_reply(name: str, action_id: str) -> int:
    """How many unsolicited events the capture has before the reply to `action_id`."""
    count = 0
    for m in iter_capture(capture_bytes(name)):
        if not m.is_event and m.get("ActionID") == action_id:
            return count
        count += m.is_event and "ActionID" not in m and m.event != "FullyBooted"
    raise AssertionError(action_id)


def synthetic(*events: dict[str, str]) -> bytes:
    return BANNER + b"".join(encode_message(e) for e in events)


LIVE_CHANNEL = {
    "Event": "Newchannel", "Privilege": "call,all", "Timestamp": "1795508402.191466",
    "Channel": "Local/support@inbound-00000099;1", "ChannelState": "6", "ChannelStateDesc": "Up",
    "CallerIDNum": "+74951230001", "CallerIDName": CALLER, "ConnectedLineNum": "<unknown>",
    "ConnectedLineName": "<unknown>", "Language": "en", "AccountCode": "", "Context": "inbound",
    "Exten": "support", "Priority": "1", "Uniqueid": "1795508402.99", "Linkedid": "1795508402.99",
}


class Client:
    """A bare AMI client: raw bytes in, framed messages out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = AmiFramer()
        self.raw = bytearray()
        self.reads: list[bytes] = []
        self.inbox: list[AmiMessage] = []
        self.eof = False
        self._ids = 0

    @classmethod
    async def connect(cls, sim: AmiSimulator) -> Client:
        return cls(*await asyncio.open_connection(*sim.address))

    def send(self, action: str, **headers: str) -> str:
        self._ids += 1
        action_id = headers.pop("ActionID", f"t{self._ids}")
        self.writer.write(encode_message({"Action": action, "ActionID": action_id, **headers}))
        return action_id

    async def _read(self, wait: float) -> None:
        data = await asyncio.wait_for(self.reader.read(65536), wait)
        if not data:
            self.eof = True
            return
        self.reads.append(data)
        self.raw += data
        self.inbox += self.framer.feed(data)

    async def next(self, wait: float = 5.0) -> AmiMessage:
        while not self.inbox:
            assert not self.eof, "connection closed"
            await self._read(wait)
        return self.inbox.pop(0)

    async def until(self, stop) -> list[AmiMessage]:
        got = []
        while True:
            got.append(await self.next())
            if stop(got[-1]):
                return got

    async def answer(self, action_id: str, done: str | None = None) -> list[AmiMessage]:
        """Everything carrying `action_id` up to the reply (or the list's `done` event)."""
        got = await self.until(lambda m: m.get("ActionID") == action_id
                               and (m.event == done if done else not m.is_event))
        return [m for m in got if m.get("ActionID") == action_id]

    async def read_to_eof(self) -> list[AmiMessage]:
        while not self.eof:
            await self._read(5.0)
        got, self.inbox = self.inbox, []
        return got

    async def silent(self, seconds: float) -> bool:
        try:
            await self.next(seconds)
        except TimeoutError:
            return True
        return False

    async def login(self, secret: str = "callbridge", **extra: str) -> tuple[AmiMessage, AmiMessage]:
        action_id = self.send("Login", Username="callbridge", Secret=secret, **extra)
        reply = await self.next()
        assert reply.get("ActionID") == action_id
        return reply, await self.next()

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def sim_factory():
    sims: list[AmiSimulator] = []

    async def make(captures: list, **kwargs) -> AmiSimulator:
        sim = AmiSimulator(captures, **kwargs)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


async def connect(sim: AmiSimulator, login: bool = True) -> Client:
    client = await Client.connect(sim)
    if login:
        await client.login()
    return client


# ---- connect and login ----------------------------------------------------------------


async def test_banner_login_and_fully_booted(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "queue_ops.ami"])
    client = await Client.connect(sim)
    reply, booted = await client.login(ActionID="h0")
    assert bytes(client.raw).startswith(BANNER)
    assert reply.pairs == [("Response", "Success"), ("ActionID", "h0"),
                           ("Message", "Authentication accepted")]
    assert list(booted) == list(capture_messages("queue_ops", "FullyBooted")[0])
    assert booted["Status"] == "Fully Booted"
    assert sim.logins == 1 and sim.connections == 1
    assert (await sim.wait_for_action("Login"))["Username"] == "callbridge"


async def test_wrong_secret_is_refused_and_closed(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "queue_ops.ami"])
    client = await Client.connect(sim)
    client.send("Login", Username="callbridge", Secret="wrong", ActionID="x1")
    messages = await client.read_to_eof()
    assert [m.pairs for m in messages] == [
        [("Response", "Error"), ("ActionID", "x1"), ("Message", "Authentication failed")]
    ]
    assert client.eof and sim.logins == 0 and sim.sent_events == []


async def test_actions_before_login_are_denied(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "queue_ops.ami"])
    client = await connect(sim, login=False)
    action_id = client.send("CoreShowChannels")
    reply = await client.next()
    assert reply.pairs == [("Response", "Error"), ("ActionID", action_id), ("Message", "Permission denied")]
    assert sim.sent_events == []
    await client.login()  # the connection stays usable
    assert sim.logins == 1


async def test_logoff_says_goodbye_and_closes(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "queue_ops.ami"])
    client = await connect(sim)
    action_id = client.send("Logoff")
    rest = await client.read_to_eof()
    goodbye = [m for m in rest if m.get("ActionID") == action_id]
    assert [m["Response"] for m in goodbye] == ["Goodbye"]
    assert client.eof


# ---- replay ---------------------------------------------------------------------------


async def test_replay_is_the_captures_unsolicited_events_byte_for_byte(sim_factory) -> None:
    blocks = expected_blocks("queue_answered")
    assert len(blocks) == 114 - 2  # minus FullyBooted and the recorder's OriginateResponse
    sim = await sim_factory([FIXTURES / "queue_answered.ami"])
    client = await connect(sim)
    booted = b"Status: Fully Booted\r\n\r\n"
    booted_end = bytes(client.raw).index(booted) + len(booted)
    want = b"".join(blocks)
    while len(client.raw) < booted_end + len(want):
        await client._read(5.0)
    assert bytes(client.raw[booted_end:]) == want
    assert sim.sent_event_bytes == blocks
    assert [m.pairs for m in sim.sent_events] == [m.pairs for m in iter_capture(BANNER + want)]
    assert len(client.inbox) == len(blocks)
    client.inbox.clear()
    assert await client.silent(0.2)  # nothing else: no replies, no list events


async def test_each_client_gets_its_own_replay(sim_factory) -> None:
    blocks = expected_blocks("queue_ops")
    sim = await sim_factory([FIXTURES / "queue_ops.ami"], speed=50.0)
    first, second = await connect(sim), await connect(sim)
    got = await asyncio.gather(*(c.until(lambda m: m.event == "QueueMemberRemoved") for c in (first, second)))
    for messages in got:
        assert [m.pairs for m in messages] == [m.pairs for m in iter_capture(BANNER + b"".join(blocks))]
    assert sim.logins == 2 and len(sim.sessions) == 2
    assert len(sim.sent_events) == 2 * len(blocks)


async def test_drop_after_events_resumes_on_the_next_connection(sim_factory) -> None:
    blocks = expected_blocks("queue_answered")
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], drop_after_events=40)
    received = []
    for expected in (40, 40, len(blocks) - 80):
        client = await connect(sim)
        if expected == 40:
            messages = await client.read_to_eof()
        else:
            messages = [await client.next() for _ in range(expected)]
            assert await client.silent(0.2) and not client.eof  # the last one stays open
        assert len(messages) == expected
        received += messages
    assert [m.pairs for m in received] == [m.pairs for m in iter_capture(BANNER + b"".join(blocks))]
    assert sim.logins == 3 and len(sim.sessions) == 1


async def test_drop_connections_cuts_everyone_and_state_survives(sim_factory) -> None:
    sim = await sim_factory([synthetic(LIVE_CHANNEL)])
    clients = [await connect(sim), await connect(sim)]
    for client in clients:
        assert (await client.next())["Channel"] == LIVE_CHANNEL["Channel"]
    assert await sim.drop_connections() == 2
    for client in clients:
        assert await client.read_to_eof() == [] and client.eof
    again = await connect(sim)
    action_id = again.send("CoreShowChannels")
    channels = await again.answer(action_id, "CoreShowChannelsComplete")
    assert [m["Channel"] for m in channels if m.event == "CoreShowChannel"] == [LIVE_CHANNEL["Channel"]]
    assert sim.logins == 3 and sim.connections == 3


async def test_chunked_writes_keep_cyrillic_intact(sim_factory) -> None:
    blocks = expected_blocks("ringall_two_agents")
    sim = await sim_factory([FIXTURES / "ringall_two_agents.ami"], chunk_size=7)
    client = await connect(sim)
    messages = [await client.next() for _ in range(len(blocks))]
    assert [m.pairs for m in messages] == [m.pairs for m in iter_capture(BANNER + b"".join(blocks))]
    assert "Олена Коваль" in {m.get("CallerIDName") for m in messages}

    def splits_a_character(data: bytes) -> bool:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    assert any(splits_a_character(r) for r in client.reads)  # reads really ended mid-character
    assert max(len(r) for r in client.reads) < 4096


async def test_speed_paces_events_by_their_timestamps(sim_factory) -> None:
    def event(n: int, at: float) -> dict[str, str]:
        return {"Event": "UserEvent", "Privilege": "user,all", "Timestamp": f"{1795508400 + at:.6f}",
                "UserEvent": f"tick{n}"}

    capture = synthetic(event(0, 0.0), event(1, 0.15), event(2, 0.30))
    timings = {}
    for speed in (None, 1.0, 2.0):
        sim = await sim_factory([capture], speed=speed)
        client = await connect(sim)
        start = time.monotonic()
        stamps = []
        for _ in range(3):
            await client.next()
            stamps.append(time.monotonic() - start)
        timings[speed] = stamps
    assert timings[None][-1] < 0.1
    assert 0.27 <= timings[1.0][-1] < 0.6  # recorded speed: 0.3 s span
    assert 0.12 <= timings[1.0][1] < 0.4  # and the gap in between is kept
    assert 0.13 <= timings[2.0][-1] < timings[1.0][-1]  # twice as fast


async def test_events_off_keeps_the_replay_going_unseen(sim_factory) -> None:
    sim = await sim_factory([synthetic(LIVE_CHANNEL)])
    client = await Client.connect(sim)
    await client.login(Events="off")
    assert await client.silent(0.2)  # Asterisk drops events for such a session
    action_id = client.send("CoreShowChannels")
    channels = await client.answer(action_id, "CoreShowChannelsComplete")
    assert [m["Channel"] for m in channels if m.event == "CoreShowChannel"] == [LIVE_CHANNEL["Channel"]]
    assert sim.sent_events == []
    action_id = client.send("Events", EventMask="off")
    reply = await client.next()
    assert reply.pairs == [("Response", "Success"), ("ActionID", action_id), ("Events", "Off")]


async def test_loop_replays_the_list_forever(sim_factory) -> None:
    one = {**LIVE_CHANNEL, "Event": "UserEvent", "UserEvent": "one"}
    two = {**LIVE_CHANNEL, "Event": "UserEvent", "UserEvent": "two"}
    sim = await sim_factory([synthetic(one), synthetic(two)], loop=True)
    client = await connect(sim)
    names = [(await client.next())["UserEvent"] for _ in range(7)]
    assert names == ["one", "two", "one", "two", "one", "two", "one"]


# ---- actions --------------------------------------------------------------------------


async def test_ping_answers_and_can_be_silenced(sim_factory) -> None:
    sim = await sim_factory([])
    client = await connect(sim)
    action_id = client.send("Ping")
    pong = await client.next()
    assert [k for k, _ in pong.pairs] == ["Response", "ActionID", "Ping", "Timestamp"]
    assert (pong["Response"], pong["ActionID"], pong["Ping"]) == ("Success", action_id, "Pong")
    assert re.fullmatch(r"\d+\.\d{6}", pong["Timestamp"])
    sim.answer_pings = False
    client.send("Ping")
    assert await client.silent(0.3)
    assert len([a for a in sim.actions if a["Action"] == "Ping"]) == 2
    action_id = client.send("Getvar", Variable="X")  # the connection itself is still alive
    assert (await client.next())["ActionID"] == action_id


async def test_unknown_action_and_ignored_action(sim_factory) -> None:
    sim = await sim_factory([])
    client = await connect(sim)
    action_id = client.send("FrobnicateChannels")
    assert (await client.next()).pairs == [
        ("Response", "Error"), ("ActionID", action_id), ("Message", "Invalid/unknown command")]
    sim.ignore_action("Originate")
    client.send("Originate", Channel="Local/101@agents")
    assert await client.silent(0.3)
    assert (await sim.wait_for_action("Originate"))["Channel"] == "Local/101@agents"
    with pytest.raises(TimeoutError):
        await sim.wait_for_action("Originate", timeout=0.1)  # each is handed out once


async def test_set_response_overrides_an_answer(sim_factory) -> None:
    sim = await sim_factory([synthetic(LIVE_CHANNEL)])
    client = await connect(sim)
    await client.next()
    sim.set_response("MixMonitor", {"Response": "Error", "Message": "Could not start recording"})
    action_id = client.send("MixMonitor", Channel=LIVE_CHANNEL["Channel"], File="/tmp/x.wav")
    assert (await client.next()).pairs == [
        ("Response", "Error"), ("ActionID", action_id), ("Message", "Could not start recording")]
    sim.set_response("MixMonitor", None)
    action_id = client.send("MixMonitor", Channel=LIVE_CHANNEL["Channel"], File="/tmp/x.wav")
    assert (await client.next()).pairs == [("Response", "Success"), ("ActionID", action_id)]
    mixmonitor = await sim.wait_for_action("MixMonitor")
    assert mixmonitor["File"] == "/tmp/x.wav"


async def test_core_show_channels_mid_call_after_a_reconnect(sim_factory) -> None:
    name = "live_channels_snapshot"
    upto = events_before_reply(name, "h10")  # where the recorder asked CoreShowChannels
    sim = await sim_factory([FIXTURES / f"{name}.ami"], drop_after_events=upto)
    first = await connect(sim)
    assert len(await first.read_to_eof()) == upto
    sim.drop_after_events, sim.speed = None, 1.0  # the next event is 0.4 s away: time to ask
    client = await connect(sim)
    action_id = client.send("CoreShowChannels")
    got = await client.answer(action_id, "CoreShowChannelsComplete")
    assert got[0].pairs == [("Response", "Success"), ("ActionID", action_id), ("EventList", "start"),
                            ("Message", "Channels will follow")]
    assert got[-1].pairs == [("Event", "CoreShowChannelsComplete"), ("ActionID", action_id),
                             ("EventList", "Complete"), ("ListItems", "4")]

    def without_id(m: AmiMessage) -> list[tuple[str, str]]:
        return [(k, v) for k, v in m.pairs if k != "ActionID"]

    recorded = capture_messages(name, "CoreShowChannel")
    assert sorted(without_id(m) for m in got[1:-1]) == sorted(without_id(m) for m in recorded)
    assert all([k for k, _ in m.pairs] == [k for k, _ in recorded[0].pairs] for m in got[1:-1])
    action_id = client.send("QueueStatus", Queue="support")
    status = await client.answer(action_id, "QueueStatusComplete")
    anna = next(m for m in status if m.get("Name") == "Anna Operator")
    recorded_anna = next(m for m in capture_messages(name, "QueueMember") if m["Name"] == "Anna Operator")
    assert without_id(anna) == without_id(recorded_anna)  # InCall 1, Status 2, as Asterisk said
    action_id = client.send("Status")
    status = await client.answer(action_id, "StatusComplete")
    recorded_status = {m["Channel"]: m for m in capture_messages(name, "Status")}
    assert {m["Channel"] for m in status[1:-1]} == set(recorded_status)
    for m in status[1:-1]:
        assert [k for k, _ in m.pairs] == [k for k, _ in recorded_status[m["Channel"]].pairs]
        assert m["BridgeID"] == recorded_status[m["Channel"]]["BridgeID"]
    assert status[-1]["ListItems"] == status[-1]["Items"] == "4"


@pytest.mark.parametrize(("name", "counters"), [
    ("queue_abandoned", {"Abandoned": "1", "Completed": "0", "Calls": "0"}),
    # AgentConnect HoldTime 3, AgentComplete TalkTime 4: the first values are taken as is
    ("queue_answered", {"Abandoned": "0", "Completed": "1", "Holdtime": "3", "TalkTime": "4"}),
])
async def test_calls_ended_leave_no_channels_and_queue_counters_follow(sim_factory, name, counters) -> None:
    sim = await sim_factory([FIXTURES / f"{name}.ami"])
    client = await connect(sim)
    await sim.wait_for_events(len(expected_blocks(name)))
    action_id = client.send("CoreShowChannels")
    got = await client.answer(action_id, "CoreShowChannelsComplete")
    assert got[-1]["ListItems"] == "0"
    action_id = client.send("QueueStatus", Queue="support")
    got = await client.answer(action_id, "QueueStatusComplete")
    params = next(m for m in got if m.event == "QueueParams")
    assert {k: params[k] for k in counters} == counters


async def test_queue_add_pause_remove_and_the_next_queue_status(sim_factory) -> None:
    sim = await sim_factory([])
    client = await connect(sim)
    recorded = {m.event: m for m in iter_capture(capture_bytes("queue_ops")) if m.event}

    async def members(queue: str) -> dict[str, AmiMessage]:
        action_id = client.send("QueueStatus", Queue=queue)
        got = await client.answer(action_id, "QueueStatusComplete")
        assert got[-1]["ListItems"] == str(len(got) - 2)
        return {m["Location"]: m for m in got if m.event == "QueueMember"}

    assert set(await members("support")) == {"Local/101@agents/n", "Local/102@agents/n"}
    action_id = client.send("QueueAdd", Queue="support", Interface="Local/105@agents/n",
                            MemberName="Reserve Eve")
    reply, device, added = [await client.next() for _ in range(3)]
    assert reply.pairs == [("Response", "Success"), ("ActionID", action_id),
                           ("Message", "Added interface to queue")]
    assert [k for k, _ in added.pairs] == [k for k, _ in recorded["QueueMemberAdded"].pairs]
    assert (device.event, device["Device"]) == ("DeviceStateChange", "Queue:support_pause_Local/105@agents/n")
    assert (added["MemberName"], added["Membership"], added["Paused"]) == ("Reserve Eve", "dynamic", "0")
    eve = (await members("support"))["Local/105@agents/n"]
    assert (eve["Name"], eve["Membership"]) == ("Reserve Eve", "dynamic")

    client.send("QueuePause", Interface="Local/102@agents/n", Paused="true", Reason="lunch")
    reply, _, paused = [await client.next() for _ in range(3)]
    assert reply["Message"] == "Interface paused successfully"
    assert [k for k, _ in paused.pairs] == [k for k, _ in recorded["QueueMemberPause"].pairs]
    assert (paused["MemberName"], paused["Paused"], paused["PausedReason"]) == (
        "Boris Operator", "1", "lunch")
    action_id = client.send("QueueSummary", Queue="support")
    summary = (await client.answer(action_id, "QueueSummaryComplete"))[1]
    assert [k for k, _ in summary.pairs] == [k for k, _ in recorded["QueueSummary"].pairs]
    assert (summary["LoggedIn"], summary["Available"]) == ("3", "2")

    client.send("QueueRemove", Queue="support", Interface="Local/101@agents/n")
    assert (await client.next())["Message"] == "Member not dynamic"  # static members stay
    client.send("QueueRemove", Queue="support", Interface="Local/105@agents/n")
    reply, removed = await client.next(), await client.next()
    assert (reply["Message"], removed.event) == ("Removed interface from queue", "QueueMemberRemoved")
    assert "Local/105@agents/n" not in await members("support")
    client.send("QueueAdd", Queue="nosuch", Interface="Local/1@x")
    assert (await client.next())["Response"] == "Error"
    assert [e.event for e in sim.generated_events] == [
        "DeviceStateChange", "QueueMemberAdded", "DeviceStateChange", "QueueMemberPause",
        "QueueMemberRemoved"]


async def test_replayed_queue_events_change_queue_status(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "queue_ops.ami"])
    client = await connect(sim)
    await client.until(lambda m: m.event == "QueueMemberRemoved")
    action_id = client.send("QueueStatus", Queue="support")
    status = await client.answer(action_id, "QueueStatusComplete")
    got = {m["Name"]: m for m in status if m.event == "QueueMember"}
    assert set(got) == {"Anna Operator", "Boris Operator"}  # Eve was added, then removed
    assert (got["Boris Operator"]["Paused"], got["Boris Operator"]["LastPause"]) == ("0", "1795508396")


async def test_originate_is_queued_then_answered(sim_factory) -> None:
    sim = await sim_factory([])
    client = await connect(sim)
    action_id = client.send("Originate", Channel="Local/support@inbound", Context="caller", Exten="talk",
                            CallerID='"Иван Петров" <+74951234567>', Async="true")
    reply = await client.next()
    assert reply.pairs == [("Response", "Success"), ("ActionID", action_id),
                           ("Message", "Originate successfully queued")]
    event = await client.next()
    recorded = capture_messages("queue_answered", "OriginateResponse")[0]
    assert [k for k, _ in event.pairs] == [k for k, _ in recorded.pairs]
    assert (event["ActionID"], event["Response"], event["Reason"]) == (action_id, "Success", "4")
    assert re.fullmatch(r"Local/support@inbound-[0-9a-f]{8};1", event["Channel"])
    assert (event["CallerIDNum"], event["CallerIDName"]) == ("+74951234567", "Иван Петров")


async def test_channel_actions_check_the_live_channel(sim_factory) -> None:
    sim = await sim_factory([synthetic(LIVE_CHANNEL)])
    client = await connect(sim)
    await client.next()
    live, gone = LIVE_CHANNEL["Channel"], "Local/nobody@nowhere-00000001;1"
    cases = [
        ("Hangup", {"Channel": gone}, "Error", "No such channel"),
        ("Redirect", {"Channel": live, "Context": "direct", "Exten": "103", "Priority": "1"},
         "Success", "Redirect successful"),
        ("BlindTransfer", {"Channel": live, "Context": "direct", "Exten": "103"},
         "Success", "Transfer succeeded"),
        ("BlindTransfer", {"Channel": live, "Context": "direct"}, "Error", "No extension specified"),
        ("Atxfer", {"Channel": live, "Context": "direct", "Exten": "103"},
         "Success", "Atxfer successfully queued"),
        ("StopMixMonitor", {"Channel": gone}, "Error", "No such channel"),
        ("StopMixMonitor", {"Channel": live}, "Error", "Could not stop monitoring channel"),
        ("MixMonitorMute", {"Channel": live, "Direction": "sideways", "State": "1"}, "Error",
         "Invalid direction specified. Must be read, write or both"),
        ("Setvar", {"Variable": "CRM_ID", "Value": "42"}, "Success", "Variable Set"),
        ("Events", {"EventMask": "on"}, "Success", None),
    ]
    for action, headers, response, message in cases:
        action_id = client.send(action, **headers)
        got = await client.next()
        got = (got["ActionID"], got["Response"], got.get("Message"))
        assert got == (action_id, response, message), action
    action_id = client.send("Getvar", Variable="CRM_ID")
    assert (await client.next()).pairs == [("Response", "Success"), ("ActionID", action_id),
                                           ("Variable", "CRM_ID"), ("Value", "42")]
    client.send("Command", Command="core show version")
    version = await client.next()
    assert version["Message"] == "Command output follows" and "GIT-master" in version["Output"]
    action_id = client.send("Status", Channel=live)
    status = await client.answer(action_id, "StatusComplete")
    assert [m["CallerIDName"] for m in status if m.event == "Status"] == [CALLER]
    action_id = client.send("Hangup", Channel=live)  # last: the channel is gone after it
    reply, hangup = await client.next(), await client.next()
    assert (reply["ActionID"], reply["Message"], hangup.event) == (action_id, "Channel Hungup", "Hangup")
    client.send("Redirect", Channel=live, Context="direct", Exten="103", Priority="1")
    assert (await client.next())["Message"] == f"Channel does not exist: {live}"


async def test_cli_prints_address_and_serves() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.simulator", str(FIXTURES / "queue_ops.ami"),
        "--port", "0", "--speed", "0", stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        login = (await proc.stdout.readline()).decode()
        host, port = re.search(r"listening on (\S+):(\d+)", first).groups()
        assert "Username=callbridge Secret=callbridge" in login
        client = Client(*await asyncio.open_connection(host, int(port)))
        reply, _ = await client.login()
        assert reply["Message"] == "Authentication accepted"
        removed = (await client.until(lambda m: m.event == "QueueMemberRemoved"))[-1]
        assert removed["MemberName"] == "Reserve Eve"
        client.close()
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0  # SIGTERM: a clean stop
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# ---- PBX runs, restarts and outages ---------------------------------------------------


async def test_fully_booted_says_the_recorded_pbx_uptime(sim_factory) -> None:
    for name, uptime in (("queue_ops", "118"), ("pbx_restart_part2", "0")):
        sim = await sim_factory([FIXTURES / f"{name}.ami"])
        _, booted = await (await Client.connect(sim)).login()
        recorded = capture_messages(name, "FullyBooted")[0]
        assert booted.pairs == recorded.pairs and booted["Uptime"] == uptime


RESTART = [FIXTURES / "pbx_restart_part1.ami", FIXTURES / "pbx_restart_part2.ami"]


async def test_per_connection_serves_a_pbx_restart(sim_factory) -> None:
    sim = await sim_factory(RESTART, per_connection=True)
    first = await connect(sim)
    got = await first.read_to_eof()  # part 1, then the PBX dies: the simulator hangs up
    assert [m.pairs for m in got] == [m.pairs for m in iter_capture(BANNER + b"".join(
        expected_blocks("pbx_restart_part1")))]
    second = await Client.connect(sim)
    _, booted = await second.login()
    assert booted["Uptime"] == "0"  # a new boot, as the real restart said
    second.send("CoreShowChannels")  # none of part 1's calls survived the restart
    got = await second.until(lambda m: m.event == "CoreShowChannelsComplete")
    listed = [m for m in got if m.event == "CoreShowChannel"]
    assert all(m["Uniqueid"].startswith("1796528284.") for m in listed)  # part 2's epoch
    part2 = expected_blocks("pbx_restart_part2")
    rest = [m for m in got if "ActionID" not in m]
    rest += [await second.next() for _ in range(len(part2) - len(rest))]
    assert [m.pairs for m in rest] == [m.pairs for m in iter_capture(BANNER + b"".join(part2))]
    assert await second.silent(0.2) and not second.eof  # the last capture's PBX stays up
    assert (sim.logins, sim.runs.run, sim.runs.run_logins) == (2, 1, [1, 2])


async def test_per_connection_link_drop_resumes_the_same_pbx_run(sim_factory) -> None:
    part1 = expected_blocks("pbx_restart_part1")
    sim = await sim_factory(RESTART, per_connection=True, drop_after_events=30)
    assert len(await (await connect(sim)).read_to_eof()) == 30  # link cut, PBX 1 still up
    sim.drop_after_events = None
    again = await connect(sim)
    assert len(await again.read_to_eof()) == len(part1) - 30  # the rest of part 1, then death
    assert sim.runs.run == 1 and len(sim.sessions) == 1
    third = await connect(sim)
    assert (await third.next())["Event"] == "SuccessfulAuth"  # part 2's first event
    assert len(sim.sessions) == 2


async def test_downtime_refuses_connections_after_the_pbx_dies(sim_factory) -> None:
    sim = await sim_factory(RESTART, per_connection=True, downtime=60.0)
    await (await connect(sim)).read_to_eof()
    assert sim.down
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*sim.address)
    await sim.come_up()  # sooner than the 60 s: the test says when the PBX is back
    assert not sim.down
    second = await Client.connect(sim)
    _, booted = await second.login()
    assert booted["Uptime"] == "0" and (await second.next())["Event"] == "SuccessfulAuth"
    sim2 = await sim_factory(RESTART, per_connection=True, downtime=0.05)
    await (await connect(sim2)).read_to_eof()
    await sim2._wait_until(lambda: None if sim2.down else 1, 5.0, "the PBX back up")  # by itself
    assert (await connect(sim2)).writer is not None and sim2.logins == 2


async def test_go_down_and_come_up_is_a_link_outage_the_pbx_lives_through(sim_factory) -> None:
    blocks = expected_blocks("queue_answered")
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], drop_after_events=40)
    first = await connect(sim)
    assert len(await first.read_to_eof()) == 40
    assert await sim.go_down() == 0 and sim.down
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*sim.address)
    await sim.come_up()
    sim.drop_after_events = None
    again = await connect(sim)
    rest = [await again.next() for _ in range(len(blocks) - 40)]
    assert rest[0].pairs == list(iter_capture(BANNER + blocks[40]))[0].pairs
    live = await connect(sim)  # a live connection is cut by go_down too
    assert await sim.go_down() == 2
    await live.read_to_eof()
    assert live.eof


async def test_per_connection_loop_starts_over_relabelled(sim_factory) -> None:
    one = {**LIVE_CHANNEL, "Event": "UserEvent", "UserEvent": "one"}
    two = {**LIVE_CHANNEL, "Event": "UserEvent", "UserEvent": "two"}
    sim = await sim_factory([synthetic(one), synthetic(two)], per_connection=True, loop=True)
    seen = []
    for _ in range(3):
        (event,) = await (await connect(sim)).read_to_eof()  # every run ends: the PBX dies
        seen.append((event["UserEvent"], event["Uniqueid"]))
    assert [n for n, _ in seen] == ["one", "two", "one"]
    assert seen[2][1] != seen[0][1]  # the second pass is new calls, not repeats


async def test_originate_parses_caller_id_as_asterisk_does(sim_factory) -> None:
    recorded = [m["CallerIDName"] for m in capture_messages("caller_names_escaped", "OriginateResponse")]
    assert recorded == ['Anna "Annie" Smith', "D'Artagnan", "Back\\Slash Co"]
    sim = await sim_factory([])
    client = await connect(sim)
    sent = ['"Anna \\"Annie\\" Smith" <+12125550147>', "\"D'Artagnan\" <+33559123456>",
            "Back\\\\Slash Co <+442079460123>"]  # the README: the backslash sent doubled
    names = []
    for caller_id in sent:
        client.send("Originate", Channel="Local/support@inbound", Context="caller", Exten="talk",
                    CallerID=caller_id, Async="true")
        await client.next()
        names.append((await client.next())["CallerIDName"])
    assert names == recorded
    client.send("Originate", Channel="Local/support@inbound", CallerID="Back\\Slash Co <+44>")
    await client.next()
    assert (await client.next())["CallerIDName"] == "BackSlash Co"  # as the README says Asterisk did


@contextlib.asynccontextmanager
async def simulator_cli(*args: str) -> AsyncIterator[tuple[str, int]]:
    """`python -m bridge.simulator ARGS --port 0 --speed 0`: its address; it must stop cleanly."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.simulator", *args, "--port", "0", "--speed", "0",
        stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        host, port = re.search(r"listening on (\S+):(\d+)", first).groups()  # type: ignore[union-attr]
        yield host, int(port)
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_per_connection_serves_a_restart() -> None:
    async with simulator_cli(*map(str, RESTART), "--per-connection") as (host, port):
        client = Client(*await asyncio.open_connection(host, port))
        await client.login()
        assert len(await client.read_to_eof()) == len(expected_blocks("pbx_restart_part1"))
        client = Client(*await asyncio.open_connection(host, port))
        _, booted = await client.login()
        assert booted["Uptime"] == "0"
        assert (await client.until(lambda m: m.get("CallerIDName") == "Marco Bianchi"))
        client.close()


# ---- a cheaper replay, the same bytes ----------------------------------------------------


def _shift_rule_by_rule(raw: bytes, seconds: int) -> bytes:
    """`shift_times` as it was written first: one substitution per kind of time."""
    from datetime import datetime, timedelta

    def text(value: bytes, fmt: str) -> bytes:
        return (datetime.strptime(value.decode(), fmt) + timedelta(seconds=seconds)).strftime(fmt).encode()

    out = re.sub(rb"(?m)^Timestamp: (\d+\.\d+)", lambda m: b"Timestamp: %.6f" % (float(m[1]) + seconds), raw)
    out = re.sub(rb"(?mi)^(\w*(?:Uniqueid|Linkedid): )(\d+)(?=\.\d)",
                 lambda m: m[1] + b"%d" % (int(m[2]) + seconds), out)
    out = re.sub(rb"(?m)^((?:LoginTime|LastCall|LastPause): )([1-9]\d*)(?=\r?$)",
                 lambda m: m[1] + b"%d" % (int(m[2]) + seconds), out)
    out = re.sub(rb"(?m)^((?:StartTime|AnswerTime|EndTime): )(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)",
                 lambda m: m[1] + text(m[2], "%Y-%m-%d %H:%M:%S"), out)
    return re.sub(rb"(?m)^(\w*TV: )(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)([+-]\d{4})",
                  lambda m: m[1] + text(m[2][:19], "%Y-%m-%dT%H:%M:%S") + m[2][19:] + m[3], out)


def test_shift_times_in_one_pass_is_every_rule_applied_in_turn() -> None:
    from bridge.simulator.relabel import shift_times

    odd = (b"Event: X\r\nuniqueid: 12.3\r\nFoo-Uniqueid: 12.3\r\nid: 5.5\r\nLastCall: 0\r\n"
           b"LoginTime: 17\r\nXTV: 2026-11-24T08:19:00.1-0130\r\nTimestamp: 1.5x\r\n\r\n")
    for name in sorted(p.stem for p in FIXTURES.glob("*.ami")):
        data = capture_bytes(name)
        for seconds in (1, -86_400 * 400, 12_345_678):
            assert shift_times(data, seconds) == _shift_rule_by_rule(data, seconds), name
            assert shift_times(odd, seconds) == _shift_rule_by_rule(odd, seconds)


def test_headers_look_up_as_the_message_does() -> None:
    from bridge.simulator.state import Headers

    names = ["Channel", "channel", "CHANNEL", "DestChannel", "Uniqueid", "UniqueID", "Event", "Nope", "queue"]
    for name in sorted(p.stem for p in FIXTURES.glob("*.ami")):
        for message in iter_capture(capture_bytes(name)):
            headers = Headers(message)
            for key in names + list(message):
                assert (key in headers) == (key in message)
                assert headers.get(key, "-") == message.get(key, "-")


async def test_a_paced_replay_batches_its_writes_and_keeps_the_bytes(sim_factory) -> None:
    from bridge.simulator.relabel import shift_times

    blocks = expected_blocks("queue_answered")
    present = 2_000_000_000.0  # the injected clock: times are moved, bytes compared exactly
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], speed=1000.0, now=lambda: present)
    client = await connect(sim)
    seconds = int(present - float(next(iter_capture(BANNER + blocks[0]))["Timestamp"]))
    want = b"".join(shift_times(b, seconds) for b in blocks)
    booted = b"Status: Fully Booted\r\n\r\n"
    start = bytes(client.raw).index(booted) + len(booted)
    while len(client.raw) < start + len(want):
        await client._read(5.0)
    assert bytes(client.raw[start:]) == want
    assert sim.sent_event_bytes == [shift_times(b, seconds) for b in blocks]
    action_id = client.send("CoreShowChannels")  # the state followed every event of the batches
    assert (await client.answer(action_id, "CoreShowChannelsComplete"))[-1]["ListItems"] == "0"
