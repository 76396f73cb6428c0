"""The reports page (/reports) in Chromium.

Most tests run the page against a fake server (`FakeReportsServer`, below): the page and
its assets from web/static/ under the pages' strict Content-Security-Policy, a fake
`GET /api/session` (a supervisor) and a fake `GET /api/reports` answering
`reports_fixture.json` — a day that follows docs/reports_api.md to the letter, with queue
and operator names that are markup (`<img src=x onerror=alert(1)>`) or SQL (`"; DROP ...`).
The fake narrows the fixture to the asked queue and writes the asked period and interval
into `period`, so a picker's effect shows on the page; it keeps every query it was asked.

The page's figures are checked against the JSON through the same formatting rules the page
states (percentages to one decimal; durations "8 s", "3 min 05 s", "1 h 05 min"; counts
with thousands separators), computed here independently with exact decimal rounding.

One more test goes through the real app: the real login, reports/http.py and the report
service on SQLite, seeded with a morning of calls (a queue and an operator named in markup,
a queue named in SQL) and a fixed clock; Vera, a supervisor, signs in and the page shows
exactly the numbers `GET /api/reports` answers her.

Screenshots: artifacts/screenshots/reports-*.png (docs/screenshots/reports*.png are
copies of them).
"""

from __future__ import annotations

import base64
import copy
import csv
import io
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from argon2 import PasswordHasher
from playwright.sync_api import expect

from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord, RingRecord
from crm_adapters.lookup import LookupService
from reports.http import ReportsApi, add_report_routes
from reports.service import ReportService
from reports.settings import ReportSettings
from screenpop.app import create_web_app
from tests.browser.harness import SCREENSHOTS, STATIC, LoopThread, screenshot, serve_on_free_port
from web.audit_log import AuditLog
from web.users import UserStore

PASSWORD = "reports-page-password-1"

FIXTURE = Path(__file__).with_name("reports_fixture.json")
HOSTILE = "<img src=x onerror=alert(1)>"
DROP = '"; DROP TABLE calls; --'
CSRF_TOKEN = "csrf-reports-token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CHARTS = ["intervals", "wait", "hours", "weekdays", "talk", "staffing"]
AVAILABLE = "Available (red: too few, amber: too many)"  # the staffing chart's actual staff
TABLES = ["totals", "by_queue", "intervals", "wait_distribution", "talk_distribution", "by_hour_of_day",
          "by_weekday", "operators", "staffing"]  # every table export.csv knows (reports/http.py)


def fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


# ---- the page's formatting, independently ------------------------------------------------

NONE = "—"


def half_up(value: float, places: int = 0) -> Decimal:
    """Round the float's exact value half up, as JavaScript's toFixed / Math.round do (x >= 0)."""
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def pct(value: float | None) -> str:
    return NONE if value is None else f"{half_up(value * 100, 1)}%"


def secs(value: float | None) -> str:
    if value is None:
        return NONE
    s = int(half_up(value))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def staff_count(value: float | None) -> str:
    if value is None:
        return NONE
    return count(int(value)) if value == int(value) else str(half_up(value, 1))


def hour_label(start: str) -> str:
    return start[11:16]


# ---- the fake server -----------------------------------------------------------------------


