"""A follower's hot standby for one PBX: what the PBX said on the follower's own AMI session,
kept until the owner's stream shows it was published, so a takeover loses nothing.

Asterisk sends every manager session the same events, in the same order but where threads
raised events microseconds apart (the lab Asterisk swaps e.g. OriginateResponse and Newstate,
Cdr and DeviceStateChange between sessions: tests/live/test_standby_sessions.py). A follower logs in
too (bridge.pbx_link's standby mode) and keeps what it hears without feeding its model, which
follows the owner's stream. When the owner dies, what it read from the PBX but never
published died with it, and the PBX goes on talking during the takeover: both are in this
log. The new owner finds the owner's last publications in it (`missed`) and feeds its model
what came after, then goes on with the same session: no reconnect gap.

What the session hears is kept as it came off the socket, undecoded (bridge.ami's `raw_sink`):
parsing every event of a PBX on every follower cost as much as the rest of the standby. Only
the events a splice search looks at are parsed (and kept parsed), and what a takeover feeds.

Matching is by content, the sessions' positions being unrelated: a published event equals a
heard one pair for pair; an inert event's trace (`touch_of`) equals the heard event's trace.
The last `MARKS` publications must match consecutively, so a repeated event cannot mislead;
failing that, `_despite_swaps` allows swaps of neighbours among them (no further moves: the
resync alone then). An event the owner never published that is identical to one of its
`EARLIER` publications, swapped in among the last ones, would not be fed (rare, not seen).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from itertools import islice, repeat
from typing import Any

from bridge.ami.message import AmiMessage, RawEvent, parse_block
from bridge.calls.inert_rules import touch_of

log = logging.getLogger("callbridge.cluster")

MARKS = 8  # the owner's last publications a splice point must match, in order
EARLIER = 8  # publications before those, kept to tell a swapped-in published event (`_despite_swaps`)
SWAP_REACH = 2  # events a swap may bring into the last publications' run
# Events kept at most: a bound on memory if the owner's stream stalls (then a takeover that
# cannot find its splice point falls back to the resync alone). Normally the log is trimmed
# to the owner's last publications every `trim_every` events.
KEEP = 30_000

# ("event", the event) for an event the owner fed its model (kept, not copied: an entry per
# event, matched only at a trim or a takeover); ("seen", (at, alive, channel)) for the trace
# of an inert one.
Mark = tuple[str, Any]


def mark_matches(mark: Mark, event: AmiMessage) -> bool:
    kind, what = mark
    if kind == "event":
        return event.pairs == what.pairs
    at, alive, channel = what
    heard_at, heard_alive, heard_channel = touch_of(event)
    # An undated event's time is when each session read it: only the channel can match then.
    return heard_channel == channel and heard_alive == alive and (not alive or heard_at == at)


def _may_match(mark: Mark, block: bytes) -> bool:
    """A cheap necessary condition for `mark_matches` on an undecoded event: its first line
    (an event), or its channel's name (an inert event's trace)."""
    kind, what = mark
    if kind == "event":
        key, value = next(iter(what.items()), ("", ""))  # its first pair
        return block.startswith(f"{key}: {value}\r\n".encode())
    channel = what[2]
    return channel is None or channel.encode() in block


class HotStandby:
    def __init__(self, *, keep: int = KEEP, trim_every: int = 2_000) -> None:
        self._heard: deque[AmiMessage | RawEvent] = deque(maxlen=keep)
        self._marks: deque[Mark] = deque(maxlen=MARKS + EARLIER)
        self.swapped_splices = 0  # takeovers spliced past a swap among the last publications
        self._trim_every = trim_every
        self._since_trim = 0

    def __len__(self) -> int:
        return len(self._heard)

    # -- what comes in ---------------------------------------------------------------------

    def heard(self, event: AmiMessage) -> None:
        """An event from our own AMI session (not fed to the model) that came parsed: it
        was queued in the client behind one that must be (see `heard_raw`)."""
        if event.event == "FullyBooted":
            return  # each session's own, at its login: the owner never publishes ours
        self._heard.append(event)
        self._kept(1)

    def published(self, kind: str, payload: Any) -> None:
        """An entry of the owner's stream: an event it fed its model or an inert one's trace."""
        if kind == "event":
            if payload.event == "FullyBooted":
                return  # the owner's session's own (see `heard`)
            self._marks.append(("event", payload))
        elif kind == "seen":
            at, alive, channel = payload
            self._marks.append(("seen", (float(at), bool(alive), channel)))

    def heard_raw(self, arrived: float, blocks: list[bytes]) -> None:
        """A read's run of undecoded events from our own AMI session (bridge.ami's raw_sink):
        kept as they came; the log is trimmed after the whole run, its end then as new as
        our session's (a trim mid-run would look for the owner's latest publications among
        events older than them)."""
        self._heard.extend(zip(repeat(arrived), blocks))
        self._kept(len(blocks))

    def _kept(self, count: int) -> None:
        self._since_trim += count
        if self._since_trim >= self._trim_every:
            self._since_trim = 0
            self._trim()

    def session_lost(self) -> None:
        """Our AMI session dropped: what we heard no longer runs on from what comes next."""
        self._heard.clear()

    def following_anew(self) -> None:
        """A new reader of the owner's stream: earlier publications say nothing about it."""
        self._marks.clear()

    # -- a takeover ------------------------------------------------------------------------

    def splice_point(self, within: int | None = None) -> int | None:
        """Index in the log right after the owner's last publications; None if not there
        (among the last `within` events heard, when given)."""
        marks: Sequence[Mark] = list(self._marks)[-MARKS:]
        heard = self._heard
        if not marks or len(heard) < len(marks):
            return None
        last, depth = marks[-1], len(marks)
        stop = depth - 2 if within is None else max(depth - 2, len(heard) - 1 - within)
        for index in range(len(heard) - 1, stop, -1):  # the latest match wins
            if self._matches(last, index) and all(
                    self._matches(marks[-1 - back], index - back) for back in range(1, depth)):
                return index + 1
        return None

    def _matches(self, mark: Mark, index: int) -> bool:
        item = self._heard[index]
        if isinstance(item, tuple):
            if not _may_match(mark, item[1]):
                return False  # another event: no need to parse it to know
            item = self._heard[index] = parse_block(item[1], item[0])
        return mark_matches(mark, item)

    def _event(self, index: int) -> AmiMessage:
        item = self._heard[index]
        return item if isinstance(item, AmiMessage) else parse_block(item[1], item[0])

    def missed(self) -> list[AmiMessage] | None:
        """What the PBX said after the owner's last publication (to feed, in order), or None
        when that publication is not in the log (too old, or not heard yet)."""
        point = self.splice_point()
        if point is None:
            return self._despite_swaps()
        return [self._event(i) for i in range(point, len(self._heard))]

    def _despite_swaps(self, within: int = 5_000) -> list[AmiMessage] | None:
        """`missed` where the last publications' run in our log has a swap (two sessions may
        get events raised microseconds apart in either order): each of the last `MARKS`
        publications matched to its own heard event, none moved by more than one place, at
        most `SWAP_REACH` other events among them. Those others are what the owner never
        published (swapped in from after its last publication), unless they match one of
        the `EARLIER` publications (swapped in from before)."""
        marks = list(self._marks)
        last, earlier = marks[-MARKS:], marks[:-MARKS]
        heard, depth = self._heard, len(last)
        if not last or len(heard) < depth:
            return None
        for end in range(len(heard) - 1, max(depth - 2, len(heard) - 1 - within), -1):
            if not any(self._matches(mark, end) for mark in last[-2:]):
                continue  # the run ends on the last publication, or the one before it
            start = max(0, end - depth - SWAP_REACH + 1)
            taken: list[int] = []
            for mark in last:  # in publication order, each to the first free event it matches
                free = (i for i in range(start, end + 1) if i not in taken)
                index = next((i for i in free if self._matches(mark, i)), None)
                if index is None:
                    break
                taken.append(index)
            else:
                order = sorted(taken)
                if end not in taken or any(abs(order.index(at) - k) > 1 for k, at in enumerate(taken)):
                    continue
                others = [i for i in range(order[0], end + 1) if i not in taken
                          and not any(self._matches(mark, i) for mark in earlier)]
                self.swapped_splices += 1
                log.info("standby: spliced past a swap among the last owner's last publications "
                         "(%d events it never published among them)", len(others))
                return [self._event(i) for i in (*others, *range(end + 1, len(heard)))]
        return None

    def _trim(self) -> None:
        """Forget what the owner has published, but the events its last marks match. Looked
        for near the end only: a trim is a saving, and a log that lags the owner's stream
        would otherwise be searched whole at every one."""
        point = self.splice_point(within=2 * self._trim_every)
        if point is None:
            return
        drop = max(0, point - len(self._marks) - SWAP_REACH)
        if drop:  # the few kept are copied, rather than the many dropped popped one by one
            self._heard = deque(islice(self._heard, drop, None), maxlen=self._heard.maxlen)
