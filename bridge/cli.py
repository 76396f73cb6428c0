"""`callbridge` command line: serve, demo, replay, calls export."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bridge.calls.record import REPLAY_KEYS, CallRecord
from bridge.settings import ConfigError, load_settings

log = logging.getLogger("callbridge")


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DB_EXAMPLES = "e.g. sqlite+aiosqlite:///var/callbridge.sqlite3 or postgresql+asyncpg://user:secret@host/db"


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a log level: one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def _shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


@asynccontextmanager
async def database_errors(url: str) -> AsyncIterator[None]:
    """A bad database URL or a database that cannot be reached is one clear line (a
    ConfigError), not a traceback."""
    from sqlalchemy.exc import ArgumentError, DBAPIError

    try:
        yield
    except ArgumentError as exc:  # NoSuchModuleError too: an unknown dialect or driver
        raise ConfigError(f"--db / database_url {_shown_url(url)} is not a database URL we can use "
                          f"({str(exc).splitlines()[0]}); {_DB_EXAMPLES}") from None
    except (DBAPIError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0] or type(exc).__name__
        raise ConfigError(f"cannot open the database {_shown_url(url)}: {reason}") from None


async def check_database(url: str) -> None:
    """Open (and migrate) the database once, so a bad one stops the start with one line."""
    from bridge.call_log.store import CallLogStore

    store = CallLogStore(url)
    try:
        async with database_errors(url):
            await store.open()
    finally:
        await store.close()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces every plugin at INFO; the store logs the one line that matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--since wants an ISO date or time like 2026-11-24 or 2026-11-24T08:00, not {value!r}"
        ) from None
    return moment  # a naive time is in the configured time zone (see _export)


def _add_common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", type=Path, default=default, help="TOML configuration file")
    parser.add_argument("--log-level", default=default, type=_log_level, metavar="LEVEL",
                        help=f"{', '.join(LOG_LEVELS)} (default from config: INFO)")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                # `callbridge serve --config FILE` as well as `callbridge --config FILE serve`;
                # SUPPRESS keeps a subcommand from overwriting what was given before it.
                _add_common_options(subparser, argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callbridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the bridge against the PBX named in the configuration")

    demo = sub.add_parser("demo", help="run the bridge against the built-in AMI simulator")
    demo.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = recorded)")
    demo.add_argument("--db", help="database URL (default: the configured SQLite file)")
    demo.add_argument("--ami-port", type=int, default=0, help="simulator port (default: any free)")
    demo.add_argument("--http-port", type=int, help="web console port (default: from config, 8080)")

    replay = sub.add_parser("replay", help="feed a raw AMI capture through the pipeline offline")
    replay.add_argument("file", type=Path, nargs="+",
                        help="a .ami capture (banner, login reply, events); several files are "
                             "consecutive connections (e.g. before and after a PBX restart)")
    replay.add_argument("--db", help="also store the calls in this database URL")

    calls = sub.add_parser("calls", help="the stored call log")
    calls_sub = calls.add_subparsers(dest="calls_command", required=True)
    export = calls_sub.add_parser("export", help="print the call log (replay's shape)")
    export.add_argument("--since", type=_parse_since,
                        help="only calls that started at or after (ISO; no zone: the configured timezone)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--db", help="database URL (default: from configuration)")
    from crm_adapters.cli import add_crm_commands
    from recordings.cli import add_recording_commands
    from reports.cli import add_report_command, add_staffing_command
    from web.user_cli import add_user_commands

    add_crm_commands(sub)
    add_user_commands(sub)
    add_recording_commands(sub)
    add_staffing_command(sub)
    add_report_command(sub)
    _add_common_options(parser, None)
    return parser


def _print_calls(calls: list[CallRecord], fmt: str) -> None:
    out = sys.stdout
    if fmt == "jsonl":
        for call in calls:
            out.write(json.dumps(call.replay_dict(), ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(out, fieldnames=REPLAY_KEYS)
    writer.writeheader()
    for call in calls:
        row = call.replay_dict()
        row["rung"] = " ".join(row["rung"])
        row["transfers"] = json.dumps(row["transfers"], ensure_ascii=False) if row["transfers"] else ""
        writer.writerow(row)


async def _replay(args: argparse.Namespace, settings) -> int:
    from bridge.calls.replay import capture_events, replay_bytes

    captures = []
    for path in args.file:
        if not path.is_file():
            raise ConfigError(f"no such capture file: {path}")
        data = path.read_bytes()
        if not any(message.is_event for message in capture_events(data)):
            raise ConfigError(f"{path} is not an AMI capture (no AMI event in it: a capture is the "
                              "text an AMI connection sends, 'Event: ...' lines in blocks)")
        captures.append(data)
    if args.db:
        await check_database(args.db)  # before printing anything
    calls = replay_bytes(*captures, operator_pattern=settings.operator_pattern)
    _print_calls(calls, "jsonl")
    if args.db:
        from bridge.call_log.store import CallLogStore

        store = CallLogStore(args.db)
        try:
            async with database_errors(args.db):
                await store.open()
                await store.save(calls)
        finally:
            await store.close()
        log.info("stored %d calls in %s", len(calls), args.db)
    return 0


async def _export(args: argparse.Namespace, settings) -> int:
    from bridge.call_log.store import CallLogStore

    since = args.since
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=ZoneInfo(settings.timezone))
    url = args.db or settings.database_url
    store = CallLogStore(url)
    try:
        async with database_errors(url):
            await store.open()
            calls = await store.export(since=since)
    finally:
        await store.close()
    _print_calls([c for c in calls if c.ended_at is not None], args.format)
    return 0


async def _serve(settings) -> int:
    from bridge.service import run_until_stopped

    await check_database(settings.database_url)
    await run_until_stopped(settings)
    return 0


async def _demo(args: argparse.Namespace, settings) -> int:
    from bridge.demo import run_demo

    await check_database(args.db or settings.database_url)
    await run_demo(settings, speed=args.speed, db_url=args.db, ami_port=args.ami_port,
                   http_port=args.http_port)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"callbridge: {exc}", file=sys.stderr)
        return 2
    level = args.log_level or settings.log_level
    if level.upper() not in LOG_LEVELS:
        print(f"callbridge: log_level {level!r} is not a log level: one of {', '.join(LOG_LEVELS)}",
              file=sys.stderr)
        return 2
    _setup_logging(level)
    if args.command in ("crm", "lookup"):
        from crm_adapters.cli import run_crm_command

        runners = {args.command: lambda: run_crm_command(args, settings)}
    elif args.command == "recordings":
        from recordings.cli import run_recording_command

        runners = {"recordings": lambda: run_recording_command(args, settings)}
    elif args.command == "user":
        from web.user_cli import run_user_command

        runners = {"user": lambda: run_user_command(args, settings)}
    elif args.command == "staffing":
        from reports.cli import run_staffing_command

        runners = {"staffing": lambda: run_staffing_command(args)}
    elif args.command == "report":
        from reports.cli import run_report_command

        runners = {"report": lambda: run_report_command(args, settings)}
    else:
        runners = {}
    runners |= {
        "serve": lambda: _serve(settings),
        "demo": lambda: _demo(args, settings),
        "replay": lambda: _replay(args, settings),
        "calls": lambda: _export(args, settings),
    }
    try:
        code = asyncio.run(runners[args.command]())
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except ConfigError as exc:
        print(f"callbridge: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `callbridge ... | head`: the reader has all it wanted. Quietly, as `cat` does; what
        # is still buffered goes nowhere (Python's advice for SIGPIPE, docs: signal).
        _drop_stdout()
        return 141  # 128 + SIGPIPE, the shell's status for a writer whose reader left


def _drop_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests' capture)
        pass


if __name__ == "__main__":
    sys.exit(main())