@dataclass
class FakeReportsServer:
    loop_thread: LoopThread
    report: dict[str, Any] = field(default_factory=fixture)
    queries: list[dict[str, str]] = field(default_factory=list)
    exports: list[dict[str, str]] = field(default_factory=list)
    plans: list[dict[str, str]] = field(default_factory=list)  # GET /api/reports/staffing queries
    base_url: str = ""
    _runner: web.AppRunner | None = None

    def start(self) -> str:
        self.base_url = self.loop_thread.run(self._start())
        return self.base_url

    def stop(self) -> None:
        if self._runner is not None:
            self.loop_thread.run(self._runner.cleanup())

    def asked(self) -> list[dict[str, str]]:
        return self.loop_thread.call(list, self.queries)

    async def _start(self) -> str:
        app = web.Application(middlewares=[self._csp])
        app.router.add_get("/reports", self._page)
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/session", self._session)
        app.router.add_get("/api/reports", self._report)
        app.router.add_get("/api/reports/export.csv", self._export)
        app.router.add_get("/api/reports/staffing", self._plan)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    @web.middleware
    async def _csp(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        response.headers["Content-Security-Policy"] = CSP
        return response

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "reports.html")

    async def _session(self, request: web.Request) -> web.Response:
        return web.json_response({"user": "vera", "display_name": "Vera Supervisor", "role": "supervisor",
                                  "extensions": ["201"], "csrf_token": CSRF_TOKEN})

    async def _report(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.queries.append(q)
        report = copy.deepcopy(self.report)
        period = q.get("period", "today")
        days = {"today": ("2026-11-24", "2026-11-25"), "yesterday": ("2026-11-23", "2026-11-24"),
                "last7": ("2026-11-18", "2026-11-25")}
        if period == "range":
            start, end = q.get("from", ""), q.get("to", "")
            if not (re.fullmatch(r"\d{4}-\d{2}-\d{2}", start) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", end)):
                return web.json_response({"error": "from and to must be dates, YYYY-MM-DD"}, status=400)
            if start > end:
                return web.json_response({"error": "from is after to"}, status=400)
            end = f"{end[:8]}{int(end[8:]) + 1:02d}"  # the fixture's days stay inside one month
        elif period in days:
            start, end = days[period]
        else:
            return web.json_response({"error": f"unknown period {period!r}"}, status=400)
        queue = q.get("queue") or None
        report["period"].update({"from": f"{start}T00:00:00+03:00", "to": f"{end}T00:00:00+03:00",
                                 "interval": q.get("interval", "60"), "queue": queue})
        if queue is not None:
            if queue not in report["by_queue"]:
                return web.json_response({"error": f"unknown queue {queue!r}"}, status=400)
            report["totals"] = report["by_queue"][queue]
            report["by_queue"] = {queue: report["by_queue"][queue]}
        return web.json_response(report)

    async def _plan(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.plans.append(q)
        day = q.get("day", "typical")
        if day != "typical" and not ("2000-01-01" <= day <= "2027-12-31"):
            return web.json_response({"error": f"day must be a YYYY-MM-DD from 2000-01-01, not {day!r}"},
                                     status=400)
        return web.json_response(fake_plan(self.report, day, q.get("weeks")))

    async def _export(self, request: web.Request) -> web.Response:
        self.exports.append(dict(request.query))
        table = request.query.get("table", "")
        return web.Response(text=f"table\r\n{table}\r\n", content_type="text/csv")


def fake_plan(report: dict[str, Any], day: str, weeks: str | None) -> dict[str, Any]:
    """A staffing plan as docs/reports_api.md has it, made from the fixture's staffing rows:
    averaged calls (fractions), a time of day, and a start on the chosen day (none when typical)."""
    rows = []
    for r in report["staffing"]:
        time = r["start"][11:16]
        rows.append({**r, "calls": r["calls"] + 0.25, "time": time, "patience_seconds": 90.0,
                     "start": None if day == "typical" else f"{day}T{time}:00+03:00"})
    typical = day == "typical"
    n = int(weeks or 4)
    last = datetime(2026, 11, 30).date()  # the fake plans from the Mondays up to 30 Nov
    history = ["2026-11-23"] if typical else [str(last - timedelta(weeks=k)) for k in range(n - 1, -1, -1)]
    return {"day": day, "weekday": None if typical else 0, "weeks": None if typical else n,
            "period": {**report["period"]}, "history_days": history,
            "definitions": {k: v for k, v in report["definitions"].items() if k.startswith("staffing.")},
            "target_seconds": 30, "target_fraction": 0.8, "max_occupancy": 0.85, "shrinkage": 0.3,
            "patience_seconds": 90.0, "staffing": rows}


@pytest.fixture
def fake(loop_thread: LoopThread) -> Iterator[FakeReportsServer]:
    server = FakeReportsServer(loop_thread)
    server.start()
    yield server
    server.stop()


def open_reports(page: Any, base_url: str, query: str = "") -> None:
    page.goto(f"{base_url}/reports{query}")
    expect(page.locator("body")).to_have_attribute("data-state", "ready")


# ---- canvas checks -------------------------------------------------------------------------

# Pixels of a chart that are neither the white background nor transparent: bars, lines, text.
INK = """(id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0, coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
    if (a > 0 && (r < 235 || g < 235 || b < 235)) ink++;
    if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
  }
  return {w: c.width, h: c.height, ink, coloured, corner: Array.from(d.slice(0, 4))};
}"""

CHART_DATA = """(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart ? {labels: chart.data.labels,
                  sets: Object.fromEntries(chart.data.datasets.map(s => [s.label, s.data]))} : null;
}"""


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    return struct.unpack(">II", data[16:24])


# ---- the tests ------------------------------------------------------------------------------


def test_headline_tables_and_definitions_show_the_api_figures(page: Any, fake: FakeReportsServer) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    open_reports(page, fake.base_url)
    report = fixture()
    t = report["totals"]
    assert fake.asked() == [{"period": "today", "interval": "60"}]
    expect(page.locator("#period-text")).to_have_text("Tue 24 Nov 2026")
    expect(page.locator("#period-sub")).to_have_text("all queues · per hour · Europe/Moscow")
    expect(page.locator("#whoami")).to_contain_text("Vera Supervisor")

    tiles = {f: page.locator(f'.tile[data-figure="{f}"] .tile-value') for f in
             ("service_level", "abandon_rate", "asa", "aht", "calls")}
    expect(tiles["service_level"]).to_have_text(pct(t["service_level"]))
    expect(tiles["abandon_rate"]).to_have_text(pct(t["abandon_rate"]))
    expect(tiles["asa"]).to_have_text(secs(t["asa_seconds"]))
    expect(tiles["aht"]).to_have_text(secs(t["aht_seconds"]))
    expect(tiles["calls"]).to_have_text(count(t["offered"]))
    assert [pct(t["service_level"]), secs(t["aht_seconds"])] == ["81.1%", "3 min 06 s"]  # the rules hold
    expect(page.locator('.tile[data-figure="abandon_rate"] .tile-sub')).to_have_text(
        f"{t['abandoned']} abandoned, {t['short_abandoned']} of them short")
    expect(page.locator('.tile[data-figure="asa"] .tile-sub')).to_have_text(
        f"90% within {secs(t['wait_p90_seconds'])} · longest {secs(t['longest_wait_seconds'])}")
    # Queues' targets differ (20, 30, 60 s): the service level says so rather than pick one.
    expect(page.locator('.tile[data-figure="service_level"] .tile-sub')).to_have_text(
        "answered within each queue's target")
    for name, value in t["service_level_by_definition"].items():
        expect(page.locator(f'.chip[data-sl="{name}"] b')).to_have_text(pct(value))
    expect(page.locator('.chip[data-field="reasons"]')).to_have_text("Unanswered: timeout 3, full 1")

    # Every figure's definition: the tile's tooltip, and a footnote mark leading to it.
    defs = report["definitions"]
    for figure, key in (("service_level", "service_level"), ("abandon_rate", "abandon_rate"),
                        ("asa", "asa_seconds"), ("aht", "aht_seconds")):
        tile = page.locator(f'.tile[data-figure="{figure}"]')
        expect(tile).to_have_attribute("title", defs[key])
        href = tile.locator(".fn-mark").get_attribute("href")
        expect(page.locator(f"{href} dd")).to_have_text(defs[key])
    expect(page.locator("#defs .def")).to_have_count(len(defs))
    expect(page.locator("#defs dd")).to_have_text(list(defs.values()))
    for name in t["service_level_by_definition"]:
        key = f"service_level_by_definition.{name}"
        chip = page.locator(f'.chip[data-sl="{name}"]')
        expect(chip).to_have_attribute("title", defs[key])
        expect(page.locator(f'{chip.locator(".fn-mark").get_attribute("href")} dd')).to_have_text(defs[key])
    # Every table heading with a definition has it as its tooltip; each chart note says its own.
    headings = page.eval_on_selector_all("th[data-def]", "els => els.map(e => [e.dataset.def, e.title])")
    assert len(headings) > 30 and all(title == defs[key] for key, title in headings), headings
    for key in ("wait_distribution", "talk_distribution", "by_hour_of_day", "by_weekday"):
        mark = list(defs).index(key) + 1  # the footnote's number: the definitions in the API's order
        expect(page.locator(f'p.note[data-def="{key}"]')).to_have_text(f"{defs[key]}{mark}")
    expect(page.locator(".def-group h3")).to_have_text(["Calls and service level", "Operators", "Staffing"])

    # By queue: one row per queue in the API's order, the hostile names as text; then the total.
    rows = page.locator("#t-queues tbody tr")
    expect(rows).to_have_count(len(report["by_queue"]))
    for i, (name, f) in enumerate(report["by_queue"].items()):
        cells = rows.nth(i).locator("th, td")
        target = report["targets"][name]
        expect(cells).to_have_text([
            name, f"{target:g} s", count(f["offered"]), count(f["answered"]), count(f["abandoned"]),
            count(f["unanswered"]), pct(f["service_level"]), pct(f["abandon_rate"]), secs(f["asa_seconds"]),
            secs(f["wait_p90_seconds"]), secs(f["longest_wait_seconds"]), secs(f["aht_seconds"])])
    expect(rows.nth(3).locator("td").nth(6)).to_have_text(NONE)  # no calls behind it: a dash, never 0%
    expect(page.locator("#t-queues tfoot tr th")).to_have_text("All queues")
    expect(page.locator("#t-queues tfoot tr td").nth(1)).to_have_text(count(t["offered"]))

    ops = page.locator("#t-operators tbody tr")
    expect(ops).to_have_count(len(report["operators"]))
    for i, o in enumerate(report["operators"]):
        expect(ops.nth(i).locator("th .op-name")).to_have_text(o["name"])
        expect(ops.nth(i).locator("td")).to_have_text([
            count(o["rung"]), count(o["answered"]), count(o["missed"]), secs(o["talk_seconds"]),
            secs(o["aht_seconds"]), count(o["transfers"]), secs(o["logged_in_seconds"]),
            secs(o["paused_seconds"]), pct(o["occupancy"])])
    expect(ops.nth(0).locator("td").nth(6)).to_have_text("8 h 00 min")

    # Staffing: every interval; under- and over-staffed ones marked in words and colour.
    staff = page.locator("#t-staffing tbody tr")
    expect(staff).to_have_count(len(report["staffing"]))
    for i, s in enumerate(report["staffing"]):
        row = staff.nth(i)
        expect(row).to_have_attribute("data-verdict", s["verdict"])
        expect(row.locator("th, td")).to_have_text([
            hour_label(s["start"]), count(s["calls"]), secs(s["aht_seconds"]), count(s["agents"]),
            count(s["staff"]), staff_count(s["staff_actual"]), pct(s["expected_service_level"]),
            pct(s["service_level_with_actual"]), pct(s["abandon_rate"]),
            {"under": "under-staffed", "over": "over-staffed", "ok": "as needed"}[s["verdict"]]])
    defs = report["definitions"]
    backgrounds = page.evaluate("""() => Object.fromEntries(['under', 'over', 'ok'].map(v => [v,
        getComputedStyle(document.querySelector(`#t-staffing tr[data-verdict="${v}"]`)).backgroundColor]))""")
    assert len(set(backgrounds.values())) == 3, backgrounds  # three different highlights
    verdicts = [s["verdict"] for s in report["staffing"]]
    under, over = verdicts.count("under"), verdicts.count("over")
    expect(page.locator("#staff-note")).to_contain_text(
        f"{under} under-staffed, {over} over-staffed of {len(verdicts)} intervals. "
        f"Verdict: {defs['staffing.verdict']}")
    assert staff_count(2.75) == "2.8" and staff_count(3.0) == "3"

    page.locator(".as-table summary").click()
    first = report["intervals"][0]
    expect(page.locator("#t-intervals tbody tr").first.locator("th, td")).to_have_text([
        hour_label(first["start"]), count(first["offered"]), count(first["answered"]),
        count(first["abandoned"]), count(first["unanswered"]), pct(first["service_level"]),
        secs(first["asa_seconds"]), secs(first["aht_seconds"])])


def test_charts_render_with_the_api_data(page: Any, fake: FakeReportsServer) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    open_reports(page, fake.base_url)
    report = fixture()
    for name in CHARTS:
        ink = page.evaluate(INK, f"chart-{name}")
        assert ink["w"] > 300 and ink["h"] > 200, (name, ink)
        assert ink["ink"] > 2000 and ink["coloured"] > 300, (name, ink)  # bars and text, not a blank canvas
        assert ink["corner"] == [255, 255, 255, 255], (name, ink)  # the white background the PNG keeps

    intervals = page.evaluate(CHART_DATA, "chart-intervals")
    assert intervals["labels"] == [hour_label(r["start"]) for r in report["intervals"]]
    assert intervals["sets"]["Answered"] == [r["answered"] for r in report["intervals"]]
    assert intervals["sets"]["Abandoned"] == [r["abandoned"] for r in report["intervals"]]
    assert intervals["sets"]["Unanswered"] == [r["unanswered"] for r in report["intervals"]]
    assert intervals["sets"]["Service level %"] == [
        round(r["service_level"] * 100, 1) for r in report["intervals"]]

    wait = page.evaluate(CHART_DATA, "chart-wait")
    buckets = report["wait_distribution"]
    assert wait["labels"] == [f"{b['label']} s" for b in buckets]
    assert wait["sets"]["Answered"] == [b["answered"] for b in buckets]
    assert wait["sets"]["Abandoned"] == [b["abandoned"] for b in buckets]
    rest = [b["calls"] - b["answered"] - b["abandoned"] for b in buckets]
    assert wait["sets"]["Unanswered or incomplete"] == rest
    assert sum(wait["sets"]["Unanswered or incomplete"]) > 0

    talk = page.evaluate(CHART_DATA, "chart-talk")
    assert talk["sets"] == {"calls": [b["calls"] for b in report["talk_distribution"]]}

    weekdays = page.evaluate(CHART_DATA, "chart-weekdays")
    assert weekdays["labels"] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert weekdays["sets"]["calls per day"] == [d["calls_per_day"] for d in report["by_weekday"]]

    hours = page.evaluate(CHART_DATA, "chart-hours")
    per_hour = {h["hour"]: h["calls_per_day"] for h in report["by_hour_of_day"]}
    assert hours["labels"] == [f"{h:02d}" for h in range(24)]
    assert hours["sets"]["calls per day"] == [per_hour.get(h, 0) for h in range(24)]

    staffing = page.evaluate(CHART_DATA, "chart-staffing")
    assert staffing["sets"]["Staff needed"] == [s["staff"] for s in report["staffing"]]
    assert staffing["sets"][AVAILABLE] == [
        s["staff_actual"] for s in report["staffing"]]
    assert staffing["sets"]["Agents needed on the phones"] == [s["agents"] for s in report["staffing"]]
    colours = page.evaluate("""() => Chart.getChart(document.getElementById('chart-staffing'))
        .data.datasets[2].backgroundColor""")
    under = [i for i, s in enumerate(report["staffing"]) if s["verdict"] == "under"]
    assert under and {colours[i] for i in under} == {"#d92d20"}, colours
    assert colours[0] != "#d92d20"

    screenshot(page, "reports-1366-full")
    page.screenshot(path=str(SCREENSHOTS / "reports.png"), animations="disabled")  # what a projector shows


def test_pickers_change_the_query_and_csv_links_carry_it(page: Any, fake: FakeReportsServer) -> None:
    open_reports(page, fake.base_url)
    report = fixture()

    def links() -> dict[str, dict[str, str]]:
        hrefs = page.eval_on_selector_all("a.csv", "els => els.map(a => [a.dataset.table, a.href])")
        out = {}
        for table, href in hrefs:
            url = urlsplit(href)
            assert url.path == "/api/reports/export.csv", href
            out[table] = dict(parse_qsl(url.query))
        return out

    assert sorted(links()) == sorted(TABLES)
    assert all(q == {"table": t, "period": "today", "interval": "60"} for t, q in links().items())

    page.select_option("#p-period", "last7")
    expect(page.locator("#period-text")).to_have_text("Wed 18 Nov – Tue 24 Nov 2026")
    assert fake.asked()[-1] == {"period": "last7", "interval": "60"}

    page.select_option("#p-interval", "day")
    expect(page.locator("#period-sub")).to_have_text("all queues · per day · Europe/Moscow")
    assert fake.asked()[-1] == {"period": "last7", "interval": "day"}
    expect(page.locator("#t-staffing tbody tr").first.locator("th")).to_have_text("Tue 24 Nov")

    # A hostile queue name: picked as an option's text, sent as a query value, never markup.
    option_texts = page.eval_on_selector_all("#p-queue option", "els => els.map(o => o.textContent)")
    assert option_texts == ["All queues", *report["queues"]]
    page.select_option("#p-queue", HOSTILE)
    expect(page.locator("#period-sub")).to_have_text(f"queue {HOSTILE} · per day · Europe/Moscow")
    assert fake.asked()[-1] == {"period": "last7", "queue": HOSTILE, "interval": "day"}
    hostile = report["by_queue"][HOSTILE]
    expect(page.locator('.tile[data-figure="calls"] .tile-value')).to_have_text(count(hostile["offered"]))
    expect(page.locator('.tile[data-figure="service_level"] .tile-sub')).to_have_text("answered within 30 s")
    expect(page.locator("#t-queues tbody tr")).to_have_count(1)
    expect(page.locator("#t-queues tfoot tr")).to_have_count(0)
    query = {"period": "last7", "queue": HOSTILE, "interval": "day"}
    assert all(q == {"table": t, **query} for t, q in links().items())
    assert parse_qsl(urlsplit(page.url).query) == list(query.items())  # the address keeps it

    # A date range: starts as the days on screen, goes out on "Show"; a reversed one is refused here.
    page.select_option("#p-period", "range")
    expect(page.locator("#p-from")).to_have_value("2026-11-18")
    expect(page.locator("#p-to")).to_have_value("2026-11-24")
    asked = len(fake.asked())
    page.fill("#p-from", "2026-11-20")
    page.fill("#p-to", "2026-11-10")
    page.click("#p-apply")
    expect(page.locator("#status")).to_have_text("The range starts after it ends.")
    assert len(fake.asked()) == asked
    page.fill("#p-to", "2026-11-22")
    page.click("#p-apply")
    expect(page.locator("#period-text")).to_have_text("Fri 20 Nov – Sun 22 Nov 2026")
    assert fake.asked()[-1] == {"period": "range", "from": "2026-11-20", "to": "2026-11-22",
                                "queue": HOSTILE, "interval": "day"}
    assert links()["operators"] == {"table": "operators", "period": "range", "from": "2026-11-20",
                                    "to": "2026-11-22", "queue": HOSTILE, "interval": "day"}

    # The link works: the server gets exactly the page's query.
    href = page.get_attribute('a.csv[data-table="by_queue"]', "href")
    resp = page.request.get(fake.base_url + href)
    assert resp.ok and resp.headers["content-type"].startswith("text/csv")
    assert fake.loop_thread.call(list, fake.exports)[-1] == links()["by_queue"]

    # Reload: the address holds the query, the same report comes back.
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    assert fake.asked()[-1] == {"period": "range", "from": "2026-11-20", "to": "2026-11-22",
                                "queue": HOSTILE, "interval": "day"}
    expect(page.locator("#p-queue")).to_have_value(HOSTILE)
    expect(page.locator("#p-interval")).to_have_value("day")

    page.select_option("#p-period", "yesterday")
    expect(page.locator("#period-text")).to_have_text("Mon 23 Nov 2026")
    assert fake.asked()[-1] == {"period": "yesterday", "queue": HOSTILE, "interval": "day"}
    expect(page.locator("#range")).to_be_hidden()


def test_the_servers_refusal_is_shown_as_text(page: Any, fake: FakeReportsServer) -> None:
    query = urlencode({"period": "today", "queue": DROP + "x", "interval": "60"})
    page.goto(f"{fake.base_url}/reports?{query}")
    # unknown queue: the fake refuses it, as the API does, with {"error": ...}
    expect(page.locator("body")).to_have_attribute("data-state", "error")
    expect(page.locator("#status")).to_have_text(f"The report could not be made: unknown queue '{DROP}x'")


def test_png_export_downloads_each_chart(page: Any, fake: FakeReportsServer) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    open_reports(page, fake.base_url)
    for name in ("intervals", "staffing", "wait"):
        with page.expect_download() as info:
            page.click(f'button.png[data-chart="{name}"]')
        download = info.value
        assert download.url.startswith("data:image/png;base64,"), download.url[:40]
        data = base64.b64decode(download.url.split(",", 1)[1])
        width, height = png_size(data)
        canvas = page.evaluate(INK, f"chart-{name}")
        assert (width, height) == (canvas["w"], canvas["h"])
        assert download.suggested_filename == f"callbridge-{name}-2026-11-24-all-queues.png"
        assert len(data) > 5000  # a drawn chart, not an empty image


def test_hostile_names_stay_text(page: Any, fake: FakeReportsServer) -> None:
    page.add_init_script("window.alert = () => { window.pwned = true; };")
    open_reports(page, fake.base_url)
    report = fixture()
    assert page.locator("main img, form img").count() == 0
    assert page.evaluate("window.pwned") is None
    expect(page.locator(f'#t-queues tbody tr[data-queue="{HOSTILE}"] th')).to_have_text(HOSTILE)
    drop_row = page.locator("#t-queues tbody tr").nth(list(report["by_queue"]).index(DROP))
    expect(drop_row.locator("th")).to_have_text(DROP)
    expect(page.locator('#t-operators tr[data-operator="102"] .op-name')).to_have_text(HOSTILE)
    expect(page.locator('#t-operators tr[data-operator="103"] .op-name')).to_have_text(DROP)
    # The names are in the DOM as text nodes only: no element anywhere came from them.
    assert page.locator("img, body script, [onerror]").count() == 0
    assert page.locator("head script").count() == 3  # Chart.js, common.js, reports.js


@pytest.mark.parametrize("width", [800, 1366])
def test_layout_fits_the_width(page: Any, fake: FakeReportsServer, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 768})
    open_reports(page, fake.base_url)
    page.locator(".as-table summary").click()
    overflow = page.evaluate("""() => ({doc: document.documentElement.scrollWidth,
        body: document.body.scrollWidth, view: window.innerWidth,
        wide: [...document.querySelectorAll('body *')].filter(e => {
            const r = e.getBoundingClientRect();
            return r.width > 0 && r.right > window.innerWidth + 1 && !e.closest('.table-wrap');
        }).map(e => e.tagName + '.' + e.className).slice(0, 10)})""")
    assert overflow["doc"] <= overflow["view"] and overflow["body"] <= overflow["view"], overflow
    assert overflow["wide"] == [], overflow
    # Each chart spans the width it is given; at 800 px they stack, one a row.
    boxes = [page.locator(f"#chart-{n}").bounding_box() for n in CHARTS]
    assert all(b["width"] > 300 for b in boxes), boxes
    if width == 800:
        assert all(b["width"] > 700 for b in boxes), boxes
        screenshot(page, "reports-800-full")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(SCREENSHOTS / "reports-800.png"), animations="disabled")
    tile_values = page.locator(".tile-value")
    for i in range(tile_values.count()):  # the big numbers are never cut
        box = page.evaluate("(e) => [e.scrollWidth, e.clientWidth]", tile_values.nth(i).element_handle())
        assert box[0] <= box[1], (i, box)


def test_staffing_without_member_data_and_per_day(page: Any, fake: FakeReportsServer) -> None:
    """No queue member events: verdicts are null and say so; per day there is no staffing advice."""
    for row in fake.report["staffing"]:
        row["staff_actual"], row["service_level_with_actual"], row["verdict"] = None, None, None
    open_reports(page, fake.base_url)
    rows = page.locator("#t-staffing tbody tr")
    expect(rows).to_have_count(len(fake.report["staffing"]))
    expect(rows.first).to_have_attribute("data-verdict", "unknown")
    expect(rows.first.locator("td").nth(4)).to_have_text(NONE)
    expect(rows.first.locator(".verdict")).to_have_text("no member data")
    expect(page.locator("#staff-note")).to_contain_text(
        "0 under-staffed, 0 over-staffed of 12 intervals (12 without queue member data)")
    assert page.evaluate(CHART_DATA, "chart-staffing")["sets"][AVAILABLE] == [None] * 12

    fake.loop_thread.call(fake.report.__setitem__, "staffing", [])
    page.select_option("#p-interval", "day")
    expect(page.locator("#staff-none")).to_be_visible()
    expect(page.locator("#chart-staffing")).to_be_hidden()
    expect(page.locator("#staff-note")).to_have_text("")


# ---- through the real app -------------------------------------------------------------------

MOSCOW = ZoneInfo("Europe/Moscow")
DAY = datetime(2026, 11, 24, 9, 0, tzinfo=MOSCOW).timestamp()  # 09:00 in the call centre
NOW = DAY + 6 * 3600.0  # the bridge's clock: 15:00 the same day


def seeded_calls() -> list[CallRecord]:
    """(queue, entered at minutes after 09:00, waited, talked or None, outcome, reason, operator)."""
    plan = [
        ("support", 0, 8.0, 120.0, "answered", None, "101"),
        ("support", 14, 45.0, 200.0, "answered", None, "102"),
        (HOSTILE, 31, 3.0, 60.0, "answered", None, "103"),
        ("support", 50, 20.0, None, "abandoned", "caller_hangup", None),
        ("support", 75, 2.0, None, "abandoned", "caller_hangup", None),
        (HOSTILE, 95, 60.0, None, "unanswered", "timeout", None),
        ("support", 130, 12.0, 95.0, "answered", None, "101"),
        (DROP, 150, 25.0, 300.0, "answered", None, "101"),
        ("support", 242, 5.0, 45.0, "answered", None, "103"),
    ]
    calls = []
    for i, (queue, minute, wait, talk, outcome, reason, op) in enumerate(plan):
        t = DAY + minute * 60.0
        answered = t + wait if talk is not None else None
        end = (answered + talk) if answered is not None and talk is not None else t + wait
        rings = [RingRecord(operator=op, queue=queue, started_at=t + 1.0, ended_at=answered,
                            answered_at=answered, result="ANSWER")] if op else []
        calls.append(CallRecord(
            call_id=f"1795500000.{i}", caller_number=f"+7495000000{i}", caller_name=f"Caller {i}",
            queue=queue, answered_by=op, rung=[op] if op else [], outcome=outcome, outcome_reason=reason,
            ended_by="hangup", entered_at=t, answered_at=answered, ended_at=end, rings=rings))
    return calls


@dataclass
class ReportsStack:
    """The real web app (login, auth) with the reports' routes over a seeded SQLite call log."""

    loop_thread: LoopThread
    tmp: Path
    base_url: str = ""
    store: Any = None
    runner: web.AppRunner | None = None
    pbxes: tuple[str, ...] = ("main",)  # with a second PBX: two calls of its own (its 101 is another person)

    async def start(self) -> None:
        self.store = CallLogStore(f"sqlite+aiosqlite:///{self.tmp / 'calls.sqlite3'}")
        await self.store.open()
        users = UserStore(self.store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        for name, role, display, ext in (("vera", "supervisor", "Vera Supervisor", "201"),
                                         ("anna", "operator", "Anna Operator", "101"),
                                         ("mallory", "operator", HOSTILE, "102")):
            await users.add(name, PASSWORD, role=role, display_name=display, extensions=[ext])
        await self.store.save(seeded_calls())
        for other in self.pbxes[1:]:
            await self.store.save([c.model_copy(update={"pbx": other, "call_id": f"{other}:{c.call_id}"})
                                   for c in seeded_calls()[:2]])
        app = create_web_app(None, LookupService([]), user_store=users, auth_options={"secure_cookie": False})
        service = ReportService(self.store, ReportSettings(targets={"support": 20.0}),
                                timezone="Europe/Moscow", clock=lambda: NOW, pbxes=self.pbxes)
        add_report_routes(app, ReportsApi(service, AuditLog(self.store)))
        self.runner, self.base_url = await serve_on_free_port(app)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()


@pytest.fixture
def real(loop_thread: LoopThread, tmp_path: Path) -> Iterator[ReportsStack]:
    stack = ReportsStack(loop_thread, tmp_path)
    loop_thread.run(stack.start())
    yield stack
    loop_thread.run(stack.stop())


def test_through_the_real_app_the_page_shows_the_apis_numbers(page: Any, real: ReportsStack) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(real.base_url + "/reports")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.locator("#username").fill("vera")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/reports$"))
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    expect(page.locator("#whoami")).to_contain_text("Vera Supervisor")

    resp = page.request.get(real.base_url + "/api/reports?period=today&interval=60")
    assert resp.ok, resp.text()
    api = resp.json()
    t = api["totals"]
    assert t["offered"] == 9 and t["answered"] == 6  # the seeded morning, as the service counts it
    expect(page.locator("#period-text")).to_have_text("Tue 24 Nov 2026")
    expect(page.locator("#period-sub")).to_have_text("all queues · per hour · Europe/Moscow")
    value = lambda f: page.locator(f'.tile[data-figure="{f}"] .tile-value')  # noqa: E731
    expect(value("service_level")).to_have_text(pct(t["service_level"]))
    expect(value("abandon_rate")).to_have_text(pct(t["abandon_rate"]))
    expect(value("asa")).to_have_text(secs(t["asa_seconds"]))
    expect(value("aht")).to_have_text(secs(t["aht_seconds"]))
    expect(value("calls")).to_have_text(count(t["offered"]))
    expect(page.locator('.tile[data-figure="service_level"]')).to_have_attribute(
        "title", api["definitions"]["service_level"])
    for name, sl in t["service_level_by_definition"].items():
        expect(page.locator(f'.chip[data-sl="{name}"] b')).to_have_text(pct(sl))

    rows = page.locator("#t-queues tbody tr")
    expect(rows).to_have_count(len(api["by_queue"]))
    assert set(api["by_queue"]) == {"support", HOSTILE, DROP}
    for i, (name, f) in enumerate(api["by_queue"].items()):
        expect(rows.nth(i).locator("th, td")).to_have_text([
            name, f"{api['targets'][name]:g} s", count(f["offered"]), count(f["answered"]),
            count(f["abandoned"]), count(f["unanswered"]), pct(f["service_level"]), pct(f["abandon_rate"]),
            secs(f["asa_seconds"]), secs(f["wait_p90_seconds"]), secs(f["longest_wait_seconds"]),
            secs(f["aht_seconds"])])

    ops = page.locator("#t-operators tbody tr")
    expect(ops).to_have_count(len(api["operators"]))
    for i, o in enumerate(api["operators"]):
        expect(ops.nth(i)).to_have_attribute("data-operator", o["operator"])
        expect(ops.nth(i).locator(".op-name")).to_have_text(o["name"] or o["operator"])
        expect(ops.nth(i).locator("td")).to_have_text([
            count(o["rung"]), count(o["answered"]), count(o["missed"]), secs(o["talk_seconds"]),
            secs(o["aht_seconds"]), count(o["transfers"]), secs(o["logged_in_seconds"]),
            secs(o["paused_seconds"]), pct(o["occupancy"])])
    expect(page.locator('#t-operators tr[data-operator="102"] .op-name')).to_have_text(HOSTILE)

    chart = page.evaluate(CHART_DATA, "chart-intervals")
    assert chart["labels"] == [hour_label(r["start"]) for r in api["intervals"]]
    assert chart["sets"]["Answered"] == [r["answered"] for r in api["intervals"]]
    assert sum(chart["sets"]["Answered"]) == t["answered"]
    assert page.evaluate(INK, "chart-intervals")["coloured"] > 300
    wait = page.evaluate(CHART_DATA, "chart-wait")
    assert wait["sets"]["Answered"] == [b["answered"] for b in api["wait_distribution"]]
    staffing = page.locator("#t-staffing tbody tr")
    expect(staffing).to_have_count(len(api["staffing"]))
    for i, s in enumerate(api["staffing"]):
        if s["calls"]:
            expect(staffing.nth(i).locator("td").nth(3)).to_have_text(count(s["staff"]))

    # The CSV link gives the same table, and the hostile names stayed text.
    href = page.get_attribute('a.csv[data-table="by_queue"]', "href")
    assert href == "/api/reports/export.csv?table=by_queue&period=today&interval=60"
    csv_resp = page.request.get(real.base_url + href)
    assert csv_resp.ok and csv_resp.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(csv_resp.text())))
    assert [(r["queue"], int(r["offered"])) for r in table] == [
        (name, f["offered"]) for name, f in api["by_queue"].items()]
    links = page.eval_on_selector_all("a.csv", "els => els.map(a => a.getAttribute('href'))")
    assert len(links) == len(TABLES)
    for link in links:  # every table the page offers, the server makes
        got = page.request.get(real.base_url + link)
        assert got.ok and got.text().count("\r\n") >= 2, (link, got.status, got.text()[:200])
    assert page.locator("img, [onerror]").count() == 0
    screenshot(page, "reports-real-app")

    # Per weekday the API's intervals have no start, only a weekday; there is no staffing advice.
    page.select_option("#p-interval", "weekday")
    expect(page.locator("#period-sub")).to_have_text("all queues · per weekday · Europe/Moscow")
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    api = page.request.get(real.base_url + "/api/reports?period=today&interval=weekday").json()
    names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    chart = page.evaluate(CHART_DATA, "chart-intervals")
    assert chart["labels"] == [names[r["weekday"]] for r in api["intervals"]] == names
    assert chart["sets"]["Answered"] == [r["answered"] for r in api["intervals"]]
    assert api["staffing"] == []
    expect(page.locator("#staff-none")).to_be_visible()


