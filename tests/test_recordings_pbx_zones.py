"""The recordings' date folders with two PBXes in two zones: a call's file goes under its PBX's
day (a: UTC, b: Tokyo) unless `[recordings] timezone` is set, which every PBX then follows.
The moment is fixed: 2026-11-24 15:10 UTC is 00:10 on 25 Nov in Tokyo.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from bridge.call_log.store import CallLogStore
from bridge.calls.events import CallAnswered
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import CallRecord
from bridge.calls.tracker import CallTracker
from bridge.settings import CallbridgeSettings
from recordings.plugin import attach_recordings
from recordings.recorder import Recorder
from recordings.settings import RecordingSettings
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_recorder import PBX_DIR, settings_for
from tests.test_recordings_pbxes import Pbxes
from web.features import BridgeParts, PbxFacts

ZONES = {"a": "UTC", "b": "Asia/Tokyo"}
AT = datetime(2026, 11, 24, 15, 10, tzinfo=UTC).timestamp()


async def files(recorder: Recorder, pbxes: Pbxes) -> dict[str, str]:
    """The MixMonitor file of an answer at AT on each PBX: PBX -> its path under the PBX's root."""
    for pbx, call_id in (("a", "1795508320.44"), ("b", "b:1795508320.44")):
        call = CallRecord(call_id=call_id, pbx=pbx, queue="support", entered_at=AT - 10, answered_at=AT,
                          answered_by="101")
        recorder.handle(CallAnswered(at=AT, call=call, operator="101", channel="PJSIP/101-00000001"))
    await recorder.flush()
    return {pbx: action["File"].removeprefix(f"{PBX_DIR}/") for pbx, action in pbxes.actions("MixMonitor")}


async def test_a_recording_of_a_call_on_b_lands_in_bs_date_folder(tmp_path: Path) -> None:
    pbxes = Pbxes()
    recorder = Recorder(settings_for(tmp_path), pbxes, zones=ZONES)
    assert await files(recorder, pbxes) == {"a": "2026/11/24/1795508320.44-101-1.wav",
                                            "b": "b/2026/11/25/1795508320.44-101-1.wav"}


async def test_a_timezone_set_for_the_recordings_is_every_pbxs(tmp_path: Path) -> None:
    pbxes = Pbxes()
    recorder = Recorder(settings_for(tmp_path, timezone="UTC"), pbxes, zones=ZONES)
    assert await files(recorder, pbxes) == {"a": "2026/11/24/1795508320.44-101-1.wav",
                                            "b": "b/2026/11/24/1795508320.44-101-1.wav"}


def test_the_settings_tell_a_zone_set_apart_from_the_call_centres() -> None:
    two = [{"id": "a"}, {"id": "b", "timezone": "Asia/Tokyo"}]
    followed = CallbridgeSettings(timezone="Europe/Moscow", pbx=two).recordings
    assert (followed.timezone, followed.timezone_set) == ("Europe/Moscow", False)  # the first PBX's zone
    first_own = CallbridgeSettings(timezone="UTC", pbx=[{"id": "a", "timezone": "Asia/Tokyo"}, {"id": "b"}])
    assert first_own.recordings.timezone == "Asia/Tokyo"
    apart = CallbridgeSettings(timezone="Europe/Moscow", pbx=two, recordings={"timezone": "UTC"}).recordings
    assert (apart.timezone, apart.timezone_set) == ("UTC", True)
    assert not RecordingSettings().timezone_set
    copied = followed.model_copy(update={"policy": "all"})  # as the demo does
    assert not copied.timezone_set


async def test_the_wiring_hands_each_pbxs_zone_to_the_recorder(store: CallLogStore, tmp_path: Path) -> None:
    pipeline = CallPipeline(trackers=[CallTracker(pbx="a"), CallTracker(pbx="b", id_prefix="b:")])
    parts = BridgeParts(pipeline=pipeline, store=store, app=web.Application(), send_action=Pbxes(),
                        pbx_ready=lambda pbx=None: True, on_resync=lambda listener: None,
                        operator_pattern=r"^1\d{2}$", timezone="UTC", pbxes=("a", "b"),
                        pbx_settings={"a": PbxFacts(r"^1\d{2}$", "UTC"),
                                      "b": PbxFacts(r"^2\d{2}$", "Asia/Tokyo")})
    recorder = attach_recordings(parts, settings_for(tmp_path))
    assert {pbx: str(zone) for pbx, zone in recorder.zones.items()} == ZONES
