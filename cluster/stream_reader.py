"""The reading side of the PBXes' event streams (cluster.stream): a reader per PBX, and one
XREAD loop for all of them.

    feed = StreamFeed(redis)                      # one per node
    reader = PbxStreamReader(redis, pbx, on_entry=fn, on_gap=fn, start_at="$", feed=feed)
    await reader.start()    # positioned at the live end when Redis answers, else once it does
    await reader.stop()     # no on_entry after this; last_id says what was read

A `PbxStreamReader` keeps one stream's place (last id, epoch, seq) and proves its continuity
(cluster.stream's docstring: gaps, stragglers, repeats). A `StreamFeed` reads every stream its
readers follow with ONE blocking XREAD and hands each reader its rows, in order. A node that
follows two PBXes thus makes one read where it made two: each XREAD costs the node a task, a
socket write and a wake-up, and Redis a wake-up, which in the cluster bench's profiles cost a
follower as much as handling the entries it read. A reader made without a feed gets a
private one (the same loop, for its stream alone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cluster.redis_link import DEFAULT_NAMESPACE, Outage, end_loop, events_key, text
from cluster.stream import HEARTBEAT
from cluster.stream_entries import StreamEntry, parse_entries, parse_entry

log = logging.getLogger("callbridge.cluster")

_YIELD_EVERY = 64  # entries handed on before the feed lets other tasks run


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class StreamFeed:
    """One task: XREAD BLOCK over the streams of every registered reader, `count` rows per
    stream at a time, each row to its reader's `take`. Adding a reader restarts the read in
    flight (it does not name the new stream); a removed reader gets nothing more, even from
    a read already in flight."""

    def __init__(self, redis: Redis, *, count: int = 500, block: float = 1.0, backoff_initial: float = 0.1,
                 backoff_max: float = 5.0) -> None:
        self._redis = redis
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self._outage = Outage("event stream reader", backoff_initial=backoff_initial, backoff_max=backoff_max)
        self._readers: dict[str, PbxStreamReader] = {}  # stream key -> its reader
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # XREAD round trips that answered

    @property
    def redis_down(self) -> bool:
        return self._outage.down

    async def add(self, reader: PbxStreamReader) -> None:
        self._readers[reader.key] = reader
        await self._end_task()
        self._task = asyncio.create_task(self._run(), name="stream-feed")

    async def remove(self, reader: PbxStreamReader) -> None:
        if self._readers.get(reader.key) is reader:
            del self._readers[reader.key]  # at once: rows of a read in flight are dropped
        if not self._readers:
            await self._end_task()

    async def _end_task(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await end_loop(task)

    async def _run(self) -> None:
        while self._readers:
            readers = list(self._readers.values())
            try:
                for reader in readers:
                    if reader.last_id is None:
                        await reader.position_at_end()
                    elif self._outage.down:
                        await reader.check_position()
                reply = await self._redis.xread({r.key: r.last_id for r in readers},  # type: ignore[misc]
                                                count=self.count, block=self.block_ms)
                rows = _rows_by_key(reply)
                if not rows:
                    for reader in readers:
                        await reader.check_position()
            except (RedisError, OSError) as exc:
                await asyncio.sleep(self._outage.failed(exc))
                continue
            self.reads += 1
            self._outage.recovered()
            since_yield = 0
            for key, key_rows in rows.items():
                for entry_id, fields in key_rows:
                    reader = self._readers.get(key)
                    if reader is None:  # stopped meanwhile: what it did not take, it did not read
                        break
                    since_yield += reader.take(entry_id, fields)
                    if since_yield >= _YIELD_EVERY:
                        # Let the sockets take what these entries made (cards) before the next ones.
                        since_yield = 0
                        await asyncio.sleep(0)


class PbxStreamReader:
    """One PBX's stream as a node follows it: every entry, in order, to `on_entry` (sync),
    read by `feed` (a private one if None). `start_at`: "$" the live end, "0" everything the
    stream still holds, or a stream id to read after."""

    def __init__(self, redis: Redis, pbx: str, *, on_entry: Callable[[StreamEntry], None],
                 on_gap: Callable[[str], None], start_at: str = "$", namespace: str = DEFAULT_NAMESPACE,
                 feed: StreamFeed | None = None, count: int = 500, block: float = 1.0,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self.pbx = pbx
        self.key = events_key(namespace, pbx)
        self._on_entry = on_entry
        self._on_gap = on_gap
        self.start_at = start_at
        self._feed = feed or StreamFeed(redis, count=count, block=block, backoff_initial=backoff_initial,
                                        backoff_max=backoff_max)
        self._clock = clock
        self._started = False
        self.last_id: str | None = None if start_at == "$" else start_at
        self.epoch: int | None = None  # newest epoch seen
        self.seq: int | None = None  # last seq of that epoch
        self.last_entry_at: float | None = None  # clock() of the last entry of the newest epoch
        self.delivered = self.gaps = self.stale = self.duplicates = self.damaged = 0

    @property
    def redis_down(self) -> bool:
        return self._feed.redis_down

    async def start(self) -> None:
        if self._started:
            return
        if self.last_id is None:
            try:  # positioned now, so whatever is published after start() returns is read
                await self.position_at_end()
            except (RedisError, OSError) as exc:
                log.warning("event stream reader for PBX %s: Redis unavailable at start (%s); "
                            "will start at the live end once it answers", self.pbx, exc)
        self._started = True
        await self._feed.add(self)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._feed.remove(self)

    async def position_at_end(self) -> None:
        """The live end, and its (epoch, seq) as the baseline, so even the first entry read
        after it is checked for continuity. Resolving "$" once (rather than passing "$" to each
        XREAD) loses nothing published between two reads."""
        rows = await self._redis.xrevrange(self.key, "+", "-", count=1)
        if not rows:
            self.last_id = "0-0"
            return
        top_id, fields = rows[0]
        self.last_id = text(top_id)
        try:
            top = parse_entry(top_id, fields)
        except (KeyError, ValueError, TypeError):
            return
        self.epoch, self.seq = top.epoch, top.seq

    async def check_position(self) -> None:
        """After an outage, and whenever a read comes back empty: has the stream gone back
        behind us? Redis restarted without it (missing), or with a clock behind ours (its new
        ids are below the last one read, so XREAD after that id would never see them). Then
        the new stream is read from its start; seq tells whether anything was lost."""
        if self.last_id in (None, "0-0"):
            return
        rows = await self._redis.xrevrange(self.key, "+", "-", count=1)
        if rows and _id_key(text(rows[0][0])) >= _id_key(self.last_id):
            return
        log.warning("event stream of PBX %s went back (%s; last read %s): reading it from its start",
                    self.pbx, f"now ends at {text(rows[0][0])}" if rows else "missing", self.last_id)
        self.last_id = "0-0"

    def take(self, entry_id: bytes | str, fields: Mapping[bytes | str, bytes | str]) -> int:
        """Apply one Redis entry (what XREAD or XRANGE gave); how many entries it held."""
        self.last_id = text(entry_id)
        try:
            entries = parse_entries(entry_id, fields)
        except (KeyError, ValueError, TypeError) as exc:
            # Skipped without moving seq on: the next entry shows the hole as a gap.
            self.damaged += 1
            log.warning("event stream of PBX %s: entry %s unreadable (%s: %s); skipped",
                        self.pbx, self.last_id, type(exc).__name__, exc)
            return 0
        for entry in entries:
            self._apply(entry)
        return len(entries)

    def _apply(self, entry: StreamEntry) -> None:
        if self.epoch is not None and entry.epoch < self.epoch:
            self.stale += 1  # a fenced ex-owner's straggler
            return
        if self.epoch is None or entry.epoch > self.epoch:
            if self.epoch is not None and entry.seq != 1:
                self._gap(f"epoch {entry.epoch} began before seq {entry.seq} (entry {entry.id})")
            self.epoch = entry.epoch
        elif self.seq is not None and entry.seq <= self.seq:
            self.duplicates += 1  # a batch re-sent after a broken pipeline
            return
        elif self.seq is not None and entry.seq != self.seq + 1:
            self._gap(f"seq {self.seq + 1}..{entry.seq - 1} of epoch {entry.epoch} missing "
                      f"(next entry {entry.id})")
        self.seq = entry.seq
        self.last_entry_at = self._clock()
        if entry.kind == HEARTBEAT:
            return
        self.delivered += 1
        try:
            self._on_entry(entry)
        except Exception:
            log.exception("event stream of PBX %s: on_entry failed on entry %s", self.pbx, entry.id)

    def _gap(self, reason: str) -> None:
        self.gaps += 1
        log.warning("event stream of PBX %s: gap: %s", self.pbx, reason)
        try:
            self._on_gap(reason)
        except Exception:
            log.exception("event stream of PBX %s: on_gap failed", self.pbx)


def _rows_by_key(reply: Any) -> dict[str, list[Any]]:
    """XREAD's rows per stream key: a list of [name, rows] (RESP2) or a dict (RESP3)."""
    if not reply:
        return {}
    pairs = reply.items() if isinstance(reply, dict) else reply
    return {text(name): list(rows) for name, rows in pairs if rows}
