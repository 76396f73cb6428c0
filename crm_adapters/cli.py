"""`callbridge crm import FILE.csv` and `callbridge lookup NUMBER`.

Wiring in `bridge.cli`: call `add_crm_commands(sub)` on the top-level subparsers, and run
`run_crm_command(args, settings)` for `args.command in CRM_COMMANDS`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridge.call_log.store import CallLogStore
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.csv_import import CsvFormatError, import_csv, write_rejections
from crm_adapters.errors import CrmError
from crm_adapters.lookup import LookupService
from crm_adapters.settings import CrmSettings

CRM_COMMANDS = ("crm", "lookup")


def add_crm_commands(subparsers: Any) -> None:
    """Add `crm import` and `lookup` to the `callbridge` subcommands."""
    crm = subparsers.add_parser("crm", help="the built-in CRM")
    crm_sub = crm.add_subparsers(dest="crm_command", required=True)
    imp = crm_sub.add_parser("import", help="import contacts from a CSV file (prints rejected rows)",
                             description="Columns by header: name, phone (phone2, mobile, ...), "
                                         "company, email, tags, note. Exit status 1 if rows were rejected.")
    imp.add_argument("file", type=Path, help="CSV file (comma, semicolon or tab separated; UTF-8)")
    imp.add_argument("--db", help="database URL (default: from configuration)")
    imp.add_argument("--region", help="country for national numbers (default: crm.default_region)")
    imp.add_argument("--rejects", type=Path, help="also write the rejected rows to this CSV file")
    imp.add_argument("--batch-size", type=int, default=5000, help=argparse.SUPPRESS)

    lookup = subparsers.add_parser("lookup", help="look a caller up in the configured CRMs, print JSON",
                                   description="Asks the configured adapters in order, as a call "
                                               "would, but waits for the answer beyond the time budget.")
    lookup.add_argument("number", help="a caller ID as the PBX sends it, e.g. 84951234567")
    lookup.add_argument("--db", help="database URL (default: from configuration)")
    lookup.add_argument("--region", help="country for national numbers (default: crm.default_region)")
    lookup.add_argument("--history", type=int, metavar="N", help="interactions to show (default: "
                        "crm.history_limit; 0: none)")


def crm_settings(settings: Any, region: str | None = None) -> CrmSettings:
    """The `crm` part of the main settings (defaults until it is there), `region` overriding."""
    crm = getattr(settings, "crm", None) or CrmSettings()
    if region:
        crm = CrmSettings.model_validate({**crm.model_dump(), "default_region": region})
    return crm


def _database(args: argparse.Namespace, settings: Any) -> str:
    return args.db or settings.database_url


async def run_crm_command(args: argparse.Namespace, settings: Any) -> int:
    """Run `crm ...` or `lookup`; returns the exit status. Problems go to stderr, never a traceback."""
    try:
        crm = crm_settings(settings, args.region)
    except ValidationError as exc:
        return _fail(f"invalid CRM settings: {exc.errors()[0]['msg']}")
    if args.command == "crm":
        return await _import(args, crm, _database(args, settings))
    if args.command == "lookup":
        return await _lookup(args, crm, _database(args, settings))
    return _fail(f"not a CRM command: {args.command}")


def _fail(message: str, status: int = 2) -> int:
    print(f"callbridge: {message}", file=sys.stderr)
    return status


async def _import(args: argparse.Namespace, crm: CrmSettings, url: str) -> int:
    if not args.file.is_file():
        return _fail(f"no such file: {args.file}")
    builtin = BuiltinCrm(url, default_region=crm.default_region)
    try:
        await builtin.open()
        report = await import_csv(builtin, args.file, batch_size=args.batch_size)
    except (CsvFormatError, UnicodeDecodeError) as exc:
        return _fail(f"cannot import {args.file}: {exc}")
    except CrmError as exc:
        return _fail(str(exc))
    finally:
        await builtin.close()
    print(report.summary())
    for rejection in report.rejected:
        print(f"line {rejection.line}: {rejection.reason}")
    if args.rejects is not None and report.rejected:
        write_rejections(report, args.rejects)
        print(f"rejected rows written to {args.rejects}")
    return 1 if report.rejected else 0


async def _lookup(args: argparse.Namespace, crm: CrmSettings, url: str) -> int:
    store = CallLogStore(url)
    try:
        service = LookupService.from_settings(crm, store)
    except (ValueError, ImportError, AttributeError, TypeError) as exc:
        return _fail(f"cannot set up the CRM adapters: {exc}")
    try:
        try:
            await store.open()
        except Exception as exc:  # an external CRM can answer without it: say so, go on
            print(f"callbridge: call log unavailable ({exc})", file=sys.stderr)
        await service.open()
        started = time.perf_counter()
        card = await service.lookup(args.number, wait=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
        out: dict[str, Any] = card.model_dump(mode="json", exclude={"lookup_id", "final"})
        out["elapsed_ms"] = round(elapsed_ms, 1)
        out["within_budget"] = elapsed_ms <= crm.budget_ms
        limit = crm.history_limit if args.history is None else args.history
        if card.contact is not None and limit > 0:
            history = await service.history(card.contact, limit)
            out["history"] = [item.model_dump(mode="json") for item in history]
    finally:
        await service.close()
        await store.close()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 1 if card.status == "unavailable" else 0
