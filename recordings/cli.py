"""`callbridge recordings purge [--dry-run]`.

Wiring in `bridge.cli`: call `add_recording_commands(sub)` on the top-level subparsers and
run `await run_recording_command(args, settings)` when `args.command == "recordings"`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.call_log.store import CallLogStore
from recordings.retention import purge
from recordings.settings import recording_settings
from recordings.store import RecordingStore

RECORDING_COMMANDS = ("recordings",)


def add_recording_commands(subparsers: Any) -> None:
    rec = subparsers.add_parser("recordings", help="call recordings")
    rec_sub = rec.add_subparsers(dest="recordings_command", required=True)
    purge_cmd = rec_sub.add_parser(
        "purge", help="delete recordings older than recordings.retention_days",
        description="Deletes the files and marks their rows purged (the call log keeps them). "
                    "With --dry-run only lists what would go.")
    purge_cmd.add_argument("--dry-run", action="store_true", help="list only, delete nothing")
    purge_cmd.add_argument("--db", help="database URL (default: from configuration)")


async def run_recording_command(args: argparse.Namespace, settings: Any,
                                clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Run `recordings ...`; returns the exit status. Problems go to stderr, never a traceback.
    `clock`: now, which the retention period counts back from (tests pass their own)."""
    if getattr(args, "recordings_command", None) != "purge":
        print(f"callbridge: not a recordings command: {args}", file=sys.stderr)
        return 2
    rec_settings = recording_settings(settings)
    if rec_settings.retention_days is None:
        print("callbridge: recordings.retention_days is not set: nothing is ever purged", file=sys.stderr)
        return 0
    store = CallLogStore(args.db or settings.database_url)
    try:
        await store.open()
    except Exception as exc:
        print(f"callbridge: cannot open the database: {exc}", file=sys.stderr)
        return 2
    try:
        report = await purge(RecordingStore(store), rec_settings, dry_run=args.dry_run, now=clock())
    finally:
        await store.close()
    verb = "would purge" if args.dry_run else "purged"
    for rec in report.purged:
        print(f"{verb}\t{rec.id}\t{rec.call_id}\t{rec.operator or '-'}\t"
              f"{rec.path or rec.file or '-'}\t{rec.size_bytes or 0}")
    for rec, why in report.refused:
        print(f"refused\t{rec.id}\t{rec.call_id}\t{why}")
    cutoff = report.cutoff.date().isoformat() if report.cutoff else "-"
    print(f"{verb} {len(report.purged)} recordings started before {cutoff} "
          f"({report.freed_bytes} bytes), refused {len(report.refused)}", file=sys.stderr)
    return 1 if report.refused else 0
