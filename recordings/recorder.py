"""Call recording: the Recorder, which starts and stops MixMonitor per operator leg and
keeps the recordings' rows saved.

Its parts: pause/resume spans in `recordings.pause_control` (NoActiveRecording and
RecordingControlError are re-exported here), one recording's state in
`recordings.live_recording`, the file check after the call in `recordings.after_call_check`.

Wiring (the live bridge; recordings.plugin)::

    recorder = Recorder(settings.recordings, parts.send_action, RecordingStore(call_log_store))
    await recorder.start()                  # after the call log is open; restores live rows
    pipeline.subscribe(recorder.handle)     # domain events (sync, never blocks)
    pipeline.subscribe_raw(recorder.on_ami_event)  # raw MixMonitorMute / MixMonitorStop / Hangup
    ...
    await recorder.stop()

Every action goes to the call's PBX (`send_action(action, pbx=call.pbx)`), every row names
it, and a raw event touches only the recordings of its own PBX (channel names are per PBX).

What drives it:
- `CallAnswered` (the operator's leg `channel`, bridged with the caller): if the policy
  records the call's queue, `MixMonitor Channel=<leg> File=<pbx dir>/YYYY/MM/DD/<call>-
  <operator>-<n>.wav Options=b` is sent on a task. A transfer answers on a new leg, so one
  recording per operator leg, all under the call's id. The date is the call's PBX's (`zones`)
  unless `[recordings] timezone` is set.
- `CallRecordingStarted` (the PBX's MixMonitorStart): the start time of ours, or a
  recording the PBX started by itself (dialplan, another client), adopted and linked.
- Raw `Hangup` / `MixMonitorStop` of a recorded channel: the recording stops (Asterisk
  sends MixMonitorStop only for an explicit stop; otherwise the file ends with the leg).
- Raw `MixMonitorMute` (Direction both): the paused spans, in the PBX's clock. Why raw and
  not a tracker rule: the spans belong to the recording rows kept here, and the call log's
  model need not change. `pause()`/`resume()` also mark the span when the PBX says Success
  (in case no event comes); the event, when it comes, corrects the time.
- `CallEnded`: every recording of the call stops; `check_delay_seconds` later each file is
  checked (exists, not empty; WAV duration read) and the row is final. A missing, empty or
  refused recording is flagged on the call (`status`), and logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallAnswered, CallEnded, CallRecordingStarted, DomainEvent
from bridge.calls.record import DEFAULT_PBX, CallRecord
from recordings.after_call_check import check_file
from recordings.live_recording import LiveRecording, action_outcome, mark_muted, mark_stopped
from recordings.naming import (
    pbx_file,
    recording_relpath,
    relative_to_pbx_root,
    valid_call_id,
    valid_operator,
)
from recordings.pause_control import NoActiveRecording, RecordingControlError, RecordingPauses
from recordings.settings import RecordingSettings
from recordings.store import RecordingInfo, RecordingStore

__all__ = ["RAW_EVENTS", "NoActiveRecording", "Recorder", "RecordingControlError"]

log = logging.getLogger(__name__)

# send_action(action, pbx=ID) -> that PBX's reply (BridgeParts.send_action)
SendAction = Callable[..., Awaitable[Any]]
RAW_EVENTS = ("MixMonitorMute", "MixMonitorStop", "Hangup")
_UNFINISHED = ("starting", "recording", "stopped")


class Recorder(RecordingPauses):
    def __init__(self, settings: RecordingSettings, send_action: SendAction,
                 store: RecordingStore | None = None, zones: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        # PBX id -> its IANA zone: a call's date folder is its PBX's day, unless the recordings
        # have a zone of their own (`[recordings] timezone`). A PBX not in it: settings.zone.
        self.zones: dict[str, tzinfo] = {} if settings.timezone_set else {
            pbx: ZoneInfo(zone) for pbx, zone in (zones or {}).items()}
        self._send = send_action
        self._store = store
        self._calls: dict[str, list[LiveRecording]] = {}  # call id -> its recordings not yet checked
        self._next_seq: dict[str, int] = {}
        self._numbered_calls: set[str] = set()  # calls whose stored numbers were looked up
        self._numbering = asyncio.Lock()
        self._dirty: dict[tuple[str, int], LiveRecording] = {}
        self._wake = asyncio.Event()
        self._saving = False
        self._saver: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clocks: dict[str, tuple[float, float]] = {}  # PBX -> (its time seen, our monotonic then)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the saver; take back recordings left unfinished by the last run."""
        await self.adopt()
        if self._saver is None:
            self._saver = asyncio.create_task(self._save_loop(), name="recordings-saver")

    async def adopt(self, pbx: str | None = None) -> None:
        """Take back the unfinished recordings (of one PBX if given): the last run's, or, when
        this node has just taken the PBX over in a cluster, its last owner's."""
        if self._store is not None:
            taken = []
            for info in await self._store.search(statuses=_UNFINISHED, pbx=pbx, limit=10_000):
                rec = LiveRecording.from_info(info)
                recs = self._calls.setdefault(rec.call_id, [])
                if not any(r.seq == rec.seq for r in recs):
                    recs.append(rec)
                    taken.append(rec.call_id)
            # One query for all their calls: a takeover holds the PBX's events meanwhile.
            calls = await self._store.store.get_many(taken)
            for call_id in dict.fromkeys(taken):
                recs = self._calls[call_id]
                # The call log may know the call ended (we died before checking its files);
                # calls still live are settled by the resync's CallEnded or by their hang-ups.
                call = calls.get(call_id)
                if call is not None and call.ended_at is not None:
                    for rec in recs:
                        mark_stopped(rec, call.ended_at)
                if not any(r.open for r in recs):
                    self._spawn(self._check_later(call_id, 0.0))

    async def stop(self, drain_timeout: float = 5.0) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self._drain(), drain_timeout)
        except TimeoutError:
            log.warning("%d recording rows not saved at stop (database unreachable)", len(self._dirty))
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
            self._saver = None

    async def flush(self) -> None:
        """Wait until every pending action, check and save is done (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._drain()

    async def _drain(self) -> None:
        while self._store is not None and (self._dirty or self._saving):
            if self._saver is None or self._saver.done():
                await self._save_batch()
            else:
                self._wake.set()
                await asyncio.sleep(0.01)

    # -- queries --------------------------------------------------------------------------
    def active(self, call_id: str) -> list[RecordingInfo]:
        return [r.info() for r in self._calls.get(call_id, []) if r.open]

    def pbx_now(self, pbx: str = DEFAULT_PBX) -> float:
        """A PBX's clock: its last timestamp seen, moved on by our elapsed time."""
        clock = self._clocks.get(pbx) or next(iter(self._clocks.values()), None)
        if clock is None:
            return time.time()
        pbx_at, ours = clock
        return pbx_at + (time.monotonic() - ours)

    def _seen(self, at: float, pbx: str) -> None:
        clock = self._clocks.get(pbx)
        if at > 0 and (clock is None or at >= clock[0]):
            self._clocks[pbx] = (at, time.monotonic())

    # -- pipeline subscriber --------------------------------------------------------------
    def handle(self, event: DomainEvent) -> None:
        self._seen(event.at, event.call.pbx)
        if isinstance(event, CallAnswered):
            self._on_answered(event)
        elif isinstance(event, CallRecordingStarted):
            self._on_pbx_start(event)
        elif isinstance(event, CallEnded):
            self._on_ended(event)

    def _on_answered(self, ev: CallAnswered) -> None:
        call = ev.call
        if not self.settings.records_queue(call.queue):
            return
        if not ev.channel:
            log.warning("call %s answered by %s on no known channel: not recorded", call.call_id, ev.operator)
            return
        if any(r.open and r.channel == ev.channel for r in self._calls.get(call.call_id, [])):
            return  # already recording this leg (a resync re-announcing the answer)
        if not valid_call_id(call.call_id) or not valid_operator(ev.operator):
            log.warning("call %r / operator %r are not digits: not recorded (no such text goes into "
                        "a file name)", call.call_id, ev.operator)
            return
        rec = LiveRecording(call_id=call.call_id, seq=0, source="bridge", channel=ev.channel,
                            operator=ev.operator, file=None, path=None, started_at=ev.at,
                            entered_at=call.entered_at, pbx=call.pbx)
        self._calls.setdefault(call.call_id, []).append(rec)
        self._spawn(self._send_start(rec))

    async def _send_start(self, rec: LiveRecording) -> None:
        await self._number(rec)
        when = datetime.fromtimestamp(rec.started_at, self.zones.get(rec.pbx, self.settings.zone))
        rel = recording_relpath(rec.call_id, rec.operator or "", rec.seq, when, self.settings.format)
        rec.file, rec.path = pbx_file(self.settings, rel), rel.as_posix()
        self._touch(rec)
        action = {"Action": "MixMonitor", "Channel": rec.channel, "File": rec.file,
                  "Options": self.settings.mixmonitor_options}
        try:
            result: Any = await self._send(action, pbx=rec.pbx)  # the call's PBX records its channel
        except Exception as exc:  # AmiError and anything else: the recording did not start
            result = exc
        ok, error = action_outcome(result)
        if ok:
            if rec.status == "starting":
                rec.status = "recording"
        elif rec.status in ("starting", "recording"):
            rec.status, rec.error = "failed", f"MixMonitor: {error}"
            rec.stopped_at = rec.stopped_at or rec.started_at
            log.warning("recording of call %s (operator %s) not started: %s",
                        rec.call_id, rec.operator, error)
        self._touch(rec)

    def _on_pbx_start(self, ev: CallRecordingStarted) -> None:
        started = ev.recording
        recs = self._calls.setdefault(ev.call.call_id, [])
        own = next((r for r in recs if r.source == "bridge" and r.open and r.channel == started.channel
                    and abs(started.started_at - r.started_at) < 60), None)
        if own is not None:  # MixMonitorStart of ours: the true start, in the PBX's clock
            own.started_at, own.status = max(own.started_at, started.started_at), "recording"
            self._touch(own)
            return
        rel = relative_to_pbx_root(self.settings, started.file)
        rec = LiveRecording(call_id=ev.call.call_id, seq=0, source="pbx",
                            channel=started.channel, operator=started.operator, file=started.file,
                            path=None if rel is None else rel.as_posix(), started_at=started.started_at,
                            entered_at=ev.call.entered_at, status="recording", pbx=ev.call.pbx)
        recs.append(rec)
        self._spawn(self._number(rec))

    def _on_ended(self, ev: CallEnded) -> None:
        recs = self._calls.get(ev.call.call_id)
        if not recs and ev.call.recordings:
            # Recorded under a node that died before saving the rows (a cluster's takeover):
            # the model saw the PBX's MixMonitorStart, so the rows are made from it now.
            for known in ev.call.recordings:
                self._on_pbx_start(CallRecordingStarted(call=ev.call, at=known.started_at, recording=known))
            recs = self._calls.get(ev.call.call_id)
        if not recs:
            return
        self._reconcile(recs, ev.call)
        for rec in recs:
            mark_stopped(rec, ev.at)
        self._spawn(self._check_later(ev.call.call_id, self.settings.check_delay_seconds))

    def _reconcile(self, recs: list[LiveRecording], call: CallRecord) -> None:
        """What the call log learnt meanwhile: a PBX file named after its start, its stop."""
        for known in call.recordings:
            for rec in recs:
                if rec.channel != known.channel or abs(rec.started_at - known.started_at) > 60:
                    continue
                if rec.source == "pbx" and rec.file is None and known.file:
                    rel = relative_to_pbx_root(self.settings, known.file)
                    rec.file, rec.path = known.file, None if rel is None else rel.as_posix()
                if known.stopped_at is not None:
                    mark_stopped(rec, known.stopped_at)

    # -- raw AMI events -------------------------------------------------------------------
    def on_ami_event(self, event: AmiMessage) -> None:
        name, channel = event.event, event.get("Channel")
        if "Timestamp" in event:
            self._seen(event.timestamp, event.pbx or DEFAULT_PBX)
        if not channel or name not in RAW_EVENTS:
            return
        # Another PBX's channel of the same name is not this one (untagged: the only PBX).
        recs = [r for rs in self._calls.values() for r in rs
                if r.channel == channel and r.open and (not event.pbx or r.pbx == event.pbx)]
        for rec in recs:
            if name == "MixMonitorMute":
                if (event.get("Direction") or "").lower() != "both":
                    continue  # one side muted: still recorded on the other, not a pause
                mark_muted(rec, event.get("State") == "1", event.timestamp, confirmed=True)
            else:
                mark_stopped(rec, event.timestamp)
            self._touch(rec)

    # -- after the call ------------------------------------------------------------------
    async def _check_later(self, call_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        recs = self._calls.get(call_id, [])
        async with self._numbering:  # every recording of the call has its number by now
            pass
        running = [r for r in recs if r.open]  # only a restored, still live call has these
        if running:
            self._calls[call_id] = running
        else:
            self._calls.pop(call_id, None)
            self._next_seq.pop(call_id, None)
            self._numbered_calls.discard(call_id)
        for rec in (r for r in recs if not r.open):
            await check_file(rec, self.settings.directory)
            self._touch(rec)

    # -- bookkeeping ---------------------------------------------------------------------
    async def _number(self, rec: LiveRecording) -> None:
        """The recording's number in its call (1, 2, ...), after the ones already stored: a
        restarted bridge must not reuse a number, hence a file name."""
        async with self._numbering:
            if self._store is not None and rec.call_id not in self._numbered_calls:
                stored = await self._store.max_seq(rec.call_id)
                self._next_seq[rec.call_id] = max(self._next_seq.get(rec.call_id, 1), stored + 1)
                self._numbered_calls.add(rec.call_id)
            rec.seq = self._next_seq.get(rec.call_id, 1)
            self._next_seq[rec.call_id] = rec.seq + 1
        self._touch(rec)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _touch(self, rec: LiveRecording) -> None:
        if self._store is not None and rec.seq:  # not yet numbered: saved once it is
            self._dirty[(rec.call_id, rec.seq)] = rec
            self._wake.set()

    async def _save_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._save_batch():
                await asyncio.sleep(1.0)  # the database is down: try again, keep the rows
                self._wake.set()

    async def _save_batch(self) -> bool:
        assert self._store is not None
        batch, self._dirty = self._dirty, {}
        self._saving = True
        try:
            for key, rec in batch.items():
                try:
                    rec.id = await self._store.save(rec.info())
                except Exception:
                    log.exception("cannot save recording %s/%d; will retry", *key)
                    for k, r in batch.items():
                        self._dirty.setdefault(k, r)
                    return False
            return True
        finally:
            self._saving = False
