"""What `AmiSimulator` replays: a capture's unsolicited events with their original bytes,
the boot of the Asterisk that recorded it, and a replay session's position and PBX state.

Kept apart from the TCP server (`bridge.simulator.server`), which re-exports these names.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridge.ami.message import BANNER_PREFIX, AmiMessage, encode_message, iter_capture, parse_message
from bridge.simulator.actions import PbxState
from bridge.simulator.relabel import relabel, shift_times

_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class CaptureEvent:
    raw: bytes  # the exact bytes from the capture, blank line included
    timestamp: float | None
    capture: int  # which capture of the list it came from
    parsed: AmiMessage | None = field(default=None, compare=False, repr=False)

    @property
    def message(self) -> AmiMessage:
        """`raw` parsed. A capture's own events keep only their bytes and are parsed when
        replayed: a long capture's parsed headers would cost memory, and every full GC pass
        would walk them all (0.4 s for 125,000 events, in the middle of a paced replay)."""
        return _parse(self.raw) if self.parsed is None else self.parsed

    def with_message(self) -> CaptureEvent:
        """This event with its message parsed once, for all who read it as it goes out."""
        return self if self.parsed is not None else _parsed(self.raw, self.timestamp, self.capture)


@dataclass(frozen=True)
class Boot:
    """When the recording Asterisk started and last reloaded, in its own (recorded) clock.

    A capture's `FullyBooted` says `Uptime`/`LastReload` at login; the login's time is its
    first `Timestamp` (SuccessfulAuth). A login later in the replay reports the uptime then,
    as the real PBX would: a restarted PBX says `Uptime: 0`, a running one keeps counting.
    """

    started: float
    reloaded: float

    def shifted(self, offset: float) -> Boot:
        return Boot(self.started + offset, self.reloaded + offset)


def read_capture(capture: Path | str | bytes) -> bytes:
    return capture if isinstance(capture, bytes) else Path(capture).read_bytes()


def split_capture(data: bytes) -> list[tuple[bytes, AmiMessage]]:
    """Every message of a raw capture with its original bytes (banner skipped).

    `ami_message.iter_capture` only yields parsed messages; replay needs the bytes.
    """
    return list(_split(data))


def _split(data: bytes) -> Iterator[tuple[bytes, AmiMessage]]:
    start = data.index(b"\r\n") + 2 if data.startswith(BANNER_PREFIX) else 0
    while (end := data.find(_END, start)) >= 0:
        if data[start:end].strip():
            yield data[start : end + 4], parse_message(data[start:end].decode("utf-8", "replace"), 0.0)
        start = end + 4


def is_unsolicited(message: AmiMessage) -> bool:
    """An event the PBX pushed on its own (not a reply, list item or the login's FullyBooted)."""
    return message.is_event and "ActionID" not in message and message.event != "FullyBooted"


def load_events(captures: Sequence[Path | str | bytes]) -> list[CaptureEvent]:
    events = []
    for index, capture in enumerate(captures):
        for raw, message in _split(read_capture(capture)):  # one parsed at a time
            if is_unsolicited(message):
                stamp = message.get("Timestamp")
                events.append(CaptureEvent(raw, float(stamp) if stamp else None, index))
    return events


def recorded_boot(data: bytes) -> Boot | None:
    """The boot behind a capture, from its FullyBooted; None when it has none (synthetic)."""
    booted: AmiMessage | None = None
    if b"FullyBooted" not in data:
        return None  # not parsed for nothing (a bench's traffic: 100,000s of events)
    for message in iter_capture(data):
        if booted is None and message.event == "FullyBooted":
            booted = message
        elif booted is not None and (stamp := message.get("Timestamp")):
            with contextlib.suppress(ValueError):
                return Boot(float(stamp) - float(booted.get("Uptime") or 0),
                            float(stamp) - float(booted.get("LastReload") or 0))
    return None


class ReplaySession:
    """A position in the replay and the PBX state it has built so far.

    `run` is the PBX run (boot) it belongs to, `pass_no` the relabelling pass of its first
    event (both 0 unless the simulator serves one capture per connection).

    Times: by default pass N is moved N * `pass_span` on (its Timestamps only). With `now`
    (a clock), every time a message states is moved so that each capture of each pass
    starts at `now()` when its first event goes out (whole seconds; see
    `relabel.shift_times`): the PBX speaks in the present, as a live one would.
    """

    def __init__(self, events: list[CaptureEvent], loop: bool, rate: float, *,
                 boots: Sequence[Boot | None] = (), run: int = 0, pass_no: int = 0,
                 pass_span: float = 0.0, now: Callable[[], float] | None = None) -> None:
        self.events, self.loop = events, loop
        self.boots, self.run, self.pass_no, self.pass_span = boots, run, pass_no, pass_span
        self.now = now
        self._offsets: dict[tuple[int, int], float] = {}  # (pass, capture) -> seconds moved
        self._firsts: dict[int, float] = {}  # capture -> its first Timestamp
        for e in events:
            if e.timestamp is not None:
                self._firsts.setdefault(e.capture, e.timestamp)
        first = next(((e.timestamp, e.capture) for e in events if e.timestamp is not None), None)
        start = None if first is None else first[0] + self.offset(pass_no, first[1])
        # Only Newchannels count (state.Counters): the others are not parsed for it.
        self.state = PbxState(start, rate, used=(e.message for e in events if b"Newchannel" in e.raw))
        self.position = 0  # counts on across loops
        self.last: CaptureEvent | None = None  # last event replayed, to pace the next one
        self.dead = False  # its PBX died: never resumed by a later login

    @property
    def finished(self) -> bool:
        return not self.events or (not self.loop and self.position >= len(self.events))

    def next_event(self) -> CaptureEvent:
        return self.events[self.position % len(self.events)]

    def next_pass(self) -> int:
        """The relabelling pass of the next event (0: the capture's own ids and times)."""
        return self.pass_no + self.position // len(self.events)

    def offset(self, pass_no: int, capture: int) -> float:
        """Seconds the times of `capture` in pass `pass_no` are moved by."""
        if self.now is None:
            return pass_no * self.pass_span
        key = (pass_no, capture)
        if key not in self._offsets:  # taken when the segment's first event goes out
            now = self.now()
            self._offsets[key] = math.floor(now - self._firsts.get(capture, now))
        return self._offsets[key]

    def relabelled_next(self) -> CaptureEvent:
        item = self.next_event()
        pass_no = self.next_pass()
        if self.now is not None:
            item = shifted(item, pass_no, int(self.offset(pass_no, item.capture)))
        elif pass_no:
            item = relabelled(item, pass_no, pass_no * self.pass_span)
        return self._supervisor_kept(item.with_message())

    def _supervisor_kept(self, item: CaptureEvent) -> CaptureEvent:
        """A queue member a supervisor's action changed keeps his change: the recorded
        QueueMember* events about it are said as this PBX would (PbxCore.member_event_kept)."""
        kept = self.state.member_event_kept(item.message)
        if kept is None:
            return item
        return _parsed(encode_message(kept), item.timestamp, item.capture)

    def boot(self) -> Boot | None:
        """The boot of the PBX this session is at: the one of its next (or last) event."""
        if not self.events:
            return None
        ahead = not self.finished
        item = self.next_event() if ahead else self.events[-1]
        boot = self.boots[item.capture] if item.capture < len(self.boots) else None
        if boot is None:
            return None
        passes = self.next_pass() if ahead else self.pass_no + (self.position - 1) // len(self.events)
        return boot.shifted(self.offset(passes, item.capture))


def _parse(raw: bytes) -> AmiMessage:
    return parse_message(raw[:-4].decode("utf-8", "replace"), 0.0)


def _parsed(raw: bytes, stamp: float | None, capture: int) -> CaptureEvent:
    return CaptureEvent(raw, stamp, capture, _parse(raw))


def relabelled(item: CaptureEvent, pass_no: int, offset: float) -> CaptureEvent:
    raw = relabel(item.raw, pass_no, offset)
    return _parsed(raw, None if item.timestamp is None else item.timestamp + offset, item.capture)


def shifted(item: CaptureEvent, pass_no: int, seconds: int) -> CaptureEvent:
    """`item` for pass `pass_no` (fresh ids after the first), every time moved `seconds`."""
    if not pass_no and not seconds:
        return item
    raw = shift_times(relabel(item.raw, pass_no) if pass_no else item.raw, seconds)
    return _parsed(raw, None if item.timestamp is None else item.timestamp + seconds, item.capture)


def without_fields(item: CaptureEvent, prefixes: Sequence[str]) -> CaptureEvent:
    """`item` with every header whose name starts with one of `prefixes` left out (the
    others keep their bytes and order): a shape another Asterisk version or situation sends."""
    lines = item.raw[:-4].split(b"\r\n")
    wanted = tuple(p.encode() for p in prefixes)
    kept = [line for line in lines if not line.split(b":", 1)[0].startswith(wanted)]
    if len(kept) == len(lines):
        return item
    return _parsed(b"\r\n".join(kept) + _END, item.timestamp, item.capture)
