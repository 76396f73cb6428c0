"""bench/cluster.py's report: a run's figures and lines (latency, takeover, calls lost, CPU)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._cluster_measure import (
    Browser,
    Pop,
    Stats,
    card_pops,
    ring_causes,
)
from bench._cluster_run import PBXES, TARGET_P99_MS, TARGET_TAKEOVER_S, TIMES, Run, Takeover
from bridge.calls.channel_names import DEFAULT_OPERATOR_PATTERN

_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?"
                       r"(?:pbx (\S+): node \S+ is the owner now|PBX (\S+): resynced)")


def takeover_log_times(took: Takeover, logs: dict[str, str]) -> None:
    """From the new owners' own log lines (local time, ms): seconds from the kill until each
    PBX's lease was taken, and until the new owner's first resync after it."""
    for pbx, node in took.by.items():
        times: dict[str, float] = {}
        for line in logs.get(node, "").splitlines():
            m = _LOG_LINE.match(line)
            if m is None or pbx not in (m[2], m[3]):
                continue
            at = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp() - took.killed_at
            if m[2] and at >= -0.01:
                times.setdefault("lease", at)
            elif m[3] and "lease" in times:
                times.setdefault("resynced", at)
        took.logged[pbx] = times


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def check_calls(run: Run, outage: dict[str, tuple[float, float]],
                published: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The call log against the offline replay. `outage`: pbx -> the PBX times between which
    the dead owner's last published event and the new owner's first one lie; `published`: the
    calls as the whole published stream tells them (StreamFacts.ended)."""
    expected = {cid: d for t in run.traffic.values() for cid, d in t.expected.items()}
    logged = {d["call_id"]: d for d in run.logged}
    missing = sorted(set(expected) - set(logged))
    extra = sorted(set(logged) - set(expected))
    wrong: dict[str, list[str]] = {}
    for cid in sorted(set(expected) & set(logged)):
        if fields := [k for k, v in expected[cid].items() if logged[cid].get(k) != v]:
            wrong[cid] = fields
    by_field: dict[str, int] = {}
    for fields in wrong.values():
        for f in fields:
            by_field[f] = by_field.get(f, 0) + 1
    # Wrong only in its times, and by how much at most (the new owner dates what it did not
    # see from its resync); and whether the call was up while the PBX's events went unpublished.
    timing_only = [cid for cid, fields in wrong.items() if set(fields) <= set(TIMES)]
    skew = 0.0
    for cid in timing_only:
        for f in wrong[cid]:
            a, b = expected[cid][f], logged[cid][f]
            if a is None or b is None:
                skew = math.inf
            else:
                skew = max(skew, abs(_epoch(a) - _epoch(b)) if f.endswith("_at") else abs(a - b))

    def across(cid: str) -> bool:
        call = expected[cid]
        span = outage.get(call["pbx"])
        return (span is not None and _epoch(call["started_at"]) <= span[1]
                and _epoch(call["ended_at"]) >= span[0])

    # Right in the stream but wrong in the log: lost by the new owner, not with the old one.
    right_in_stream = sum(1 for cid in [*missing, *wrong] if published.get(cid) == expected[cid])
    by_pbx: dict[str, int] = {}
    for cid in [*missing, *wrong]:
        by_pbx[expected[cid]["pbx"]] = by_pbx.get(expected[cid]["pbx"], 0) + 1
    return {"right_in_stream": right_in_stream, "lost_by_pbx": by_pbx,
            "played": len(expected), "logged": len(logged), "missing": missing, "extra": extra,
            "wrong": wrong,
            "wrong_fields": by_field, "lost": len(missing) + len(wrong),
            "examples": {cid: {f: [expected[cid][f], logged[cid].get(f)] for f in fields}
                         for cid, fields in list(wrong.items())[:4]},
            "timing_only": len(timing_only), "timing_skew": skew,
            "across_outage": sum(map(across, expected)),
            "lost_across_outage": sum(map(across, [*missing, *wrong])),
            "live": sum(1 for d in run.logged if d["ended_at"] is None)}


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "?")
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError):
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024 ** 2:.0f} GiB"
    return (f"{os.cpu_count()} cores ({model}), {mem} RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def analyse(run: Run) -> tuple[list[str], dict[str, Any], list[Pop]]:
    args = run.args
    facts = ring_causes(run.tap_rows, list(PBXES), DEFAULT_OPERATOR_PATTERN)
    browsers: dict[tuple[str, int], Browser] = {}
    rows = []
    other: dict[str, int] = {}
    for node, logins, result in zip(run.browser_nodes, run.browser_logins, run.browser_results, strict=True):
        for i, (_token, _user, pbx, ext) in enumerate(logins):
            browsers[(node, i)] = Browser(node, pbx, ext)
        rows += [(t, node, i, *rest) for t, i, *rest in result["rows"]]
        for kind, n in result["other"].items():
            other[kind] = other.get(kind, 0) + n
    pops = card_pops(rows, browsers, facts)
    took = run.takeover
    killed = took.killed_at if took else math.inf
    took_s = took.seconds if took and not math.isnan(took.seconds) else TARGET_TAKEOVER_S
    settled_again = killed + took_s + 1.0
    steady_end = run.started_at + args.calls / args.rate
    # The target is for rings that reached an owner; those of the takeover wait for it.
    in_takeover = [p for p in pops.pops if p.ring.in_takeover]
    cross = [p for p in pops.pops if p.ring.owner != p.node and not p.ring.in_takeover]
    connected = {(b.pbx, b.extension) for b in browsers.values()}
    rings = sum(n for key, n in facts.rings.items() if tuple(key.split("/", 1)) in connected)
    stats = {
        "pop_cross_node": Stats.of(p.latency for p in cross),
        "pop_cross_node_stream_leg": Stats.of(p.stream_leg for p in cross),
        "pop_cross_node_rest": Stats.of(p.rest for p in cross),
        # Without the first second of traffic (a cold start: first calls, first frames to
        # 1,000 pages) and the second after the takeover (the new owner's resync).
        "pop_cross_node_settled": Stats.of(p.latency for p in cross if p.ring.arrived >= run.started_at + 1.0
                                           and not killed <= p.ring.arrived < settled_again),
        "pop_cross_node_full_rate": Stats.of(p.latency for p in cross
                                             if p.ring.arrived < min(steady_end, killed)),
        "pop_before_kill": Stats.of(p.latency for p in cross if p.ring.arrived < killed),
        "pop_after_takeover_cross": Stats.of(p.latency for p in cross if p.ring.arrived >= killed),
        "pop_after_takeover_same_node": Stats.of(p.latency for p in pops.pops
                                                 if p.ring.owner == p.node and not p.ring.in_takeover),
        "pop_in_takeover": Stats.of(p.latency for p in in_takeover),
        "every_event_owner_leg": Stats.of(facts.owner_leg),
        "pbx_clock_behind": Stats.of(facts.pbx_behind),
        "browser_loop_lag": Stats.of(x for r in run.browser_results for x in r["loop_lag"]),
        **{f"healthz_{n}": Stats.of(rtt for _, rtt in samples) for n, samples in sorted(run.healthz.items())},
    }
    # The PBX times around each owner change: calls up then may have lost events.
    outage = {pbx: (e[0].last_pbx_time, e[1].first_pbx_time) for pbx, e in facts.epochs.items()
              if len(e) > 1 and e[0].last_pbx_time and e[1].first_pbx_time}
    calls = check_calls(run, outage, facts.ended)
    # What the PBX sent that no owner published (the logins' FullyBooted aside).
    unpublished = {p: t.traffic.events - facts.events.get(p, 0) for p, t in run.traffic.items()}
    # New calls per second the owners saw in the first `steady` s of the replay (their first
    # event's arrival): what the PBXes achieved of the offered rate, pauses included.
    steady = args.calls / args.rate
    achieved = sum(1 for t in facts.call_seen.values() if t < steady_end) / steady
    cpu = run.cpu
    if took is not None:
        takeover_log_times(took, run.node_logs)
    p99 = stats["pop_cross_node"].p99
    lost = {"calls_played": calls["played"], "calls_logged": calls["logged"],
            "calls_missing": len(calls["missing"]), "calls_wrong": len(calls["wrong"]),
            "calls_extra": len(calls["extra"]), "calls_lost": calls["lost"],
            "calls_still_live": calls["live"],
            "calls_live_at_outage": calls["across_outage"],
            "calls_lost_live_at_outage": calls["lost_across_outage"],
            "calls_lost_by_pbx": calls["lost_by_pbx"], "calls_lost_right_in_stream": calls["right_in_stream"],
            "calls_wrong_timing_only": calls["timing_only"],
            "calls_wrong_timing_skew_s": round(calls["timing_skew"], 3),
            "wrong_fields": calls["wrong_fields"], "wrong_examples": calls["examples"]}
    figures: dict[str, Any] = {
        "machine": machine(), "pace_ms": round(run.pace_ms, 1),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "priority": run.priority,
        "bursts": args.bursts,
        "calls": sum(t.traffic.calls for t in run.traffic.values()),
        "events": sum(t.traffic.events for t in run.traffic.values()),
        "offered_calls_per_s": args.rate, "achieved_calls_per_s": round(achieved, 1),
        "clients": sum(c[1] for c in run.connected), "traffic_seconds": round(run.traffic_seconds, 1),
        "rings_of_browsers": rings, "card_pops": len(pops.pops), "cross_node_pops": len(cross),
        "card_frames": pops.frames, "other_frames": other, "misrouted_frames": pops.misrouted,
        "unexplained_pops": pops.unexplained, "target_p99_met": p99 <= TARGET_P99_MS,
        **{k: v.as_dict() for k, v in stats.items()},
        "takeover_seconds": None if took is None else round(took.seconds, 3),
        "takeover_readyz_lease_seconds": None if took is None else {
            p: round(v, 3) for p, v in took.lease.items()},
        "takeover_logged_seconds": None if took is None else {
            p: {k: round(v, 3) for k, v in t.items()} for p, t in took.logged.items()},
        "new_owners": None if took is None else took.by,
        "events_unpublished": unpublished if took is not None else None,
        **lost,
        "stream_entries": sum(facts.entries.values()), "stream_dropped": facts.dropped, "cpu": cpu,
    }
    shown = ", ".join(f"{c[1]:,} on {n}" for c, n in zip(run.connected, run.browser_nodes, strict=True))
    lines = [
        f"machine: {figures['machine']}; pace: a fixed Python task in {run.pace_ms:.1f} CPU ms (its "
        f"pace drifts between hours: compare runs at a like pace); priority: {run.priority}",
        f"traffic: {figures['calls']:,} calls ({figures['events']:,} AMI events) on {len(PBXES)} PBXes: "
        f"{args.rate:g} new calls/s offered in all for {steady:.0f} s, {achieved:.1f}/s achieved (new calls "
        f"at the owners in those first s); calls last up to ~67 s, the replay took "
        f"{run.traffic_seconds:.0f} s",
        f"browsers: {figures['clients']:,} ({shown}); "
        f"{sum(c[2] for c in run.connected)} taken by their node for another PBX's user",
        f"cards: {rings:,} rings of the browsers' phones, {len(pops.pops):,} pops ({len(cross):,} across "
        f"nodes), {pops.frames:,} card frames, {pops.misrouted} misrouted, {pops.unexplained} pops without "
        f"a ring in the stream; other frames {json.dumps(other, sort_keys=True)}",
        Stats.header(),
        stats["pop_cross_node"].row("card pop across nodes: ring at the owner -> browser"),
        stats["pop_cross_node_stream_leg"].row("  of which: owner's AMI read -> XADD in Redis (ms)"),
        stats["pop_cross_node_rest"].row("  of which: XADD in Redis -> browser on another node"),
        stats["pop_cross_node_settled"].row("  rings after the first second, not in the takeover's"),
        stats["pop_cross_node_full_rate"].row("  rings while new calls came at the full rate"),
        stats["pop_before_kill"].row("  rings while node1 owned both PBXes"),
        stats["pop_after_takeover_cross"].row("  rings after the takeover"),
        stats["pop_after_takeover_same_node"].row("card pop on the new owner's own browsers"),
        stats["pop_in_takeover"].row("rings during the takeover (until the new owner resynced)"),
        stats["every_event_owner_leg"].row("every AMI event: owner's read -> XADD in Redis (ms)"),
        stats["pbx_clock_behind"].row("every AMI event: owner's read - its Timestamp (PBX clock)"),
        stats["browser_loop_lag"].row("browsers' processes: event loop lag (20 ms timer)"),
        *(stats[f"healthz_{n}"].row(f"{n}: /healthz round trip (its loop's responsiveness)")
          for n in sorted(run.healthz)),
        f"  target p99 <= {TARGET_P99_MS:g} ms across nodes: "
        f"{'met' if p99 <= TARGET_P99_MS else 'NOT met'} ({p99:.2f} ms)",
    ]
    lines += (takeover_lines(took, facts, unpublished) if took is not None
              else ["owner not killed (--no-kill)"])
    lines += calls_lines(calls, killed=took is not None)
    lines += cpu_lines(cpu)
    return lines, figures, pops.pops


def takeover_lines(took: Takeover, facts: Any, unpublished: dict[str, int]) -> list[str]:
    def logged(pbx: str, what: str) -> float:
        return took.logged.get(pbx, {}).get(what, math.nan)

    per_pbx = "; ".join(f"{p}: {n}, lease {logged(p, 'lease'):.2f} s, resynced {logged(p, 'resynced'):.2f} "
                        f"s, /readyz owner {took.owner.get(p, math.nan):.2f} s"
                        for p, n in sorted(took.by.items()))
    met = "met" if took.seconds <= TARGET_TAKEOVER_S else "NOT met"
    lines = [f"owner killed (SIGKILL node1): takeover {took.seconds:.2f} s until every PBX had an owner "
             f"among the survivors (/readyz; target <= {TARGET_TAKEOVER_S:g} s: {met}); "
             f"by the logs: {per_pbx}"]
    for pbx, epochs in sorted(facts.epochs.items()):
        if len(epochs) < 2:
            continue
        old, new = epochs[0], epochs[1]
        gap = (new.first_arrival or math.nan) - (old.last_arrival or math.nan)
        lines.append(f"  PBX {pbx}: {old.node} -> {new.node}: {gap:.2f} s between the last event published "
                     f"by the old owner and the first by the new (PBX times "
                     f"{old.last_pbx_time or math.nan:.3f} -> {new.first_pbx_time or math.nan:.3f}); "
                     f"{unpublished[pbx]:,} events the PBX sent that no owner published (the new owner "
                     "publishes what its standby session heard after the old one's last publication)")
    return lines


def calls_lines(calls: dict[str, Any], *, killed: bool) -> list[str]:
    lines = [f"calls: {calls['played']:,} played, {calls['logged']:,} logged, {len(calls['missing'])} "
             f"missing, {len(calls['wrong'])} differ from the offline replay, {len(calls['extra'])} "
             f"unexpected, {calls['live']} still live: calls lost {calls['lost']} (must be 0)"]
    if killed:
        lines.append(f"  {calls['across_outage']:,} calls were up while events went unpublished; "
                     f"{calls['lost_across_outage']} of the lost ones among them; lost by PBX "
                     f"{calls['lost_by_pbx']}; {calls['right_in_stream']} of the lost were right in the "
                     "published stream (lost by the new owner), the others' events died with the old one")
    if calls["wrong"]:
        lines.append(f"  {calls['timing_only']} of the {len(calls['wrong'])} differ in their times only, by "
                     f"at most {calls['timing_skew'] * 1000:.0f} ms; fields that differ: "
                     f"{calls['wrong_fields']}; e.g.:")
        lines += [f"    {cid}: {json.dumps(diff, ensure_ascii=False)}"
                  for cid, diff in calls["examples"].items()]
    if calls["missing"]:
        lines.append(f"  missing, e.g.: {', '.join(calls['missing'][:5])}")
    return lines


def cpu_lines(cpu: dict[str, Any]) -> list[str]:
    if not cpu:
        return []
    seconds, cores = cpu["seconds"], os.cpu_count() or 1
    each = ", ".join(f"{name} {v['cpu']:.1f}/{v['waited']:.1f}" for name, v in cpu["processes"].items())
    other = cpu["kernel_and_other_work"]
    lines = [f"CPU over the {seconds:.0f} s of traffic ({cores} cores: {seconds * cores:.0f} CPU s), CPU s / "
             f"s waiting for a CPU (main thread): {each}; PostgreSQL {cpu['postgresql']:.1f}; the kernel and "
             f"other work {other:.1f}; the machine in all {cpu['machine']:.1f}"]
    if commands := cpu.get("redis_commands"):
        lines.append(f"Redis served {commands['xadd']:,} XADD (the owners' round trips, each waking "
                     f"Redis and every follower) and {commands['xread']:,} XREAD")
    if other > 0.25 * seconds:
        lines.append(f"  NOTE: the kernel and other work used {other / seconds:.0%} of a core meanwhile: if "
                     "other work ran, the figures are disturbed; run again on a quiet machine")
    return lines
