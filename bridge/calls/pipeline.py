"""One-way data flow: AMI events -> call state -> subscribers.

The same pipeline serves the live AMI connection and the offline replay tool, so a
live day and a replay of the same bytes produce the same calls. Subscribers are plain
callables that must not block (they queue work of their own, like the call-log writer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallRinging, DomainEvent
from bridge.calls.inert_rules import Touch, touch_of
from bridge.calls.resync import resync_calls
from bridge.calls.tracker import CallTracker
from bridge.calls.working import Call

log = logging.getLogger(__name__)

Subscriber = Callable[[DomainEvent], None]


class CallPipeline:
    """One stream of domain events for every PBX: each PBX has its own model (its channel
    names and Uniqueids are its own), picked by the event's `pbx` (set by its link)."""

    def __init__(self, tracker: CallTracker | None = None, *,
                 trackers: Iterable[CallTracker] = ()) -> None:
        self.trackers = {t.pbx: t for t in trackers} or {}
        if tracker is not None or not self.trackers:
            tracker = tracker or CallTracker()
            self.trackers = {tracker.pbx: tracker, **self.trackers}
        self.tracker = next(iter(self.trackers.values()))  # the first PBX's (the only one, usually)
        self._subscribers: list[Subscriber] = []
        self._raw_subscribers: list[Callable[[AmiMessage], None]] = []
        self.events_in = 0
        self.events_inert = 0  # dropped before the model: no rule or raw subscriber reads them
        self._raw_all = False  # a raw subscriber reads every event
        self._raw_names: set[str] = set()
        self._raw_prefixes: tuple[str, ...] = ()
        self.events_by_pbx: dict[str, int] = {}  # for /metrics
        self.current: AmiMessage | None = None  # the event being fed (subscribers may read it)
        # Whether the last event fed rang an operator's phone (a card pops): a cluster's
        # owner publishes those at once; the rest may wait a few ms to go with company.
        self.last_rang = False
        # While `holding`, the subscribers' part of each event waits here, in order: a
        # cluster's owner working through a backlog publishes every event as its model takes
        # it, and lets its own subscribers (four times the model's work) run after (PbxLink).
        self.holding = False
        self.held: list[tuple[AmiMessage | None, list[DomainEvent], bool]] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def subscribe_raw(self, subscriber: Callable[[AmiMessage], None],
                      events: Iterable[str] | None = None) -> None:
        """Also see AMI events, after the call-state model (queue and spy events that are not
        about calls: the wallboard's queue figures, ChanSpy sessions). `events`: the names it
        reads ("Queue*": a prefix); without them it sees every event, and no event counts
        as inert (see `feed`)."""
        self._raw_subscribers.append(subscriber)
        if events is None:
            self._raw_all = True
            return
        for name in events:
            if name.endswith("*"):
                self._raw_prefixes += (name[:-1],)
            else:
                self._raw_names.add(name)

    def feed(self, event: AmiMessage, taken: Callable[[AmiMessage], None] | None = None) -> bool:
        """Feed one event; False if it was inert (CallTracker.is_inert) and no raw subscriber
        reads it: then only its trace (`touch_of`) was kept, and that is all a cluster's owner
        publishes of it (followers `touch`). Else `taken(event)` runs once the model has it,
        before any subscriber: a cluster's owner publishes it then, so a ring reaches the
        other nodes' pages without waiting for this node's cards, call log and wallboard."""
        self.events_in += 1
        tracker = self.trackers.get(event.pbx, self.tracker) if event.pbx else self.tracker
        self.events_by_pbx[tracker.pbx] = self.events_by_pbx.get(tracker.pbx, 0) + 1
        raw_reads = self._raw_all or self._raw_reads(event.event or "")
        if not raw_reads and tracker.is_inert(event):
            self.last_rang = False
            self._touched(tracker, touch_of(event))
            return False
        self.current = event
        try:
            produced = tracker.handle(event)
        except Exception:  # one malformed event must never stop the bridge
            log.exception("call-state model failed on %r; event skipped", event)
            self.last_rang = False
            if taken is not None:
                taken(event)
            return True
        self.last_rang = any(isinstance(e, CallRinging) for e in produced)
        if taken is not None:
            taken(event)
        self._deliver(event, produced, raw=True)
        return True

    def _deliver(self, event: AmiMessage | None, produced: list[DomainEvent], raw: bool) -> None:
        """The subscribers' part of an event (raw: the raw subscribers see it too): now, or
        once `holding` ends; never before what was held ahead of it."""
        if self.holding:
            if produced or raw:
                self.held.append((event, produced, raw))
            return
        self.release()
        self._run_subscribers(event, produced, raw)

    def release(self) -> None:
        """Run the subscribers on what `holding` kept back, in order. Before anything that
        reads their state from outside (a resync, a lost link, the end)."""
        while self.held:
            held, self.held = self.held, []
            for item in held:
                self._run_subscribers(*item)

    def _run_subscribers(self, event: AmiMessage | None, produced: list[DomainEvent], raw: bool) -> None:
        if event is not None:
            self.current = event
        self._publish(produced)
        if not raw or event is None:
            return
        for subscriber in self._raw_subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("raw subscriber %r failed on %s", subscriber, event.event)

    def _raw_reads(self, name: str) -> bool:
        return name in self._raw_names or name.startswith(self._raw_prefixes)

    def feed_all(self, events: Iterable[AmiMessage]) -> None:
        for event in events:
            if event.is_event:
                self.feed(event)

    def live_calls(self) -> list[Call]:
        """Every PBX's live calls."""
        return [call for tracker in self.trackers.values() for call in tracker.live_calls()]

    def _of(self, pbx: str | None) -> CallTracker:
        return self.trackers[pbx] if pbx else self.tracker

    def resync(self, channels: list[AmiMessage], at: float, pbx: str | None = None) -> None:
        """Align a PBX's model with its live channels (after every (re)connect)."""
        self.release()
        tracker = self._of(pbx)
        resync_calls(tracker, channels, at)
        self._publish(tracker.take_events())

    def touch(self, touch: Touch, pbx: str | None = None) -> None:
        """An inert event's trace, as a follower gets it from the PBX's owner (counted as the
        event it stands for, as the owner counted it)."""
        tracker = self._of(pbx)
        self.events_in += 1
        self.events_by_pbx[tracker.pbx] = self.events_by_pbx.get(tracker.pbx, 0) + 1
        self._touched(tracker, touch)

    def _touched(self, tracker: CallTracker, touch: Touch) -> None:
        """An inert event, or its trace: counted, and its time may settle calls a resync held."""
        self.events_inert += 1
        tracker.touch(*touch)
        self._deliver(None, tracker.take_events(), raw=False)

    def note_alive(self, at: float, pbx: str | None = None) -> None:
        """A Ping reply's PBX time (see CallTracker.note_alive)."""
        tracker = self._of(pbx)
        tracker.note_alive(at)
        self._deliver(None, tracker.take_events(), raw=False)  # calls a resync held end here, if any

    def link_lost(self, pbx: str | None = None) -> None:
        """The AMI connection dropped: live calls stay open until the PBX says (resync,
        or a restart seen in FullyBooted); whatever ended meanwhile ends at the last proof
        of life before this moment."""
        self.release()
        self._of(pbx).link_lost()

    def close_all(self) -> None:
        """We lost sight of the PBXes for good (end of a replay): close what is still live,
        each at its last proof of life."""
        self.release()
        for tracker in self.trackers.values():
            tracker.link_lost()
            for call in list(tracker.live_calls()):
                tracker.end_lost(call)
            self._publish(tracker.take_events())

    def _publish(self, produced: list[DomainEvent]) -> None:
        for domain_event in produced:
            for subscriber in self._subscribers:
                try:
                    subscriber(domain_event)
                except Exception:
                    log.exception("subscriber %r failed on %s", subscriber, type(domain_event).__name__)
