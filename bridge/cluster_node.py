"""This node's part in a cluster: which PBXes it owns, and how the others follow them.

Per PBX, exactly one node in the cluster is its owner: it holds the PBX's PostgreSQL
advisory lock (cluster.lease). The owner runs the PBX's AMI link, feeds its model, writes
its calls (each write checks the fencing epoch), sends the actions any node asks of the
PBX, and publishes, in order, every AMI event it fed its model to the PBX's Redis stream
(cluster.stream). Every other node reads that stream into the same deterministic model,
so every node holds the same calls, cards and wallboard for its own browsers - a browser
that reconnects to another node gets its cards and the live wallboard at once.

Takeover: the lock is released by PostgreSQL when the owner or its connection dies; a
standby node's waiting lock request is granted (cluster.lease), it reads the owner's stream to its end,
restores the PBX's live calls from the call log, and promotes its hot standby: its own AMI
session, logged in all along, whose events since the dead owner's last publication it
feeds first (cluster.standby: what died unpublished with the owner, and what the PBX said
during the takeover). Then it resyncs (CoreShowChannels, QueueStatus) - published too, so
every follower's model is squared with the PBX. Calls are keyed by Linkedid, so the new
owner's writes continue the same rows: none lost, none duplicated.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.ami.actions import AmiError
from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore, WriteFenced
from bridge.call_log.writer import CallLogWriter
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import CallRecord
from bridge.pbx_link import PbxLink
from cluster.actions import ActionClient, ActionFailed, ActionServer, OwnerUnavailable
from cluster.balance import LeaseGroup
from cluster.lease import Fenced, PbxLease, require_epoch
from cluster.redis_link import connect
from cluster.settings import ClusterSettings
from cluster.standby import HotStandby
from cluster.stream import PbxStreamPublisher, PbxStreamReader
from cluster.stream_entries import StreamEntry

log = logging.getLogger("callbridge.cluster")

_RESYNC_ASK_TIMEOUT = 5.0  # a follower's request that the owner publish the PBX's picture
_ENDED_KEPT = 10_000  # per PBX: calls ended while following, for a takeover
_FOLLOWER_STALE = 15.0  # seconds without a word from the owner's stream: the PBX counts as down
# A takeover waits at most this long for its standby session to hear the last owner's last
# publications (they reach both sessions at about the same time).
_SPLICE_WAIT = 1.0


class _Steps:
    """When each step of a takeover was done, in ms from its start (for its log line)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._done: list[tuple[str, float]] = []

    def done(self, step: str) -> None:
        self._done.append((step, (time.perf_counter() - self._start) * 1000))

    def __str__(self) -> str:
        return ", ".join(f"{step} at {ms:.0f} ms" for step, ms in self._done) or "no step"


