"""Screen-pop latency: AMI event arrival -> card frame received by the operator's browser.

Three processes, as in production (PBX, bridge, browsers):

- the AMI simulator (bridge.simulator.server.AmiSimulator) replays the real captures of
  tests/fixtures, relabelled per pass so that every pass is new calls from a new caller
  ringing 4 of the 500 operators' phones (bench/_screenpop_traffic.py rewrites ids,
  extensions, caller numbers and timestamps in the raw bytes, nothing else; the merged
  stream replays to exactly the calls of its templates). By default it sends as fast as
  it can (the bridge's socket is the only brake); `--speed N --rate R` paces it by the
  recorded timestamps instead: R calls per recorded second, N times faster;
- the bridge: the product's BridgeService (AMI client, call-state pipeline, call-log
  writer and built-in CRM on SQLite, recorder) with screenpop.app.create_web_app on
  127.0.0.1 behind a stand-in auth middleware (header X-Bench-Ext -> an operator bound to
  that one extension) instead of the login sessions;
- 500 aiohttp WebSocket clients on /ws/console, one per operator, in a process of their
  own (no garbage collection there while measuring: it must not stall).

On two cores the bridge is pinned to CPU 0, the simulator (niced) and the clients to CPU 1
(`--no-pin`: let the kernel place them).

The measure, per card pop (an operator's card of a call appearing on his screen, or
appearing again when his phone is rung again): from the arrival of the AMI event that rang
the phone (AmiMessage.received_at: time.time() when the framer got the bytes off the AMI
socket) to the frame's arrival at that operator's WebSocket client (time.time() as the
client's reader wakes up with it). Both are the host's CLOCK_REALTIME read in two
processes: comparable to the microsecond. The bridge also stamps (same clock) when each
card version is handed to Hub.push, which splits a latency into "in the bridge" (AMI
queue, call-state model, pop rules, the CRM hold) and "out" (hub writer task, socket,
client). A ring that is over before its card could leave (a busy phone, another operator
answered first) shows nothing and has no latency. Card updates caused by an AMI event
(answered, withdrawn, after-call, transfer) are measured from that event; the CRM's
answer and the caller's history from the ring.

Runs: `cached` - the built-in CRM (every caller a contact with one note), the lookup cache
warmed first: every lookup is a cache hit; `crm50` - an external CRM stand-in that takes
50 ms per request (lookup and history), cache cold, every call a new caller.

    python bench/screenpop_latency.py                                  # as fast as possible, 2,000 calls
    python bench/screenpop_latency.py --speed 2 --rate 10 --calls 1000 # paced: 20 calls/s offered
    options: --runs cached,crm50  --crm-ms 50  --budget-ms 300  --clients 500  --json FILE
             --stalls (where the bridge's loop stalls)  --profile FILE (cProfile of the bridge)
             --gc-freeze (experiment: gc.freeze() in the bridge after start-up)  --no-pin

Prints p50/p99/max per run, and one `BENCH_SCREENPOP {json}` line per run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import cProfile
import gc
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# `python bench/screenpop_latency.py` puts bench/ on sys.path, not the repository root that
# holds the bench package with the browsers' traffic process.
_BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(_BENCH.parent))

from bench import _screenpop_traffic as traffic_mod  # noqa: E402
from bench._sampling import loop_lag, machine_busy  # noqa: E402
from bench._screenpop_bridge import BenchBridge, BenchUser, SlowCrm, StallWatch, seed_builtin  # noqa: E402
from bench._screenpop_procs import FrameRow, clients_main, pin, simulator_main  # noqa: E402
from bench._stats import Stats  # noqa: E402
from bridge.settings import load_settings  # noqa: E402
from crm_adapters.lookup import LookupService  # noqa: E402

TARGET_P99_MS = 10.0


class WarningTally(logging.Handler):
    """The product's warnings during a run, counted (a saturated bridge logs hundreds)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.name} {record.levelname}"
        self.counts[key] = self.counts.get(key, 0) + 1
        self.first.setdefault(key, record.getMessage()[:160])

    def take(self) -> list[str]:
        lines = [f"  log {key}: {n:,} (first: {self.first[key]})" for key, n in sorted(self.counts.items())]
        self.counts, self.first = {}, {}
        return lines


