"""The reports' HTTP API (roles, 400s, CSV, audit) and `callbridge report` print the same
figures as the service. A stand-in auth middleware names the user (web.auth in the bridge)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, redirect_stdout
from datetime import date
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord
from bridge.cli import build_parser
from bridge.settings import CallbridgeSettings
from reports.cli import run_report_command
from reports.http import ReportsApi, add_report_routes
from reports.service import ReportService
from reports.settings import ReportSettings
from tests.test_reports_figures import DAY, at, call, hand_made_day
from web.access import USER_KEY
from web.audit_log import AuditLog
from web.users import User

NOW = at(DAY, 20, 0)
ROLES = (("sam", "supervisor"), ("ada", "admin"), ("anna", "operator"), ("tina", "trainer"))
USERS = {name: User(username=name, display_name=name.title(), role=role, extensions=[])
         for name, role in ROLES}


@web.middleware
async def stand_in_auth(request: web.Request, handler):  # noqa: ANN001, ANN201
    request[USER_KEY] = USERS.get(request.headers.get("X-Test-User", ""))
    return await handler(request)


@asynccontextmanager
async def reports_site(tmp_path: Path, calls: list[CallRecord],
                       make_service: Callable[[CallLogStore], ReportService]
                       ) -> AsyncIterator[tuple[TestClient, AuditLog, CallLogStore]]:
    """The reports' routes on a test server over a SQLite log of `calls`, users by header."""
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}")
    await store.open()
    await store.save(calls)
    static = tmp_path / "static"
    static.mkdir(exist_ok=True)
    (static / "reports.html").write_text("<!doctype html><title>Reports</title>")
    audit = AuditLog(store)
    app = web.Application(middlewares=[stand_in_auth])
    add_report_routes(app, ReportsApi(make_service(store), audit, static))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, audit, store
    finally:
        await client.close()
        await store.close()


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[tuple[TestClient, AuditLog, CallLogStore]]:
    hostile = call("h1", at(DAY, 10, 0), "answered", 4, 20, queue="=HYPERLINK(\"x\")", operator="105")
    async with reports_site(tmp_path, [*hand_made_day(), hostile], lambda store: ReportService(
            store, ReportSettings(), timezone="Europe/Moscow", clock=lambda: NOW)) as site:
        yield site


async def get(client: TestClient, path: str, user: str = "sam") -> aiohttp.ClientResponse:
    resp = await client.get(path, headers={"X-Test-User": user})
    await resp.read()
    return resp


async def test_supervisors_and_admins_get_the_report(site) -> None:  # noqa: ANN001
    client, _, store = site
    for user in ("sam", "ada"):
        resp = await get(client, "/api/reports?period=today&queue=support&interval=15", user)
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
        assert body["period"] == {"from": "2026-11-24T00:00:00+03:00", "to": "2026-11-25T00:00:00+03:00",
                                  "timezone": "Europe/Moscow", "interval": "15", "queue": "support",
                                  "pbx": None}  # every PBX's
        nine = body["intervals"][36]
        assert (nine["offered"], nine["service_level_by_definition"]["answered"]) == (4, 0.5)
        assert set(body) >= {"definitions", "targets", "totals", "by_queue", "wait_distribution",
                             "talk_distribution", "by_hour_of_day", "by_weekday", "operators", "staffing"}
        assert body["wait_distribution"][0] == {"label": "0-10", "from": 0.0, "to": 10.0, "calls": 1,
                                                "answered": 0, "abandoned": 1}  # a3, the short abandon
        for name in ("service_level", "abandon_rate", "asa_seconds", "wait_p90_seconds", "aht_seconds",
                     "operators.occupancy", "staffing.staff_actual"):
            assert body["definitions"][name], name
    service = ReportService(store, ReportSettings(), timezone="Europe/Moscow", clock=lambda: NOW)
    same = (await service.report("today", queue="support", interval="15")).to_json()
    assert body == json.loads(json.dumps(same))
    page = await get(client, "/reports")
    assert page.status == 200 and "Content-Security-Policy" in page.headers