class PbxSeat:
    """One PBX as this node sees it: owned (link running, publishing) or followed."""

    def __init__(self, node: ClusterNode, link: PbxLink) -> None:
        self.node, self.link, self.pbx = node, link, link.id
        s = node.settings
        self.lease = PbxLease(node.dsn, self.pbx, s.node_id, check_interval=s.lease_check_interval,
                              check_timeout=s.lease_check_timeout, retry_interval=s.lease_retry_interval,
                              on_acquired=self._acquired, on_lost=self._lost, group=node.leases)
        self.epoch: int | None = None  # while owner: what our writes must still match
        self.publisher: PbxStreamPublisher | None = None
        self.server: ActionServer | None = None
        self.reader: PbxStreamReader | None = None
        # Calls our model ended while following (the owner wrote them, or died before it could):
        # a takeover writes those the call log still holds as live, instead of reviving them.
        self.ended: OrderedDict[str, CallRecord] = OrderedDict()
        self.standby = HotStandby()
        link.on_heard = self.standby.heard
        link.on_heard_raw = self.standby.heard_raw
        link.on_standby_lost = self.standby.session_lost

    @property
    def owned(self) -> bool:
        return self.epoch is not None

    # -- following ------------------------------------------------------------------------

    async def follow(self) -> None:
        self.standby.following_anew()
        if self.node.settings.hot_standby:
            self.link.stand_by(self.node.settings.standby_read_interval)
        self.reader = PbxStreamReader(self.node.redis, self.pbx, on_entry=self._on_entry, on_gap=self._on_gap)
        await self.reader.start()
        self.node.background(self.ask_resync("joined"))

    def _on_entry(self, entry: StreamEntry) -> None:
        if self.owned:
            return  # our own publications (or a fenced ex-owner's): our model has its own truth
        kind, payload = entry.kind, entry.payload
        if kind == "event":
            payload.pbx = self.pbx
            self.link.note_pbx_time(payload)  # a takeover's resync is dated in the PBX's clock
            self.node.pipeline.feed(payload)
            self.standby.published(kind, payload)
        elif kind == "resync":
            for item in (*payload["channels"], *payload["queue_status"]):
                item.pbx = self.pbx
            self.link.apply_snapshot(payload["channels"], payload["queue_status"], float(payload["at"]))
        elif kind == "seen":  # an inert event's trace (CallTracker.touch)
            at, alive, channel = payload
            self.node.pipeline.touch((float(at), bool(alive), channel), self.pbx)
            self.standby.published(kind, payload)
        elif kind == "alive":
            self.link.note_alive_at(float(payload))
        elif kind == "link_lost":
            self.node.pipeline.link_lost(self.pbx)
        elif kind == "shared":  # what the owner alone learnt (ClusterNode.share)
            self.node.told(self.pbx, payload)

    def _on_gap(self, reason: str) -> None:
        log.warning("pbx %s: the event stream has a gap (%s): asking the owner for the PBX's picture",
                    self.pbx, reason)
        self.node.background(self.ask_resync(reason))

    async def ask_resync(self, why: str) -> None:
        if self.owned:
            return
        try:
            await self.node.actions.call(self.pbx, {"op": "resync", "why": why}, timeout=_RESYNC_ASK_TIMEOUT)
        except (OwnerUnavailable, ActionFailed) as exc:
            log.info("pbx %s: no resync from an owner (%s); the next owner's connect resyncs", self.pbx, exc)

    # -- owning ---------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Stop following, after the entries the last owner published that we have not read."""
        reader, self.reader = self.reader, None
        if reader is None:
            return
        await reader.stop()
        if reader.last_id is None:
            return
        try:
            rows = await self.node.redis.xrange(reader.key, min=f"({reader.last_id}", max="+")
        except RedisError as exc:  # the resync after our connect squares the model anyway
            log.warning("pbx %s: cannot read the stream's last entries (%s)", self.pbx, exc)
            return
        for entry_id, fields in rows:  # as the reader would have: stragglers and repeats dropped
            reader.take(entry_id, fields)

    async def _acquired(self, epoch: int) -> None:
        node = self.node
        steps = _Steps()  # the takeover's steps, timed for its log line
        self.link.client.read_promptly()  # what the standby heard must be in before the splice
        await self._drain()
        steps.done("stream drained")
        # Calls the last owner logged as live: those our model ended are written as it saw
        # them; the others (our model may have missed entries) are restored, and the resync
        # after our connect keeps or ends each.
        finished, restored = [], []
        for record in await node.store.live_calls(self.pbx):
            (finished if record.call_id in self.ended else restored).append(record)
        node.pipeline.trackers[self.pbx].restore(restored)
        steps.done(f"{len(restored)} live calls restored")
        self.epoch = epoch
        for record in finished:
            node.writer.submit(self.ended[record.call_id])
        for listener in node.owned_listeners:  # the features take over the last owner's leftovers
            try:
                await listener(self.pbx)
            except Exception:
                log.exception("pbx %s: taking over with %r failed", self.pbx, listener)
        steps.done("features")
        self.publisher = PbxStreamPublisher(node.redis, self.pbx, node=node.settings.node_id)
        await self.publisher.start()
        publish = self.publisher.publish
        # Only a ring goes at once (a card pops on a follower's page); the rest (an inert
        # event's trace, a wallboard figure, a card's later state, a proof of life) may wait
        # `linger` for company: each round trip wakes Redis and every follower, and on a busy
        # machine those wake-ups were what made a ring wait (bench/cluster.py).
        pipeline = node.pipeline
        self.link.on_fed = lambda event: publish("event", event, epoch=epoch, urgent=pipeline.last_rang)
        self.link.on_touched = lambda touch: publish("seen", touch, epoch=epoch, urgent=False)
        self.link.on_resynced = lambda ch, qs, at: publish(
            "resync", {"channels": ch, "queue_status": qs, "at": at}, epoch=epoch)
        self.link.on_alive = lambda at: publish("alive", at, epoch=epoch, urgent=False)
        self.link.on_lost = lambda: publish("link_lost", None, epoch=epoch)
        self.server = ActionServer(node.redis, self.pbx, self._serve)
        await self.server.start()
        if self.link.standing_by:
            missed = await self._missed()
            steps.done("spliced")
            if self.link.take_over(missed):
                steps.done(f"{len(missed)} missed events fed")
                await self.link.resync()  # else its login does
                steps.done("resynced")
        else:
            await self.link.start()
        log.info("pbx %s: this node (%s) owns it now (epoch %d); took over in %s", self.pbx,
                 node.settings.node_id, epoch, steps)

    async def _missed(self) -> list[AmiMessage]:
        """What our standby session heard after the last owner's last publication."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SPLICE_WAIT
        # The owner's last words may not have reached our session yet: look again now and then.
        while (missed := self.standby.missed()) is None and self.link.client.ready and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if missed is None:
            log.warning("pbx %s: the last owner's last publications are not among the %d events our standby "
                        "session holds; the resync alone squares the model", self.pbx, len(self.standby))
        return missed or []

    def _lost(self, reason: str) -> None:
        # Fenced at once: no write, no publication for this PBX from here on.
        was = self.epoch
        self.epoch = None
        self.link.on_fed = self.link.on_touched = self.link.on_resynced = None
        self.link.on_alive = self.link.on_lost = None
        if self.node.settings.hot_standby and not self.node.stopping:
            # The same session goes on, feeding nothing.
            self.link.stand_by(self.node.settings.standby_read_interval)
        (log.info if reason == "stopped" else log.warning)(
            "pbx %s: no longer its owner (epoch %s): %s", self.pbx, was, reason)
        self.node.background(self._step_down())

    async def _step_down(self) -> None:
        if not self.link.standing_by:
            await self.link.stop()
        for part in (self.server, self.publisher):
            if part is not None:
                await part.stop()
        self.server = self.publisher = None
        if not self.node.stopping and self.reader is None:
            await self.follow()

    async def _serve(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request from any node for this PBX (we own it)."""
        op = request.get("op")
        if op == "resync":
            if self.link.ready:  # else the connect to come resyncs (and publishes it)
                await self.link.resync()
            return {}
        if op == "action":
            reply = await self.link.send_action(request["action"], timeout=request.get("timeout"))
            return {"reply": [reply.received_at, reply.pairs]}
        raise ValueError(f"unknown request {op!r}")


