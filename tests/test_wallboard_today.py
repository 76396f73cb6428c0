"""Today's wallboard figures after a restart: rebuilt from the call log, "today" being a day
in the configured time zone as the injected clock sees it — never the machine's date.

A restart is a new WallboardService over the same database (SQLite and PostgreSQL). The call
of `queue_answered` entered at 2026-11-24 08:17:57 UTC: 22:17 on 23 Nov in Honolulu (UTC-10),
17:17 on 24 Nov in Tokyo (UTC+9).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import replay_bytes
from bridge.settings import ConfigError, load_settings
from supervision.wallboard_service import WallboardService
from tests.capture_facts import capture_bytes, capture_events
from tests.db_fixtures import Database, database_fixture  # noqa: F401  # fixture


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def restarted(database: Database, clock: float, timezone: str) -> WallboardService:
    """A wallboard started afresh over `database`, its clock stopped at `clock`."""
    store = database.store()
    await store.open()
    service = WallboardService(send_action=mock.AsyncMock(), history=store.export,
                               clock=lambda: clock, timezone=timezone)
    try:
        await service.start()
        await service.stop()
    finally:
        await store.close()
    return service


def todays(service: WallboardService) -> tuple[int, int, float | None, int, float | None]:
    """(support calls, answered, % within target, Anna's calls, her average talk) for today."""
    snap = service.snapshot()
    support = next((q for q in snap.queues if q.name == "support"), None)
    anna = next((o for o in snap.operators if o.operator == "101"), None)
    return (support.calls_today if support else 0, support.answered_today if support else 0,
            support.answered_in_target_percent if support else None,
            anna.calls_today if anna else 0, anna.average_talk_seconds if anna else None)


@pytest.fixture(name="logged")
async def logged_fixture(database: Database) -> Database:
    """The call log of a first run that saw `queue_answered`."""
    (call,) = replay_bytes(capture_bytes("queue_answered"))
    assert call.outcome == "answered" and call.ended_at is not None
    store = database.store()
    await store.open()
    try:
        await store.save([call])
    finally:
        await store.close()
    return database


ANSWERED = (1, 1, 100.0, 1, 4.4)  # Anna talked 4.4 s (tests/fixtures/expected/queue_answered)
NOTHING = (0, 0, None, 0, None)


@pytest.mark.parametrize(("timezone", "clock", "figures"), [
    ("UTC", "2026-11-24T23:59:59+00:00", ANSWERED),
    ("UTC", "2026-11-25T00:00:00+00:00", NOTHING),  # midnight: a new day, counted from zero
    ("Pacific/Honolulu", "2026-11-24T09:59:59+00:00", ANSWERED),  # 23:59 on 23 Nov there
    ("Pacific/Honolulu", "2026-11-24T12:00:00+00:00", NOTHING),  # 02:00 on 24 Nov: yesterday's call
    ("Asia/Tokyo", "2026-11-24T14:59:59+00:00", ANSWERED),  # 23:59 on 24 Nov there
    ("Asia/Tokyo", "2026-11-24T15:00:00+00:00", NOTHING),  # midnight in Tokyo, still 24 Nov in UTC
    ("UTC", "2036-11-24T12:00:00+00:00", NOTHING),  # ten years on, the same date is not today
])
async def test_todays_figures_after_a_restart_follow_the_zone_and_the_clock(
        logged: Database, timezone: str, clock: str, figures: tuple[object, ...]) -> None:
    service = await restarted(logged, at(clock), timezone)
    assert todays(service) == figures


async def test_the_zone_moves_the_day_boundary_at_the_same_moment(logged: Database) -> None:
    moment = at("2026-11-24T12:00:00+00:00")
    utc = await restarted(logged, moment, "UTC")
    honolulu = await restarted(logged, moment, "Pacific/Honolulu")
    assert (todays(utc)[0], todays(honolulu)[0]) == (1, 0)
    assert utc.today_starts() == datetime(2026, 11, 24, tzinfo=UTC)
    assert honolulu.today_starts() == datetime(2026, 11, 24, 10, tzinfo=UTC)


@pytest.mark.parametrize(("timezone", "rollover"), [
    ("UTC", "2026-11-25T00:00:00+00:00"), ("Pacific/Honolulu", "2026-11-24T10:00:00+00:00")])
def test_live_figures_start_from_zero_at_midnight_in_the_zone(timezone: str, rollover: str) -> None:
    service = WallboardService(send_action=mock.AsyncMock(), timezone=timezone)
    pipeline = CallPipeline()
    service.attach(pipeline)
    pipeline.feed_all(capture_events("queue_answered"))
    assert todays(service) == ANSWERED  # the board's own clock: the capture's last event
    midnight = at(rollover)
    for now, figures in ((midnight - 1, ANSWERED), (midnight, NOTHING)):
        snap = service.snapshot(now)
        support = next(q for q in snap.queues if q.name == "support")
        assert (support.calls_today, support.answered_today) == figures[:2], (timezone, now)


def test_today_starts_at_the_first_moment_of_a_day_whose_midnight_dst_skips() -> None:
    # Chile moves 00:00 -> 01:00 on 6 Sep 2026: that day starts at 01:00 -03, i.e. 04:00 UTC.
    service = WallboardService(send_action=mock.AsyncMock(), timezone="America/Santiago",
                               clock=lambda: at("2026-09-06T15:00:00+00:00"))
    assert service.today_starts().timestamp() == at("2026-09-06T04:00:00+00:00")


def test_the_timezone_setting_is_an_iana_name_checked_at_load(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    assert load_settings().timezone == "UTC"  # the default: set it to the call centre's zone
    config = tmp_path / "callbridge.toml"
    config.write_text('timezone = "Europe/Moscow"\n')
    assert load_settings(config).timezone == "Europe/Moscow"
    monkeypatch.setenv("CALLBRIDGE_TIMEZONE", "Asia/Tokyo")
    assert load_settings(config).timezone == "Asia/Tokyo"  # the environment wins
    monkeypatch.setenv("CALLBRIDGE_TIMEZONE", "Moscow")
    with pytest.raises(ConfigError, match=r"timezone: .*unknown time zone 'Moscow'"):
        load_settings(config)
