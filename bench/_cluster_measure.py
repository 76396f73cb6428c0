"""What bench/cluster.py measures with, apart from the processes it runs.

- `StreamTap`: a reader of the PBXes' Redis streams in the bench's own process: it keeps
  every Redis entry raw. Each event is the AmiMessage the owner fed its model, with the
  owner's `received_at` exactly (cluster.stream), so no product hook is needed to know when
  the ring reached the owner; when Redis took it is the entry id's milliseconds. The streams
  are trimmed (MAXLEN), hence read during the run, but in bulk once a second: a live reader
  here would be a fourth consumer of every entry competing for the same two cores.
- `ring_causes`: the tapped entries through the product's own call model (a CallPipeline
  fed as a follower's is, bridge.cluster_node.PbxSeat._on_entry): which AMI event rang which
  operator's card (CallRinging -> card id "<call_id>:<extension>"), its arrival at the
  owner, the owner's node id (the entry's) and when Redis took it.
- `card_pops`: the browsers' frames matched with those rings, as bench/screenpop_latency.py
  does: a pop is a card's first frame at a browser, or its coming back (ringing or live)
  after it was withdrawn or ended; its latency runs from the arrival at the owner of the
  last ring of that card before the frame came.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench import _stats
from bench._sampling import machine_busy
from bridge.calls.events import CallEnded, CallRinging, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.tracker import CallTracker
from cluster.redis_link import DEFAULT_NAMESPACE, events_key, text
from cluster.stream import HEARTBEAT
from cluster.stream_entries import parse_entries
from screenpop.card_ids import card_id

# (pbx, entry id, fields) as XREAD gave them
TapRow = tuple[str, bytes, dict[bytes, bytes]]
TAP_PERIOD = 1.0  # seconds between the tap's bulk reads


class StreamTap:
    def __init__(self, redis_url: str, pbxes: Iterable[str]) -> None:
        self.redis = Redis.from_url(redis_url)
        self.keys = {events_key(DEFAULT_NAMESPACE, p): p for p in pbxes}
        self.rows: list[TapRow] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Redis is the bench's own, fresh: every entry ever published is still there.
        self._task = asyncio.create_task(self._run(["0-0"] * len(self.keys)))

    async def _run(self, last: list[str | bytes]) -> None:
        positions: dict[str, str | bytes] = dict(zip(self.keys, last, strict=True))
        while True:
            await self.read_all(positions)
            await asyncio.sleep(TAP_PERIOD)

    async def read_all(self, positions: dict[str, str | bytes]) -> None:
        while True:
            reply = await self.redis.xread(positions, count=5000)
            for name, rows in reply or []:
                key = text(name)
                pbx = self.keys[key]
                self.rows.extend((pbx, entry_id, fields) for entry_id, fields in rows)
                if rows:
                    positions[key] = rows[-1][0]
            if not any(len(rows) == 5000 for _name, rows in reply or []):
                return

    async def stream_commands(self) -> dict[str, int]:
        """XADDs and XREADs Redis has served so far: each XADD is an owner's round trip, and
        wakes Redis and every follower blocked in XREAD (this tap's own reads: one a second)."""
        stats = await self.redis.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("xadd", "xread")}

    @property
    def events(self) -> int:
        """AMI events tapped so far (roughly: a burst's item count, read off its JSON)."""
        return sum(_events_in(fields.get(b"items", b"")) or 1 for _pbx, _id, fields in self.rows)

    async def stop(self) -> None:
        if self._task is not None:
            await asyncio.sleep(TAP_PERIOD + 0.3)  # the last bulk read's worth
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.redis.aclose()


def _events_in(items: bytes) -> int:
    return items.count(b'["event",') + items.count(b'["seen",')


@dataclass(frozen=True, slots=True)
class Ring:
    arrived: float  # the ring event's received_at at its owner
    added: float  # when Redis took its XADD: the stream id's milliseconds (Redis's clock is ours)
    owner: str  # node id of the owner that published it
    # Reached its PBX's new owner before that owner had resynced (the takeover is over once
    # it has): heard by its standby session while no node owned the PBX, or held behind the
    # resync, which the new owner's AMI consumer applies before the events that follow it.
    in_takeover: bool = False


@dataclass
class Epoch:
    """One owner's run of a PBX's stream."""

    epoch: int
    node: str
    first_added: float  # when Redis took its first entry (the entry id's milliseconds)
    first_arrival: float | None = None  # received_at of its first and last AMI event
    last_arrival: float | None = None
    first_pbx_time: float | None = None  # the PBX's Timestamp of its first and last event
    last_pbx_time: float | None = None


