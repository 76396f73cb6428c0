"""A cluster under load on this machine: card pop latency across nodes, and the owner's death.

Processes, as in production (bench/_cluster_*.py hold their parts):

- 2 PBXes, "main" and "east": AMI simulator processes (bridge.simulator) each replaying the
  real captures of tests/fixtures rewritten by bench/_screenpop_traffic.py into new calls
  ringing 1,000 operators (extensions 1000-1999 on both PBXes: users are scoped per PBX),
  paced at recorded speed so that the two offer `--rate` new calls per second in all
  (default 50), the calls arriving independently (Poisson; `--bursts` adds the lab's stress
  capture of 20 calls within 8 ms, the passes evenly spaced), their times moved to the
  present (the PBXes' clocks are ours, to the simulator's whole second). They listen only
  once every browser is connected, and replay from a second after the owner's login
  (bench/_cluster_pbx.py says why).
- 3 nodes: `callbridge serve` processes sharing PostgreSQL (the `callbridge_cluster`
  database, wiped first as tests/cluster does: do not run this beside the cluster tests, or
  give it another database with --db) and a private redis-server; product defaults but for
  ports and ids (lease check 0.5 s, retry 1 s; built-in CRM, every caller unknown to it;
  log level INFO). node1 starts alone and holds both PBXes' leases (its /readyz: "owner, not
  connected" until the PBXes listen) before node2 and node3 start.
- 2,000 operators' browsers (`--clients`): console WebSockets on node2 and node3 only, so
  every card pops across nodes while node1 owns the PBXes; one process per node. The users
  are inserted in bulk with one precomputed argon2 hash, and their sessions as rows of
  `auth_sessions` (a random cookie token, the table its SHA-256, as web/auth.py makes them):
  2,000 argon2 log-ins would take minutes and measure nothing of interest here.
- this process: the orchestrator, a reader of the PBXes' Redis streams (StreamTap) and a
  /healthz prober of the nodes (10 per second each).

The measure, per card pop on a browser: from the ring's AMI arrival at the owner (the AMI
framer's time.time() as the bytes came off the PBX's socket: `AmiMessage.received_at`, which
the owner publishes with every event and the bench reads back from the stream; which ring
made which card comes from the product's call model fed with that stream) to the frame's
arrival at the browser's socket on another node (time.time() as its reader wakes). Both
clocks are this host's CLOCK_REALTIME read in two processes. "stream leg" is the part up to
Redis taking the entry (owner: AMI read, model, publish; the entry id's milliseconds, Redis's
clock being this host's), "rest" the part after (a follower's read, its model, the card rules,
the CRM hold, its hub, the socket, the browser's loop): the split is to the millisecond, the
total exact. A pop is a card's first frame at a browser, or its coming
back after it was withdrawn or ended; a ring that was over before its card could leave shows
nothing and has no latency (bench/screenpop_latency.py counts the same way).

The owner's death: `--kill-at` s after the first event (default: half-way through the new
calls), node1 gets SIGKILL. Takeover is the time from the kill until a surviving node's
/readyz says "owner" (logged in to the PBX) of each PBX, polled every 50 ms; the nodes' own
log lines date the lease and the resync. Then every call the PBXes played must be in
`calls`, ended, and equal to the offline replay of the same traffic (`callbridge replay`'s
shape): calls lost = missing + wrong; each lost call is also checked against the whole
published stream (a model fed with every entry, as a follower that missed none): right there
means the new owner lost it, wrong there that its events died with the old owner. The
simulated PBXes go on talking while the owner is dead, as a real Asterisk does: what they
say then reaches only the standbys' own AMI sessions (cluster.standby), and the new owner
publishes it after the takeover, then resyncs (in its AMI consumer: the events read meanwhile
wait for the snapshot). Rings that reached the new owner before it had resynced have a row
of their own ("rings during the takeover"), apart from the across-nodes target row, whose
rings reached an owner that was up.

Priority: the PBXes are load generators, with hosts of their own in real life: they run
under SCHED_IDLE, on whatever CPU time the rest leaves (`--pbx-nice`: at nice +10, as the
earlier sessions measured; a PBX woken by its timer then still took the CPU from a node
mid-ring, and p50 doubled). `--priority N` puts the nodes, Redis and the browsers at nice N
(default 0: the bench's tap and PostgreSQL stay at 0). Measured at -5 against 0, it made
no difference beyond the spread between runs (README). Whether the PBXes kept up shows in
the calls/s achieved.

CPU: per process, seconds on a CPU and seconds runnable but waiting for one (its main
thread's /proc/PID/schedstat), PostgreSQL's CPU, and what the rest of the machine used (the
kernel's networking, and whatever else runs there: figures from a busy machine are noted).

    python bench/cluster.py            # 2,000 calls at 50/s, 2,000 browsers, node1 killed: ~3 min
    python bench/cluster.py --calls 3000 --rate 50 --clients 2000 --no-kill --json out.json
    options: --bursts  --priority NICE  --pbx-nice  --kill-at S  --db URL  --log-level LEVEL
             --keep DIR (node logs)  --dump FILE (pops)

Prints p50/p99/max, takeover, calls lost, offered and achieved call rate, the number of
browsers, and one `BENCH_CLUSTER {json}` line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp

# `python bench/cluster.py` puts bench/ on sys.path, not the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _screenpop_traffic as traffic_mod  # noqa: E402
from bench._cluster_browsers import browsers_main  # noqa: E402
from bench._cluster_lab import (  # noqa: E402
    kill_and_time,
    node_config,
    prioritise,
    probe_nodes,
    receive,
    seed_operators,
    settled_calls,
    wait_ready,
)
from bench._cluster_measure import (  # noqa: E402
    CpuLedger,
    StreamTap,
)
from bench._cluster_pbx import pbx_main  # noqa: E402
from bench._cluster_report import analyse  # noqa: E402
from bench._cluster_run import NODES, OPERATORS_PER_PBX, PBXES, PbxTraffic, Run  # noqa: E402
from bench._sampling import machine_pace  # noqa: E402
from tests.cluster.harness import Node, cluster_db_url, free_port, wipe_database  # noqa: E402
from tests.cluster.redis_server import RedisServer  # noqa: E402

SETTLE_SECONDS = 3.0  # between the browsers' connections and the first call
SECRET_KEY = "cluster-bench-secret-0123456789"
PASSWORD = "Cluster-bench-pw-2026"
COOKIE = "callbridge_session"  # the name without "__Host-": the nodes serve plain HTTP here


# -- traffic ---------------------------------------------------------------------------------


# The lab's stress capture: 20 Originates back to back, 20 calls (about 600 events) within
# 8 ms. Drawn as one pass in twelve it brings 63% of the calls in such clumps: a PBX's
# stress test, not callers ringing at a rate. Only with --bursts.
BURST_CAPTURE = "burst_20_calls"


def build_traffic(pbx: str, index: int, calls: int, rate: float, tmp: Path,
                  bursts: bool = False) -> PbxTraffic:
    """Callers arriving independently (Poisson) at `rate`, each call a real capture's; with
    `bursts`, the lab's burst capture too, passes evenly spaced (the earlier workload)."""
    captures = [c for c in traffic_mod.CALL_CAPTURES if bursts or c != BURST_CAPTURE]
    # _screenpop_traffic spreads passes over 500 operators (groups of 4); 250 groups make
    # them 1,000 (extensions 1000-1999), the rewrite otherwise unchanged.
    with mock.patch.object(traffic_mod, "GROUPS", OPERATORS_PER_PBX // len(traffic_mod.CAPTURE_OPERATORS)):
        traffic = traffic_mod.build(calls, spacing_per_call=1 / rate, seed=5 + index, captures=captures,
                                    poisson=not bursts)
    path = tmp / f"traffic-{pbx}.ami"
    path.write_bytes(traffic.stream)
    return PbxTraffic(pbx, traffic, path, index)


# -- the run ---------------------------------------------------------------------------------


async def run_lab(run: Run, tmp: Path) -> None:
    args = run.args
    db_url = args.db or cluster_db_url()
    await wipe_database(db_url)
    redis = RedisServer(tmp / "redis", shutil.which("redis-server") or "redis-server")
    redis.start()
    ctx = multiprocessing.get_context("spawn")
    pbx_pipes: dict[str, Any] = {}
    procs: list[Any] = []
    browser_pipes: list[Any] = []
    nodes: list[Node] = []
    tap = StreamTap(redis.url, PBXES)
    http = aiohttp.ClientSession()
    try:
        pids: dict[str, int] = {}
        ports = {pbx: free_port() for pbx in PBXES}
        for pbx in PBXES:  # they load their traffic now, and listen once told to go
            parent, child = ctx.Pipe()
            logins = 1 if args.no_hot_standby else NODES  # the PBX starts once they are all in
            proc = ctx.Process(target=pbx_main, daemon=True,
                               args=(str(run.traffic[pbx].path), ports[pbx], 1.0, logins, child,
                                     not args.pbx_nice))
            proc.start()
            pbx_pipes[pbx], pids[f"pbx {pbx}"] = parent, proc.pid
            procs.append(proc)
        for pbx in PBXES:
            await receive(pbx_pipes[pbx], 120, f"PBX {pbx} loading its traffic")
        for i in range(1, NODES + 1):
            port = free_port()
            config = node_config(f"node{i}", tmp / f"node{i}", port, redis.url, db_url, ports, args.log_level,
                                 hot_standby=not args.no_hot_standby)
            nodes.append(Node(f"node{i}", tmp / f"node{i}", config, port))
        first, *others = nodes
        first.start()  # alone: it takes both PBXes' locks (and probes them until they listen)
        await wait_ready(http, first, "owner", 60)
        print(f"  node1 owns {', '.join(PBXES)} (/readyz: owner, not connected until the PBXes listen)",
              flush=True)
        logins = await seed_operators(db_url, args.clients // len(PBXES))
        for node in others:
            node.start()
        for node in others:
            await wait_ready(http, node, "standby", 60)
        # Browsers alternately on node2 and node3: each has half of each PBX's operators.
        for k, node in enumerate(others):
            mine = logins[k::len(others)]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=browsers_main, args=(child,), daemon=True)
            proc.start()
            parent.send((node.base, COOKIE, mine))
            browser_pipes.append(parent)
            procs.append(proc)
            pids[f"browsers on {node.name}"] = proc.pid
            run.browser_nodes.append(node.name)
            run.browser_logins.append(mine)
        for parent, node in zip(browser_pipes, others, strict=True):
            run.connected.append(await receive(parent, 120, f"the browsers on {node.name} connecting"))
        shown = ", ".join(f"{c[1]:,} on {n}" for c, n in zip(run.connected, run.browser_nodes, strict=True))
        print(f"  browsers connected: {shown}", flush=True)
        # Operators log in before the calls come: the nodes' first timed garbage collection
        # passes over the 1,000 new sockets each (bridge/gc_schedule.py) before, not during.
        await asyncio.sleep(SETTLE_SECONDS)
        await tap.start()
        pids |= {n.name: n.process.pid for n in nodes if n.process is not None}
        pids["redis-server"] = int((await tap.redis.info("server"))["process_id"])
        pids["bench (stream tap, probes)"] = os.getpid()
        ledger = CpuLedger(pids)
        commands_before = await tap.stream_commands()
        run.priority = prioritise(pids, run.args.priority,
                                  "at nice +10" if run.args.pbx_nice else "under SCHED_IDLE")
        print(f"  priority: {run.priority}", flush=True)
        probe = asyncio.create_task(probe_nodes(http, nodes, run.healthz))

        run.go_at = time.time()
        for pbx in PBXES:
            pbx_pipes[pbx].send("go")
        kill_at = args.kill_at if args.kill_at is not None else args.calls / args.rate / 2
        # When the first event went out: a second or so after the owner's login.
        run.started_at = min([(await receive(pbx_pipes[p], 60, f"a login to PBX {p}"))[1] for p in PBXES])
        print(f"  traffic started: {args.calls:,} calls at {args.rate:g}/s offered; "
              + ("no kill" if args.no_kill else f"node1 dies at +{kill_at:.0f} s"), flush=True)
        last_report = time.monotonic()
        while len(run.pbx_done) < len(PBXES):
            elapsed = time.time() - run.started_at
            if not args.no_kill and run.takeover is None and elapsed >= kill_at:
                ledger.close("node1")  # its figures until now: gone after the kill
                run.takeover = await kill_and_time(http, first, others)
                print(f"  node1 killed at +{elapsed:.1f} s; takeover {run.takeover.seconds:.2f} s "
                      f"({', '.join(f'{p} by {n}' for p, n in run.takeover.by.items())})", flush=True)
            for pbx in PBXES:
                if pbx not in run.pbx_done and pbx_pipes[pbx].poll():
                    run.pbx_done[pbx] = pbx_pipes[pbx].recv()[1]
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                print(f"    +{elapsed:.0f} s: {tap.events:,} stream entries read", flush=True)
            if elapsed > args.timeout:
                raise TimeoutError(f"the PBXes did not finish their replay within {args.timeout:g} s")
            await asyncio.sleep(0.05)
        run.traffic_seconds = time.time() - run.started_at
        await asyncio.sleep(2.0)  # the last frames reach the browsers
        probe.cancel()
        run.cpu = ledger.finish()
        commands = await tap.stream_commands()
        run.cpu["redis_commands"] = {k: n - commands_before[k] for k, n in commands.items()}
        for parent in browser_pipes:
            parent.send("stop")
        for parent in browser_pipes:
            run.browser_results.append(await receive(parent, 120, "the browsers' frames"))
        await tap.stop()
        run.tap_rows = tap.rows
        for pbx, done in run.pbx_done.items():
            run.traffic[pbx].replay_offline(done["shift"])
        run.logged = await settled_calls(db_url, sum(len(t.expected) for t in run.traffic.values()))
    finally:
        await http.close()
        await tap.stop()
        for node in nodes:
            node.stop()
            run.node_logs[node.name] = node.log_text
        for parent in pbx_pipes.values():
            with contextlib.suppress(OSError):
                parent.send("stop")
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="new calls in all (default 2000)")
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second in all (default 50)")
    parser.add_argument("--clients", type=int, default=len(PBXES) * OPERATORS_PER_PBX,
                        help="operators' browsers, half of them per PBX (default 2000)")
    parser.add_argument("--bursts", action="store_true",
                        help="also the lab's burst capture (20 calls within 8 ms; 63%% of the calls come "
                             "in such clumps), passes evenly spaced: a stress run, not a call rate")
    parser.add_argument("--priority", type=int, default=0, metavar="NICE",
                        help="nice value of the nodes, Redis and the browsers (default 0; below 0 needs "
                             "root), so that the load generators give way to what is measured")
    parser.add_argument("--pbx-nice", action="store_true",
                        help="the PBXes at nice +10, not under SCHED_IDLE (the earlier sessions' setting)")
    parser.add_argument("--no-kill", action="store_true", help="leave the owner alive")
    parser.add_argument("--no-hot-standby", action="store_true",
                        help="[cluster] hot_standby = false: only the owner logs in to a PBX (what the "
                             "standbys' sessions cost, and what a takeover loses without them)")
    parser.add_argument("--kill-at", type=float, default=None, metavar="S",
                        help="seconds after the traffic starts (default: half-way through its new calls)")
    parser.add_argument("--db", help="PostgreSQL URL, wiped (default: the cluster tests' callbridge_cluster)")
    parser.add_argument("--log-level", default="INFO", help="the nodes' log level (default INFO, as shipped)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="copy the nodes' logs here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--dump", type=Path, metavar="FILE", help="every card pop as a JSON line (diagnosis)")
    parser.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients % len(PBXES) or not 0 < args.clients <= len(PBXES) * OPERATORS_PER_PBX:
        parser.error(f"--clients: an even number up to {len(PBXES) * OPERATORS_PER_PBX}")
    if args.calls < 10 or args.rate <= 0:
        parser.error("--calls at least 10, --rate positive")

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmpdir:
        tmp = Path(tmpdir)
        traffic = {pbx: build_traffic(pbx, i, args.calls // len(PBXES), args.rate / len(PBXES), tmp,
                                      args.bursts)
                   for i, pbx in enumerate(PBXES)}
        print(f"traffic built in {time.perf_counter() - started:.1f} s: "
              + "; ".join(f"{p}: {t.traffic.calls:,} calls, {t.traffic.events:,} events, "
                          f"{len(t.traffic.stream) / 1e6:.0f} MB" for p, t in traffic.items()), flush=True)
        run = Run(args, traffic, pace_ms=machine_pace())
        try:
            asyncio.run(run_lab(run, tmp))
        finally:
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                for name, text in run.node_logs.items():
                    (args.keep / f"{name}.log").write_text(text)
    lines, figures, pops = analyse(run)
    print("\n".join(lines))
    print("BENCH_CLUSTER " + json.dumps(figures, ensure_ascii=False))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    if args.dump is not None:
        with args.dump.open("w") as out:
            for p in pops:
                out.write(json.dumps({
                    "at": round(p.at - run.started_at, 4), "ms": round(p.latency * 1000, 2),
                    "stream_ms": round(p.stream_leg * 1000, 2), "rest_ms": round(p.rest * 1000, 2),
                    "node": p.node, "owner": p.ring.owner, "first": p.first, "lookup": p.lookup}) + "\n")


if __name__ == "__main__":
    main()
