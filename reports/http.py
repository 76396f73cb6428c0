"""The reports over HTTP (docs/reports_api.md).

- `GET /reports`: the page (web/static/reports.html, with the pages' strict headers);
- `GET /api/reports?period=&from=&to=&queue=&interval=&pbx=`: the `Report` as JSON (its `pbxes`:
  the configured PBXes' ids, the first (main) one first); `pbx` keeps one PBX's calls and
  members (an id not configured: 400), its days cut at that PBX's midnight (its `[[pbx]]
  timezone`; without `pbx`: the top-level `timezone`; `period.timezone` says which);
- `GET /api/reports/export.csv?table=...&(same query)`: one table as CSV, audited `report.export`;
- `GET /api/reports/staffing?day=YYYY-MM-DD|typical&weeks=&period=&from=&to=&queue=&interval=`: the
  staffing plan of a chosen day or of the typical day of a period (reports.forecast; with `pbx`,
  in that PBX's zone);
  `GET /api/reports/staffing.csv?(same query)`: its rows as CSV, audited `report.export`.

Supervisors and admins only (`web.access.require_role`); a refusal is a 403 and an audit-log row
(`report.denied`). A bad query is a 400 `{"error": "<what is wrong>"}`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from reports.forecast import StaffingPlan, staffing_plan
from reports.models import Report, ReportError
from reports.service import ReportService
from web.access import USER_KEY
from web.audit_log import AuditLog, require_role_audited
from web.pages import PAGE_HEADERS, STATIC_DIR

ROLES = ("supervisor", "admin")
NO_STORE = {"Cache-Control": "no-store"}
QUERY_KEYS = frozenset({"period", "from", "to", "queue", "interval", "pbx"})
PLAN_KEYS = frozenset({"day", "weeks", *QUERY_KEYS})
TABLES = ("totals", "by_queue", "by_pbx", "intervals", "wait_distribution", "talk_distribution",
          "by_hour_of_day", "by_weekday", "operators", "staffing")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReportsApi:
    def __init__(self, service: ReportService, audit: AuditLog, static_dir: Path = STATIC_DIR) -> None:
        self.service, self.audit, self.static_dir = service, audit, static_dir

    def pbx(self, value: str | None) -> str | None:
        """`pbx=` of a query: one of the configured PBXes, or None (every PBX)."""
        return self.service.check_pbx(value or None)


API_KEY = web.AppKey("reports_api", ReportsApi)


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message, "message": message}, status=400, headers=NO_STORE)


def _guarded(handler: Handler) -> Handler:
    """`require_role("supervisor", "admin")`; a refusal also goes to the audit log table."""
    return require_role_audited(*ROLES, action="report.denied",
                                audit=lambda request: request.app[API_KEY].audit)(handler)


async def _report(request: web.Request, extra: frozenset[str] = frozenset()) -> Report:
    query = request.query
    unknown = sorted(set(query) - QUERY_KEYS - extra)
    if unknown:
        raise ReportError(f"unknown parameter(s): {', '.join(k[:40] for k in unknown)}")
    queue, api = query.get("queue") or None, request.app[API_KEY]
    return await api.service.report(
        query.get("period", "today"), start=query.get("from"), end=query.get("to"), queue=queue,
        interval=query.get("interval", "60"), pbx=api.pbx(query.get("pbx")))


async def _plan(request: web.Request) -> StaffingPlan:
    query = request.query
    unknown = sorted(set(query) - PLAN_KEYS)
    if unknown:
        raise ReportError(f"unknown parameter(s): {', '.join(k[:40] for k in unknown)}")
    api = request.app[API_KEY]
    return await staffing_plan(
        api.service, query.get("day", "typical"), weeks=query.get("weeks"),
        period=query.get("period"), start=query.get("from"), end=query.get("to"),
        queue=query.get("queue") or None, interval=query.get("interval", "60"), pbx=api.pbx(query.get("pbx")))


@_guarded
async def page(request: web.Request) -> web.StreamResponse:
    path = request.app[API_KEY].static_dir / "reports.html"
    if not path.is_file():
        raise web.HTTPNotFound(text="reports.html is not installed")
    return web.FileResponse(path, headers=PAGE_HEADERS)


@_guarded
async def get_report(request: web.Request) -> web.StreamResponse:
    try:
        report = await _report(request)
    except ReportError as exc:
        return _bad(str(exc))
    return web.json_response(report.to_json(), headers=NO_STORE)


@_guarded
async def export_csv(request: web.Request) -> web.StreamResponse:
    table = request.query.get("table", "")
    if table not in TABLES:
        return _bad(f"table must be one of {', '.join(TABLES)}")
    try:
        report = await _report(request, frozenset({"table"}))
    except ReportError as exc:
        return _bad(str(exc))
    return await _exported(request, table, QUERY_KEYS, table_csv(report, table),
                           f"callbridge-{table}-{report.period.from_[:10]}.csv")


@_guarded
async def get_staffing_plan(request: web.Request) -> web.StreamResponse:
    try:
        plan = await _plan(request)
    except ReportError as exc:
        return _bad(str(exc))
    return web.json_response(plan.to_json(), headers=NO_STORE)


@_guarded
async def staffing_plan_csv(request: web.Request) -> web.StreamResponse:
    try:
        plan = await _plan(request)
    except ReportError as exc:
        return _bad(str(exc))
    return await _exported(request, "staffing_plan", PLAN_KEYS, plan_csv(plan),
                           f"callbridge-staffing-plan-{plan.day}.csv")


async def _exported(request: web.Request, target: str, keys: Iterable[str], text: str,
                    name: str) -> web.Response:
    """A CSV download, audited as `report.export` with the query that made it."""
    user, query = request[USER_KEY], request.query
    await request.app[API_KEY].audit.record(
        user.username, "report.export", role=str(user.role), target=target, remote=request.remote,
        detail={k: query[k][:64] for k in sorted(keys) if k in query})
    return web.Response(body=text.encode("utf-8"), content_type="text/csv", charset="utf-8",
                        headers={**NO_STORE, "Content-Disposition": f'attachment; filename="{name}"'})


# -- tables ----------------------------------------------------------------------------------------

def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def table_rows(report: Report, table: str) -> list[dict[str, Any]]:
    """A table of the report as flat rows (nested figures become `parent.key` columns)."""
    data = report.to_json()
    if table == "totals":
        period = report.period
        rows = [{"queue": period.queue or "(all)", **data["totals"], "pbx": period.pbx or "(all)"}]
    elif table == "by_queue":
        rows = [{"queue": name, **figures} for name, figures in data["by_queue"].items()]
    elif table == "by_pbx":
        rows = [{"pbx": name, **figures} for name, figures in data["by_pbx"].items()]
    else:
        rows = data[table]
    return [_flat(r) for r in rows]


def _cell(value: Any) -> Any:
    # A text cell starting with = + - @ would be a formula to a spreadsheet (queue and operator
    # names come from the PBX): quote it.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def table_csv(report: Report, table: str) -> str:
    return rows_csv(table_rows(report, table))


def plan_rows(plan: StaffingPlan) -> list[dict[str, Any]]:
    """The plan's rows, each with the plan's day (a date, or "typical")."""
    return [{"day": plan.day, **row} for row in plan.to_json()["staffing"]]


def plan_csv(plan: StaffingPlan) -> str:
    return rows_csv(plan_rows(plan))


def rows_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    return buf.getvalue()


def add_report_routes(app: web.Application, api: ReportsApi) -> None:
    app[API_KEY] = api
    app.router.add_get("/reports", page)
    app.router.add_get("/api/reports", get_report)
    app.router.add_get("/api/reports/export.csv", export_csv)
    app.router.add_get("/api/reports/staffing", get_staffing_plan)
    app.router.add_get("/api/reports/staffing.csv", staffing_plan_csv)