async def test_other_roles_are_refused_and_audited(site) -> None:  # noqa: ANN001
    client, audit, _ = site
    for user, path in (("anna", "/api/reports"), ("tina", "/api/reports/export.csv?table=totals"),
                       ("anna", "/reports")):
        assert (await get(client, path, user)).status == 403
    assert (await get(client, "/api/reports", "nobody")).status == 401
    denied = await audit.entries(action="report.denied")
    assert sorted((e.username, e.target, e.result) for e in denied) == [
        ("anna", "/api/reports", "denied"), ("anna", "/reports", "denied"),
        ("tina", "/api/reports/export.csv", "denied")]


@pytest.mark.parametrize(("query", "words"), [
    ("period=month", "period must be one of"), ("period=range&from=2026-11-24", "needs 'to'"),
    ("period=range&from=2026-11-25&to=2026-11-24", "before"), ("interval=7", "interval must be"),
    ("perod=today", "unknown parameter"),
    ("period=range&from=yesterday&to=2026-11-24", "'from' must be a date"),
])
async def test_a_bad_query_is_a_400_that_says_why(site, query: str, words: str) -> None:  # noqa: ANN001
    client, _, _ = site
    for path in ("/api/reports?", "/api/reports/export.csv?table=totals&"):
        resp = await get(client, path + query)
        assert resp.status == 400 and words in (await resp.json())["error"], path
    resp = await get(client, "/api/reports/export.csv?table=secrets")
    assert resp.status == 400 and "table must be one of" in (await resp.json())["error"]


async def test_csv_export_is_the_report_and_audited(site) -> None:  # noqa: ANN001
    client, audit, _ = site
    resp = await get(client, "/api/reports/export.csv?table=by_queue&period=today", "ada")
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    by_queue = {r["queue"]: r for r in rows}
    assert by_queue["support"]["offered"] == "5" and by_queue["sales"]["offered"] == "1"
    assert "'=HYPERLINK(\"x\")" in by_queue  # a formula-looking name stays text in a spreadsheet
    assert by_queue["support"]["unanswered_by_reason.timeout"] == "1"
    ops = list(csv.DictReader(io.StringIO(await (await get(
        client, "/api/reports/export.csv?table=operators&period=today")).text())))
    assert {r["operator"] for r in ops} == {"101", "102", "103", "104", "105"}
    (entry, _) = await audit.entries(action="report.export")
    assert (entry.username, entry.target, entry.result, entry.detail) == ("sam", "operators", "ok",
                                                                            {"period": "today"})


def run_cli(argv: list[str], store_url: str) -> tuple[int, str]:
    import asyncio

    args = build_parser().parse_args(["report", *argv, "--db", store_url])
    settings = CallbridgeSettings(timezone="Europe/Moscow")
    out = io.StringIO()
    with redirect_stdout(out):
        code = asyncio.run(run_report_command(args, settings, clock=lambda: NOW))
    return code, out.getvalue()


def test_the_command_prints_the_same_figures(tmp_path: Path) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}"

    async def fill() -> dict:
        store = CallLogStore(url)
        await store.open()
        try:
            await store.save(hand_made_day())
            service = ReportService(store, ReportSettings(), timezone="Europe/Moscow", clock=lambda: NOW)
            return (await service.report("range", start=DAY.isoformat(), end=DAY.isoformat())).to_json()
        finally:
            await store.close()

    expected = json.loads(json.dumps(asyncio.run(fill())))
    code, out = run_cli(["--period", "range", "--from", "2026-11-24", "--to", "2026-11-24",
                         "--format", "json"], url)
    assert code == 0 and json.loads(out) == expected
    code, out = run_cli(["--table", "by_queue", "--format", "csv"], url)
    rows = {r["queue"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["support"]["offered"] == "5"
    assert rows["support"]["abandon_rate"] == "0.25"  # a4 of 5 - 1 short
    code, out = run_cli(["--table", "totals"], url)
    header, values = out.splitlines()[1:3]
    assert code == 0 and header.split()[:3] == ["queue", "offered", "answered"]
    assert values.split()[:3] == ["(all)", "7", "4"]
    backwards = ["--period", "range", "--from", str(date(2026, 11, 25)), "--to", "2026-11-24"]
    assert run_cli(backwards, url)[0] == 2
