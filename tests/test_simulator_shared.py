"""The simulator's shared PBX (`AmiSimulator(shared=True)`, `--shared`): one Asterisk for every
AMI session, as a cluster's hot standby sees it next to the owner. Over real TCP: every
logged-in client gets the same bytes in the same order, a later login gets the events from
then on, the PBX goes on while nobody listens, an action's events go to everyone and its
reply to the asker alone, and a client that stops reading holds nobody up.

The replay is held (`hold_replay`) wherever a test needs to know where the PBX is, so
nothing races it; no outcome depends on how fast anything runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from bridge.ami.message import encode_message, iter_capture
from bridge.simulator.cli import main as cli_main
from bridge.simulator.connection import Connection
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES
from tests.test_ami_simulator import (
    BANNER,
    LIVE_CHANNEL,
    Client,
    connect,
    expected_blocks,
    simulator_cli,
    synthetic,
)
from tests.test_ami_simulator import sim_factory as sim_factory  # noqa: F401  # the fixture

BOOTED = b"Status: Fully Booted\r\n\r\n"


async def replayed_bytes(client: Client, size: int) -> bytes:
    """The next `size` bytes the client gets after its FullyBooted."""
    start = bytes(client.raw).index(BOOTED) + len(BOOTED)
    while len(client.raw) < start + size:
        assert not client.eof, "connection closed"
        await client._read(5.0)
    return bytes(client.raw[start : start + size])


def channel(name: str, uniqueid: str, **extra: str) -> dict[str, str]:
    return {**LIVE_CHANNEL, "Channel": name, "Uniqueid": uniqueid, "Linkedid": uniqueid, **extra}


@pytest.mark.parametrize("chunk_size", [None, 64])  # 64: every write in small segments
async def test_two_clients_get_the_same_bytes_and_the_pbx_is_one(sim_factory, chunk_size) -> None:
    blocks = expected_blocks("queue_answered")
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], shared=True, chunk_size=chunk_size)
    sim.hold_replay(0)  # both are in before the PBX says anything
    first, second = await connect(sim), await connect(sim)
    sim.hold_replay(None)
    want = b"".join(blocks)
    got = [await replayed_bytes(c, len(want)) for c in (first, second)]
    assert got[0] == got[1] == want
    assert len(sim.sessions) == 1 and sim.logins == 2
    assert sim.sent_event_bytes == blocks  # each event once, not once per client


async def test_a_later_login_gets_the_events_from_then_on(sim_factory) -> None:
    blocks = expected_blocks("queue_answered")
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], shared=True)
    sim.hold_replay(40)
    first = await connect(sim)
    await sim.wait_for_events(40)
    late = await connect(sim)
    sim.hold_replay(None)
    assert await replayed_bytes(first, len(b"".join(blocks))) == b"".join(blocks)
    assert await replayed_bytes(late, len(b"".join(blocks[40:]))) == b"".join(blocks[40:])
    action_id = late.send("CoreShowChannels")  # the calls are over for both: one PBX
    listed = await late.answer(action_id, "CoreShowChannelsComplete")
    assert listed[-1]["ListItems"] == "0"


async def test_the_pbx_goes_on_while_nobody_is_logged_in(sim_factory) -> None:
    events = [channel("Local/a@inbound-00000001;1", "1795508402.1"),
              channel("Local/b@inbound-00000002;1", "1795508402.2", Timestamp="1795508403.000000"),
              {**channel("Local/a@inbound-00000001;1", "1795508402.1", Timestamp="1795508404.000000"),
               "Event": "Hangup", "Cause": "16", "Cause-txt": "Normal Clearing"},
              {"Event": "UserEvent", "Privilege": "user,all", "Timestamp": "1795508405.000000",
               "UserEvent": "after"}]
    sim = await sim_factory([synthetic(*events)], shared=True)
    sim.hold_replay(1)
    client = await connect(sim)
    assert (await client.next())["Channel"] == "Local/a@inbound-00000001;1"
    assert await sim.go_down() == 1  # the link is cut; the PBX lives on
    sim.hold_replay(3)
    said = await sim.wait_for_events(3)  # b comes up, a hangs up: nobody hears it
    assert [m.event for m in said] == ["Newchannel", "Newchannel", "Hangup"]
    await sim.come_up()
    again = await connect(sim)
    action_id = again.send("CoreShowChannels")
    listed = await again.answer(action_id, "CoreShowChannelsComplete")
    assert [m["Channel"] for m in listed if m.event == "CoreShowChannel"] == ["Local/b@inbound-00000002;1"]
    sim.hold_replay(None)
    assert (await again.next())["UserEvent"] == "after"  # what the PBX says from now on


async def test_an_actions_events_go_to_everyone_its_reply_to_the_asker(sim_factory) -> None:
    sim = await sim_factory([], shared=True)
    asker, other = await connect(sim), await connect(sim)
    action_id = asker.send("QueueAdd", Queue="support", Interface="Local/105@agents/n", MemberName="Eve")
    reply, device, added = [await asker.next() for _ in range(3)]
    assert (reply["ActionID"], reply["Message"]) == (action_id, "Added interface to queue")
    seen = [await other.next() for _ in range(2)]  # the events, not the reply
    assert [m.pairs for m in seen] == [device.pairs, added.pairs]

    status_id = other.send("QueueStatus", Queue="support")
    listed = await other.answer(status_id, "QueueStatusComplete")
    assert "Eve" in {m.get("Name") for m in listed}  # the same PBX's queue
    originate_id = asker.send("Originate", Channel="Local/support@inbound", Context="caller", Exten="talk",
                              Async="true")
    assert (await asker.next())["Message"] == "Originate successfully queued"
    # Asterisk's fast_originate says OriginateResponse with manager_event: to every session,
    # the asker's ActionID in it. The other's next message is it: no reply, no list of ours.
    for client in (asker, other):
        response = await client.next()
        assert (response.event, response["ActionID"], response["Response"]) == (
            "OriginateResponse", originate_id, "Success")
    ping_id = asker.send("Ping")  # nothing of the other's QueueStatus came to the asker
    assert (await asker.next())["ActionID"] == ping_id
    assert [e.event for e in sim.generated_events] == ["DeviceStateChange", "QueueMemberAdded",
                                                       "OriginateResponse"]


async def test_drop_after_events_counts_per_connection_and_the_pbx_goes_on(sim_factory) -> None:
    blocks = expected_blocks("queue_answered")
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], shared=True, drop_after_events=40)
    sim.hold_replay(60)
    client = await connect(sim)
    assert len(await client.read_to_eof()) == 40  # cut right after its 40th
    await sim.wait_for_events(60)  # 40-59 went to nobody
    sim.drop_after_events = None
    again = await connect(sim)
    sim.hold_replay(None)
    assert await replayed_bytes(again, len(b"".join(blocks[60:]))) == b"".join(blocks[60:])


async def stuck_client(sim: AmiSimulator) -> Client:
    """A client that logs in and never reads again. Both ends' socket buffers are small, so
    what it does not take piles up where the simulator sees it, not in the kernel."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, sim.address)
    client = Client(*await asyncio.open_connection(sock=sock))
    await client.login()
    (conn,) = sim._conns  # the simulator's end of it: its only connection yet
    conn.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return client


