"""Reports and the member log with two PBXes of their own `operator_pattern` and `timezone`
(SQLite and PostgreSQL): a's operators are 1xx and its days UTC's, b's are 2xx and its days
Tokyo's. A report or staffing plan of b cuts its days at Tokyo's midnight (15:00 UTC); a report
of every PBX keeps the top-level zone (UTC). The clock is passed in: 2026-11-25 03:00 UTC, noon
in Tokyo.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.channel_names import OperatorDirectory
from bridge.calls.pipeline import CallPipeline
from bridge.calls.tracker import CallTracker
from bridge.settings import CallbridgeSettings
from reports.forecast import staffing_plan
from reports.member_log import MEMBER_LOG, MemberLog
from reports.plugin import attach_reports
from reports.service import ReportService
from reports.settings import ReportSettings
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_reports_figures import call
from tests.test_reports_http import run_cli
from tests.test_reports_pbxes import on_b
from web.features import BridgeParts, PbxFacts

FACTS = {"a": PbxFacts(operator_pattern=r"^1\d{2}$", timezone="UTC"),
         "b": PbxFacts(operator_pattern=r"^2\d{2}$", timezone="Asia/Tokyo")}
NOW = datetime(2026, 11, 25, 3, 0, tzinfo=UTC).timestamp()
B_MIDNIGHT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC).timestamp()  # 25 Nov 00:00 in Tokyo


def calls() -> list:
    """On b: one call at 23:50 on 24 Nov in Tokyo, one at 00:10 on 25 Nov; both on 24 Nov in UTC."""
    return [on_b(call("s1", B_MIDNIGHT - 600, "answered", 5, 60, operator="201")),
            on_b(call("s2", B_MIDNIGHT + 600, "answered", 5, 60, operator="201"))]


def service(store: CallLogStore) -> ReportService:
    return ReportService(store, ReportSettings(), timezone="UTC", clock=lambda: NOW, pbxes=("a", "b"),
                         timezones={p: f.timezone for p, f in FACTS.items()})


async def test_a_report_of_one_pbx_cuts_its_days_at_that_pbxs_midnight(store: CallLogStore) -> None:
    await store.save(calls())
    svc = service(store)
    today, yesterday = await svc.report("today", pbx="b"), await svc.report("yesterday", pbx="b")
    assert (today.totals.offered, yesterday.totals.offered) == (1, 1)
    assert (today.period.from_, today.period.timezone) == ("2026-11-25T00:00:00+09:00", "Asia/Tokyo")
    days = await svc.report("range", start="2026-11-24", end="2026-11-25", interval="day", pbx="b")
    assert [(i.start, i.offered) for i in days.intervals] == [
        ("2026-11-24T00:00:00+09:00", 1), ("2026-11-25T00:00:00+09:00", 1)]
    # Every PBX: the top-level zone, where both calls were on 24 Nov.
    every_today, every_yesterday = await svc.report("today"), await svc.report("yesterday")
    assert (every_today.totals.offered, every_yesterday.totals.offered) == (0, 2)
    assert every_today.period.timezone == "UTC"
    only_a = await svc.report("today", pbx="a")
    assert only_a.period.from_ == "2026-11-25T00:00:00+00:00"


async def test_a_staffing_plan_of_one_pbx_is_in_that_pbxs_zone(store: CallLogStore) -> None:
    await store.save(calls())
    plan = await staffing_plan(service(store), "2026-11-25", pbx="b")
    assert (plan.period.from_, plan.period.timezone) == ("2026-11-25T00:00:00+09:00", "Asia/Tokyo")
    assert (await staffing_plan(service(store), "2026-11-25")).period.timezone == "UTC"


async def test_the_member_log_names_operators_by_their_pbxs_pattern(store: CallLogStore) -> None:
    log = MemberLog(store, OperatorDirectory(r"^1\d{2}$"),
                    pbx_operators={p: OperatorDirectory(f.operator_pattern) for p, f in FACTS.items()})
    for pbx in ("a", "b"):
        for ext in ("101", "201"):
            ev = AmiMessage([("Event", "QueueMemberAdded"), ("Timestamp", f"{B_MIDNIGHT:.6f}"),
                             ("Queue", "support"), ("Interface", f"PJSIP/{ext}"), ("Status", "1")])
            ev.pbx = pbx
            log.on_ami_event(ev)
    await log.flush()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(MEMBER_LOG.c.pbx, MEMBER_LOG.c.interface, MEMBER_LOG.c.operator)
                                   .where(MEMBER_LOG.c.queue.is_not(None)))).all()
    assert sorted(tuple(r) for r in rows) == [("a", "PJSIP/101", "101"), ("a", "PJSIP/201", None),
                                              ("b", "PJSIP/101", None), ("b", "PJSIP/201", "201")]


async def test_the_wiring_hands_each_pbxs_pattern_and_zone_to_the_reports(store: CallLogStore) -> None:
    pipeline = CallPipeline(trackers=[CallTracker(pbx="a"), CallTracker(pbx="b", id_prefix="b:")])
    parts = BridgeParts(pipeline=pipeline, store=store, app=web.Application(), send_action=None,  # type: ignore[arg-type]
                        pbx_ready=lambda pbx=None: True, on_resync=lambda listener: None,
                        operator_pattern=r"^1\d{2}$", timezone="UTC", clock=lambda: NOW, pbxes=("a", "b"),
                        pbx_settings=FACTS)
    attached = attach_reports(parts)
    assert attached.member_log.operators_of("b").operator_of("PJSIP/201") == "201"
    assert attached.member_log.operators_of("a").operator_of("PJSIP/201") is None
    assert (attached.service.zone_of("b").key, attached.service.zone_of(None).key) == ("Asia/Tokyo", "UTC")


def test_the_command_reports_one_pbx_in_its_zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}"

    async def fill() -> None:
        store = CallLogStore(url)
        await store.open()
        try:
            await store.save(calls())
        finally:
            await store.close()

    asyncio.run(fill())
    two = CallbridgeSettings(timezone="UTC", pbx=[{"id": "a"}, {"id": "b", "timezone": "Asia/Tokyo"}])
    monkeypatch.setattr("tests.test_reports_http.CallbridgeSettings", lambda **_: two)
    monkeypatch.setattr("tests.test_reports_http.NOW", NOW)
    code, out = run_cli(["--table", "totals", "--pbx", "b", "--format", "csv"], url)
    (totals,) = csv.DictReader(io.StringIO(out))
    assert code == 0 and totals["offered"] == "1"  # 00:10 on 25 Nov in Tokyo; 23:50 was yesterday
    code, out = run_cli(["--table", "totals", "--pbx", "b"], url)
    assert code == 0 and "(Asia/Tokyo)" in out.splitlines()[0]
    code, out = run_cli(["--table", "totals", "--period", "yesterday", "--format", "csv"], url)
    assert code == 0 and next(csv.DictReader(io.StringIO(out)))["offered"] == "2"  # every PBX: UTC
