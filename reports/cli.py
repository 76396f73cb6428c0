"""`callbridge staffing ...` (and `callbridge report ...`): the reports' commands.

Wiring in `bridge.cli`: call `add_staffing_command(sub)` on the top-level subparsers and run
`await run_staffing_command(args)` when `args.command == "staffing"`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from reports.staffing import StaffingAdvice, advise

# --- callbridge staffing ----------------------------------------------------------------------

STAFFING_KEYS = ("agents", "staff", "service_level", "asa_seconds", "occupancy", "wait_probability",
                 "abandon_rate")


def add_staffing_command(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "staffing", help="operators needed for an interval (Erlang C; Erlang A with --patience)",
        description="How many operators answer CALLS calls in an interval so that P %% are answered "
                    "within T seconds (Erlang C; with --patience, Erlang A: callers hang up after "
                    "PATIENCE seconds on average, and the expected abandon rate is shown), with "
                    "occupancy at most --max-occupancy, and the staff on the roster after shrinkage.")
    cmd.add_argument("--calls", type=float, required=True, help="calls offered in the interval")
    cmd.add_argument("--interval-minutes", type=float, required=True, help="length of the interval")
    cmd.add_argument("--aht", type=float, required=True, metavar="SECONDS",
                     help="average handling time (talk + after-call work)")
    cmd.add_argument("--target-percent", type=float, required=True, metavar="P",
                     help="share of calls to answer within the target time, in %% (e.g. 80)")
    cmd.add_argument("--target-seconds", type=float, required=True, metavar="T",
                     help="the promised answer time (e.g. 20)")
    cmd.add_argument("--max-occupancy", type=float, default=0.85, metavar="F",
                     help="most of their time operators may spend on calls, 0..1 (default 0.85)")
    cmd.add_argument("--shrinkage", type=float, default=0.30, metavar="F",
                     help="share of paid time off the phones: breaks, training, 0..1 (default 0.30)")
    cmd.add_argument("--patience", type=float, metavar="SECONDS",
                     help="callers' average patience: use Erlang A and show the abandon rate")
    cmd.add_argument("--format", choices=("table", "json"), default="table", dest="staffing_format")


async def run_staffing_command(args: argparse.Namespace) -> int:
    """Run `staffing`; returns the exit status. Bad input is one line on stderr and 2."""
    problem = _check_staffing_args(args)
    if problem is None:
        try:
            advice = advise(args.calls, args.interval_minutes * 60, args.aht,
                            target_fraction=args.target_percent / 100, target_seconds=args.target_seconds,
                            max_occupancy=args.max_occupancy, shrinkage=args.shrinkage,
                            patience_seconds=args.patience)
        except ValueError as exc:
            problem = str(exc)
    if problem is not None:
        print(f"callbridge staffing: {problem}", file=sys.stderr)
        return 2
    if args.staffing_format == "json":
        print(json.dumps({key: getattr(advice, key) for key in STAFFING_KEYS}))
    else:
        print(staffing_table(advice, args))
    return 0


def staffing_table(advice: StaffingAdvice, args: argparse.Namespace) -> str:
    model = "Erlang A" if args.patience is not None else "Erlang C"
    asa = "unbounded" if advice.asa_seconds is None else f"{advice.asa_seconds:.2f} s"
    if args.patience is not None:  # Erlang A's is the mean wait of every caller, answered or not
        asa += " (mean wait of all callers)"
    abandon = ("- (give --patience for Erlang A)" if advice.abandon_rate is None
               else f"{_pct(advice.abandon_rate)} (patience {args.patience:g} s)")
    rows = [
        ("agents on the phones", str(advice.agents)),
        (f"staff ({_pct(args.shrinkage, 0)} shrinkage)", str(advice.staff)),
        ("service level", f"{_pct(advice.service_level)} within {args.target_seconds:g} s "
                          f"(target {args.target_percent:g} %)"),
        ("ASA", asa),
        ("occupancy", f"{_pct(advice.occupancy)} (cap {_pct(args.max_occupancy, 0)})"),
        ("probability of waiting", _pct(advice.wait_probability)),
        ("abandon rate", abandon),
    ]
    width = max(len(label) for label, _ in rows)
    head = (f"{args.calls:g} calls in {args.interval_minutes:g} min, AHT {args.aht:g} s, "
            f"{args.target_percent:g} % within {args.target_seconds:g} s ({model})")
    return "\n".join([head] + [f"  {label:<{width}}  {value}" for label, value in rows])


def _pct(fraction: float, decimals: int = 1) -> str:
    return f"{fraction * 100:.{decimals}f} %"


def _check_staffing_args(args: argparse.Namespace) -> str | None:
    """The first problem with the options, in the options' own names and units; None if fine."""
    checks = [
        ("--calls", args.calls, lambda v: v >= 0, "must be 0 or more"),
        ("--interval-minutes", args.interval_minutes, lambda v: v > 0, "must be more than 0"),
        ("--aht", args.aht, lambda v: v > 0, "must be more than 0 seconds"),
        ("--target-percent", args.target_percent, lambda v: 0 <= v <= 100, "must be from 0 to 100"),
        ("--target-seconds", args.target_seconds, lambda v: v >= 0, "must be 0 or more"),
        ("--max-occupancy", args.max_occupancy, lambda v: 0 < v <= 1,
         "must be a fraction above 0 and at most 1 (0.85 = 85 %)"),
        ("--shrinkage", args.shrinkage, lambda v: 0 <= v < 1,
         "must be a fraction from 0 up to (not including) 1 (0.30 = 30 %)"),
        ("--patience", args.patience, lambda v: v is None or v > 0, "must be more than 0 seconds"),
    ]
    for flag, value, ok, rule in checks:
        if value is not None and not math.isfinite(value):
            return f"{flag} must be a number, not {value}"
        if not ok(value):
            return f"{flag} {rule}, not {value:g}"
    return None


