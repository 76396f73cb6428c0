"""One XREAD for every stream a node follows (cluster.stream_reader.StreamFeed), against a
real redis-server: each reader gets its own stream, in order; one read serves both when
both have entries; a stopped reader gets nothing more; a reader added to a running feed is
read at once, not after the read in flight times out."""

from __future__ import annotations

from redis.asyncio import Redis

from cluster.stream import PbxStreamPublisher
from cluster.stream_entries import StreamEntry
from cluster.stream_reader import PbxStreamReader, StreamFeed
from tests.cluster.redis_server import redis_fixture, redis_server_fixture, until  # noqa: F401
from tests.cluster.test_stream import numbered


class Seen:
    def __init__(self) -> None:
        self.entries: list[StreamEntry] = []

    def reader(self, redis: Redis, pbx: str, feed: StreamFeed, start_at: str = "$") -> PbxStreamReader:
        return PbxStreamReader(redis, pbx, on_entry=self.entries.append, on_gap=lambda reason: None,
                               start_at=start_at, feed=feed)

    @property
    def indexes(self) -> list[int]:
        return [int(e.payload["Index"]) for e in self.entries]


async def publish(redis: Redis, pbx: str, indexes: range, epoch: int = 1) -> None:
    """Each publisher is a new owner: a new epoch (its seqs start at 1 again)."""
    publisher = PbxStreamPublisher(redis, pbx, node="n1", linger=0)
    await publisher.start()
    events = numbered(indexes.stop)
    for i in indexes:
        publisher.publish("event", events[i], epoch=epoch)
    await publisher.stop()  # flushed: all of them are in Redis


async def test_one_read_brings_both_pbxes_entries_each_to_its_own_reader(redis: Redis) -> None:
    await publish(redis, "main", range(0, 300))
    await publish(redis, "east", range(0, 200))
    feed = StreamFeed(redis, count=1000)
    main, east = Seen(), Seen()
    readers = [main.reader(redis, "main", feed, start_at="0"), east.reader(redis, "east", feed, start_at="0")]
    for reader in readers:
        await reader.start()
    try:
        await until(lambda: len(main.entries) == 300 and len(east.entries) == 200)
        assert main.indexes == list(range(300)) and east.indexes == list(range(200))
        assert [e.seq for e in main.entries] == list(range(1, 301))
        assert feed.reads == 1  # both streams in one XREAD
    finally:
        for reader in readers:
            await reader.stop()


async def test_a_stopped_reader_gets_nothing_more_and_the_other_reads_on(redis: Redis) -> None:
    feed = StreamFeed(redis)
    main, east = Seen(), Seen()
    main_reader, east_reader = main.reader(redis, "main", feed), east.reader(redis, "east", feed)
    await main_reader.start()
    await east_reader.start()
    try:
        await publish(redis, "main", range(0, 50))
        await publish(redis, "east", range(0, 50))
        await until(lambda: len(main.entries) == len(east.entries) == 50)
        await main_reader.stop()
        stopped_at = main_reader.last_id
        await publish(redis, "main", range(50, 80), epoch=2)
        await publish(redis, "east", range(50, 80), epoch=2)
        await until(lambda: len(east.entries) == 80)
        assert east.indexes == list(range(80))
        assert main.indexes == list(range(50)) and main_reader.last_id == stopped_at
        # What it did not read is still there after its last id (a takeover drains it so).
        rest = await redis.xrange(main_reader.key, min=f"({stopped_at}", max="+")
        assert rest
    finally:
        await main_reader.stop()
        await east_reader.stop()


async def test_a_reader_added_to_a_running_feed_is_read_at_once(redis: Redis) -> None:
    feed = StreamFeed(redis, block=30.0)  # a read in flight would wait that long for "main"
    main, east = Seen(), Seen()
    main_reader = main.reader(redis, "main", feed)
    await main_reader.start()
    east_reader = east.reader(redis, "east", feed)
    try:
        await until(lambda: feed.reads == 0 and feed._task is not None)  # noqa: SLF001
        await east_reader.start()
        await publish(redis, "east", range(0, 5))
        await until(lambda: len(east.entries) == 5, limit=5.0)
        assert east.indexes == list(range(5)) and main.entries == []
    finally:
        await main_reader.stop()
        await east_reader.stop()