TALLY = WarningTally()


# -- the bridge (this process) ---------------------------------------------------------------


@dataclass
class RunResult:
    name: str
    figures: dict[str, Any]
    lines: list[str]


async def serve(run: str, args: argparse.Namespace, traffic: traffic_mod.Traffic, sim_port: int,
                clients_conn: Any, tmp: Path) -> tuple[BenchBridge, dict[str, Any]]:
    exts = traffic_mod.extensions()[: args.clients]
    users = {e: BenchUser(username=f"op{e}", display_name=f"Operator {e}", role="operator", extensions=[e])
             for e in exts}
    settings = load_settings(
        database_url=f"sqlite+aiosqlite:///{tmp / f'{run}.sqlite3'}",
        ami={"host": "127.0.0.1", "port": sim_port, "ping_interval": 30.0, "backoff_max": 0.5},
        http={"host": "127.0.0.1", "port": 0},
        recordings={"directory": str(tmp / "recordings")},
        crm={"budget_ms": args.budget_ms,
             "cache": {"max_entries": max(10_000, 2 * len(traffic.callers))}},
    )
    bridge = BenchBridge(settings, users=users, clients_conn=clients_conn)
    info: dict[str, Any] = {}
    if run == "cached":
        info["seed_seconds"] = await seed_builtin(bridge, traffic.callers)
    else:
        crm = SlowCrm(args.crm_ms / 1000)
        bridge.lookup = LookupService([crm], settings.crm, call_log=bridge.store)
        info["crm"] = crm
    cpu0, wall0 = time.process_time(), time.perf_counter()
    info["machine_busy"] = machine_busy()
    await bridge.start()
    if args.gc_freeze:  # the experiment for the proposed fix: start-up objects out of full collections
        gc.collect()
        gc.freeze()
        bridge.probe.gc_pauses.clear()  # that collection was ours, before the replay
    lag: list[float] = []
    lag_task = asyncio.create_task(loop_lag(lag))
    watch = StallWatch() if args.stalls else None
    watch_task = asyncio.create_task(watch.heartbeat()) if watch else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    last_report = loop.time()
    while bridge.pipeline.events_in < traffic.events:
        if loop.time() > deadline:
            raise TimeoutError(f"only {bridge.pipeline.events_in:,} of {traffic.events:,} events "
                               f"after {args.timeout:g} s")
        if loop.time() - last_report > 10:
            last_report = loop.time()
            print(f"    ... {bridge.pipeline.events_in:,}/{traffic.events:,} events", flush=True)
        await asyncio.sleep(0.05)
    quiet = 0
    while quiet < 5 and loop.time() < deadline:  # CRM answers, histories, frames still queued
        quiet = quiet + 1 if bridge.idle() else 0
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # frames on the wire reach the clients
    lag_task.cancel()
    if watch_task is not None:
        watch_task.cancel()
    info["stalls"] = watch
    if args.gc_freeze:
        gc.unfreeze()
    info["loop_lag"] = lag
    info["cpu_seconds"] = time.process_time() - cpu0
    info["wall_seconds"] = time.perf_counter() - wall0
    info["hub_dropped"] = bridge.screenpop.hub.dropped
    info["log"] = TALLY.take()  # the run's, not the shutdown's
    return bridge, info


