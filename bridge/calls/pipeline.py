"""One-way data flow: AMI events -> call state -> subscribers.

The same pipeline serves the live AMI connection and the offline replay tool, so a
live day and a replay of the same bytes produce the same calls. Subscribers are plain
callables that must not block (they queue work of their own, like the call-log writer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from bridge.ami.message import AmiMessage
from bridge.calls.events import DomainEvent
from bridge.calls.resync import resync_calls
from bridge.calls.tracker import CallTracker

log = logging.getLogger(__name__)

Subscriber = Callable[[DomainEvent], None]


class CallPipeline:
    def __init__(self, tracker: CallTracker | None = None) -> None:
        self.tracker = tracker or CallTracker()
        self._subscribers: list[Subscriber] = []
        self._raw_subscribers: list[Callable[[AmiMessage], None]] = []
        self.events_in = 0

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def subscribe_raw(self, subscriber: Callable[[AmiMessage], None]) -> None:
        """Also see every AMI event, after the call-state model (queue and spy events
        that are not about calls: the wallboard's queue figures, ChanSpy sessions)."""
        self._raw_subscribers.append(subscriber)

    def feed(self, event: AmiMessage) -> None:
        self.events_in += 1
        try:
            produced = self.tracker.handle(event)
        except Exception:  # one malformed event must never stop the bridge
            log.exception("call-state model failed on %r; event skipped", event)
            return
        self._publish(produced)
        for subscriber in self._raw_subscribers:
            try:
                subscriber(event)
            except Exception:
                log.exception("raw subscriber %r failed on %s", subscriber, event.event)

    def feed_all(self, events: Iterable[AmiMessage]) -> None:
        for event in events:
            if event.is_event:
                self.feed(event)

    def resync(self, channels: list[AmiMessage], at: float) -> None:
        """Align the model with the PBX's live channels (after every (re)connect)."""
        resync_calls(self.tracker, channels, at)
        self._publish(self.tracker.take_events())

    def note_alive(self, at: float) -> None:
        """A Ping reply's PBX time (see CallTracker.note_alive)."""
        self.tracker.note_alive(at)

    def link_lost(self) -> None:
        """The AMI connection dropped: live calls stay open until the PBX says (resync,
        or a restart seen in FullyBooted); whatever ended meanwhile ends at the last proof
        of life before this moment."""
        self.tracker.link_lost()

    def close_all(self) -> None:
        """We lost sight of the PBX for good (end of a replay): close what is still live,
        each at its last proof of life."""
        self.tracker.link_lost()
        for call in list(self.tracker.live_calls()):
            self.tracker.end_lost(call)
        self._publish(self.tracker.take_events())

    def _publish(self, produced: list[DomainEvent]) -> None:
        for domain_event in produced:
            for subscriber in self._subscribers:
                try:
                    subscriber(domain_event)
                except Exception:
                    log.exception("subscriber %r failed on %s", subscriber, type(domain_event).__name__)