@dataclass
class StreamFacts:
    causes: dict[str, list[Ring]] = field(default_factory=dict)  # card id -> rings, in order
    rings: dict[str, int] = field(default_factory=dict)  # "<pbx>/<ext>" -> rings
    owner_leg: list[float] = field(default_factory=list)  # every event: owner arrival -> in Redis (ms)
    pbx_behind: list[float] = field(default_factory=list)  # every event: owner arrival - its Timestamp
    entries: dict[str, int] = field(default_factory=dict)  # kind -> entries applied
    events: dict[str, int] = field(default_factory=dict)  # pbx -> AMI events published
    epochs: dict[str, list[Epoch]] = field(default_factory=dict)  # pbx -> its owners' epochs, in order
    dropped: int = 0  # stale or repeated entries, as a follower drops them
    call_seen: dict[str, float] = field(default_factory=dict)  # call id -> its first event's arrival
    # call id -> replay_dict() as a follower that read every published entry would log it
    ended: dict[str, dict[str, Any]] = field(default_factory=dict)


def ring_causes(rows: list[TapRow], pbxes: list[str], operator_pattern: str) -> StreamFacts:
    # One model per PBX, the first without a call-id prefix: as bridge.service builds them.
    pipeline = CallPipeline(trackers=[CallTracker(operator_pattern, pbx=p, id_prefix=f"{p}:" if i else "")
                                      for i, p in enumerate(pbxes)])
    facts = StreamFacts()
    current: list[Ring | None] = [None]

    def on_domain(event: DomainEvent) -> None:
        if isinstance(event, CallEnded):
            facts.ended[event.call_id] = event.call.replay_dict()
        ring = current[0]
        if ring is not None and event.call_id not in facts.call_seen:
            facts.call_seen[event.call_id] = ring.arrived
        if isinstance(event, CallRinging) and ring is not None:
            facts.causes.setdefault(card_id(event.call_id, event.operator), []).append(ring)
            key = f"{event.call.pbx}/{event.operator}"
            facts.rings[key] = facts.rings.get(key, 0) + 1

    pipeline.subscribe(on_domain)
    resynced: dict[tuple[str, int], float] = {}  # (pbx, epoch) -> when Redis took its first resync
    for pbx, entry_id, fields in rows:
        for entry in parse_entries(entry_id, fields):
            if entry.kind == "resync":
                resynced.setdefault((pbx, entry.epoch), int(text(entry_id).split("-", 1)[0]) / 1000)
    seen: dict[str, tuple[int, int]] = {}  # pbx -> (epoch, seq) last applied
    entries = ((pbx, entry_id, entry) for pbx, entry_id, fields in rows
               for entry in parse_entries(entry_id, fields))
    for pbx, entry_id, entry in entries:
        last = seen.get(pbx)
        if last is not None and (entry.epoch, entry.seq) <= last:
            facts.dropped += 1
            continue
        seen[pbx] = (entry.epoch, entry.seq)
        added = int(text(entry_id).split("-", 1)[0]) / 1000
        epochs = facts.epochs.setdefault(pbx, [])
        if not epochs or epochs[-1].epoch != entry.epoch:
            epochs.append(Epoch(entry.epoch, entry.node, added))
        run = epochs[-1]
        facts.entries[entry.kind] = facts.entries.get(entry.kind, 0) + 1
        kind, payload = entry.kind, entry.payload
        if kind == "event":
            if payload.event != "FullyBooted":  # a login's own, not the traffic's
                facts.events[pbx] = facts.events.get(pbx, 0) + 1
            payload.pbx = pbx
            arrived = float(payload.received_at)
            run.first_arrival = arrived if run.first_arrival is None else run.first_arrival
            run.last_arrival = arrived
            if "Timestamp" in payload:
                run.first_pbx_time = run.first_pbx_time or payload.timestamp
                run.last_pbx_time = payload.timestamp
                facts.pbx_behind.append(arrived - payload.timestamp)
            facts.owner_leg.append(added - arrived)
            taking_over = len(epochs) > 1 and arrived < resynced.get((pbx, entry.epoch), math.inf)
            current[0] = Ring(arrived, added, entry.node, taking_over)
            try:
                pipeline.feed(payload)
            finally:
                current[0] = None
        elif kind == "resync":
            for item in (*payload["channels"], *payload["queue_status"]):
                item.pbx = pbx
            pipeline.resync(payload["channels"], float(payload["at"]), pbx)
        elif kind == "seen":  # an inert event's trace: published instead of the event
            facts.events[pbx] = facts.events.get(pbx, 0) + 1
            at, alive, channel = payload
            pipeline.touch((float(at), bool(alive), channel), pbx)
        elif kind == "alive":
            pipeline.note_alive(float(payload), pbx)
        elif kind == "link_lost":
            pipeline.link_lost(pbx)
        elif kind != HEARTBEAT:
            facts.entries["unknown:" + kind] = facts.entries.get("unknown:" + kind, 0) + 1
    return facts