class ClusterNode:
    def __init__(self, settings: ClusterSettings, dsn: str, pipeline: CallPipeline,
                 links: dict[str, PbxLink], store: CallLogStore, writer: CallLogWriter,
                 owned_listeners: list[Callable[[str], Awaitable[Any]]] | None = None) -> None:
        if not settings.redis_url:
            raise ValueError("a cluster node needs [cluster] redis_url")
        self.settings, self.dsn, self.pipeline, self.store = settings, dsn, pipeline, store
        # Redis client names allow no spaces nor odd characters: CLIENT LIST shows the node.
        self.redis = connect(settings.redis_url,
                             client_name="callbridge-" + re.sub(r"[^A-Za-z0-9_.-]", "_", settings.node_id))
        self.actions = ActionClient(self.redis, settings.node_id)
        self.leases = LeaseGroup(settings.node_id)  # a grant may go on to a node owning fewer PBXes
        self.seats = {pbx: PbxSeat(self, link) for pbx, link in links.items()}
        self.writer = writer
        pipeline.subscribe(self._on_call_event)
        self.owned_listeners = owned_listeners if owned_listeners is not None else []
        self._shared_handlers: dict[str, Callable[[str, Any], None]] = {}
        self.stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        writer.accepts = self.owns
        writer.guard = self.guard

    def _on_call_event(self, event: DomainEvent) -> None:
        seat = self.seats.get(event.call.pbx)
        if isinstance(event, CallEnded) and seat is not None and not seat.owned:
            seat.ended[event.call_id] = event.call
            if len(seat.ended) > _ENDED_KEPT:
                seat.ended.popitem(last=False)

    def owns(self, pbx: str) -> bool:
        seat = self.seats.get(pbx)
        return seat is not None and seat.owned

    def share(self, pbx: str, topic: str, data: Any, urgent: bool) -> None:
        """Publish what this node, the PBX's owner, alone learnt (web.features.BridgeParts.share)
        to the nodes that follow the PBX; not the owner (fenced, or not yet publishing): nothing."""
        seat = self.seats.get(pbx)
        if seat is None or seat.epoch is None or seat.publisher is None:
            return
        seat.publisher.publish("shared", {"topic": topic, "data": data}, epoch=seat.epoch, urgent=urgent)

    def on_shared(self, topic: str, handler: Callable[[str, Any], None]) -> None:
        self._shared_handlers[topic] = handler

    def told(self, pbx: str, payload: Any) -> None:
        """A follower reads what a PBX's owner shared."""
        topic = payload.get("topic") if isinstance(payload, dict) else None
        handler = self._shared_handlers.get(topic) if isinstance(topic, str) else None
        if handler is None:  # a newer owner's topic this node does not know: nothing to show
            log.debug("pbx %s: shared entry on an unknown topic %r ignored", pbx, topic)
            return
        try:
            handler(pbx, payload.get("data"))
        except Exception:  # one bad entry must not stop the stream
            log.exception("pbx %s: the %s handler failed on a shared entry", pbx, topic)

    async def guard(self, conn: AsyncConnection, pbxes: set[str]) -> None:
        """In the call log's write transaction: every PBX of the batch is still ours."""
        for pbx in sorted(pbxes):
            epoch = self.seats[pbx].epoch if pbx in self.seats else None
            if epoch is None:
                raise WriteFenced(f"this node no longer owns PBX {pbx}")
            try:
                await require_epoch(conn, pbx, epoch)
            except Fenced as exc:
                raise WriteFenced(str(exc)) from None

    async def start(self) -> None:
        for seat in self.seats.values():
            await seat.follow()
            await seat.lease.start()

    async def stop(self) -> None:
        self.stopping = True
        for seat in self.seats.values():
            await seat.lease.stop()  # on_lost: fenced, then the link and publisher stop
            if seat.reader is not None:
                await seat.reader.stop()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2.0)
        await self.redis.aclose()

    def background(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send_action(self, action: dict[str, str], timeout: float | None,  # noqa: ASYNC109
                          pbx: str) -> AmiMessage:
        """Through this node's link if it owns the PBX, else by the PBX's owner."""
        seat = self.seats[pbx]
        if seat.owned:
            return await seat.link.send_action(action, timeout=timeout)
        wait = (timeout or seat.link.settings.action_timeout) + 1.0
        try:
            reply = await self.actions.call(pbx, {"op": "action", "action": dict(action), "timeout": timeout},
                                            timeout=wait)
        except (OwnerUnavailable, ActionFailed) as exc:
            raise AmiError(f"PBX {pbx}: {exc}") from None
        received_at, pairs = reply["reply"]
        return AmiMessage([(k, v) for k, v in pairs], received_at)

    async def redis_answers(self) -> bool:
        try:
            async with asyncio.timeout(1.0):
                return bool(await self.redis.ping())
        except Exception:  # down, refused, timed out: all "no"
            return False

    def pbx_ready(self, pbx: str) -> bool:
        """Owner: logged in to the PBX. Follower: the owner's stream is flowing (its
        heartbeats come every few seconds even when the PBX is quiet)."""
        seat = self.seats[pbx]
        if seat.owned:
            return seat.link.ready
        reader = seat.reader
        last = reader.last_entry_at if reader is not None else None
        return last is not None and time.monotonic() - last < _FOLLOWER_STALE