# --- callbridge report ------------------------------------------------------------------------

REPORT_TABLES = ("totals", "by_queue", "by_pbx", "intervals", "wait_distribution", "talk_distribution",
                 "by_hour_of_day", "by_weekday", "operators", "staffing")


def add_report_command(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "report", help="the reports page's figures for a period (table, JSON or CSV)",
        description="The same figures as /reports and /api/reports, from the call log. "
                    "`report staffing --day YYYY-MM-DD [--weeks N]`: the staffing plan of a day from the "
                    "same weekday of the last N weeks; `report staffing [--period ...]`: of the typical "
                    "day of the period (/api/reports/staffing).")
    cmd.add_argument("view", nargs="?", choices=("staffing",),
                     help="staffing: the staffing plan of --day, or of the period's typical day")
    cmd.add_argument("--period", choices=("today", "yesterday", "last7", "range"),
                     help="the period (default today; for a staffing plan: the days of its typical day)")
    cmd.add_argument("--from", dest="start", metavar="YYYY-MM-DD", help="first day (with --period range)")
    cmd.add_argument("--to", dest="end", metavar="YYYY-MM-DD",
                     help="last day, included (with --period range)")
    cmd.add_argument("--queue", help="one queue (default: all calls)")
    cmd.add_argument("--pbx", metavar="ID",
                     help="one PBX's calls and queue members, its days in its own timezone (a [[pbx]] "
                          "id; default: every PBX, in the top-level timezone)")
    cmd.add_argument("--interval", choices=("15", "30", "60", "day", "weekday"), default="60")
    cmd.add_argument("--table", choices=REPORT_TABLES, default="totals",
                     help="the table to print as text or CSV (JSON prints the whole report)")
    cmd.add_argument("--day", metavar="YYYY-MM-DD|typical",
                     help="report staffing: the day to plan (past, today or future), or 'typical'")
    cmd.add_argument("--weeks", type=int, metavar="N",
                     help="report staffing --day: weeks of the same weekday to average (default: [reports] "
                          "forecast_weeks, 4)")
    cmd.add_argument("--format", choices=("table", "json", "csv"), default="table")
    cmd.add_argument("--db", help="database URL (default: from configuration)")


