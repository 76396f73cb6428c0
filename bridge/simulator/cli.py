"""`python -m bridge.simulator FILE.ami ...`: the AMI simulator on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from bridge.simulator.server import AmiSimulator


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bridge.simulator",
                                     description="Serve AMI, replaying raw Asterisk captures.")
    parser.add_argument("captures", nargs="+", type=Path, metavar="FILE.ami")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5038, help="0 picks a free port")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="1 = recorded speed, 10 = ten times faster, 0 = as fast as possible")
    parser.add_argument("--loop", action="store_true", help="replay the captures forever")
    parser.add_argument("--per-connection", action="store_true",
                        help="one capture per PBX run, in order: each capture's end is the PBX dying "
                             "(connections closed) and the next login gets the next capture, e.g. "
                             "pbx_restart_part1.ami pbx_restart_part2.ami")
    parser.add_argument("--shared", action="store_true",
                        help="one PBX for every login, as a real Asterisk: it starts at the first login "
                             "and goes on whoever is logged in; every session gets the same events "
                             "(a cluster's hot standby next to its owner)")
    parser.add_argument("--start-after-logins", type=int, default=0, metavar="N",
                        help="hold the replay at its first event until N logins are in (every node "
                             "of a cluster logged in before the PBX says anything)")
    parser.add_argument("--downtime", type=float, default=0.0, metavar="SECONDS",
                        help="with --per-connection: refuse connections this long after each PBX death")
    parser.add_argument("--now", action="store_true",
                        help="move every replayed time (Timestamp, id epochs, Cdr times...) to the "
                             "present, per capture and pass, as the demo does")
    parser.add_argument("--username", default="callbridge")
    parser.add_argument("--secret", default="callbridge")
    return parser


async def _run(args: argparse.Namespace) -> None:
    sim = AmiSimulator(args.captures, username=args.username, secret=args.secret,
                       speed=args.speed or None, loop=args.loop, host=args.host, port=args.port,
                       per_connection=args.per_connection, downtime=args.downtime,
                       now=time.time if args.now else None, shared=args.shared)
    sim.hold_replay(0 if args.start_after_logins else None)  # released by _release_after
    host, port = await sim.start()
    print(f"AMI simulator listening on {host}:{port}", flush=True)
    print(f"login: Username={args.username} Secret={args.secret}", flush=True)
    print(f"replaying {len(sim.events)} events from {len(args.captures)} capture(s), "
          f"speed {args.speed or 'max'}{', looping' if args.loop else ''}"
          f"{', one capture per connection' if args.per_connection else ''}"
          f"{', one PBX shared by every login' if args.shared else ''}"
          f"{', times moved to now' if args.now else ''}"
          f"{f', from the {args.start_after_logins}th login' if args.start_after_logins else ''}", flush=True)
    stopped = asyncio.Event()
    release = asyncio.create_task(_release_after(sim, args.start_after_logins))
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored (`&`)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        release.cancel()
        await sim.stop()


async def _release_after(sim: AmiSimulator, logins: int) -> None:
    await sim.wait_for_logins(logins, timeout=None)
    sim.hold_replay(None)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.downtime < 0 or (args.downtime and not args.per_connection):
        parser.error("--downtime takes seconds >= 0 and needs --per-connection")
    if args.start_after_logins < 0:
        parser.error("--start-after-logins takes a count of logins >= 0")
    if args.shared and args.per_connection:
        parser.error("--shared (one PBX for every login) and --per-connection (one per login) do not mix")
    missing = [str(p) for p in args.captures if not p.is_file()]
    if missing:
        print(f"ami_simulator: no such capture file: {', '.join(missing)}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))
    return 0