def analyse(run: str, args: argparse.Namespace, traffic: traffic_mod.Traffic, bridge: BenchBridge,
            info: dict[str, Any], clients: dict[str, Any], sim_cpu: float) -> RunResult:
    probe = bridge.probe
    rows: list[FrameRow] = sorted(clients["rows"])
    exts = set(bridge.users)
    by_card: dict[str, list[FrameRow]] = {}
    for row in rows:
        by_card.setdefault(row[2], []).append(row)

    pop, pop_in, pop_out, updates, final, history = [], [], [], [], [], []
    slow: list[tuple[float, str, list[FrameRow]]] = []
    pending_first = first_pops = 0
    for card_id, frames in by_card.items():
        arrivals = probe.causes.get(card_id, [])
        first_cause: float | None = None
        previous: str | None = None
        for t, _, _, version, state, lookup, _ in frames:
            # A pop: the card appears (first frame, or rung again after it was withdrawn/ended).
            if previous is None or (previous in ("withdrawn", "after_call") and state in ("ringing", "live")):
                pushed = probe.pushed.get((card_id, version))
                index = bisect.bisect_right(arrivals, pushed[0]) if pushed else 0
                if index:  # the ring (or answer) that made this card is the last before its push
                    cause = arrivals[index - 1]
                    pop.append(t - cause)
                    pop_in.append(pushed[0] - cause)
                    pop_out.append(t - pushed[0])
                    slow.append((t - cause, card_id, frames))
                    if first_cause is None:
                        first_cause = cause
                        first_pops += 1
                        pending_first += lookup == "pending"
            previous = state
        if first_cause is None:
            continue
        # The CRM's answer and the history: from the ring of the card's showing they came in
        # (a busy phone rung again shows what arrived while it was not ringing).
        for frame, into in ((next((f for f in frames if f[5] != "pending"), None), final),
                            (next((f for f in frames if f[6] > 0), None), history)):
            pushed = probe.pushed.get((card_id, frame[3])) if frame is not None else None
            index = bisect.bisect_right(arrivals, pushed[0]) if pushed else 0
            if frame is not None and index:
                into.append(frame[0] - arrivals[index - 1])
    for t, _, card_id, version, *_ in rows:
        pushed = probe.pushed.get((card_id, version))
        if pushed is not None and pushed[1] is not None:
            updates.append(t - pushed[1])

    rung = sum(n for ext, n in probe.rung.items() if ext in exts)
    pushed_ours = [k for k in probe.pushed if k[0].rsplit(":", 1)[1] in exts]
    fed = probe.last_fed - (probe.first_arrival or probe.last_fed)
    stats = {
        "pop": Stats.of(pop), "pop_in_bridge": Stats.of(pop_in), "pop_out": Stats.of(pop_out),
        "updates": Stats.of(updates), "caller_final": Stats.of(final), "history": Stats.of(history),
        "ami_queue": Stats.of(probe.queue_wait), "gc_full": Stats.of(probe.gc_pauses),
        "bridge_loop_lag": Stats.of(info["loop_lag"]), "client_loop_lag": Stats.of(clients["loop_lag"]),
    }
    others = info["machine_busy"] - info["cpu_seconds"] - clients["cpu"] - sim_cpu
    if args.speed is None:
        offered = "simulator as fast as it can send"
    else:
        offered = (f"simulator paced at x{args.speed:g} the recorded times: {args.rate * args.speed:g} calls "
                   "started per second")
    crm = f"CRM {args.crm_ms:g} ms per request, cache cold" if run == "crm50" else \
        "built-in CRM, every caller cached"
    rate = (lambda n: f"{n / fed:,.0f}") if fed > 0 else (lambda n: "?")
    lines = [
        f"run {run}: {crm}; {offered}; budget {args.budget_ms} ms"
        + ("; gc.freeze() after start-up (experiment)" if args.gc_freeze else ""),
        f"  traffic: {traffic.calls:,} calls, {traffic.events:,} AMI events, taken in {fed:.2f} s "
        f"({rate(traffic.events)} events/s, {rate(traffic.calls)} calls/s)",
        f"  CPU: bridge {info['cpu_seconds']:.1f} s in {info['wall_seconds']:.1f} s; browsers "
        f"{clients['cpu']:.1f} s; simulator {sim_cpu:.1f} s; the rest of the machine (kernel networking, "
        f"other work) {others:.1f} s",
        f"  cards: {rung:,} rings of the browsers' phones; {len(pop):,} card pops ({first_pops:,} cards, "
        f"{len(pop) - first_pops:,} rung again) on {len({r[1] for r in rows}):,} of {len(exts)} browsers "
        f"({rung - len(pop):,} rings over before they could show, e.g. busy phones); "
        f"{len(rows):,} frames received of {len(pushed_ours):,} card versions pushed "
        f"(a browser gets only the newest of a card's waiting versions); hub drops "
        f"{info['hub_dropped']}; sockets closed early {clients['closed_early']}",
        Stats.header(),
        stats["pop"].row("card pop: ring's AMI arrival -> frame"),
        stats["pop_in_bridge"].row("  of which in the bridge (-> Hub.push)"),
        stats["pop_out"].row("  of which out (Hub.push -> client)"),
        stats["updates"].row("every AMI-caused frame: event -> frame"),
        stats["ami_queue"].row("AMI event: arrival -> pipeline (all events)"),
        stats["caller_final"].row("ring -> frame with the CRM's final answer"),
        stats["history"].row("ring -> frame with the caller's history"),
        stats["gc_full"].row("bridge: full garbage collections (pause)"),
        stats["bridge_loop_lag"].row("bridge: event loop lag (5 ms timer)"),
        stats["client_loop_lag"].row("browsers' process: event loop lag"),
    ]
    if args.verbose:
        for latency, card_id, frames in sorted(slow, key=lambda x: x[0], reverse=True)[:args.verbose]:
            shown = ", ".join(f"v{f[3]} {f[4]}/{f[5]} at {f[0] % 100:.3f}" for f in frames[:5])
            lines.append(f"    slow pop: {card_id} {latency * 1000:.1f} ms ({shown})")
    if others > 0.25 * info["wall_seconds"]:
        lines.append(f"  NOTE: other work used {others / info['wall_seconds']:.0%} of a core meanwhile: "
                     "figures disturbed, run again on a quiet machine")
    lines += info["log"]
    if info.get("stalls") is not None:
        lines += info["stalls"].report()
    if pending_first:
        lines.append(f"  {pending_first:,} cards popped 'looking up...' first (CRM slower than the budget)")
    if run == "crm50":
        lines.append(f"  CRM requests: {info['crm'].requests:,}")
    if run == "cached":
        p99 = stats["pop"].p99
        verdict = "met" if p99 <= TARGET_P99_MS else "NOT met"
        lines.append(f"  target p99 <= {TARGET_P99_MS:g} ms (cached): {verdict} ({p99:.2f} ms)")
    figures = {
        "run": run, "speed": args.speed, "crm_ms": args.crm_ms if run == "crm50" else 0,
        "budget_ms": args.budget_ms, "calls": traffic.calls, "events": traffic.events,
        "clients": len(exts), "browsers_with_cards": len({r[1] for r in rows}),
        "rings": rung, "pops": len(pop), "cards": first_pops, "frames": len(rows),
        "events_per_s": round(traffic.events / fed) if fed > 0 else None,
        "other_cpu_seconds": round(others, 1),
        **{k: v.as_dict() for k, v in stats.items()},
    }
    return RunResult(run, figures, lines)


