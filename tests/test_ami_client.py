"""AmiClient against small scripted AMI servers (real TCP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.ami.client import (
    AmiActionError,
    AmiActionTimeout,
    AmiClient,
    AmiConnectionLost,
    AmiNotConnected,
    AmiProtocol,
)
from bridge.ami.message import AmiFramer, AmiMessage, encode_message

USER, SECRET = "callbridge", "s3cret"
Writer = asyncio.StreamWriter
Reply = Callable[["FakeAmi", Writer, AmiMessage], Awaitable[None]]


def send(writer: Writer, *pairs: tuple[str, str], **headers: str) -> None:
    writer.write(encode_message(list(pairs) + list(headers.items())))


class FakeAmi:
    """Banner, Login (right/wrong secret), FullyBooted, Ping, and scripted replies per action."""

    def __init__(self, *, answer_ping: bool = True, reject_logins: int = 0,
                 after_login: Callable[[FakeAmi, Writer], Awaitable[None]] | None = None,
                 replies: dict[str, Reply] | None = None) -> None:
        self.answer_ping = answer_ping
        self.reject_logins = reject_logins
        self.after_login = after_login or booted
        self.replies = replies or {}
        self.actions: list[AmiMessage] = []
        self.logins = 0
        self.pings = 0
        self.closed_by_client = 0
        self.writers: list[Writer] = []
        self.port = 0

    async def __aenter__(self) -> FakeAmi:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()

    def named(self, action: str) -> list[AmiMessage]:
        return [m for m in self.actions if m["Action"] == action]

    async def _serve(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        self.writers.append(writer)
        writer.write(b"Asterisk Call Manager/13.0.0\r\n")
        framer = AmiFramer()
        try:
            while data := await reader.read(4096):
                for message in framer.feed(data):
                    self.actions.append(message)
                    await self._answer(writer, message)
            self.closed_by_client += 1
        except ConnectionError:
            self.closed_by_client += 1
        finally:
            writer.close()

    async def _answer(self, writer: Writer, msg: AmiMessage) -> None:
        action, action_id = msg["Action"], msg["ActionID"]
        if action == "Login":
            if msg["Secret"] != SECRET or self.reject_logins > 0:
                self.reject_logins -= 1
                send(writer, Response="Error", ActionID=action_id, Message="Authentication failed")
                writer.close()  # Asterisk hangs up after a failed login
                return
            self.logins += 1
            send(writer, Response="Success", ActionID=action_id, Message="Authentication accepted")
            asyncio.create_task(self.after_login(self, writer))
        elif action == "Ping":
            self.pings += 1
            if self.answer_ping:
                send(writer, Response="Success", ActionID=action_id, Ping="Pong", Timestamp="1.0")
        elif action in self.replies:
            await self.replies[action](self, writer, msg)


async def booted(server: FakeAmi, writer: Writer) -> None:
    send(writer, Event="FullyBooted", Privilege="system,all", Status="Fully Booted")


async def until(predicate: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def make_client():
    clients: list[AmiClient] = []

    def factory(port: int, secret: str = SECRET, **kwargs: Any) -> AmiClient:
        options = dict(ping_interval=5.0, ping_timeout=1.0, action_timeout=1.0, backoff_initial=0.05,
                       backoff_max=0.2, fully_booted_timeout=1.0)
        options.update(kwargs)
        client = AmiClient("127.0.0.1", port, USER, secret, **options)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.stop()


class Recorder:
    """on_event / on_ready / on_disconnect into one ordered list."""

    def __init__(self, client: AmiClient) -> None:
        self.seen: list[str] = []
        self.events: list[AmiMessage] = []
        client.on_event(self.event)
        client.on_ready(self.ready)
        client.on_disconnect(self.disconnect)

    def event(self, event: AmiMessage) -> None:
        self.events.append(event)
        self.seen.append(event.event or "?")

    async def ready(self) -> None:
        self.seen.append("READY")

    def disconnect(self, reason: str) -> None:
        self.seen.append(f"DISCONNECT {reason}")


# -- login, FullyBooted, ready ------------------------------------------------------------
async def test_login_then_fully_booted_then_ready_in_event_order(make_client):
    async def after_login(server: FakeAmi, writer: Writer) -> None:
        send(writer, Event="SuccessfulAuth", AccountID=USER)
        await asyncio.sleep(0.15)  # ready must wait for FullyBooted, not fire on the login reply
        await booted(server, writer)
        send(writer, Event="Newchannel", Channel="Local/1@x-1;1")

    async with FakeAmi(after_login=after_login) as server:
        client = make_client(server.port)
        seen = Recorder(client)
        await client.start()
        assert await client.wait_ready(2.0)
        await until(lambda: len(seen.seen) == 4)
        assert seen.seen == ["SuccessfulAuth", "FullyBooted", "READY", "Newchannel"]
        login = server.named("Login")[0]
        assert (login["Username"], login["Secret"], login["Events"]) == (USER, SECRET, "on")
        assert client.status() | {"queued_events": 0} == {
            "connected": True, "logged_in": True, "ready": True, "reconnects": 0, "last_error": None,
            "pending_actions": 0, "queued_events": 0, "read_pauses": 0}


async def test_ready_without_fully_booted_after_its_timeout(make_client, caplog):
    async def silent(server: FakeAmi, writer: Writer) -> None:
        return None

    caplog.set_level(logging.WARNING, logger="bridge.ami.client")
    async with FakeAmi(after_login=silent) as server:
        client = make_client(server.port, fully_booted_timeout=0.15)
        await client.start()
        assert not await client.wait_ready(0.1)
        assert await client.wait_ready(1.0)
        assert "no FullyBooted from AMI" in caplog.text


# -- weak spot a: split UTF-8 ---------------------------------------------------------------
async def test_utf8_caller_name_written_one_byte_at_a_time(make_client, monkeypatch):
    chunks: list[int] = []
    original = AmiProtocol.data_received

    def counting(self: AmiProtocol, data: bytes) -> None:
        chunks.append(len(data))
        original(self, data)

    monkeypatch.setattr(AmiProtocol, "data_received", counting)
    name = "Иван Петров"

    async def after_login(server: FakeAmi, writer: Writer) -> None:
        await booted(server, writer)
        await writer.drain()
        for byte in encode_message({"Event": "Newchannel", "CallerIDName": name, "Exten": "s"}):
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.0005)

    async with FakeAmi(after_login=after_login) as server:
        client = make_client(server.port)
        seen = Recorder(client)
        await client.start()
        await until(lambda: "Newchannel" in seen.seen)
        event = seen.events[-1]
        assert event["CallerIDName"] == name
        assert event["Exten"] == "s"
        assert len(chunks) > 20  # the name really came in pieces


# -- weak spot c: one ordered consumer ------------------------------------------------------
async def test_async_handler_with_random_sleeps_sees_exact_order(make_client):
    count = 40

    async def after_login(server: FakeAmi, writer: Writer) -> None:
        await booted(server, writer)
        for seq in range(count):
            send(writer, Event="VarSet" if seq % 2 else "Newstate", Seq=str(seq))

    async with FakeAmi(after_login=after_login) as server:
        client = make_client(server.port)
        handled: list[int] = []
        by_pattern: list[int] = []

        async def handler(event: AmiMessage) -> None:
            await asyncio.sleep(random.uniform(0, 0.004))
            if "Seq" in event:
                handled.append(int(event["Seq"]))

        async def var_callback(manager: AmiClient, event: AmiMessage) -> None:
            await asyncio.sleep(random.uniform(0, 0.004))
            by_pattern.append(int(event["Seq"]))

        client.on_event(handler)
        client.register_event("Var*", var_callback)  # panoramisk-style callbacks: same ordered consumer
        await client.start()
        await until(lambda: len(handled) == count)
        assert handled == list(range(count))
        await until(lambda: len(by_pattern) == count // 2)
        assert by_pattern == list(range(1, count, 2))


# -- correlation, errors, timeouts (weak spot d) --------------------------------------------
async def echo(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
    async def later() -> None:
        await asyncio.sleep(0.1 / int(msg["Order"]))  # the first sent is answered last
        send(writer, Response="Success", ActionID=msg["ActionID"], Value=msg["Value"])

    asyncio.create_task(later())


async def no_such_channel(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
    send(writer, Response="Error", ActionID=msg["ActionID"], Message="No such channel")


async def originate(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
    aid = msg["ActionID"]
    send(writer, Response="Success", ActionID=aid, Message="Originate successfully queued")
    send(writer, Event="OriginateResponse", ActionID=aid, Response="Success", Channel="Local/support@inbound")


async def test_replies_are_matched_by_action_id(make_client):
    async with FakeAmi(replies={"Echo": echo, "Originate": originate}) as server:
        client = make_client(server.port)
        seen = Recorder(client)
        await client.start()
        assert await client.wait_ready(2.0)
        replies = await asyncio.gather(
            client.send_action({"Action": "Echo", "Order": "1", "Value": "one"}),
            client.send_action({"Action": "Echo", "Order": "2", "Value": "two"}),
            client.send_action({"Action": "Echo", "Order": "3", "Value": "three", "ActionID": "mine-7"}))
        assert [r["Value"] for r in replies] == ["one", "two", "three"]
        assert replies[2].action_id == "mine-7"
        ids = [m["ActionID"] for m in server.named("Echo")]
        assert len(set(ids)) == 3
        # The reply answers Originate; OriginateResponse (same ActionID) is an event.
        reply = await client.send_action({"Action": "Originate", "Async": "true"}, check=True)
        assert reply["Message"] == "Originate successfully queued"
        await until(lambda: "OriginateResponse" in seen.seen)
        assert seen.events[-1].action_id == reply.action_id


async def test_error_reply_returned_or_raised_with_check(make_client):
    async with FakeAmi(replies={"Hangup": no_such_channel}) as server:
        client = make_client(server.port)
        await client.start()
        assert await client.wait_ready(2.0)
        reply = await client.send_action({"Action": "Hangup", "Channel": "Local/9@x"})
        assert not reply.success and reply["Message"] == "No such channel"
        with pytest.raises(AmiActionError) as caught:
            await client.send_action({"Action": "Hangup", "Channel": "Local/9@x"}, check=True)
        assert caught.value.message == "No such channel"
        assert caught.value.action == "Hangup"
        assert "Hangup" in str(caught.value) and "No such channel" in str(caught.value)


async def test_actions_time_out_with_a_clear_error(make_client):
    async with FakeAmi() as server:  # "Slow" is never answered
        client = make_client(server.port, action_timeout=0.2)
        await client.start()
        assert await client.wait_ready(2.0)
        with pytest.raises(AmiActionTimeout) as caught:
            await client.send_action({"Action": "Slow"})
        assert (caught.value.action, caught.value.seconds) == ("Slow", 0.2)
        assert caught.value.action_id == server.named("Slow")[0]["ActionID"]
        started = time.monotonic()
        with pytest.raises(AmiActionTimeout, match=r"no reply to AMI action Slow \(.+\) within 0.05 s"):
            await client.send_action({"Action": "Slow"}, timeout=0.05)
        assert time.monotonic() - started < 0.15
        assert client.status()["pending_actions"] == 0
        assert client.logged_in  # a slow action is not a dead connection


# -- event lists ----------------------------------------------------------------------------
async def core_show_channels(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
    aid = msg["ActionID"]
    send(writer, Response="Success", ActionID=aid, EventList="start", Message="Channels will follow")
    send(writer, Event="CoreShowChannel", ActionID=aid, Channel="Local/101@agents-1;1",
         CallerIDName="Анна")
    send(writer, Event="Newstate", Channel="Local/x-2;2")  # interleaved live event
    send(writer, Event="CoreShowChannel", ActionID=aid, Channel="Local/support@inbound-2;2")
    send(writer, Event="CoreShowChannelsComplete", ActionID=aid, EventList="Complete", ListItems="2")


async def late_summary(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
    async def later() -> None:
        await asyncio.sleep(0.15)
        aid = msg["ActionID"]
        send(writer, Response="Success", ActionID=aid, EventList="start", Message="Queue summary will follow")
        send(writer, Event="QueueSummary", ActionID=aid, Queue="support")
        send(writer, Event="QueueSummaryComplete", ActionID=aid, EventList="Complete", ListItems="1")
        send(writer, Event="UserEvent", UserEvent="after")

    asyncio.create_task(later())


async def test_list_action_collects_until_complete(make_client):
    replies = {"CoreShowChannels": core_show_channels, "QueueStatus": no_such_channel,
               "QueueSummary": late_summary}
    async with FakeAmi(replies=replies) as server:
        client = make_client(server.port)
        seen = Recorder(client)
        await client.start()
        assert await client.wait_ready(2.0)
        channels = await client.send_list_action({"Action": "CoreShowChannels"})
        assert [c["Channel"] for c in channels] == ["Local/101@agents-1;1", "Local/support@inbound-2;2"]
        assert channels[0]["CallerIDName"] == "Анна"
        assert channels.complete is not None and channels.complete["ListItems"] == "2"
        assert channels.response is not None and channels.response["Message"] == "Channels will follow"

        with pytest.raises(AmiActionError, match="No such channel"):
            await client.send_list_action({"Action": "QueueStatus", "Queue": "nope"})

        with pytest.raises(AmiActionTimeout):  # its late items must not leak into the events
            await client.send_list_action({"Action": "QueueSummary"}, timeout=0.05)
        await until(lambda: "UserEvent" in seen.seen)
        assert seen.seen == ["FullyBooted", "READY", "Newstate", "UserEvent"]


# -- connection loss, watchdog (weak spot b), backoff -----------------------------------------
async def test_pending_action_fails_on_disconnect_and_is_not_resent(make_client):
    async def hang_up(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
        writer.transport.abort()

    async with FakeAmi(replies={"Originate": hang_up}) as server:
        client = make_client(server.port)
        await client.start()
        assert await client.wait_ready(2.0)
        with pytest.raises(AmiConnectionLost, match="Originate"):
            await client.send_action({"Action": "Originate", "Channel": "Local/1@x"})
        await until(lambda: server.logins == 2 and client.ready)
        await asyncio.sleep(0.1)
        assert len(server.named("Originate")) == 1
        assert client.reconnects == 1


async def test_unanswered_ping_closes_and_reconnects(make_client):
    async with FakeAmi(answer_ping=False) as server:
        client = make_client(server.port, ping_interval=0.1, ping_timeout=0.1)
        seen = Recorder(client)
        await client.start()
        await until(lambda: server.logins >= 2 and client.ready)
        assert server.closed_by_client >= 1  # the client hung up the silent connection
        assert client.reconnects >= 1
        lost = "DISCONNECT no reply to Ping within 0.1 s"
        assert seen.seen[:5] == ["FullyBooted", "READY", lost, "FullyBooted", "READY"]


async def test_answered_pings_keep_the_connection(make_client):
    async with FakeAmi() as server:
        client = make_client(server.port, ping_interval=0.03, ping_timeout=0.1)
        await client.start()
        await until(lambda: server.pings >= 5)
        assert server.logins == 1 and client.reconnects == 0 and client.ready


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bridge.ami.client"]


async def test_wrong_secret_one_clear_line_and_backoff(make_client, caplog):
    caplog.set_level(logging.WARNING, logger="bridge.ami.client")
    async with FakeAmi() as server:
        client = make_client(server.port, secret="wrong")
        await client.start()
        await until(lambda: len(warnings_of(caplog)) >= 4)
        prefix = f"AMI login to 127.0.0.1:{server.port} as {USER} failed: Authentication failed; retrying in"
        assert warnings_of(caplog)[:4] == [f"{prefix} {d} s" for d in ("0.05", "0.1", "0.2", "0.2")]
        assert all(r.exc_info is None for r in caplog.records)
        assert not client.logged_in and not client.ready
        assert client.last_error == prefix.rsplit("; ", 1)[0]
        assert "wrong" not in caplog.text


def free_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_host_is_probed_often_but_logged_rarely(make_client, caplog):
    caplog.set_level(logging.WARNING, logger="bridge.ami.client")
    port = free_port()
    client = make_client(port, probe_interval=0.02, reminder_interval=0.5)
    await client.start()
    await until(lambda: len(warnings_of(caplog)) >= 2)
    attempts = client._session  # one per connect attempt
    address = f"127.0.0.1:{port}"
    first, reminder = warnings_of(caplog)[:2]
    assert first == (f"cannot reach AMI at {address}: Connection refused; probing every 0.02 s "
                     "(a reminder every 0.5 s while it lasts)")
    assert reminder.startswith(f"cannot reach AMI at {address}: Connection refused; still unreachable after ")
    assert attempts >= 10  # probed far more often than logged (no exponential back-off)
    assert all(r.exc_info is None for r in caplog.records)
    assert client.status()["connected"] is False
    assert client.last_error == f"cannot reach AMI at {address}: Connection refused"
    with pytest.raises(AmiNotConnected):
        await client.send_action({"Action": "Ping"})


class LoginLog:
    """The simulator, noting the moment of every login on its own side."""

    def __init__(self) -> None:
        from bridge.simulator import server as ami_simulator

        log_times = self.times = []

        class Sim(ami_simulator.AmiSimulator):
            async def _login(self, conn, action):  # type: ignore[no-untyped-def]
                before = self.logins
                await super()._login(conn, action)
                if self.logins > before:
                    log_times.append(time.monotonic())

        self.Sim = Sim


async def test_logs_in_within_a_second_after_a_long_outage(make_client, caplog):
    """The PBX is away for several back-off periods; once back, the login follows within
    one probe interval (measured on the simulator's side), while a wrong secret still backs off."""
    caplog.set_level(logging.INFO, logger="bridge.ami.client")
    logins = LoginLog()
    capture = Path(__file__).parent / "fixtures" / "queue_ops.ami"
    sim = logins.Sim([capture], secret=SECRET)
    await sim.start()
    client = make_client(sim.port, backoff_initial=0.1, backoff_max=30.0, reminder_interval=1.0)
    await client.start()
    await until(lambda: client.ready)
    await sim.stop()  # the PBX goes away: 0.1+0.2+0.4+0.8+1.6 s of doubled back-off would reach 3.1 s
    await asyncio.sleep(3.5)
    back_at = time.monotonic()
    await sim.start()  # same port
    try:
        await until(lambda: client.ready, within=5.0)
    finally:
        await sim.stop()
    reconnect = logins.times[-1] - back_at
    print(f"reconnect after the PBX came back: {reconnect * 1000:.0f} ms")
    assert len(logins.times) == 2 and reconnect < 1.0
    outage = [m for m in warnings_of(caplog) if "cannot reach AMI" in m]
    assert 2 <= len(outage) <= 5  # the first failure and reminders, not one line per probe
    assert "unreachable for" in warnings_of(caplog)[-1]  # the login line says how long it was


async def test_backoff_resets_after_a_successful_login(make_client, caplog):
    async def booted_then_hang_up(server: FakeAmi, writer: Writer) -> None:
        await booted(server, writer)
        if server.logins == 1:
            await asyncio.sleep(0.05)
            writer.transport.abort()

    caplog.set_level(logging.WARNING, logger="bridge.ami.client")
    async with FakeAmi(reject_logins=2, after_login=booted_then_hang_up) as server:
        client = make_client(server.port)
        await client.start()
        await until(lambda: server.logins == 2 and client.ready)
        delays = [m.rsplit("retrying in ", 1)[1] for m in warnings_of(caplog)]
        assert delays == ["0.05 s", "0.1 s", "0.05 s"]
        assert "lost: connection closed by the PBX" in warnings_of(caplog)[2]
        assert client.reconnects == 1 and client.last_error is None


# -- on_ready resync, stop --------------------------------------------------------------------
async def test_on_ready_can_resync_and_later_events_wait_for_it(make_client):
    async def channels_after_event(server: FakeAmi, writer: Writer, msg: AmiMessage) -> None:
        send(writer, Event="Newchannel", Channel="Local/new-3;1")  # arrives while on_ready runs
        await core_show_channels(server, writer, msg)
        if server.logins == 1:
            await asyncio.sleep(0.05)
            writer.transport.abort()

    async with FakeAmi(replies={"CoreShowChannels": channels_after_event}) as server:
        client = make_client(server.port)
        seen = Recorder(client)

        async def resync() -> None:
            channels = await client.send_list_action({"Action": "CoreShowChannels"})
            seen.seen.append(f"RESYNC {len(channels)}")

        client.on_ready(resync)
        await client.start()
        await until(lambda: seen.seen.count("RESYNC 2") == 2)
        await until(lambda: seen.seen.count("Newstate") == 2)
        assert seen.seen == ["FullyBooted", "RESYNC 2", "Newchannel", "Newstate",
                             "DISCONNECT connection closed by the PBX",
                             "FullyBooted", "RESYNC 2", "Newchannel", "Newstate"]


async def test_stop_fails_pending_actions_and_reports_disconnect(make_client):
    async with FakeAmi() as server:
        client = make_client(server.port)
        seen = Recorder(client)
        await client.start()
        assert await client.wait_ready(2.0)
        pending = asyncio.create_task(client.send_action({"Action": "Slow"}))
        await until(lambda: bool(server.named("Slow")))
        await client.stop()
        with pytest.raises(AmiConnectionLost, match="client stopped"):
            await pending
        assert seen.seen[-1] == "DISCONNECT client stopped"
        assert not client.connected and not client.logged_in and not client.ready
        with pytest.raises(AmiNotConnected):
            await client.send_action({"Action": "Ping"})


# -- end to end against the project's AMI simulator ----------------------------------------------
async def test_end_to_end_with_simulator_replay_reconnect_and_resync(make_client):
    from bridge.simulator import server as simulator
    capture = Path(__file__).parent / "fixtures" / "queue_answered.ami"
    expected = [e.message for e in simulator.load_events([capture])]
    cut = [m.event for m in expected].index("AgentConnect") + 1
    # Cut the connection right after AgentConnect, in 7-byte writes: the client must
    # reconnect, resync from CoreShowChannels (the call is up), and lose nothing.
    async with simulator.AmiSimulator([capture], secret=SECRET, drop_after_events=cut,
                                      chunk_size=7, speed=20) as sim:
        client = make_client(sim.port)
        seen = Recorder(client)
        snapshots: list[list[str]] = []

        async def resync() -> None:
            channels = await client.send_list_action({"Action": "CoreShowChannels"})
            snapshots.append([c["Channel"] for c in channels])
            seen.seen.append("READY")

        client.on_ready(resync)
        await client.start()

        def replayed() -> list[AmiMessage]:
            return [e for e in seen.events if e.event != "FullyBooted"]

        await until(lambda: len(replayed()) == len(expected), within=5.0)
        assert [e.pairs for e in replayed()] == [m.pairs for m in expected]
        assert "Иван Петров" in {e.get("CallerIDName") for e in replayed()}
        markers = [s for s in seen.seen if s == "READY" or s.startswith("DISCONNECT")]
        assert markers == ["READY", "DISCONNECT connection closed by the PBX", "READY"]
        assert seen.seen.index("DISCONNECT connection closed by the PBX") == cut + 2  # FullyBooted, READY
        assert sorted(snapshots[1]) == sorted([
            "Local/support@inbound-00000000;1", "Local/support@inbound-00000000;2",
            "Local/101@agents-00000001;1", "Local/101@agents-00000001;2"])
        assert client.reconnects == 1


async def test_a_flooding_pbx_is_held_back_by_pausing_the_socket(make_client):
    """Events queue up to `max_queued_events`, then the client stops reading the socket
    (the PBX's writes wait in kernel buffers) and resumes as the consumer catches up:
    memory stays bounded, nothing is lost or reordered, and actions still get replies."""
    count, high = 20_000, 300
    filler = "x" * 300  # about the size of a real AMI event

    async def after_login(server: FakeAmi, writer: Writer) -> None:
        await booted(server, writer)
        for seq in range(count):
            send(writer, Event="Newexten", Seq=str(seq), AppData=filler)
            if seq % 1000 == 0:
                await writer.drain()  # a real PBX blocks on a full socket too

    async with FakeAmi(after_login=after_login) as server:
        client = make_client(server.port, max_queued_events=high)
        seen: list[int] = []
        deepest = 0

        async def handler(event: AmiMessage) -> None:
            nonlocal deepest
            deepest = max(deepest, client.status()["queued_events"])
            if len(seen) % 50 == 0:
                await asyncio.sleep(0.001)  # a consumer slower than the socket
            if "Seq" in event:
                seen.append(int(event["Seq"]))

        client.on_event(handler)
        await client.start()
        await until(lambda: len(seen) >= count // 2, within=20)
        assert deepest < high + 1500  # the bound, plus what one socket read can carry
        assert client.status()["read_pauses"] >= 1
        # An action's reply sits behind the queued events in the stream: while it is
        # awaited the socket is read again (the queue may grow), and the reply comes.
        pong = await client.send_action({"Action": "Ping"}, timeout=10)
        assert pong["Ping"] == "Pong"
        await until(lambda: len(seen) == count, within=20)
        assert seen == list(range(count))


# -- a hot standby's undecoded events ------------------------------------------------------
async def test_a_raw_sink_gets_events_undecoded_in_order_and_replies_still_work(make_client):
    async def after_login(server: FakeAmi, writer: Writer) -> None:
        await booted(server, writer)
        await asyncio.sleep(0.1)  # the ready marker is consumed: the queue is empty again
        send(writer, Event="Newchannel", Channel="PJSIP/100-1", Linkedid="1.1")
        send(writer, Event="OriginateResponse", ActionID="theirs-7", Response="Success")  # another's
        send(writer, Event="Newstate", Channel="PJSIP/100-1", Linkedid="1.1")
        await asyncio.sleep(0.1)
        send(writer, Event="Hangup", Channel="PJSIP/100-1", Linkedid="1.1", CallerIDName="Zoë")

    async with FakeAmi(after_login=after_login) as server:
        client = make_client(server.port, ping_interval=0.03, ping_timeout=0.5)
        seen = Recorder(client)
        raw: list[tuple[float, bytes]] = []

        def sink(arrived: float, blocks: list[bytes]) -> None:
            for block in blocks:
                raw.append((arrived, block))
                seen.seen.append("raw " + block.splitlines()[0].decode())

        client.raw_sink = sink
        await client.start()
        await until(lambda: len(seen.seen) == 6)
        # FullyBooted parsed (it makes the session ready); an event that carries an ActionID
        # parsed; the one behind it parsed too (it must not overtake it in the queue).
        assert seen.seen == ["FullyBooted", "READY", "raw Event: Newchannel", "OriginateResponse", "Newstate",
                             "raw Event: Hangup"]
        assert raw[-1][1].decode().endswith("CallerIDName: Zoë") and raw[-1][0] > 0
        await until(lambda: server.pings >= 3)  # Ping replies still reach their actions
        assert client.ready and server.logins == 1 and client.reconnects == 0
        assert client._tracker.stream_position == 5  # every event counted, undecoded or not


async def test_a_lazy_reader_takes_what_came_meanwhile_in_one_read(make_client, monkeypatch):
    reads: list[int] = []
    plain = AmiProtocol.data_received

    def counted(self: AmiProtocol, data: bytes) -> None:
        reads.append(data.count(b"Event: Newexten"))
        plain(self, data)

    monkeypatch.setattr(AmiProtocol, "data_received", counted)
    go = asyncio.Event()

    async def after_login(server: FakeAmi, writer: Writer) -> None:
        await booted(server, writer)
        await go.wait()
        for step in range(20):  # one event a write, 5 ms apart: 20 reads for an eager reader
            send(writer, Event="Newexten", Channel="PJSIP/100-1", Priority=str(step))
            await writer.drain()
            await asyncio.sleep(0.005)

    async with FakeAmi(after_login=after_login) as server:
        client = make_client(server.port)
        raw: list[bytes] = []
        client.raw_sink = lambda arrived, blocks: raw.extend(blocks)
        client.lazy_reads = 0.5
        await client.start()
        assert await client.wait_ready(2.0)
        await asyncio.sleep(0.6)  # the lazy read after FullyBooted's has passed
        go.set()
        await until(lambda: len(raw) == 20)
        assert [b.split(b"Priority: ")[1] for b in raw] == [str(i).encode() for i in range(20)]
        assert len([r for r in reads if r]) <= 3  # what came meanwhile, read at once
        client.read_promptly()  # a takeover: read at once, from now on every event
        assert client.protocol is not None and client.protocol.transport.is_reading()
        assert client.protocol._resume is None


async def test_in_order_from_the_consumer_itself_runs_at_once(make_client):
    async with FakeAmi() as server:
        client = make_client(server.port)
        ran: list[str] = []

        async def inner() -> None:
            ran.append("inner")

        async def on_ready() -> None:  # runs in the consumer: waiting behind itself would hang
            ran.append("ready")
            assert await client.in_order(inner)

        client.on_ready(on_ready)
        await client.start()
        assert await client.wait_ready(2.0)
        assert ran == ["ready", "inner"]
        assert await client.in_order(inner) and ran == ["ready", "inner", "inner"]
