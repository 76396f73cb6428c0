"""The recorder against the AMI simulator (real AmiClient + pipeline), on the captures:
MixMonitor on the answering operator leg, per-operator recordings across transfers,
pause/resume (MixMonitorMute) with stored spans, file checks after the call."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.ami.client import AmiClient
from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.call_log.writer import CallLogWriter
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.simulator.server import AmiSimulator
from recordings.naming import resolve_under
from recordings.recorder import Recorder
from recordings.settings import RecordingSettings
from recordings.store import RecordingInfo, RecordingStore
from tests.capture_facts import FIXTURES
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures

PBX_DIR = "/var/spool/asterisk/callbridge"
def write_wav(path: Path, seconds: float, rate: int = 8000) -> bytes:
    """A real 16-bit mono WAV with a sawtooth in it; returns the file's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytes((i * 7) % 256 for i in range(int(seconds * rate) * 2))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path.read_bytes()


def settings_for(tmp_path: Path, **changes: object) -> RecordingSettings:
    values: dict[str, object] = {"policy": "all", "directory": tmp_path / "rec", "pbx_directory": PBX_DIR,
                                 "check_delay_seconds": 0.05}
    return RecordingSettings(**(values | changes))


async def until(predicate: Callable[[], object], within: float = 8.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (polls state nothing signals)
            await asyncio.sleep(0.01)


@dataclass
class Harness:
    sim: AmiSimulator
    recorder: Recorder
    store: RecordingStore
    writer: CallLogWriter
    events: list[DomainEvent] = field(default_factory=list)

    def ended(self) -> list[CallEnded]:
        return [e for e in self.events if isinstance(e, CallEnded)]

    async def finish(self, calls: int = 1) -> None:
        await until(lambda: len(self.ended()) >= calls)
        await self.writer.flush()
        await self.recorder.flush()

    def mixmonitors(self) -> list[AmiMessage]:
        return [a for a in self.sim.actions if a.get("Action") == "MixMonitor"]


@asynccontextmanager
async def bridge(capture: str, settings: RecordingSettings, store: CallLogStore,
                 speed: float | None = 8.0) -> AsyncIterator[Harness]:
    async with AmiSimulator([FIXTURES / f"{capture}.ami"], speed=speed) as sim:
        client = AmiClient(*sim.address, "callbridge", "callbridge", action_timeout=2.0,
                           backoff_initial=0.05, fully_booted_timeout=1.0)
        pipeline = CallPipeline()
        recordings = RecordingStore(store)
        async def send(action: dict[str, str], pbx: str | None = None) -> AmiMessage:
            return await client.send_action(action)  # the one PBX (BridgeParts.send_action routes by pbx)

        recorder = Recorder(settings, send, recordings)  # what the lead wires
        writer = CallLogWriter(store, max_delay=0.01)
        harness = Harness(sim, recorder, recordings, writer)
        await writer.start()
        await recorder.start()
        pipeline.subscribe(writer.handle)
        pipeline.subscribe(recorder.handle)
        pipeline.subscribe(harness.events.append)
        pipeline.subscribe_raw(recorder.on_ami_event)
        client.on_event(pipeline.feed)
        await client.start()
        try:
            yield harness
        finally:
            await client.stop()
            await recorder.stop()
            await writer.stop()


async def test_mixmonitor_on_the_answering_leg_with_a_bridge_chosen_file(store: CallLogStore,
                                                                          tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    async with bridge("queue_answered", settings, store) as h:
        action = await h.sim.wait_for_action("MixMonitor")
        rel = "2026/11/24/1795508277.0-101-1.wav"  # date / call id - operator - n: no caller text
        assert dict(action) | {"ActionID": "-"} == {
            "Action": "MixMonitor", "ActionID": "-", "Channel": "Local/101@agents-00000001;1",
            "File": f"{PBX_DIR}/{rel}", "Options": "b"}
        audio = write_wav(tmp_path / "rec" / rel, 4.4)  # what Asterisk would write
        await h.finish()
    (rec,) = await h.store.for_call("1795508277.0")
    assert (rec.source, rec.operator, rec.channel, rec.path, rec.format) == (
        "bridge", "101", "Local/101@agents-00000001;1", rel, "wav")
    assert rec.status == "ok" and not rec.problem
    assert rec.size_bytes == len(audio) and rec.duration_seconds == 4.4
    # Answered 2 s into the call; MixMonitorStart (the true start) follows the action by the
    # bridge's reaction time, stretched by the replay speed (8) into PBX time: never before.
    assert 2.0 - 0.01 <= rec.offset_seconds <= 2.0 + 0.5
    assert rec.stopped_at == pytest.approx(1795508284.4078, abs=0.001)  # the operator leg's hang-up
    # The call log links it: the call's row (caller) joins the recording's.
    assert (rec.caller_number, rec.caller_name, rec.queue) == ("+74951234567", "Иван Петров", "support")


@pytest.mark.parametrize("changes", [{"policy": "none"}, {"policy": "queues", "queues": ["sales"]}])
async def test_no_mixmonitor_when_the_policy_says_no(store: CallLogStore, tmp_path: Path,
                                                      changes: dict[str, object]) -> None:
    async with bridge("queue_answered", settings_for(tmp_path, **changes), store, speed=None) as h:
        await h.finish()
    assert h.mixmonitors() == []
    assert await h.store.for_call("1795508277.0") == []


async def test_queue_policy_records_the_listed_queue(store: CallLogStore, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, policy="queues", queues=["sales"])
    async with bridge("ringall_two_agents", settings, store) as h:
        await h.finish()
    (action,) = h.mixmonitors()
    assert action["Channel"].startswith("Local/104@agents-") and "-104-1.wav" in action["File"]


@pytest.mark.parametrize(("capture", "call_id", "legs"), [
    ("blind_transfer", "1795508320.44", [("101", "Local/101@agents-00000017;1", 1795508324.267762),
                                         ("103", "Local/103@agents-00000018;1", 1795508333.665065)]),
    ("attended_transfer", "1795508340.50", [("102", "Local/102@agents-0000001a;1", 1795508348.732758),
                                            ("103", "Local/103@agents-0000001c;1", 1795508357.683041)]),
])
async def test_a_transfer_gives_one_recording_per_operator_leg(store: CallLogStore, tmp_path: Path,
                                                               capture: str, call_id: str,
                                                               legs: list[tuple[str, str, float]]) -> None:
    async with bridge(capture, settings_for(tmp_path), store) as h:
        await h.finish()
    assert [(a["Channel"], a["File"].rsplit("/", 1)[1]) for a in h.mixmonitors()] == [
        (channel, f"{call_id}-{op}-{n}.wav") for n, (op, channel, _) in enumerate(legs, 1)]
    recs = await h.store.for_call(call_id)
    assert [(r.seq, r.operator, r.channel) for r in recs] == [
        (n, op, ch) for n, (op, ch, _) in enumerate(legs, 1)]
    # Each stops when its own leg hangs up (no MixMonitorStop is sent for a hang-up).
    assert [r.stopped_at for r in recs] == [pytest.approx(at, abs=1e-5) for *_, at in legs]
    assert recs[0].offset_seconds < recs[1].offset_seconds
    assert {r.status for r in recs} == {"missing"}  # nothing wrote the files here: flagged
    assert [r.seq for r in await h.store.problems(call_id)] == [1, 2]


async def test_pause_and_resume_send_mixmonitormute_and_keep_the_spans(store: CallLogStore,
                                                                      tmp_path: Path) -> None:
    settings = settings_for(tmp_path, pbx_directory="/var/spool/asterisk/monitor")
    call_id = "1795509082.8"
    async with bridge("recording_mute", settings, store, speed=4.0) as h:
        ours = await h.sim.wait_for_action("MixMonitor")
        assert ours["Channel"] == "Local/102@agents-00000005;1"
        write_wav(tmp_path / "rec" / ours["File"].removeprefix("/var/spool/asterisk/monitor/"), 8.0)

        def pbx_spans() -> list[tuple[float, float | None]]:
            pbx = [r for r in h.recorder.active(call_id) if r.source == "pbx"]
            return [(s.start, s.end) for r in pbx for s in r.paused]

        # The capture's own MixMonitor (on the caller's channel) is adopted, and its muting
        # (MixMonitorMute State 1, then 0, Direction both) becomes a paused span.
        await until(lambda: pbx_spans() and pbx_spans()[-1][1] is not None)
        assert pbx_spans() == [(2.002, 4.006)]

        paused = await h.recorder.pause(call_id)
        assert len(paused) == 2 and all(r.paused[-1].end is None for r in paused)  # paused now
        await asyncio.sleep(0.05)
        await h.recorder.resume(call_id)
        await h.finish()
    mutes = [(a["Channel"], a["Direction"], a["State"])
             for a in h.sim.actions if a["Action"] == "MixMonitorMute"]
    channels = ["Local/102@agents-00000005;1", "Local/support@inbound-00000004;2"]
    assert sorted(mutes) == sorted([(ch, "both", state) for state in "10" for ch in channels])
    assert [m[2] for m in mutes] == ["1", "1", "0", "0"]

    own, pbx = await h.store.for_call(call_id)
    assert (own.source, own.operator, own.status) == ("bridge", "102", "ok")
    assert (pbx.source, pbx.file, pbx.path) == ("pbx", "/var/spool/asterisk/monitor/call-1795509082.8.wav",
                                                "call-1795509082.8.wav")
    assert pbx.status == "missing"  # its file is not in our folder: flagged, not ignored
    (span,) = own.paused
    assert 0 < span.start < span.end < own.stopped_at - own.started_at
    first, second = pbx.paused
    assert (first.start, first.end) == (2.002, 4.006)
    assert 4.006 < second.start < second.end


async def test_refused_mixmonitor_and_empty_file_are_flagged(store: CallLogStore, tmp_path: Path) -> None:
    async with bridge("queue_answered", settings_for(tmp_path), store) as h:
        h.sim.set_response("MixMonitor", {"Response": "Error", "Message": "No such channel"})
        await h.finish()
    (rec,) = await h.store.problems("1795508277.0")
    assert (rec.status, rec.error) == ("failed", "MixMonitor: No such channel")

    async with bridge("queue_answered", settings_for(tmp_path), store) as h:
        action = await h.sim.wait_for_action("MixMonitor")
        path = resolve_under(tmp_path / "rec", action["File"].removeprefix(PBX_DIR + "/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        await h.finish()
    recs = await h.store.for_call("1795508277.0")
    assert [r.status for r in recs] == ["failed", "empty"]  # the restarted bridge numbered on: -2


async def test_a_restarted_recorder_takes_its_running_recordings_back(store: CallLogStore,
                                                                     tmp_path: Path) -> None:
    recordings = RecordingStore(store)
    await recordings.save(RecordingInfo(
        call_id="1795508277.0", seq=1, source="bridge", operator="101", channel="Local/101@agents-00000001;1",
        file=f"{PBX_DIR}/x.wav", path="x.wav", format="wav", started_at=1795508280.0,
        offset_seconds=2.0, status="recording"))
    sent: list[dict[str, str]] = []

    async def send(action: dict[str, str], pbx: str | None = None) -> AmiMessage:
        sent.append(action)
        return AmiMessage([("Response", "Success")])

    recorder = Recorder(settings_for(tmp_path), send, recordings)
    await recorder.start()
    try:
        assert [r.seq for r in recorder.active("1795508277.0")] == [1]
        recorder.on_ami_event(AmiMessage([("Event", "Newexten"), ("Timestamp", "1795508283.0")]))  # its clock
        await recorder.pause("1795508277.0")
        assert sent == [{"Action": "MixMonitorMute", "Channel": "Local/101@agents-00000001;1",
                         "Direction": "both", "State": "1"}]
        recorder.on_ami_event(AmiMessage([("Event", "Hangup"), ("Timestamp", "1795508284.5"),
                                          ("Channel", "Local/101@agents-00000001;1")]))
        await recorder.flush()
    finally:
        await recorder.stop()
    (rec,) = await recordings.for_call("1795508277.0")
    assert rec.status == "stopped" and rec.stopped_at == 1795508284.5
    assert rec.paused[-1].start == pytest.approx(3.0, abs=0.5)  # the PBX's clock, from its last event
    assert rec.paused[-1].end == 4.5  # the pause ends with the recording


async def test_recordings_of_calls_the_log_has_ended_are_taken_back_stopped_at_the_calls_end(
        store: CallLogStore, tmp_path: Path) -> None:
    """A takeover (or restart) adopts unfinished rows; the call log tells, in one query for all,
    which of their calls ended meanwhile: those recordings stop at the call's end."""
    from bridge.calls.record import CallRecord

    await store.save([CallRecord(call_id="1795508277.0", entered_at=1795508278.0, ended_at=1795508290.25),
                      CallRecord(call_id="1795508277.9", entered_at=1795508279.0)])
    recordings = RecordingStore(store)
    for seq, call_id in enumerate(("1795508277.0", "1795508277.9"), start=1):
        await recordings.save(RecordingInfo(
            call_id=call_id, seq=seq, source="bridge", operator="101", channel=f"Local/10{seq}@agents-1;1",
            file=f"{PBX_DIR}/{seq}.wav", path=f"{seq}.wav", format="wav", started_at=1795508280.0,
            offset_seconds=2.0, status="recording"))

    async def send(action: dict[str, str], pbx: str | None = None) -> AmiMessage:
        return AmiMessage([("Response", "Success")])

    recorder = Recorder(settings_for(tmp_path), send, recordings)
    await recorder.start()
    try:
        await recorder.flush()
        assert [r.seq for r in recorder.active("1795508277.9")] == [2]  # its call is still live
        assert recorder.active("1795508277.0") == []
    finally:
        await recorder.stop()
    (ended_rec,) = await recordings.for_call("1795508277.0")
    assert ended_rec.stopped_at == 1795508290.25
    (live_rec,) = await recordings.for_call("1795508277.9")
    assert (live_rec.status, live_rec.stopped_at) == ("recording", None)