# -- orchestration ---------------------------------------------------------------------------


def one_run(run: str, args: argparse.Namespace, traffic: traffic_mod.Traffic, path: Path,
            tmp: Path) -> RunResult:
    ctx = multiprocessing.get_context("spawn")
    pinned = args.pin and (os.cpu_count() or 1) >= 2
    server_cpus, load_cpus = ({0}, {1}) if pinned else (None, None)
    sim_parent, sim_child = ctx.Pipe()
    cl_parent, cl_child = ctx.Pipe()
    sim = ctx.Process(target=simulator_main, args=(str(path), args.speed, args.start_delay, load_cpus,
                                                   sim_child), daemon=True)
    browsers = ctx.Process(target=clients_main, args=(load_cpus, cl_child), daemon=True)
    sim.start()
    browsers.start()
    try:
        sim_port = sim_parent.recv()
        pin(server_cpus)

        async def main() -> RunResult:
            bridge, info = await serve(run, args, traffic, sim_port, cl_parent, tmp)
            loop = asyncio.get_running_loop()
            info["machine_busy"] = machine_busy() - info["machine_busy"]
            cl_parent.send("stop")
            clients = await loop.run_in_executor(None, cl_parent.recv)
            await bridge.stop()
            sim_parent.send("stop")
            sim_cpu = await loop.run_in_executor(None, sim_parent.recv)
            TALLY.take()
            gc.callbacks.remove(bridge.gc_timer)
            return analyse(run, args, traffic, bridge, info, clients, sim_cpu)

        if args.profile is None:
            return asyncio.run(main())
        profiler = cProfile.Profile()
        try:
            return profiler.runcall(asyncio.run, main())
        finally:
            out = args.profile.with_suffix(f".{run}.pstats")
            profiler.dump_stats(out)
            print(f"  profile of the bridge process: {out}")
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        for proc in (browsers, sim):
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="at least this many calls (default 2000)")
    parser.add_argument("--runs", default="cached,crm50", help="comma-separated: cached, crm50")
    parser.add_argument("--speed", type=float, default=None,
                        help="pace the replay by the recorded timestamps, N times faster "
                             "(default: as fast as the simulator can send)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="calls per recorded second in the generated traffic (default 20)")
    parser.add_argument("--clients", type=int, default=traffic_mod.OPERATORS)
    parser.add_argument("--crm-ms", type=float, default=50.0, help="the slow CRM's time per request")
    parser.add_argument("--budget-ms", type=int, default=300, help="crm.budget_ms (product default 300)")
    parser.add_argument("--start-delay", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the bridge to CPU 0 and the load to CPU 1")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--gc-freeze", action="store_true",
                        help="experiment: gc.freeze() in the bridge after start-up (the product does not)")
    parser.add_argument("--stalls", action="store_true",
                        help="sample where the bridge's event loop stalls (> 20 ms)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="cProfile the bridge process into FILE.<run>.pstats")
    parser.add_argument("--verbose", type=int, default=0, metavar="N", help="list the N slowest pops")
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = set(runs) - {"cached", "crm50"}
    if unknown:
        parser.error(f"unknown runs: {', '.join(sorted(unknown))}")
    logging.getLogger().addHandler(TALLY)
    errors = logging.StreamHandler()
    errors.setLevel(logging.ERROR)  # a failure is printed whole; warnings are counted
    logging.getLogger().addHandler(errors)
    logging.getLogger().setLevel(logging.WARNING)

    started = time.perf_counter()
    traffic = traffic_mod.build(args.calls, spacing_per_call=1 / args.rate)
    print(f"traffic: {traffic.calls:,} calls ({traffic.passes:,} passes of the captures "
          f"{', '.join(f'{k} x{v}' for k, v in sorted(traffic.by_template.items()))}), "
          f"{traffic.events:,} AMI events, {len(traffic.stream) / 1e6:.1f} MB, "
          f"{traffic.span:.0f} s recorded; {args.clients} browsers; built in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-screenpop-") as tmpdir:
        tmp = Path(tmpdir)
        path = tmp / "traffic.ami"
        path.write_bytes(traffic.stream)
        for run in runs:
            result = one_run(run, args, traffic, path, tmp)
            results.append(result)
            print("\n".join(result.lines), flush=True)
    for result in results:
        print("BENCH_SCREENPOP " + json.dumps(result.figures, ensure_ascii=False))
    if args.json is not None:
        args.json.write_text(json.dumps([r.figures for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