# ---- the staffing plan ----------------------------------------------------------------------


def test_with_several_pbxes_the_page_offers_the_pbx_and_names_each_operators(
        page: Any, loop_thread: LoopThread, tmp_path: Path) -> None:
    stack = ReportsStack(loop_thread, tmp_path, pbxes=("main", "b"))
    loop_thread.run(stack.start())
    try:
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(stack.base_url + "/reports")
        page.locator("#username").fill("vera")
        page.locator("#password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("body")).to_have_attribute("data-state", "ready")
        expect(page.locator("#p-pbx-label")).to_be_visible()
        expect(page.locator("#period-sub")).to_have_text("all PBXes · all queues · per hour · Europe/Moscow")
        expect(page.locator('.tile[data-figure="calls"] .tile-value')).to_have_text("11")  # 9 + 2
        foot = page.locator("#t-queues tfoot tr")
        expect(foot).to_have_count(3)
        expect(page.locator('#t-queues tfoot tr[data-pbx="b"] th')).to_have_text("PBX b")
        b_anna = page.locator('#t-operators tr[data-operator="101"][data-pbx="b"]')
        expect(b_anna.locator(".op-ext")).to_have_text("b · 101")
        expect(page.locator('#t-operators tr[data-operator="101"][data-pbx="main"]')).to_be_visible()

        page.locator("#p-pbx").select_option("b")
        expect(page).to_have_url(re.compile(r"[?&]pbx=b(&|$)"))
        expect(page.locator("body")).to_have_attribute("data-state", "ready")
        expect(page.locator("#period-sub")).to_have_text("PBX b · all queues · per hour · Europe/Moscow")
        expect(page.locator('.tile[data-figure="calls"] .tile-value')).to_have_text("2")
        expect(page.locator('#t-queues tfoot tr[data-pbx]')).to_have_count(0)  # one PBX shown
        expect(page.locator("#t-operators tbody tr")).to_have_count(2)  # b's 101 and 102
        assert "pbx=b" in (page.locator('a.csv[data-table="operators"]').get_attribute("href") or "")
        csv_text = page.request.get(stack.base_url + page.locator('a.csv[data-table="totals"]')
                                    .get_attribute("href")).text()
        (totals,) = csv.DictReader(io.StringIO(csv_text))
        assert (totals["pbx"], totals["offered"]) == ("b", "2")
        screenshot(page, "reports-pbx-b")
    finally:
        loop_thread.run(stack.stop())


def plan_cells(row: dict[str, Any]) -> list[str]:
    """A plan row as the table shows it: calls are averages (one decimal)."""
    return [row["time"], str(half_up(row["calls"], 1)), secs(row["aht_seconds"]), count(row["agents"]),
            count(row["staff"]), staff_count(row["staff_actual"]), pct(row["expected_service_level"]),
            pct(row["service_level_with_actual"]), pct(row["abandon_rate"]),
            {"under": "under-staffed", "over": "over-staffed", "ok": "as needed"}[row["verdict"]]]


def planned(fake: FakeReportsServer) -> list[dict[str, str]]:
    return fake.loop_thread.call(list, fake.plans)


def test_staffing_plan_picker_typical_and_chosen_day(page: Any, fake: FakeReportsServer) -> None:
    page.set_viewport_size({"width": 1366, "height": 768})
    open_reports(page, fake.base_url)
    assert fake.loop_thread.call(list, fake.plans) == []  # no plan until one is picked
    expect(page.locator("#p-plan")).to_have_value("")

    page.select_option("#p-plan", "typical")
    expect(page.locator("#plan-note")).to_have_text(
        "Typical day of Tue 24 Nov 2026 — from 1 day: 23 Nov. Target 80.0% within 30 s.")
    assert planned(fake)[-1] == {"day": "typical", "period": "today", "interval": "60"}
    plan = fake_plan(fixture(), "typical", None)
    rows = page.locator("#t-staffing tbody tr")
    expect(rows).to_have_count(len(plan["staffing"]))
    for i, r in enumerate(plan["staffing"]):
        expect(rows.nth(i).locator("th, td")).to_have_text(plan_cells(r))
        expect(rows.nth(i)).to_have_attribute("data-verdict", r["verdict"])
    assert plan_cells(plan["staffing"][1])[1] == "14.3"  # 14.25, half up
    backgrounds = page.evaluate("""() => Object.fromEntries(['under', 'over', 'ok'].map(v => [v,
        getComputedStyle(document.querySelector(`#t-staffing tr[data-verdict="${v}"]`)).backgroundColor]))""")
    assert len(set(backgrounds.values())) == 3, backgrounds  # under / over highlighted as for the period
    chart = page.evaluate(CHART_DATA, "chart-staffing")
    assert chart["labels"] == [r["time"] for r in plan["staffing"]]
    assert chart["sets"]["Staff needed"] == [r["staff"] for r in plan["staffing"]]
    assert chart["sets"][AVAILABLE] == [r["staff_actual"] for r in plan["staffing"]]
    assert page.evaluate(INK, "chart-staffing")["coloured"] > 300
    verdicts = [r["verdict"] for r in plan["staffing"]]
    expect(page.locator("#staff-note")).to_contain_text(
        f"{verdicts.count('under')} under-staffed, {verdicts.count('over')} over-staffed of {len(verdicts)}")
    assert parse_qsl(urlsplit(page.url).query) == [("period", "today"), ("interval", "60"),
                                                   ("plan", "typical")]
    href = page.get_attribute('a.csv[data-table="staffing"]', "href")
    assert href == "/api/reports/staffing.csv?day=typical&period=today&interval=60"
    assert fake.asked() == [{"period": "today", "interval": "60"}]  # the report was not asked again

    # A chosen day: seeded as the day after the period, planned on "Plan" with the weeks picked.
    page.select_option("#p-plan", "day")
    expect(page.locator("#p-plan-day")).to_have_value("2026-11-25")
    page.fill("#p-plan-day", "2026-12-07")
    page.select_option("#p-plan-weeks", "3")
    assert fake.loop_thread.call(len, fake.plans) == 1  # nothing asked before "Plan"
    page.click("#p-plan-apply")
    expect(page.locator("#plan-note")).to_have_text(
        "Plan for Mon 7 Dec 2026 — from 3 Mondays: 16 Nov, 23 Nov, 30 Nov. Target 80.0% within 30 s.")
    assert planned(fake)[-1] == {"day": "2026-12-07", "weeks": "3", "interval": "60"}
    day_plan = fake_plan(fixture(), "2026-12-07", "3")
    expect(rows.first.locator("th, td")).to_have_text(plan_cells(day_plan["staffing"][0]))
    expect(rows.first).to_have_attribute("data-start", "2026-12-07T08:00:00+03:00")
    screenshot(page, "reports-staffing-plan")
    page.locator("#staffing-panel").screenshot(path=str(SCREENSHOTS / "reports-staffing-plan-panel.png"),
                                               animations="disabled")

    # The address keeps the plan: a reload shows it again; the queue and interval pickers re-plan.
    page.reload()
    expect(page.locator("#p-plan")).to_have_value("day")
    expect(page.locator("#p-plan-day")).to_have_value("2026-12-07")
    expect(page.locator("#plan-note")).to_contain_text("Plan for Mon 7 Dec 2026")
    page.select_option("#p-interval", "day")  # a plan is per hour for day / weekday intervals
    expect(page.locator("#staff-none")).to_be_hidden()
    expect(rows).to_have_count(len(day_plan["staffing"]))
    assert planned(fake)[-1] == {"day": "2026-12-07", "weeks": "3", "interval": "60"}

    # Back to the period's intervals: the report's own rows and links.
    page.select_option("#p-plan", "")
    expect(page.locator("#plan-note")).to_have_text("")
    expect(rows.first.locator("th")).to_have_text("Tue 24 Nov")  # the report's rows, per day
    expect(rows.first.locator("td").first).to_have_text(count(fixture()["staffing"][0]["calls"]))
    assert "plan" not in dict(parse_qsl(urlsplit(page.url).query))
    assert page.get_attribute('a.csv[data-table="staffing"]', "href").startswith(
        "/api/reports/export.csv?table=staffing&")


def test_a_refused_plan_is_shown_as_text(page: Any, fake: FakeReportsServer) -> None:
    open_reports(page, fake.base_url, "?period=today&interval=60&plan=1999-01-04")
    expect(page.locator("#plan-note")).to_have_text(
        "The staffing plan could not be made: day must be a YYYY-MM-DD from 2000-01-01, not '1999-01-04'")
    expect(page.locator("#t-staffing tbody tr")).to_have_count(len(fixture()["staffing"]))  # the period's


def test_through_the_real_app_the_staffing_plan_is_the_apis(page: Any, real: ReportsStack) -> None:
    """A Tuesday a week before the seeded one (17 Nov) is the history of Tuesday 1 December."""
    earlier = [c.model_copy(update={"call_id": f"{c.call_id}-w", "entered_at": c.entered_at - 7 * 86400,
                                    "answered_at": c.answered_at and c.answered_at - 7 * 86400,
                                    "ended_at": c.ended_at and c.ended_at - 7 * 86400, "rings": []})
               for c in seeded_calls()[:5]]
    real.loop_thread.run(real.store.save(earlier))
    page.goto(real.base_url + "/reports")
    page.locator("#username").fill("vera")
    page.locator("#password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body")).to_have_attribute("data-state", "ready")
    page.select_option("#p-plan", "day")
    page.fill("#p-plan-day", "2026-12-01")
    page.select_option("#p-plan-weeks", "2")
    page.click("#p-plan-apply")
    expect(page.locator("#plan-note")).to_contain_text("Plan for Tue 1 Dec 2026 — from 1 Tuesday: 17 Nov.")
    api = page.request.get(real.base_url + "/api/reports/staffing?day=2026-12-01&weeks=2&interval=60").json()
    assert api["history_days"] == ["2026-11-17"] and sum(r["calls"] for r in api["staffing"]) == 5
    rows = page.locator("#t-staffing tbody tr")
    expect(rows).to_have_count(24)
    for i, r in enumerate(api["staffing"]):
        if r["calls"]:
            expect(rows.nth(i).locator("th, td")).to_have_text(plan_cells({**r, "verdict": "ok"})[:9] + [
                "no member data"])
    chart = page.evaluate(CHART_DATA, "chart-staffing")
    assert chart["sets"]["Staff needed"] == [r["staff"] for r in api["staffing"]]
    csv_resp = page.request.get(real.base_url + page.get_attribute('a.csv[data-table="staffing"]', "href"))
    assert csv_resp.ok and len(list(csv.DictReader(io.StringIO(csv_resp.text())))) == 24
