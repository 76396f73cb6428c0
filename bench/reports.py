"""How long the full report of a month takes: 5,000 calls a day for 30 days (150,000 calls with
their rings and transfers; the generator of tests/test_reports_figures.py, a fixed seed), on
SQLite and PostgreSQL. Target: under 1 s each. Prints the timings and the month's figures.

    python bench/reports.py [--days 30] [--calls-per-day 5000] [--pg-url URL | --no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bridge.call_log.store import CallLogStore  # noqa: E402
from reports.models import Report  # noqa: E402
from reports.service import ReportService  # noqa: E402
from reports.settings import ReportSettings  # noqa: E402
from tests.test_reports_figures import at, generate_month  # noqa: E402

PG_URL = os.environ.get("CALLBRIDGE_TEST_PG_URL",
                        "postgresql+asyncpg://callbridge:callbridge@127.0.0.1:5432/callbridge_test")
FIRST = date(2026, 11, 1)
RUNS = 5


async def measure(store: CallLogStore, month: list, days: int) -> tuple[list[float], Report]:
    t0 = time.perf_counter()
    for i in range(0, len(month), 5000):
        await store.save(month[i:i + 5000])
    if month:
        print(f"  stored {len(month):,} calls in {time.perf_counter() - t0:.1f} s")
    last = FIRST.fromordinal(FIRST.toordinal() + days - 1)
    service = ReportService(store, ReportSettings(), timezone="Europe/Moscow",
                            clock=lambda: at(last, 23, 0))
    times, report = [], None
    for _ in range(RUNS):
        t0 = time.perf_counter()
        report = await service.report("range", start=FIRST.isoformat(), end=last.isoformat(), interval="60")
        times.append(time.perf_counter() - t0)
    assert report is not None
    return times, report


def show(name: str, times: list[float], report: Report) -> None:
    t = report.totals
    best, worst = min(times), max(times)
    print(f"  full report, month, interval 60 min, all queues: best {best:.3f} s, worst {worst:.3f} s "
          f"of {len(times)} (target < 1 s: {'ok' if worst < 1 else 'MISSED'})")
    print(f"  offered {t.offered:,}, answered {t.answered:,}, abandoned {t.abandoned:,} "
          f"(short {t.short_abandoned:,}), unanswered {t.unanswered:,} {t.unanswered_by_reason}")
    print(f"  service level {t.service_level:.3f} ({report.definitions['service_level'].split(':')[0]}); "
          + ", ".join(f"{k} {v:.3f}" for k, v in t.service_level_by_definition.items()
                      if v is not None))
    print(f"  abandon rate {t.abandon_rate:.3f}, ASA {t.asa_seconds:.1f} s, "
          f"p90 wait {t.wait_p90_seconds:.1f} s, longest {t.longest_wait_seconds:.1f} s, "
          f"AHT {t.aht_seconds:.1f} s")
    print(f"  {len(report.intervals)} intervals, {len(report.operators)} operators, "
          f"{len(report.staffing)} staffing rows; busiest hour needs "
          f"{max(s.agents for s in report.staffing)} agents")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--calls-per-day", type=int, default=5000)
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    t0 = time.perf_counter()
    month = generate_month(FIRST, args.days, args.calls_per_day, seed=12, operators=60)
    print(f"generated {len(month):,} calls ({sum(len(c.rings) for c in month):,} rings) "
          f"in {time.perf_counter() - t0:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        print("SQLite:")
        store = CallLogStore(f"sqlite+aiosqlite:///{tmp}/calls.sqlite3")
        await store.open()
        try:
            show("SQLite", *await measure(store, month, args.days))
        finally:
            await store.close()

    if not args.no_pg:
        print("PostgreSQL:")
        schema = f"bench_reports_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(args.pg_url)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        store = CallLogStore(args.pg_url, connect_args={"server_settings": {"search_path": schema}})
        try:
            await store.open()
            times, report = await measure(store, month, args.days)
            async with store.engine.begin() as conn:  # as autovacuum would soon after a day's writes
                await conn.execute(text("ANALYZE"))
            times, report = await measure(store, [], args.days)
            show("PostgreSQL", times, report)
        finally:
            await store.close()
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await admin.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
