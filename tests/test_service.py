"""The running bridge end to end: AMI simulator -> client -> model -> call log (SQLite).

A live run logs exactly what the offline replay of the same bytes gives; a dropped
connection mid-call loses and duplicates nothing; a wrong secret is one clear line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bridge.ami.actions import AmiEventList
from bridge.ami.message import encode_message, parse_message
from bridge.calls.events import CallEnded
from bridge.calls.replay import capture_events, replay_bytes
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES, capture_bytes

CALLS = ["queue_answered", "ringall_two_agents", "blind_transfer", "attended_transfer",
         "queue_abandoned", "direct_call", "recording"]


def settings_for(host: str, port: int, db: Path, secret: str = "callbridge"):
    return load_settings(database_url=f"sqlite+aiosqlite:///{db}",
                         ami={"host": host, "port": port, "secret": secret, "ping_interval": 1.0,
                              "ping_timeout": 1.0, "backoff_max": 0.5},
                         http={"port": 0})


async def ended_calls(service: BridgeService, count: int, limit: float = 20.0) -> list[dict]:
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        await service.writer.flush()
        if await service.store.count(live=False) >= count:
            return [c.replay_dict() for c in await service.store.export() if c.ended_at is not None]
        assert asyncio.get_running_loop().time() < deadline, "calls never reached the log"
        await asyncio.sleep(0.05)


async def until(predicate, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 (polls state the simulator does not signal)
            await asyncio.sleep(0.02)


def offline(names: list[str]) -> list[dict]:
    calls = [c for name in names for c in replay_bytes(capture_bytes(name))]
    return [c.replay_dict() for c in sorted(calls, key=lambda c: (c.entered_at, c.call_id))]


async def test_live_run_logs_what_the_offline_replay_gives(tmp_path: Path) -> None:
    async with AmiSimulator([FIXTURES / f"{n}.ami" for n in CALLS], speed=None) as sim:
        service = BridgeService(settings_for(*sim.address, tmp_path / "log.sqlite3"))
        await service.start()
        try:
            logged = await ended_calls(service, len(CALLS))
        finally:
            await service.stop()
    assert logged == offline(CALLS)
    assert sim.actions[1]["Action"] == "CoreShowChannels"  # resync right after login
    # Every feature names the raw events it reads: the inert ones (most of them) skip the
    # model and its subscribers (bridge.calls.pipeline), in the product as in the replay.
    assert len(service.pipeline._raw_subscribers) >= 4  # wallboard, recorder, member log, screen pop
    assert service.pipeline.events_inert > service.pipeline.events_in / 3


async def test_connection_dropped_mid_call_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    events = [m for m in capture_events(capture_bytes("queue_answered"))
              if m.is_event and "ActionID" not in m and m.event != "FullyBooted"]
    connect_at = next(i for i, m in enumerate(events) if m.event == "AgentConnect")
    async with AmiSimulator([FIXTURES / "queue_answered.ami"], speed=None,
                            drop_after_events=connect_at + 1) as sim:
        service = BridgeService(settings_for(*sim.address, tmp_path / "log.sqlite3"))
        await service.start()
        try:
            await until(lambda: sim.logins >= 2)
            sim.drop_after_events = None  # the second session runs to the end
            logged = await ended_calls(service, 1)
            await asyncio.sleep(0.2)
            assert await service.store.count() == 1
        finally:
            await service.stop()
    assert service.client.reconnects >= 1
    assert logged == offline(["queue_answered"])


async def test_call_that_ended_while_bridge_was_down_is_closed_at_restart(tmp_path: Path) -> None:
    db = tmp_path / "log.sqlite3"
    events = [m for m in capture_events(capture_bytes("queue_answered"))
              if m.is_event and "ActionID" not in m and m.event != "FullyBooted"]
    connect_at = next(i for i, m in enumerate(events) if m.event == "AgentConnect")
    async with AmiSimulator([FIXTURES / "queue_answered.ami"], speed=None,
                            drop_after_events=connect_at + 1, resume=False) as sim:
        first = BridgeService(settings_for(*sim.address, db))
        await first.start()
        await until(lambda: any(c.answered_by for c in first.pipeline.tracker.live_calls()))
        await first.stop()  # bridge goes down mid-call; the call is live in the log
    async with AmiSimulator([FIXTURES / "queue_ops.ami"], speed=None) as sim2:  # PBX: no calls now
        second = BridgeService(settings_for(*sim2.address, db))
        await second.start()
        try:
            (closed,) = await ended_calls(second, 1)
        finally:
            await second.stop()
    assert closed["call_id"] == "1795508277.0"
    assert (closed["outcome"], closed["answered_by"]) == ("answered", "101")


async def test_wrong_secret_is_one_clear_line_and_retries(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    async with AmiSimulator([FIXTURES / "queue_ops.ami"], speed=None) as sim:
        service = BridgeService(settings_for(*sim.address, tmp_path / "log.sqlite3", secret="wrong"))
        await service.start()
        try:
            await until(lambda: sim.connections >= 2)  # it keeps retrying with back-off
        finally:
            await service.stop()
    failures = [r for r in caplog.records if "failed: Authentication failed" in r.getMessage()]
    assert failures and all(r.exc_info is None for r in failures)
    assert "retrying in" in failures[0].getMessage()


async def test_resync_is_applied_once_the_events_before_it_are_handled(tmp_path: Path) -> None:
    """A reconnect where no event follows the CoreShowChannels snapshot: the snapshot waits
    only for the events queued before it, then applies at once (the call ended meanwhile,
    and ends at the PBX's next proof of life)."""
    service = BridgeService(settings_for("127.0.0.1", 1, tmp_path / "log.sqlite3"))
    link = service.main
    published: list = []
    service.pipeline.subscribe(published.append)
    events = [m for m in capture_events(capture_bytes("queue_answered"))
              if m.is_event and "ActionID" not in m]
    connect_at = next(i for i, m in enumerate(events) if m.event == "AgentConnect")
    for event in events[:connect_at + 1]:  # first session: the call is up when the link drops
        link._on_event(event)
    assert [c.call_id for c in service.pipeline.tracker.live_calls()] == ["1795508277.0"]

    class Reconnected:  # the PBX after the reconnect: two events queued, then no channels at all
        async def send_list_action(self, action: dict) -> AmiEventList:
            position = link.events_handled + 2 if action["Action"] == "CoreShowChannels" else 0
            return AmiEventList([], None, None, stream_position=position)

    link.client = Reconnected()  # type: ignore[assignment]
    await link.resync_now()  # as the consumer runs it after a login
    stamp = events[connect_at].get("Timestamp")
    queued = [parse_message(f"Event: PeerStatus\r\nPeer: PJSIP/10{i}\r\nPeerStatus: Reachable\r\n"
                            f"Timestamp: {stamp}\r\n", 0.0) for i in (2, 3)]
    link._on_event(queued[0])
    assert service.pipeline.tracker.live_calls(), "applied before the events queued ahead of it"
    link._on_event(queued[1])  # the last one before the snapshot; no event follows it
    # Applied: the call is held for a Hangup that may follow the list, until the PBX
    # speaks of a later moment (here the next Ping reply).
    assert [c.call_id for c in service.pipeline.tracker.live_calls()] == ["1795508277.0"]
    link._alive(float(stamp) + 10.0)
    assert service.pipeline.tracker.live_calls() == []
    assert any(isinstance(e, CallEnded) and e.call_id == "1795508277.0" for e in published)


async def test_ping_replies_reach_the_model_as_proof_of_life(tmp_path: Path) -> None:
    async with AmiSimulator([FIXTURES / "queue_ops.ami"], speed=None) as sim:
        service = BridgeService(settings_for(*sim.address, tmp_path / "log.sqlite3"))
        alive: list[float] = []
        service.pipeline.note_alive = lambda at, pbx=None: alive.append(at)  # type: ignore[method-assign]
        await service.start()
        try:
            await until(lambda: alive, limit=5.0)  # ping_interval is 1 s here
        finally:
            await service.stop()
    assert all(isinstance(at, float) and at > 0 for at in alive)


async def test_a_resync_asked_for_outside_the_event_stream_is_ordered_with_it(tmp_path: Path) -> None:
    """A takeover's (or a follower's) resync runs beside the event consumer. Events read right
    after the CoreShowChannels list are newer than it: the model must get them after the
    snapshot, not before (the snapshot would then end the call they began)."""
    from tests.test_ami_client import FakeAmi, Writer, send  # a scripted AMI over real TCP

    call = [m for m in capture_events(capture_bytes("queue_answered")) if m.is_event and "ActionID" not in m]
    call = call[:next(i for i, m in enumerate(call) if m.event == "QueueCallerJoin") + 1]
    lists = 0

    async def channels(server: FakeAmi, writer: Writer, msg) -> None:
        nonlocal lists
        lists += 1
        send(writer, Response="Success", ActionID=msg["ActionID"], EventList="start")
        send(writer, Event="CoreShowChannelsComplete", ActionID=msg["ActionID"], ListItems="0")
        if lists == 2:  # the call begins right after the PBX made the (empty) list
            writer.write(b"".join(encode_message(m.pairs) for m in call))

    async def queues(server: FakeAmi, writer: Writer, msg) -> None:
        await asyncio.sleep(0.1)  # the events above are handled meanwhile
        send(writer, Response="Success", ActionID=msg["ActionID"], EventList="start")
        send(writer, Event="QueueStatusComplete", ActionID=msg["ActionID"], ListItems="0")

    async with FakeAmi(replies={"CoreShowChannels": channels, "QueueStatus": queues}) as server:
        service = BridgeService(settings_for("127.0.0.1", server.port, tmp_path / "log.sqlite3", "s3cret"))
        link = service.main
        link.client.username = "callbridge"
        await link.start()
        try:
            assert await link.client.wait_ready(3.0)  # the login's resync is done
            assert await link.resync()
            assert lists == 2
            for _ in range(100):  # the events are handled (in order, after the snapshot)
                if link.events_handled >= len(call) + 1:
                    break
                await asyncio.sleep(0.01)
            assert [c.call_id for c in service.pipeline.tracker.live_calls()] == ["1795508277.0"]
        finally:
            await link.stop()
