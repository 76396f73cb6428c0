"""Each PBX's AMI events, in order, from its owner to every other node: one Redis Stream.

Public API::

    publisher = PbxStreamPublisher(redis, pbx, node="n1", namespace="callbridge", maxlen=50_000)
    await publisher.start()
    publisher.publish("event", ami_message, epoch=7)   # sync, never blocks: from the AMI callback
    publisher.publish("seen", touch, epoch=7, urgent=False)  # may wait `linger` s for company
    publisher.publish("resync", {"at": t, "channels": [msg, ...]}, epoch=7)
    await publisher.flush(within=None) -> bool         # all queued entries are in Redis
    await publisher.stop(flush_timeout=2.0)

    reader = PbxStreamReader(redis, pbx, on_entry=fn, on_gap=fn, start_at="$")
    await reader.start()    # positioned at the live end when Redis answers, else once it does
    await reader.stop()

An entry (cluster.stream_entries) is `kind`, `epoch` (the owner's fencing epoch), `seq`
(1, 2, 3, ... within one epoch), `node` and its payload. The publisher writes what queued
up during one round trip as ONE Redis entry: one XADD, one field parse and one JSON decode
per burst instead of per AMI event, which under load was a fifth of every node's CPU
(bench/cluster.py); readers unpack it into the same entries, in order. Entries nobody waits
for (`urgent=False`: an inert event's trace, a proof of life) wait up to `linger` seconds for
an urgent one to go with: each round trip costs the owner, Redis and every reader a socket
write and a wake-up, the largest single cost of a node in the cluster bench's profiles.

Continuity is proved by (epoch, seq), not by Redis: the reader calls `on_gap(reason)` before
the first entry that follows a hole in the seq of an epoch, whatever made the hole (the
publisher's queue overflowed in a Redis outage, Redis restarted without the entries this
reader had not read yet, the reader lagged past MAXLEN). Entries are still delivered after a
gap; the caller asks the owner for a resync. An entry of an older epoch than the newest seen
(a fenced ex-owner's straggler) and an entry seen twice (a batch re-sent after a connection
broke mid-pipeline) are dropped without a word. Heartbeats (the publisher's, when idle) carry
a seq too, so a lost tail shows as a gap within one heartbeat; they reach no callback.

One publisher per epoch: (epoch, seq) must never be reused. The owner's first entry of an
epoch should be a resync (it has a fresh AMI session); a new epoch is not a gap.

A stream, not pub/sub: pub/sub drops whatever a subscriber misses while its connection is
down, without telling it; a stream keeps about the last `maxlen` entries, so a reader that was
away a moment reads on from its last id and misses nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from itertools import islice
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cluster.redis_link import DEFAULT_NAMESPACE, Outage, end_loop, events_key, text
from cluster.settings import default_node_id
from cluster.stream_entries import StreamEntry, batch_fields, pack_payload, parse_entries, parse_entry

log = logging.getLogger("callbridge.cluster")

HEARTBEAT = "heartbeat"
# A queued entry: (publish index, epoch, seq, kind, encoding, encoded payload).
_Queued = tuple[int, int, int, str, str, str]
_YIELD_EVERY = 64  # entries a reader hands on before it lets other tasks run


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class PbxStreamPublisher:
    """The owner's side: a bounded in-memory queue drained by one writer task, a pipelined
    batch of XADDs at a time (what was queued meanwhile), so order is the publish order and a
    burst costs one round trip per `batch_max` entries. An entry leaves the queue only once
    Redis took it; in an outage the queue waits, and past `max_queue` the oldest are dropped
    (`dropped`), which the readers see as a gap."""

    def __init__(self, redis: Redis, pbx: str, *, node: str | None = None,
                 namespace: str = DEFAULT_NAMESPACE, maxlen: int = 50_000, max_queue: int = 100_000,
                 batch_max: int = 500, heartbeat_interval: float | None = 5.0, linger: float = 0.01,
                 backoff_initial: float = 0.1, backoff_max: float = 5.0) -> None:
        self._redis = redis
        self.pbx = pbx
        self.node = node or default_node_id()
        self.key = events_key(namespace, pbx)
        self.maxlen = maxlen  # entries kept (about: Redis trims whole nodes), not Redis entries
        self._kept: deque[tuple[str, int]] = deque()  # (Redis id, entries in it) of ours, oldest first
        self._kept_total = 0
        self._trim_id: str | None = None  # XADD MINID: None until we wrote `maxlen` entries
        self.max_queue = max_queue
        self.batch_max = batch_max
        self.heartbeat_interval = heartbeat_interval
        self._outage = Outage(f"event stream writer for PBX {pbx}", backoff_initial=backoff_initial,
                              backoff_max=backoff_max)
        self._queue: deque[_Queued] = deque()
        self._index = 0
        self._epoch: int | None = None
        self._seq = 0
        self._wake = asyncio.Event()
        self.linger = linger
        self._hurry = asyncio.Event()  # an urgent entry waits
        self._urgent_through = 0  # the publish index of the last urgent entry
        self.round_trips = 0
        self._written = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0  # entries Redis took
        self.dropped = 0  # entries dropped from a full queue
        self._drop_warned = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    @property
    def redis_down(self) -> bool:
        return self._outage.down

    def publish(self, kind: str, payload: Any, *, epoch: int, urgent: bool = True) -> int:
        """Queue one entry; returns its seq. Encoded now: the payload may change afterwards.
        Not `urgent`: it may wait up to `linger` s, to go with the next urgent one."""
        seq = 1 if epoch != self._epoch else self._seq + 1
        encoding, body = pack_payload(payload)  # raises before any state changes
        self._epoch, self._seq = epoch, seq
        if len(self._queue) >= self.max_queue:
            if not self._drop_warned:  # once until the queue drains again
                self._drop_warned = True
                log.warning("event stream queue of PBX %s full (%d): dropping the oldest entries",
                            self.pbx, self.max_queue)
            self._queue.popleft()
            self.dropped += 1
        self._index += 1
        self._queue.append((self._index, epoch, seq, kind, encoding, body))
        self._wake.set()
        if urgent:
            self._urgent_through = self._index
            self._hurry.set()
        return seq

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"stream-writer-{self.pbx}")

    async def flush(self, within: float | None = None) -> bool:
        """Wait until the queue is empty (in Redis); False if `within` seconds passed first."""
        self._urgent_through = self._index  # nothing lingers now
        self._hurry.set()

        async def drained() -> None:
            while True:
                self._written.clear()
                if not self._queue:
                    return
                await self._written.wait()
        try:
            await asyncio.wait_for(drained(), within)
        except TimeoutError:
            return False
        return True

    async def stop(self, flush_timeout: float = 2.0) -> None:
        if self._task is None:
            return
        if not await self.flush(flush_timeout):
            log.warning("event stream of PBX %s: %d entries not written at stop", self.pbx, len(self._queue))
        self._stopping = True
        await end_loop(self._task)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            if not self._queue:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.heartbeat_interval)
                except TimeoutError:
                    if self._epoch is not None:  # idle: let readers see the tail is complete
                        self.publish(HEARTBEAT, None, epoch=self._epoch)
                continue
            await self._linger()
            batch = list(islice(self._queue, self.batch_max))
            runs = _runs(batch)  # one Redis entry per epoch's run of seqs
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for run in runs:
                        _, epoch, seq = run[0][:3]
                        # Trimmed below our oldest entry within the newest `maxlen`: a Redis
                        # entry holds a burst, so MAXLEN (Redis entries) would not bound it.
                        pipe.xadd(self.key, batch_fields(epoch, seq, self.node, [r[3:] for r in run]),
                                  minid=self._trim_id, approximate=True)
                    ids = await pipe.execute()
                self.round_trips += 1
            except (RedisError, OSError) as exc:
                # The whole batch goes again: what Redis may have taken before the break comes
                # twice, and readers drop the repeats by seq.
                await asyncio.sleep(self._outage.failed(exc))
                continue
            if self._outage.down:
                self._outage.recovered(f"{len(self._queue)} queued, {self.dropped} dropped so far")
            self._note_written(ids, runs)
            last = batch[-1][0]
            while self._queue and self._queue[0][0] <= last:  # overflow may have taken some already
                self._queue.popleft()
            self.published += len(batch)
            if not self._queue:
                self._drop_warned = False
            self._written.set()


    async def _linger(self) -> None:
        """While only entries nobody waits for are queued, let others join them, up to `linger`."""
        urgent_queued = self._queue[0][0] <= self._urgent_through
        if self.linger <= 0 or urgent_queued or len(self._queue) >= self.batch_max:
            return
        self._hurry.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), self.linger)

    def _note_written(self, ids: list[Any], runs: list[list[_Queued]]) -> None:
        for entry_id, run in zip(ids, runs, strict=True):
            self._kept.append((text(entry_id), len(run)))
            self._kept_total += len(run)
        while len(self._kept) > 1 and self._kept_total - self._kept[0][1] >= self.maxlen:
            self._kept_total -= self._kept.popleft()[1]
        if self._kept_total >= self.maxlen:
            self._trim_id = self._kept[0][0]


class PbxStreamReader:
    """A node's side: one task reading the stream (XREAD BLOCK, `count` at a time) and handing
    every entry, in order, to `on_entry` (sync). `start_at`: "$" the live end, "0" everything
    the stream still holds, or a stream id to read after."""

    def __init__(self, redis: Redis, pbx: str, *, on_entry: Callable[[StreamEntry], None],
                 on_gap: Callable[[str], None], start_at: str = "$", namespace: str = DEFAULT_NAMESPACE,
                 count: int = 500, block: float = 1.0, backoff_initial: float = 0.1,
                 backoff_max: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self.pbx = pbx
        self.key = events_key(namespace, pbx)
        self._on_entry = on_entry
        self._on_gap = on_gap
        self.start_at = start_at
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self._clock = clock
        self._outage = Outage(f"event stream reader for PBX {pbx}", backoff_initial=backoff_initial,
                              backoff_max=backoff_max)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_id: str | None = None if start_at == "$" else start_at
        self.epoch: int | None = None  # newest epoch seen
        self.seq: int | None = None  # last seq of that epoch
        self.last_entry_at: float | None = None  # clock() of the last entry of the newest epoch
        self.delivered = self.gaps = self.stale = self.duplicates = self.damaged = 0

    @property
    def redis_down(self) -> bool:
        return self._outage.down

    async def start(self) -> None:
        if self._task is not None:
            return
        if self.last_id is None:
            try:  # positioned now, so whatever is published after start() returns is read
                await self._position_at_end()
            except (RedisError, OSError) as exc:
                log.warning("event stream reader for PBX %s: Redis unavailable at start (%s); "
                            "will start at the live end once it answers", self.pbx, exc)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"stream-reader-{self.pbx}")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stopping = True
        await end_loop(self._task)
        self._task = None

    async def _position_at_end(self) -> None:
        """The live end, and its (epoch, seq) as the baseline, so even the first entry read
        after it is checked for continuity. Resolving "$" once (rather than passing "$" to each
        XREAD) loses nothing published between two reads."""
        rows = await self._redis.xrevrange(self.key, "+", "-", count=1)
        if not rows:
            self.last_id = "0-0"
            return
        top_id, fields = rows[0]
        self.last_id = text(top_id)
        with suppress(KeyError, ValueError, TypeError):
            top = parse_entry(top_id, fields)
            self.epoch, self.seq = top.epoch, top.seq

    async def _check_position(self) -> None:
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

    async def _run(self) -> None:
        while not self._stopping:
            try:
                if self.last_id is None:
                    await self._position_at_end()
                elif self._outage.down:
                    await self._check_position()
                reply = await self._redis.xread({self.key: self.last_id}, count=self.count,
                                                block=self.block_ms)
                rows = _rows_of(reply)
                if not rows:
                    await self._check_position()
            except (RedisError, OSError) as exc:
                await asyncio.sleep(self._outage.failed(exc))
                continue
            if self._stopping:  # not delivered, so not read: a restarted reader reads them again
                return
            self._outage.recovered()
            since_yield = 0
            for entry_id, fields in rows:
                since_yield += self.take(entry_id, fields)
                if since_yield >= _YIELD_EVERY:
                    # Let the sockets take what these entries made (cards) before the next ones.
                    since_yield = 0
                    await asyncio.sleep(0)
                    if self._stopping:
                        return

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


def _runs(batch: list[_Queued]) -> list[list[_Queued]]:
    """The batch cut where seqs do not follow on (a new epoch, or the queue overflowed)."""
    runs: list[list[_Queued]] = []
    for item in batch:
        last = runs[-1][-1] if runs else None
        if last is not None and item[1] == last[1] and item[2] == last[2] + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


def _rows_of(reply: Any) -> list[Any]:
    """XREAD's rows of our one stream: a list of [name, rows] (RESP2) or a dict (RESP3)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [row for rows in reply.values() for row in rows]
    return [row for _name, rows in reply for row in rows]
