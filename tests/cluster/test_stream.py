"""The event stream against a real redis-server: order, exactness, continuity (gaps, stale
epochs, repeats), and Redis going away and coming back with or without its data."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from redis.asyncio import Redis

from bridge.ami.message import AmiMessage, iter_capture
from cluster.redis_link import events_key
from cluster.stream import PbxStreamPublisher, PbxStreamReader
from cluster.stream_entries import (
    StreamEntry,
    batch_fields,
    entry_fields,
    pack_payload,
    parse_entries,
    unpack_payload,
)
from tests.cluster.redis_server import RedisServer, redis_fixture, redis_server_fixture, until  # noqa: F401

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PBX = "pbx-a"


def capture_events() -> list[AmiMessage]:
    return [m for path in sorted(FIXTURES.glob("*.ami")) for m in iter_capture(path.read_bytes())]


def numbered(count: int) -> list[AmiMessage]:
    """`count` real events, each made unique, with awkward arrival times."""
    base = capture_events()
    return [AmiMessage(m.pairs + [("Index", str(i))], 1_700_000_000.123456 + i / 7)
            for i, m in zip(range(count), itertools.cycle(base), strict=False)]


class Collector:
    def __init__(self) -> None:
        self.entries: list[StreamEntry] = []
        self.gaps: list[str] = []

    def entry(self, entry: StreamEntry) -> None:
        self.entries.append(entry)

    def gap(self, reason: str) -> None:
        self.gaps.append(reason)

    def reader(self, redis: Redis, **options: object) -> PbxStreamReader:
        return PbxStreamReader(redis, PBX, on_entry=self.entry, on_gap=self.gap, **options)  # type: ignore[arg-type]

    @property
    def indexes(self) -> list[int]:
        return [int(e.payload["Index"]) for e in self.entries]


def test_payloads_round_trip_exactly() -> None:
    tricky = AmiMessage([("Event", "Newchannel"), ("ChanVariable", "A=1"), ("ChanVariable", "B=2"),
                         ("CallerIDName", 'Иван "Ваня" Петров\\'), ("Empty", ""), ("Output", "x\r\ny")],
                        0.1 + 0.2)
    for message in [tricky, *capture_events()]:
        back = unpack_payload(*pack_payload(message))
        assert back.pairs == message.pairs and back.received_at == message.received_at
    nested = {"at": 1.5, "channels": [tricky, tricky], "note": None}
    back = unpack_payload(*pack_payload(nested))
    assert back["at"] == 1.5 and back["note"] is None
    assert [m.pairs for m in back["channels"]] == [tricky.pairs] * 2
    assert all(m.received_at == tricky.received_at for m in back["channels"])

    # A burst in one Redis entry: events, and JSON payloads with AmiMessages at any depth.
    items = [("event", *pack_payload(tricky)), ("resync", *pack_payload({"channels": [tricky], "at": 2.5})),
             ("shared", *pack_payload({"topic": "caller", "data": {"card": {"n": [1, {"k": None}]}}}))]
    fields = {k.encode(): v.encode() for k, v in batch_fields(4, 10, "n1", items).items()}
    event, resync, shared = parse_entries(b"1-1", fields)
    assert [(e.kind, e.epoch, e.seq, e.node) for e in (event, resync, shared)] == [
        ("event", 4, 10, "n1"), ("resync", 4, 11, "n1"), ("shared", 4, 12, "n1")]
    assert event.payload.pairs == tricky.pairs and event.payload.received_at == tricky.received_at
    assert resync.payload["at"] == 2.5 and [m.pairs for m in resync.payload["channels"]] == [tricky.pairs]
    assert shared.payload == {"topic": "caller", "data": {"card": {"n": [1, {"k": None}]}}}


async def test_ten_thousand_events_arrive_in_order_and_exact_at_two_readers(redis: Redis) -> None:
    events = numbered(10_000)
    first, second = Collector(), Collector()
    readers = [first.reader(redis), second.reader(redis)]
    for reader in readers:
        await reader.start()
    publisher = PbxStreamPublisher(redis, PBX, node="n1")
    await publisher.start()
    for event in events:
        publisher.publish("event", event, epoch=3)
    await until(lambda: len(first.entries) == len(second.entries) == len(events), limit=15)
    await publisher.stop()
    for reader in readers:
        await reader.stop()

    got = first.entries
    assert [e.payload.pairs for e in got] == [e.pairs for e in events]
    assert [e.payload.received_at for e in got] == [e.received_at for e in events]
    assert [(e.epoch, e.seq, e.kind, e.node) for e in got] == [(3, seq, "event", "n1")
                                                               for seq in range(1, 10_001)]
    assert [e.id for e in second.entries] == [e.id for e in got]
    assert first.gaps == second.gaps == []
    assert publisher.published == 10_000 and publisher.dropped == 0
    # Published in one go, they went as bursts: a few Redis entries of many entries each.
    redis_entries = await redis.xlen(events_key("callbridge", PBX))
    assert redis_entries <= 10_000 // publisher.batch_max + 1
    assert len({e.id for e in got}) == redis_entries


async def test_a_damaged_burst_is_skipped_whole_and_shows_as_a_gap(redis: Redis) -> None:
    seen = Collector()
    reader = seen.reader(redis)
    await reader.start()
    key = events_key("callbridge", PBX)
    events = numbered(5)
    good = batch_fields(2, 1, "n1", [("event", *pack_payload(e)) for e in events[:2]])
    await redis.xadd(key, good)
    await redis.xadd(key, {**batch_fields(2, 3, "n1", [("event", *pack_payload(events[2]))]),
                           "items": '[["event","ami",[1.5'})  # cut short
    await redis.xadd(key, entry_fields("event", 2, 4, "n1", events[3]))  # the single form still reads
    await until(lambda: len(seen.entries) == 3)
    assert [(e.seq, e.payload.pairs) for e in seen.entries] == [
        (1, events[0].pairs), (2, events[1].pairs), (4, events[3].pairs)]
    assert reader.damaged == 1 and len(seen.gaps) == 1 and "seq 3..3" in seen.gaps[0]
    await reader.stop()


async def test_a_reader_started_at_the_live_end_sees_only_new_entries(redis: Redis) -> None:
    publisher = PbxStreamPublisher(redis, PBX, node="n1")
    await publisher.start()
    events = numbered(30)
    for event in events[:20]:
        publisher.publish("event", event, epoch=1)
    assert await publisher.flush(5)
    late = Collector()
    reader = late.reader(redis)  # start_at="$"
    await reader.start()
    for event in events[20:]:
        publisher.publish("event", event, epoch=1)
    await until(lambda: len(late.entries) == 10)
    await asyncio.sleep(0.05)  # nothing more trickles in
    assert late.indexes == list(range(20, 30))
    assert late.gaps == []  # continuity checked from the live end's own seq (20)
    await reader.stop()
    await publisher.stop()


async def test_redis_restart_that_lost_unread_entries_is_a_gap_then_reading_goes_on(
        redis: Redis, redis_server: RedisServer) -> None:
    publisher = PbxStreamPublisher(redis, PBX, node="n1", heartbeat_interval=0.1)
    await publisher.start()
    seen = Collector()
    reader = seen.reader(redis, block=0.1)
    await reader.start()
    events = numbered(40)
    for event in events[:10]:
        publisher.publish("event", event, epoch=1)
    await until(lambda: len(seen.entries) == 10)
    await reader.stop()  # this node falls behind ...
    for event in events[10:20]:
        publisher.publish("event", event, epoch=1)
    assert await publisher.flush(5)
    redis_server.restart()  # ... and Redis restarts without the entries it had not read
    await reader.start()
    # Nothing new is published: the publisher's next heartbeat shows the lost tail.
    await until(lambda: seen.gaps)
    assert seen.gaps[0].startswith("seq 11..")  # 11..20, and heartbeats sent meanwhile
    for event in events[20:]:
        publisher.publish("event", event, epoch=1)
    await until(lambda: len(seen.entries) == 30)
    assert seen.indexes == list(range(10)) + list(range(20, 40))
    assert len(seen.gaps) == 1
    await reader.stop()
    await publisher.stop()


async def test_redis_restart_that_lost_nothing_unread_is_no_gap(
        redis: Redis, redis_server: RedisServer) -> None:
    publisher = PbxStreamPublisher(redis, PBX, node="n1", backoff_initial=0.02, backoff_max=0.2)
    await publisher.start()
    seen = Collector()
    reader = seen.reader(redis, block=0.1, backoff_initial=0.02, backoff_max=0.2)
    await reader.start()
    events = numbered(20)
    for event in events[:10]:
        publisher.publish("event", event, epoch=1)
    await until(lambda: len(seen.entries) == 10)
    await asyncio.to_thread(redis_server.restart)
    for event in events[10:]:
        publisher.publish("event", event, epoch=1)
    await until(lambda: len(seen.entries) == 20)
    assert seen.indexes == list(range(20)) and seen.gaps == []
    await reader.stop()
    await publisher.stop()


async def test_a_stream_whose_ids_went_back_is_read_from_its_start(
        redis: Redis, redis_server: RedisServer) -> None:
    """Redis back on a machine whose clock is behind: new ids below the last one read."""
    seen = Collector()
    reader = seen.reader(redis, block=0.05, backoff_initial=0.02, backoff_max=0.2)
    await reader.start()
    events = numbered(4)
    await redis.xadd(events_key("callbridge", PBX), entry_fields("event", 1, 1, "n1", events[0]),
                     id="9999999999999-0")
    await until(lambda: len(seen.entries) == 1)
    await asyncio.to_thread(redis_server.restart)
    for seq, event in enumerate(events[1:], start=2):
        await redis.xadd(events_key("callbridge", PBX), entry_fields("event", 1, seq, "n1", event),
                         id=f"{seq}-0")
    await until(lambda: len(seen.entries) == 4)
    assert seen.indexes == [0, 1, 2, 3] and seen.gaps == []
    await reader.stop()


async def test_the_publisher_keeps_what_is_published_while_redis_is_down(
        redis: Redis, redis_server: RedisServer) -> None:
    publisher = PbxStreamPublisher(redis, PBX, node="n1", backoff_initial=0.02, backoff_max=0.1)
    await publisher.start()
    seen = Collector()
    reader = seen.reader(redis, block=0.1, backoff_initial=0.02, backoff_max=0.1)
    await reader.start()
    events = numbered(300)
    for event in events[:100]:
        publisher.publish("event", event, epoch=2)
    await until(lambda: len(seen.entries) == 100)
    assert await publisher.flush(5)
    redis_server.stop()
    for event in events[100:]:
        publisher.publish("event", event, epoch=2)
    await until(lambda: publisher.redis_down)
    assert publisher.pending == 200
    redis_server.start()
    await until(lambda: len(seen.entries) == 300)
    assert seen.indexes == list(range(300)) and seen.gaps == []
    assert publisher.dropped == 0 and publisher.pending == 0
    await reader.stop()
    await publisher.stop()


async def test_an_overflowing_outage_queue_drops_the_oldest_and_readers_see_the_gap(
        redis: Redis, redis_server: RedisServer) -> None:
    publisher = PbxStreamPublisher(redis, PBX, node="n1", max_queue=50, backoff_initial=0.02,
                                   backoff_max=0.1)
    await publisher.start()
    seen = Collector()
    reader = seen.reader(redis, block=0.1, backoff_initial=0.02, backoff_max=0.1)
    await reader.start()
    events = numbered(110)
    for event in events[:10]:
        publisher.publish("event", event, epoch=1)
    await until(lambda: len(seen.entries) == 10)
    assert await publisher.flush(5)
    redis_server.stop()
    for event in events[10:]:
        publisher.publish("event", event, epoch=1)
    assert publisher.dropped == 50
    redis_server.start()
    await until(lambda: len(seen.entries) == 60)
    assert seen.indexes == list(range(10)) + list(range(60, 110))
    assert seen.gaps == [f"seq 11..60 of epoch 1 missing (next entry {seen.entries[10].id})"]
    await reader.stop()
    await publisher.stop()


async def test_entries_of_an_older_epoch_and_repeats_are_ignored(redis: Redis) -> None:
    seen = Collector()
    reader = seen.reader(redis)
    await reader.start()
    old_owner = PbxStreamPublisher(redis, PBX, node="old")
    new_owner = PbxStreamPublisher(redis, PBX, node="new")
    for publisher in (old_owner, new_owner):
        await publisher.start()
    events = numbered(8)
    old_owner.publish("event", events[0], epoch=4)
    old_owner.publish("event", events[1], epoch=4)
    assert await old_owner.flush(5)
    new_owner.publish("resync", {"channels": [events[2]]}, epoch=5)
    assert await new_owner.flush(5)
    old_owner.publish("event", events[3], epoch=4)  # fenced, but still talking
    assert await old_owner.flush(5)
    key = events_key("callbridge", PBX)
    await redis.xadd(key, entry_fields("resync", 5, 1, "new", {"channels": [events[2]]}))  # a repeat
    new_owner.publish("event", events[4], epoch=5)
    await until(lambda: len(seen.entries) == 4)
    await asyncio.sleep(0.05)
    assert [(e.node, e.epoch, e.seq, e.kind) for e in seen.entries] == [
        ("old", 4, 1, "event"), ("old", 4, 2, "event"), ("new", 5, 1, "resync"), ("new", 5, 2, "event")]
    assert seen.entries[2].payload["channels"][0].pairs == events[2].pairs
    assert reader.stale == 1 and reader.duplicates == 1 and seen.gaps == []
    for publisher in (old_owner, new_owner):
        await publisher.stop()
    await reader.stop()


async def test_a_failing_callback_does_not_stop_the_reader(redis: Redis) -> None:
    got: list[int] = []

    def on_entry(entry: StreamEntry) -> None:
        if entry.seq == 2:
            raise RuntimeError("subscriber bug")
        got.append(entry.seq)

    reader = PbxStreamReader(redis, PBX, on_entry=on_entry, on_gap=lambda reason: None)
    await reader.start()
    publisher = PbxStreamPublisher(redis, PBX, node="n1")
    await publisher.start()
    for event in numbered(3):
        publisher.publish("event", event, epoch=1)
    await until(lambda: got == [1, 3])
    await publisher.stop()
    await reader.stop()


async def test_the_stream_keeps_about_maxlen_entries_however_they_are_bunched(redis: Redis) -> None:
    await redis.config_set("stream-node-max-entries", 10)  # approximate trimming: 10 Redis entries' slack
    key = events_key("callbridge", PBX)
    publisher = PbxStreamPublisher(redis, PBX, node="n1", maxlen=200)
    await publisher.start()
    events = numbered(1000)
    for burst in range(100):  # bursts of 10: one Redis entry each
        for event in events[burst * 10:(burst + 1) * 10]:
            publisher.publish("event", event, epoch=1)
        assert await publisher.flush(5)
    await publisher.stop()
    kept = [e for entry_id, fields in await redis.xrange(key) for e in parse_entries(entry_id, fields)]
    assert 200 <= len(kept) <= 200 + 10 * 10 + 10
    assert [e.seq for e in kept] == list(range(1001 - len(kept), 1001))  # the newest, in order


async def test_entries_nobody_waits_for_go_with_the_next_urgent_one(redis: Redis) -> None:
    # A long linger: what is not urgent stays queued until an urgent entry (or a flush)
    # takes it along, in one round trip and in publish order.
    publisher = PbxStreamPublisher(redis, PBX, node="n1", linger=600.0)
    await publisher.start()
    seen = Collector()
    reader = seen.reader(redis)
    await reader.start()
    events = numbered(6)
    for event in events[:3]:
        publisher.publish("event", event, epoch=1, urgent=False)
    for _ in range(5):  # the writer runs, and keeps them
        await asyncio.sleep(0.01)
    assert publisher.pending == 3 and publisher.round_trips == 0
    publisher.publish("event", events[3], epoch=1)  # urgent: it goes, and they with it
    await until(lambda: len(seen.entries) == 4)
    assert publisher.round_trips == 1 and publisher.pending == 0
    publisher.publish("event", events[4], epoch=1, urgent=False)
    publisher.publish("event", events[5], epoch=1, urgent=False)
    assert await publisher.flush(5)  # a flush (the owner stepping down) takes what waits
    await until(lambda: len(seen.entries) == 6)
    assert seen.indexes == list(range(6)) and seen.gaps == []
    assert publisher.round_trips == 2
    await reader.stop()
    await publisher.stop()