def _text_table(rows: list[dict[str, Any]]) -> str:
    """Aligned columns; numbers right-aligned, fractions as they are (0..1), nulls as '-'."""
    if not rows:
        return "(no rows)\n"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)

    def show(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)

    cells = [[show(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    for r in cells:
        lines.append("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(lines) + "\n"


async def run_report_command(args: argparse.Namespace, settings: Any, *,
                             clock: Any = None) -> int:
    """`settings`: CallbridgeSettings (database_url, timezone, reports); `clock` for tests."""
    import time

    from bridge.call_log.store import CallLogStore
    from reports.http import table_csv, table_rows
    from reports.models import ReportError
    from reports.service import ReportService

    store = CallLogStore(args.db or settings.database_url)
    await store.open()
    try:
        pbxes = settings.pbxes()  # --pbx: that PBX's days, in its own zone
        service = ReportService(store, settings.reports, timezone=settings.timezone, clock=clock or time.time,
                                pbxes=[p.id for p in pbxes], timezones={p.id: p.timezone for p in pbxes})
        if args.view == "staffing" or args.day is not None or args.weeks is not None:
            return await _run_plan(service, args)
        try:
            report = await service.report(args.period or "today", start=args.start, end=args.end,
                                          queue=args.queue, interval=args.interval, pbx=args.pbx)
        except ReportError as exc:
            print(f"callbridge report: {exc}", file=sys.stderr)
            return 2
    finally:
        await store.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n")
    elif args.format == "csv":
        sys.stdout.write(table_csv(report, args.table))
    else:
        period = report.period
        pbx = f", PBX {period.pbx}" if period.pbx else ""
        sys.stdout.write(f"{args.table}: {period.from_} .. {period.to} ({period.timezone}), "
                         f"queue {period.queue or 'all'}{pbx}, interval {period.interval}\n")
        sys.stdout.write(_text_table(table_rows(report, args.table)))
    return 0


async def _run_plan(service: Any, args: argparse.Namespace) -> int:
    """`callbridge report staffing ...`: the staffing plan, as /api/reports/staffing answers it."""
    from reports.forecast import staffing_plan
    from reports.http import plan_csv, plan_rows
    from reports.models import ReportError

    try:
        plan = await staffing_plan(service, args.day or "typical", weeks=args.weeks, period=args.period,
                                   start=args.start, end=args.end, queue=args.queue, interval=args.interval,
                                   pbx=args.pbx)
    except ReportError as exc:
        print(f"callbridge report staffing: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        sys.stdout.write(json.dumps(plan.to_json(), ensure_ascii=False, indent=1) + "\n")
    elif args.format == "csv":
        sys.stdout.write(plan_csv(plan))
    else:
        what = (f"typical day of {plan.period.from_[:10]} .. {plan.period.to[:10]}" if plan.day == "typical"
                else f"{plan.day} ({WEEKDAY_NAMES[plan.weekday or 0]}, from {plan.weeks} weeks)")
        p = plan.period
        pbx = f", PBX {p.pbx}" if p.pbx else ""
        sys.stdout.write(f"staffing plan: {what}, queue {p.queue or 'all'}{pbx}, interval {p.interval} "
                         f"({p.timezone}); {plan.target_fraction:.0%} within {plan.target_seconds:g} s\n")
        sys.stdout.write(f"history days: {', '.join(plan.history_days) or 'none'}\n")
        columns = ("time", "calls", "aht_seconds", "patience_seconds", "agents", "staff", "staff_actual",
                   "expected_service_level", "service_level_with_actual", "abandon_rate", "verdict")
        sys.stdout.write(_text_table([{c: row[c] for c in columns} for row in plan_rows(plan)]))
    return 0


WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
