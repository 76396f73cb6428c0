"""Recordings with two PBXes: the recorder sends MixMonitor (and MixMonitorMute) to the call's
PBX, files of a call of the second PBX go under its own folder, rows carry the PBX, a raw
event of one PBX never touches another PBX's recording of a channel of the same name; the
recordings API lists each recording's PBX and filters by it."""

from __future__ import annotations

from pathlib import Path

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.events import CallAnswered
from bridge.calls.pipeline import CallPipeline
from bridge.calls.tracker import CallTracker
from recordings.recorder import Recorder
from recordings.store import RecordingStore
from tests.capture_facts import capture_events
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_recorder import PBX_DIR, settings_for, write_wav
from tests.test_recordings_http import Site, recording, site_fixture  # noqa: F401  # fixture


class Pbxes:
    """`send_action(action, pbx=ID)`: which PBX got which action."""

    def __init__(self) -> None:
        self.sent: list[tuple[str | None, dict[str, str]]] = []

    async def __call__(self, action: dict[str, str], pbx: str | None = None) -> AmiMessage:
        self.sent.append((pbx, action))
        return AmiMessage([("Response", "Success")])

    def actions(self, name: str) -> list[tuple[str | None, dict[str, str]]]:
        return [(pbx, a) for pbx, a in self.sent if a["Action"] == name]


def tagged(capture: str, pbx: str) -> list[AmiMessage]:
    events = capture_events(capture)
    for ev in events:
        ev.pbx = pbx
    return events


async def test_the_recorder_records_on_the_calls_pbx(store: CallLogStore, tmp_path: Path) -> None:
    pbxes, recordings = Pbxes(), RecordingStore(store)
    recorder = Recorder(settings_for(tmp_path), pbxes, recordings)
    pipeline = CallPipeline(trackers=[CallTracker(pbx="a"), CallTracker(pbx="b", id_prefix="b:")])
    answered: list[CallAnswered] = []
    pipeline.subscribe(recorder.handle)
    pipeline.subscribe(lambda ev: answered.append(ev) if isinstance(ev, CallAnswered) else None)
    pipeline.subscribe_raw(recorder.on_ami_event)
    await recorder.start()
    try:
        events = tagged("queue_answered", "b")
        cut = next(i for i, ev in enumerate(events) if ev.event == "AgentConnect")
        pipeline.feed_all(events[: cut + 1])
        await recorder.flush()
        (answer,) = answered
        call_id, channel = answer.call.call_id, answer.channel
        assert call_id.startswith("b:") and answer.call.pbx == "b"
        ((to, mixmonitor),) = pbxes.actions("MixMonitor")
        assert (to, mixmonitor["Channel"]) == ("b", channel)
        linkedid = call_id.removeprefix("b:")
        assert mixmonitor["File"].startswith(f"{PBX_DIR}/b/2026/11/")
        assert mixmonitor["File"].endswith(f"/{linkedid}-101-1.wav")

        # PBX a hangs up a channel of the same name: not b's recording.
        other = AmiMessage([("Event", "Hangup"), ("Timestamp", f"{answer.at + 1:.6f}"), ("Channel", channel)])
        other.pbx = "a"
        recorder.on_ami_event(other)
        assert [r.pbx for r in recorder.active(call_id)] == ["b"]
        await recorder.pause(call_id)
        assert [to for to, _ in pbxes.actions("MixMonitorMute")] == ["b"]

        pipeline.feed_all(events[cut + 1:])
        await recorder.flush()
    finally:
        await recorder.stop()
    (row,) = await recordings.for_call(call_id)
    assert (row.pbx, row.path, row.status) == ("b", mixmonitor["File"].removeprefix(f"{PBX_DIR}/"), "missing")
    assert [r.call_id for r in await recordings.search(pbx="b")] == [call_id]
    assert await recordings.search(pbx="a") == []


