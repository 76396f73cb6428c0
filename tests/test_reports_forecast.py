"""The staffing plan (reports.forecast): a chosen day from the same weekday's history, the
typical day of a period, the actual staff of past days; its API (roles, 400s, audited CSV) and
`callbridge report staffing`. Generated history with a fixed seed and a fixed clock (a
Wednesday, 2 December 2026, 12:00 in Moscow): no test depends on today's date."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from collections.abc import AsyncIterator
from contextlib import redirect_stderr, redirect_stdout
from datetime import date, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord
from bridge.cli import build_parser
from bridge.settings import CallbridgeSettings
from reports.cli import run_report_command
from reports.forecast import StaffingPlan, history_for_day, staffing_plan
from reports.member_log import MemberLog
from reports.models import ReportError
from reports.service import ReportService
from reports.settings import ReportSettings
from reports.staffing import advise, expected
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401
from tests.test_reports_figures import at, call, member_event
from tests.test_reports_http import get, reports_site
from web.audit_log import AuditLog

NOW = at(date(2026, 12, 2), 12, 0)  # Wednesday 2 December 2026, 12:00 MSK
MONDAYS = [date(2026, 11, 2) + timedelta(weeks=k) for k in range(5)]  # 2, 9, 16, 23, 30 Nov
TUESDAY = date(2026, 11, 24)
SETTINGS = ReportSettings()  # 80 % within 30 s, occupancy 85 %, shrinkage 30 %, 4 weeks


def history(seed: int = 12) -> list[CallRecord]:
    """Mondays with known calls per hour (the k-th Monday, k = 0..4, from 2 Nov), each at a
    seeded random minute of its hour, and one busy Tuesday:
    - 10:00 support: 10 + 2k answered (wait 10 s, talk 120 s), one abandon after 40 s and one
      short abandon after 2 s; sales: 2 answered (wait 1 s, talk 30 s);
    - 11:00 support: 4 + k answered (wait 5 s, talk 240 s);
    - 15:00 support: 3 answered (wait 20 s, talk 60 s) and one timeout after 60 s;
    - Tuesday 24 Nov, 10:00 support: 50 answered (wait 10 s, talk 120 s)."""
    rnd = random.Random(seed)
    out: list[CallRecord] = []

    def add(day: date, hour: int, outcome: str, wait: float, talk: float = 0.0, queue: str = "support",
            reason: str | None = None) -> None:
        entered = at(day, hour, 0, rnd.uniform(0, 3300))
        out.append(call(f"{day}-{len(out)}", entered, outcome, wait, talk, queue=queue,
                        operator="101" if outcome == "answered" else None, reason=reason))

    for k, monday in enumerate(MONDAYS):
        for _ in range(10 + 2 * k):
            add(monday, 10, "answered", 10, 120)
        add(monday, 10, "abandoned", 40, reason="caller_hangup")
        add(monday, 10, "abandoned", 2, reason="caller_hangup")
        for _ in range(2):
            add(monday, 10, "answered", 1, 30, queue="sales")
        for _ in range(4 + k):
            add(monday, 11, "answered", 5, 240)
        for _ in range(3):
            add(monday, 15, "answered", 20, 60)
        add(monday, 15, "unanswered", 60, reason="timeout")
    for _ in range(50):
        add(TUESDAY, 10, "answered", 10, 120)
    rnd.shuffle(out)
    return out


def service(store: CallLogStore, **settings: object) -> ReportService:
    return ReportService(store, ReportSettings(**settings), timezone="Europe/Moscow", clock=lambda: NOW)


def advice(calls: float, aht: float, patience: float | None, size: int = 3600) -> tuple[int, int, float]:
    a = advise(calls, size, aht, target_fraction=0.8, target_seconds=30, max_occupancy=0.85, shrinkage=0.3,
               patience_seconds=patience)
    return a.agents, a.staff, a.service_level


def row_advice(plan: StaffingPlan, hh: str) -> tuple[int, int, float | None]:
    row = next(r for r in plan.staffing if r.time == hh)
    return row.agents, row.staff, row.expected_service_level


def test_history_days_are_the_same_weekday_before_the_day_or_today() -> None:
    wednesday = date(2026, 12, 2)
    assert history_for_day(date(2026, 12, 7), wednesday, 4) == MONDAYS[1:]  # future: before today
    assert history_for_day(date(2026, 11, 30), wednesday, 4) == MONDAYS[:4]  # past: before the day
    assert history_for_day(wednesday, wednesday, 2) == [date(2026, 11, 18), date(2026, 11, 25)]  # not today
    assert history_for_day(date(2027, 3, 1), wednesday, 1) == [date(2026, 11, 30)]  # a Monday months on


async def test_a_future_monday_is_advise_of_the_last_four_mondays_averages(store: CallLogStore) -> None:
    await store.save(history())
    plan = await staffing_plan(service(store), "2026-12-07")
    assert (plan.day, plan.weekday, plan.weeks) == ("2026-12-07", 0, 4)
    assert plan.history_days == ["2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]
    assert (plan.period.from_, plan.period.to) == ("2026-12-07T00:00:00+03:00", "2026-12-08T00:00:00+03:00")
    assert len(plan.staffing) == 24 and plan.staffing[10].start == "2026-12-07T10:00:00+03:00"
    # 10:00 over k = 1..4: support 12+14+16+18 = 60 answered + 4 abandons + 4 short, sales 8:
    # 76 calls / 4 = 19; AHT (60 x 120 + 8 x 30) / 68; patience: all waits (600 + 160 + 8 + 8)
    # over the 4 abandons that are not short = 194 s.
    ten = plan.staffing[10]
    assert (ten.calls, ten.aht_seconds, ten.patience_seconds) == (19.0, round(7440 / 68, 3), 194.0)
    assert row_advice(plan, "10:00") == advice(19, 7440 / 68, 194)
    assert ten.abandon_rate is not None and ten.abandon_rate > 0  # Erlang A: the callers' patience
    # 11:00: 5+6+7+8 = 26 / 4 = 6.5 calls of 240 s, no abandons: the history's patience, all
    # waits (776 at 10:00, 130 at 11:00, 4 x (60 + 60) at 15:00 = 1386) / 4 abandons
    eleven = plan.staffing[11]
    assert (eleven.calls, eleven.aht_seconds, eleven.patience_seconds) == (6.5, 240.0, 346.5)
    assert plan.patience_seconds == 346.5
    assert row_advice(plan, "11:00") == advice(6.5, 240, 346.5)
    assert row_advice(plan, "15:00") == advice(4, 60, 346.5)  # 3 answered + 1 timeout a day
    quiet = plan.staffing[3]
    assert (quiet.calls, quiet.agents, quiet.staff, quiet.aht_seconds) == (0.0, 0, 0, None)
    assert all(r.staff_actual is None and r.verdict is None for r in plan.staffing)  # not yet happened
    assert advice(19, 7440 / 68, 194)[0] == 2 and advice(6.5, 240, 346.5)[0] == 2  # not 0 or 1: real loads


async def test_a_past_day_weeks_queue_and_interval(store: CallLogStore) -> None:
    await store.save(history())
    svc = service(store)
    past = await staffing_plan(svc, "2026-11-30")  # k = 0..3: 10+12+14+16 + 8 + 8 = 68 -> 17
    assert past.history_days == ["2026-11-02", "2026-11-09", "2026-11-16", "2026-11-23"]
    assert past.staffing[10].calls == 17.0
    five = await staffing_plan(svc, "2026-12-07", weeks="5")  # k = 0..4: 70 + 10 + 10 = 90 -> 18
    assert five.history_days == [d.isoformat() for d in MONDAYS] and five.staffing[10].calls == 18.0
    six = await staffing_plan(svc, "2026-12-07", weeks=6)  # 26 Oct has no call: left out, not a zero
    assert six.history_days == five.history_days and six.staffing == five.staffing
    sales = await staffing_plan(svc, "2026-12-07", queue="sales")
    assert [(r.time, r.calls, r.aht_seconds) for r in sales.staffing if r.calls] == [("10:00", 2.0, 30.0)]
    assert sales.staffing[10].patience_seconds is None  # no sales caller ever hung up: Erlang C
    assert row_advice(sales, "10:00") == advice(2, 30, None)
    halves = await staffing_plan(svc, "2026-12-07", interval="30")
    assert len(halves.staffing) == 48 and halves.staffing[21].time == "10:30"
    assert halves.staffing[20].calls + halves.staffing[21].calls == 19.0
    short = await staffing_plan(service(store, forecast_weeks=1), "2026-12-07")  # [reports] forecast_weeks
    assert short.history_days == ["2026-11-30"] and short.staffing[10].calls == 18 + 2 + 2


async def test_the_typical_day_of_a_period(store: CallLogStore) -> None:
    await store.save(history())
    svc = service(store)
    plan = await staffing_plan(svc, "typical", period="range", start="2026-11-23", end="2026-11-25")
    # Mon 23 Nov (k = 3: 16 + 2 + 2 at 10:00) and Tue 24 Nov (50); Wed 25 Nov has no call
    assert plan.history_days == ["2026-11-23", "2026-11-24"] and plan.weeks is None and plan.weekday is None
    ten = plan.staffing[10]
    assert (ten.start, ten.time, ten.calls) == (None, "10:00", 35.0)
    assert ten.aht_seconds == round((66 * 120 + 2 * 30) / 68, 3)
    assert plan.staffing[11].calls == 3.5  # 7 on Monday, none on Tuesday
    # A period that ends today: today is not over, so it is not part of the typical day.
    today = await staffing_plan(svc, "typical", period="today")
    assert today.history_days == [] and all(r.calls == 0 for r in today.staffing)


async def test_actual_staff_of_a_past_day_today_and_a_typical_day(store: CallLogStore) -> None:
    await store.save(history())
    log = MemberLog(store)
    monday = MONDAYS[4]  # 30 Nov: Anna logged in 10:00 - 11:30
    log.on_ami_event(member_event("QueueMemberAdded", at(monday, 10, 0), "support", "101", Status="1"))
    log.on_ami_event(member_event("QueueMemberRemoved", at(monday, 11, 30), "support", "101"))
    today = date(2026, 12, 2)  # and today from 08:00, still there at 12:00
    log.on_ami_event(member_event("QueueMemberAdded", at(today, 8, 0), "support", "101", Status="1"))
    await log.flush()
    svc = service(store)
    plan = await staffing_plan(svc, "2026-11-30")
    staff = {r.time: r.staff_actual for r in plan.staffing}
    assert (staff["09:00"], staff["10:00"], staff["11:00"], staff["12:00"]) == (0.0, 1.0, 0.5, 0.0)
    ten = plan.staffing[10]  # 17 calls need more than one operator
    assert ten.verdict == "under" and ten.agents > 1
    aht, patience = ten.aht_seconds, ten.patience_seconds
    assert aht is not None and patience is not None
    assert ten.service_level_with_actual == pytest.approx(
        expected(17, 3600, aht, 1, target_seconds=30, patience_seconds=patience).service_level, abs=1e-6)
    assert plan.staffing[3].verdict == "ok"  # nobody needed, nobody there
    now = await staffing_plan(svc, "2026-12-02")  # today: only the intervals that are over
    staff = {r.time: r.staff_actual for r in now.staffing}
    assert (staff["07:00"], staff["08:00"], staff["11:00"], staff["12:00"], staff["20:00"]) == (
        0.0, 1.0, 1.0, None, None)
    assert now.history_days == [] and now.staffing[8].verdict == "over"  # no Wednesday calls: 0 needed
    typical = await staffing_plan(svc, "typical", period="range", start="2026-11-23", end="2026-11-30")
    assert typical.history_days == ["2026-11-23", "2026-11-24", "2026-11-30"]
    assert typical.staffing[10].staff_actual == pytest.approx(1 / 3, abs=0.01)  # 0, 0 and 1 operator


async def test_bad_plans_are_clear_errors(store: CallLogStore) -> None:
    svc = service(store)
    for day, kwargs, words in [
        ("07.12.2026", {}, "day must be a date"), ("2026-13-01", {}, "day must be a date"),
        ("1999-12-27", {}, "from 2000-01-01"), ("2028-01-03", {}, "a year from today"),
        ("2026-12-07", {"interval": "day"}, "per 15, 30 or 60 minutes"),
        ("2026-12-07", {"weeks": "0"}, "weeks must be a whole number from 1 to 52"),
        ("2026-12-07", {"weeks": "four"}, "weeks must be"), ("2026-12-07", {"weeks": 53}, "weeks must be"),
        ("2026-12-07", {"period": "last7"}, "go with day=typical"),
        ("typical", {"weeks": "4"}, "weeks goes with a chosen day"),
        ("typical", {"period": "month"}, "period must be one of"),
        ("typical", {"period": "range", "start": "2026-11-25", "end": "2026-11-24"}, "before"),
    ]:
        with pytest.raises(ReportError, match=words):
            await staffing_plan(svc, day, **kwargs)  # type: ignore[arg-type]


# -- the API --------------------------------------------------------------------------------------

@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[tuple[TestClient, AuditLog, CallLogStore]]:
    calls = [*history(), call("h1", at(MONDAYS[4], 10, 5), "answered", 3, 20, queue="=cmd|x", operator="105")]
    async with reports_site(tmp_path, calls, service) as site:
        yield site


async def test_the_api_gives_the_plan_to_supervisors_and_admins(site) -> None:  # noqa: ANN001
    client, audit, store = site
    same = (await staffing_plan(service(store), "2026-12-07", queue="support", weeks=4)).to_json()
    for user in ("sam", "ada"):
        resp = await get(client, "/api/reports/staffing?day=2026-12-07&queue=support&weeks=4", user)
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
        assert body == json.loads(json.dumps(same))
    assert body["history_days"] == ["2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]
    assert body["staffing"][10]["calls"] == 17.0 and body["definitions"]["history_days"]  # (60 + 8) / 4
    assert set(body["staffing"][10]) >= {"start", "calls", "aht_seconds", "agents", "staff", "staff_actual",
                                         "expected_service_level", "service_level_with_actual",
                                         "abandon_rate", "verdict", "time", "patience_seconds"}
    typical = await (await get(client, "/api/reports/staffing?day=typical&period=range&from=2026-11-23"
                                       "&to=2026-11-24&interval=30")).json()
    assert typical["day"] == "typical" and len(typical["staffing"]) == 48
    assert (await get(client, "/api/reports/staffing")).status == 200  # the typical day of today
    for path in ("/api/reports/staffing?day=2026-12-07", "/api/reports/staffing.csv?day=2026-12-07"):
        assert (await get(client, path, "anna")).status == 403
    denied = await audit.entries(action="report.denied")
    assert sorted(e.target for e in denied) == ["/api/reports/staffing", "/api/reports/staffing.csv"]
    assert not await audit.entries(action="report.export")


@pytest.mark.parametrize(("query", "words"), [
    ("day=2026-02-30", "day must be a date"), ("day=tomorrow", "day must be a date"),
    ("day=2026-12-07&interval=weekday", "per 15, 30 or 60"), ("day=2026-12-07&weeks=-1", "weeks must be"),
    ("day=2026-12-07&period=today", "go with day=typical"), ("day=2026-12-07&dya=1", "unknown parameter"),
    ("day=typical&weeks=4", "weeks goes with"),
])
async def test_a_bad_plan_query_is_a_400(site, query: str, words: str) -> None:  # noqa: ANN001
    client, audit, _ = site
    for path in ("/api/reports/staffing?", "/api/reports/staffing.csv?"):
        resp = await get(client, path + query)
        assert resp.status == 400 and words in (await resp.json())["error"], (path, query)
    assert not await audit.entries(action="report.export")  # nothing was exported


async def test_the_plan_csv_is_audited(site) -> None:  # noqa: ANN001
    client, audit, _ = site
    resp = await get(client, "/api/reports/staffing.csv?day=2026-12-07&weeks=5", "ada")
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert 'filename="callbridge-staffing-plan-2026-12-07.csv"' in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert len(rows) == 24 and rows[10]["day"] == "2026-12-07" and rows[10]["time"] == "10:00"
    assert float(rows[10]["calls"]) == 18.2  # 90 + the =cmd|x queue's call on 30 Nov, over 5 Mondays
    (entry,) = await audit.entries(action="report.export")
    assert (entry.username, entry.target, entry.detail) == ("ada", "staffing_plan",
                                                            {"day": "2026-12-07", "weeks": "5"})


# -- the command ------------------------------------------------------------------------------------

def run_cli(argv: list[str], url: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["report", *argv, "--db", url])
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = asyncio.run(run_report_command(args, CallbridgeSettings(timezone="Europe/Moscow"),
                                              clock=lambda: NOW))
    return code, out.getvalue(), err.getvalue()


def test_report_staffing_prints_the_plan(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}"

    async def fill() -> dict:
        store = CallLogStore(url)
        await store.open()
        try:
            await store.save(history())
            return (await staffing_plan(service(store), "2026-12-07", weeks=5, interval="30")).to_json()
        finally:
            await store.close()

    expected_json = json.loads(json.dumps(asyncio.run(fill())))
    code, out, _ = run_cli(["staffing", "--day", "2026-12-07", "--weeks", "5", "--interval", "30",
                            "--format", "json"], url)
    assert code == 0 and json.loads(out) == expected_json
    code, out, _ = run_cli(["staffing", "--day", "2026-12-07", "--format", "csv"], url)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and (rows[10]["time"], rows[10]["calls"]) == ("10:00", "19.0")
    code, out, _ = run_cli(["staffing", "--day", "2026-12-07"], url)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("staffing plan: 2026-12-07 (Mon, from 4 weeks), queue all")
    assert lines[1] == "history days: 2026-11-09, 2026-11-16, 2026-11-23, 2026-11-30"
    assert lines[2].split()[:6] == ["time", "calls", "aht_seconds", "patience_seconds", "agents", "staff"]
    ten = lines[3 + 10].split()
    agents, staff, _ = advice(19, 7440 / 68, 194)
    assert ten[:6] == ["10:00", "19", "109.412", "194", str(agents), str(staff)]
    code, out, _ = run_cli(["staffing", "--period", "range", "--from", "2026-11-23", "--to", "2026-11-24",
                            "--format", "json"], url)
    assert code == 0 and json.loads(out)["history_days"] == ["2026-11-23", "2026-11-24"]
    code, out, err = run_cli(["staffing", "--day", "2026-12-07", "--interval", "day"], url)
    assert code == 2 and out == "" and "per 15, 30 or 60 minutes" in err
    code, _, err = run_cli(["staffing", "--day", "07/12/2026"], url)
    assert code == 2 and "day must be a date" in err
    code, out, _ = run_cli(["--table", "totals"], url)  # the report itself is unchanged
    assert code == 0 and out.startswith("totals: 2026-12-02T00:00:00+03:00")