@dataclass(frozen=True, slots=True)
class Browser:
    node: str  # node id it is connected to
    pbx: str
    extension: str


@dataclass(frozen=True, slots=True)
class Pop:
    latency: float  # owner's arrival of the ring -> frame at the browser
    stream_leg: float  # owner's arrival -> Redis took it (ms resolution)
    rest: float  # Redis took it -> frame at the browser
    ring: Ring
    node: str  # the browser's node
    at: float  # frame received
    first: bool  # the card's first showing (else: rung again)
    lookup: str  # the caller's lookup state on that frame


@dataclass
class PopFacts:
    pops: list[Pop] = field(default_factory=list)
    frames: int = 0
    unexplained: int = 0  # pops with no ring of that card before them in the stream
    misrouted: int = 0  # frames of another PBX's or another extension's card
    cards: int = 0


# (received at, node, browser index, card_id, version, state, pbx, operator, caller lookup)
NodeFrameRow = tuple[float, str, int, str, int, str, str, str, str]


def card_pops(rows: list[NodeFrameRow], browsers: dict[tuple[str, int], Browser],
              facts: StreamFacts) -> PopFacts:
    """Every browser process's card frames against the rings of the stream."""
    out = PopFacts(frames=len(rows))
    by_card: dict[tuple[str, int, str], list[tuple[float, str, str]]] = {}
    for t, node, index, cid, _version, state, pbx, operator, lookup in sorted(rows):
        browser = browsers[(node, index)]
        if pbx != browser.pbx or operator != browser.extension:
            out.misrouted += 1
            continue
        by_card.setdefault((node, index, cid), []).append((t, state, lookup))
    out.cards = len(by_card)
    for (node, _index, cid), frames in by_card.items():
        rings = facts.causes.get(cid, [])
        arrivals = [r.arrived for r in rings]
        previous: str | None = None
        for t, state, lookup in frames:
            if previous is None or (previous in ("withdrawn", "after_call") and state in ("ringing", "live")):
                at = bisect.bisect_right(arrivals, t)
                if at:
                    ring = rings[at - 1]
                    out.pops.append(Pop(t - ring.arrived, ring.added - ring.arrived, t - ring.added, ring,
                                        node, t, previous is None, lookup))
                else:
                    out.unexplained += 1
            previous = state
    return out


class Stats(_stats.Stats):
    label_width = 58


# -- CPU: who used it, and who waited for it ---------------------------------------------------


def _sched(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's main thread
    (/proc/PID/schedstat): the second is what a busy machine adds to every latency."""
    try:
        on_cpu, waiting, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process now (the server is shared by the nodes)."""
    out: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if (proc / "comm").read_text().strip() in ("postgres", "postmaster"):
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                out[int(proc.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


class CpuLedger:
    """CPU and run-queue wait of the bench's processes over a window, PostgreSQL's CPU, and the
    machine's: what is left is the kernel's and other work on the machine."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: _sched(pid) for name, pid in pids.items()}
        self.end: dict[str, tuple[float, float] | None] = {}
        self.pg0 = _postgres_cpu()
        self.busy0 = machine_busy()
        self.t0 = time.monotonic()

    def close(self, name: str) -> None:
        """Take `name`'s figures now (it is about to die)."""
        self.end[name] = _sched(self.pids[name])

    def finish(self) -> dict[str, Any]:
        for name, pid in self.pids.items():
            self.end.setdefault(name, _sched(pid))
        procs = {}
        for name in self.pids:
            a, b = self.start.get(name), self.end.get(name)
            if a is not None and b is not None:
                procs[name] = {"cpu": round(b[0] - a[0], 2), "waited": round(b[1] - a[1], 2)}
        pg1 = _postgres_cpu()
        postgres = sum(v - self.pg0.get(pid, 0.0) for pid, v in pg1.items())
        busy = machine_busy() - self.busy0
        ours = sum(p["cpu"] for p in procs.values()) + postgres
        return {"seconds": round(time.monotonic() - self.t0, 1), "processes": procs,
                "postgresql": round(postgres, 1), "machine": round(busy, 1),
                "kernel_and_other_work": round(busy - ours, 1)}
