"""One PBX's link: its AMI connection feeding its model in the shared call pipeline.

Each PBX has its own connection, resync and health, so one PBX down never disturbs
another. On every (re)connect the link resyncs from CoreShowChannels/QueueStatus so calls
that started or ended while we were away are neither lost nor duplicated. Every event is
tagged with the PBX's id before the pipeline sees it (the pipeline picks that PBX's model).

In a cluster the PBX's owner runs the link (`start`/`stop` follow the lease); `on_fed`,
`on_touched` and `on_resynced` let it publish what it feeds its model. Every other node
keeps a hot standby (`stand_by`): logged in too, each event it hears goes to `on_heard`
and none to the model (which follows the owner's stream); `take_over` promotes that same
session, after feeding what the last owner never published (cluster.standby).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from bridge.ami.actions import AmiError
from bridge.ami.client import AmiClient
from bridge.ami.message import AmiMessage
from bridge.calls.inert_rules import Touch, touch_of
from bridge.calls.pipeline import CallPipeline
from bridge.settings import PbxSettings

log = logging.getLogger("callbridge")

# The most events whose subscribers a cluster's owner holds back while it works through a
# backlog (bridge.calls.pipeline's `holding`): a bound on their delay and on memory.
HELD_MAX = 2_000

# (CoreShowChannels items, QueueStatus items, PBX time, PBX id), after every (re)connect;
# every item carries `.pbx` too (the id says whose lists they are when both are empty).
ResyncListener = Callable[[list[AmiMessage], list[AmiMessage], float, str], None]


class PbxLink:
    def __init__(self, settings: PbxSettings, pipeline: CallPipeline) -> None:
        self.id = settings.id
        self.settings = settings
        self.pipeline = pipeline
        self.client = AmiClient(
            settings.host, settings.port, settings.username, settings.secret.get_secret_value(),
            ping_interval=settings.ping_interval, ping_timeout=settings.ping_timeout,
            action_timeout=settings.action_timeout, backoff_max=settings.backoff_max,
            probe_interval=settings.probe_interval,
        )
        self.client.max_message_bytes = settings.max_message_bytes  # read by each AmiProtocol's framer
        self.queue_status: list[AmiMessage] = []
        self.resync_listeners: list[ResyncListener] = []
        # What the owner fed its model, for the cluster's followers (bridge.cluster_node):
        # each event the model took (before the pipeline's subscribers see it), and the
        # trace of each inert one.
        self.on_fed: Callable[[AmiMessage], None] | None = None
        self.on_touched: Callable[[Touch], None] | None = None
        self.on_resynced: Callable[[list[AmiMessage], list[AmiMessage], float], None] | None = None
        self.on_alive: Callable[[float], None] | None = None
        self.on_lost: Callable[[], None] | None = None
        self._release_due = False  # a `_release` of the subscribers held back is scheduled
        # Hot standby: events heard while following (undecoded as they came, or parsed when
        # they were queued already), and the loss of that session.
        self.on_heard: Callable[[AmiMessage], None] | None = None
        self.on_heard_raw: Callable[[float, list[bytes]], None] | None = None
        self.on_standby_lost: Callable[[], None] | None = None
        self.standing_by = False
        # (PBX timestamp, our clock) of the last event: resync times use the PBX's clock.
        self._last_event: tuple[float, float] | None = None
        # A resync snapshot waits for the events that reached us before it (they sit in
        # the client's queue), so the model sees the PBX's history in its true order.
        self._pending_resync: tuple[list[AmiMessage], int] | None = None
        self.events_handled = 0
        self.running = False
        self.client.on_event(self._on_event)
        self.client.on_ready(self._on_ready)
        self.client.on_disconnect(self._on_disconnect)
        self.client.on_alive(self._alive)

    @property
    def ready(self) -> bool:
        return self.running and self.client.ready

    async def start(self) -> None:
        self.running = True
        await self.client.start()
        log.info("PBX %s: AMI %s:%s", self.id, self.settings.host, self.settings.port)

    async def stop(self) -> None:
        self.running = self.standing_by = False
        self._read_every_event()
        await self.client.stop()
        self.pipeline.release()

    def stand_by(self, read_every: float = 0.0) -> None:
        """Logged in but not feeding the model: every event heard goes to `on_heard`. From
        an active link (a fenced owner) the session stays and stops feeding at once.
        `read_every` > 0: the socket is read that often only (bridge.ami.protocol)."""
        self.running, self.standing_by = False, True
        self._pending_resync = None
        self.pipeline.release()  # what it fed as the owner, its subscribers' part too
        self.client.raw_sink = self._heard_raw
        self.client.lazy_reads = read_every
        self.client.connect()  # idempotent: a running session goes on

    def _read_every_event(self) -> None:
        """Undo `stand_by`'s reading: every event parsed and queued, read as it comes."""
        self.client.raw_sink = None
        self.client.read_promptly()

    def take_over(self, missed: list[AmiMessage]) -> bool:
        """From standby to active on the same session: `missed` (what the PBX said that the
        last owner never published) is fed first, then every event from now on. True when
        the session is up, so the caller resyncs now; else its login will."""
        self.standing_by, self.running = False, True
        self._read_every_event()
        for event in missed:
            event.pbx = self.id
            self._feed(event)
        log.info("PBX %s: standby session taken over (%d events the last owner never published)",
                 self.id, len(missed))
        return self.client.ready

    async def send_action(self, action: dict[str, str],
                          timeout: float | None = None) -> AmiMessage:  # noqa: ASYNC109 (the AMI's own)
        return await self.client.send_action(action, timeout=timeout)

    def note_pbx_time(self, event: AmiMessage) -> None:
        if "Timestamp" in event:  # FullyBooted and list items carry none: our clock is not the PBX's
            self._last_event = (event.timestamp, time.time())

    def note_alive_at(self, at: float) -> None:
        """A proof of life in the PBX's clock (a Ping reply; in a cluster, the owner's)."""
        self._last_event = (at, time.time())
        self.pipeline.note_alive(at, self.id)

    def _on_event(self, event: AmiMessage) -> None:
        self.events_handled += 1  # in step with the client's stream positions, in any mode
        event.pbx = self.id
        if self.standing_by:
            if self.on_heard is not None:
                self.on_heard(event)
            return
        self._feed(event)
        # The last event queued before the snapshot is handled: apply it now, not when
        # (or if) another event arrives.
        if self._pending_resync is not None and self.events_handled >= self._pending_resync[1]:
            self._apply_resync(self._pending_resync[0])

    def _heard_raw(self, arrived: float, blocks: list[bytes]) -> None:
        self.events_handled += len(blocks)  # the client counted them in its stream positions
        if self.on_heard_raw is not None:
            self.on_heard_raw(arrived, blocks)

    def _feed(self, event: AmiMessage) -> None:
        self.note_pbx_time(event)
        pipeline = self.pipeline
        # A cluster's owner publishes an event once its model took it (`on_fed`), before its
        # subscribers run. With more events read behind it (a clump of callers, a takeover's
        # catch-up) those subscribers wait until the backlog is through (`_release`): the
        # rings in it reach the other nodes after the model's work, not after the cards, call
        # log and wallboard of every event ahead of them. Bounded by HELD_MAX.
        pipeline.holding = (self.on_fed is not None and len(pipeline.held) < HELD_MAX
                            and (self.client.backlog > 0 or bool(pipeline.held)))
        try:
            if not pipeline.feed(event, self.on_fed) and self.on_touched is not None:
                self.on_touched(touch_of(event))  # inert: followers need only its trace
        finally:
            pipeline.holding = False
        if pipeline.held and not self._release_due:
            self._release_due = True
            # After the callbacks already due, the stream's writer among them (its XADD first).
            asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        held = self.pipeline.held
        if held and self.client.backlog and len(held) < HELD_MAX:
            asyncio.get_running_loop().call_soon(self._release)  # the backlog is not through yet
            return
        self._release_due = False
        self.pipeline.release()

    async def _on_ready(self) -> None:
        if not self.standing_by:  # a standby's model follows the owner's stream
            await self.resync_now()

    def pbx_now(self) -> float:
        """Resync time in the PBX's clock: its last Timestamp moved on by our elapsed time."""
        if self._last_event is None:
            return time.time()
        pbx_at, our_at = self._last_event
        return pbx_at + (time.time() - our_at)

    async def resync(self) -> bool:
        """A resync asked for from outside the event stream (a takeover, a follower's request):
        run in the client's event consumer, as after a login, so no event read after the
        snapshot reaches the model before it (the snapshot would undo it: a call that had just
        begun ended as lost). False if the session ended first (its next login resyncs)."""
        return await self.client.in_order(self.resync_now)

    async def resync_now(self) -> None:
        """Resync from the PBX's lists; run in the event consumer (`_on_ready`, `resync`)."""
        try:
            channels = await self.client.send_list_action({"Action": "CoreShowChannels"})
            self.queue_status = list(await self.client.send_list_action({"Action": "QueueStatus"}))
        except AmiError as exc:
            log.warning("PBX %s: resync after connect failed: %s; live state may lag until the next one",
                        self.id, exc)
            return
        for item in (*channels, *self.queue_status):
            item.pbx = self.id
        # The snapshot is the PBX right after the events dispatched before its reply;
        # those still queued behind this callback must reach the model first.
        if channels.stream_position > self.events_handled:
            self._pending_resync = (list(channels), channels.stream_position)
        else:
            self._apply_resync(list(channels))

    def _apply_resync(self, channels: list[AmiMessage]) -> None:
        self._pending_resync = None
        at = self.pbx_now()
        if self.on_resynced is not None:
            self.on_resynced(channels, self.queue_status, at)
        self.apply_snapshot(channels, self.queue_status, at)

    def apply_snapshot(self, channels: list[AmiMessage], queue_status: list[AmiMessage], at: float) -> None:
        """The PBX's live picture (ours after a connect, or the owner's in a cluster)."""
        tracker = self.pipeline.trackers[self.id]
        before = len(tracker.live_calls())
        self.pipeline.resync(channels, at, self.id)
        after = len(tracker.live_calls()) - tracker.held_lost
        self.queue_status = queue_status
        for listener in self.resync_listeners:
            try:
                listener(channels, queue_status, at, self.id)
            except Exception:
                log.exception("resync listener %r failed", listener)
        log.info("PBX %s: resynced: %d live channels, %d live calls (was %d; %d gone, closed at the "
                 "PBX's next word unless their Hangup follows), %d queue entries",
                 self.id, len(channels), after, before, tracker.held_lost, len(queue_status))

    def _alive(self, at: float) -> None:
        if self.standing_by:
            return  # the owner's proofs of life reach the model through its stream
        self.note_alive_at(at)
        if self.on_alive is not None:
            self.on_alive(at)

    def _on_disconnect(self, reason: str) -> None:
        if reason == "client stopped":
            return  # our own shutdown, not a lost PBX
        if self.standing_by:
            if self.on_standby_lost is not None:
                self.on_standby_lost()
            log.info("PBX %s: standby session lost (%s); reconnecting", self.id, reason)
            return
        # Calls that end during the outage end at the PBX's last proof of life before it.
        self.pipeline.link_lost(self.id)
        if self.on_lost is not None:
            self.on_lost()
        log.warning("PBX %s: lost the PBX (%s); calls stay open until the resync after reconnecting",
                    self.id, reason)