async def test_the_recordings_list_names_and_filters_the_pbx(site: Site) -> None:
    site.api.pbxes = ("main", "b")
    b_id = await site.api.store.save(recording(1, "101", 2.0, 4.0, call_id="b:1795508320.44", pbx="b",
                                               path="b/2026/11/24/1795508320.44-101-1.wav"))
    every = await (await site.get("/api/recordings")).json()
    assert every["pbxes"] == ["main", "b"]
    assert sorted(r["pbx"] for r in every["recordings"]) == ["b", "main", "main", "main", "main"]
    only_b = await (await site.get("/api/recordings?pbx=b")).json()
    assert [(r["id"], r["pbx"], r["call_id"]) for r in only_b["recordings"]] == [
        (b_id, "b", "b:1795508320.44")]
    main = await (await site.get("/api/recordings?pbx=main")).json()
    assert {r["pbx"] for r in main["recordings"]} == {"main"} and len(main["recordings"]) == 4
    by_call = await (await site.get("/api/recordings?call_id=b:1795508320.44")).json()
    assert [r["id"] for r in by_call["recordings"]] == [b_id]
    write_wav(site.api.settings.directory / "b/2026/11/24/1795508320.44-101-1.wav", 1.0)
    download = await site.get(f"/recordings/{b_id}/audio?download=1")
    assert download.headers["Content-Disposition"] == 'attachment; filename="call-b-1795508320.44-1.wav"'
    refused = await site.get("/api/recordings?pbx=nowhere")
    assert refused.status == 400 and "pbx" in (await refused.json())["message"]
    (entry,) = await site.audit("recording.list")
    assert (entry.username, entry.result) == ("tina", "refused")
    detail = await (await site.get(f"/api/recordings/{b_id}")).json()
    assert detail["recording"]["pbx"] == "b"


async def test_an_operator_hears_only_his_own_pbxs_recordings(site: Site) -> None:
    site.api.pbxes = ("main", "b")
    b_id = await site.api.store.save(recording(1, "101", 2.0, 4.0, call_id="b:1795508320.44", pbx="b",
                                               path="b/2026/11/24/1795508320.44-101-1.wav"))
    write_wav(site.api.settings.directory / "b/2026/11/24/1795508320.44-101-1.wav", 1.0)
    # Anna is 101 on the main PBX: b's 101 is another person.
    assert (await site.get(f"/recordings/{b_id}/audio", user="anna")).status == 403
    assert (await site.get(f"/api/recordings/{b_id}", user="anna")).status == 403
    own = await (await site.get("/api/recordings", user="anna")).json()
    assert {(r["pbx"], r["operator"]) for r in own["recordings"]} == {("main", "101")}
    assert (await site.get("/api/recordings?pbx=b", user="anna")).status == 403
    assert (await site.get("/recordings/1/audio", user="anna")).status == 200  # her own, as ever
    assert (await site.get(f"/recordings/{b_id}/audio", user="tina")).status == 200  # trainers: every PBX
    await site.api.reviews.score(await site.api.store.get(b_id), {"Greeting": 1, "Solution": 1},
                                 reviewer="tina")
    mine = await (await site.get("/api/reviews/mine", user="anna")).json()
    assert b_id not in [r["recording"]["id"] for r in mine["reviews"]]
    assert (await (await site.get("/api/reviews/operators/101?pbx=b", user="tina")).json())["cards"] == 1
    assert (await (await site.get("/api/reviews/operators/101", user="anna")).json())["cards"] == 0
    assert (await site.get("/api/reviews/operators/101?pbx=b", user="anna")).status == 403
    denied = [(e.action, e.target) for e in await site.audit() if e.result == "denied"]
    assert ("recording.play", str(b_id)) in denied and ("review.summary", "101") in denied


async def test_recordings_from_before_pbx_ids_are_the_first_pbxs(site: Site) -> None:
    site.api.pbxes = ("a", "b")  # the rows of the one-PBX days say "main"
    every = await (await site.get("/api/recordings")).json()
    assert {r["pbx"] for r in every["recordings"]} == {"a"}
    only_a = await (await site.get("/api/recordings?pbx=a")).json()
    assert len(only_a["recordings"]) == len(every["recordings"]) == 4
    assert (await (await site.get("/api/recordings?pbx=b")).json())["recordings"] == []
    assert (await site.get("/recordings/1/audio", user="anna")).status == 200  # Anna: "main" = a