async def test_a_client_that_stops_reading_holds_nobody_up(sim_factory) -> None:
    pad = "x" * 400
    events = [{"Event": "UserEvent", "Privilege": "user,all", "Timestamp": f"{1795508400 + n}.000000",
               "UserEvent": f"tick{n}", "Pad": pad} for n in range(8000)]  # 3.6 MB
    sim = await sim_factory([synthetic(*events)], shared=True, max_backlog=1 << 20)
    sim.hold_replay(0)
    stuck = await stuck_client(sim)
    live = await connect(sim)
    sim.hold_replay(None)
    want = b"".join(encode_message(e) for e in events)
    assert await replayed_bytes(live, len(want)) == want  # all of it, while the other reads nothing
    assert sim.broadcast is not None and sim.broadcast.cut == 1  # it fell behind: cut
    with contextlib.suppress(ConnectionError):  # what was under way, then the end (or a reset)
        while not stuck.eof:
            await stuck._read(5.0)


def test_shared_and_per_connection_do_not_mix(capsys) -> None:
    with pytest.raises(ValueError, match="shared"):
        AmiSimulator([], shared=True, per_connection=True)
    with pytest.raises(SystemExit):
        cli_main([str(FIXTURES / "queue_ops.ami"), "--shared", "--per-connection"])
    assert "--shared" in capsys.readouterr().err


async def test_cli_start_after_logins_holds_the_pbx_until_every_node_is_in() -> None:
    held = ("--shared", "--start-after-logins", "2")
    async with simulator_cli(str(FIXTURES / "queue_ops.ami"), *held) as address:
        one = Client(*await asyncio.open_connection(*address))
        await one.login()
        ping_id = one.send("Ping")  # held: nothing is said before the second login
        assert (await one.next())["ActionID"] == ping_id
        two = Client(*await asyncio.open_connection(*address))
        await two.login()
        want = [m.pairs for m in iter_capture(BANNER + b"".join(expected_blocks("queue_ops")))]
        for client in (one, two):  # both from the first event
            assert [(await client.next()).pairs for _ in want] == want
        one.close()
        two.close()


async def test_cli_shared_is_one_pbx_for_every_login() -> None:
    async with simulator_cli(str(FIXTURES / "queue_ops.ami"), "--shared") as address:
        one = Client(*await asyncio.open_connection(*address))
        await one.login()
        await one.until(lambda m: m.event == "QueueMemberRemoved")  # the capture's last event
        two = Client(*await asyncio.open_connection(*address))
        await two.login()
        ping_id = two.send("Ping")  # the PBX has said it all: no replay of its own for two
        assert (await two.next())["ActionID"] == ping_id
        assert bytes(two.raw).startswith(BANNER)
        one.close()
        two.close()


class HeldWriter:
    """A StreamWriter whose drain waits until `release`: a client that reads slowly."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.released = asyncio.Event()
        self.transport = self  # what `Connection.backlog` asks: nothing left unsent here

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    async def drain(self) -> None:
        await self.released.wait()


async def test_an_answer_made_before_posted_events_is_written_before_them() -> None:
    # Asterisk writes an action's reply in the session's thread as it makes it; events raised
    # meanwhile are queued and written after it. A CoreShowChannels list must never reach
    # the client behind events newer than it: the client would apply a snapshot older than
    # what it has already seen (and end a call that had just begun).
    writer = HeldWriter()
    conn = Connection(asyncio.StreamReader(), writer)  # type: ignore[arg-type]
    first = asyncio.create_task(conn.send(b"ping reply;", None))  # holds the lock in drain
    await asyncio.sleep(0)
    conn.post(b"older event;", None)  # posted before the answer was made
    answer = asyncio.create_task(conn.send(b"snapshot;", None))  # made now, waits for the lock
    await asyncio.sleep(0)
    conn.post(b"newer event;", None)  # posted after it was made
    writer.released.set()
    await asyncio.gather(first, answer)
    await asyncio.gather(*conn.tasks)
    assert b"".join(writer.written) == b"ping reply;older event;snapshot;newer event;"
    assert conn.outbox == [] and conn.backlog == 0
