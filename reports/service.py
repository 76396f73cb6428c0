"""Builds a `Report` (the JSON of docs/reports_api.md) for a period, queue and interval.

The figures come from `reports.queries` (SQL aggregations); this module resolves the period
in the call centre's zone, adds up the grouped rows, applies the shared definitions
(`bridge.calls.definitions`) and asks `reports.staffing` for the staffing advice.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bridge.call_log.store import CallLogStore
from bridge.calls.definitions import Tally, abandon_rate, definitions, service_level, service_levels
from bridge.calls.record import DEFAULT_PBX
from reports import queries as q
from reports.models import (
    Bucket,
    Figures,
    HourOfDay,
    IntervalFigures,
    OperatorFigures,
    PeriodInfo,
    Report,
    ReportError,
    StaffingRow,
    Weekday,
)
from reports.settings import ReportSettings
from web.users import resolve_pbx

PERIODS = ("today", "yesterday", "last7", "range")
INTERVALS = ("15", "30", "60", "day", "weekday")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAX_DAYS = 366
Key = tuple[str, str]  # an operator: (pbx, extension)


# -- the period -----------------------------------------------------------------------------------

def _day(value: str | None, name: str) -> date:
    if not value:
        raise ReportError(f"period=range needs '{name}' as YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"'{name}' must be a date like 2026-11-24, not {value[:40]!r}") from None


def resolve_period(period: str, tz: ZoneInfo, now: float, start: str | None = None,
                   end: str | None = None) -> tuple[datetime, datetime]:
    """[from, to) as aware local midnights; `range` includes both days."""
    today = datetime.fromtimestamp(now, tz).date()
    if period == "today":
        first, last = today, today
    elif period == "yesterday":
        first = last = today - timedelta(days=1)
    elif period == "last7":
        first, last = today - timedelta(days=6), today
    elif period == "range":
        first, last = _day(start, "from"), _day(end, "to")
        if last < first:
            raise ReportError("'to' is before 'from'")
        if (last - first).days >= MAX_DAYS:
            raise ReportError(f"a report covers at most {MAX_DAYS} days")
    else:
        raise ReportError(f"period must be one of {', '.join(PERIODS)}, not {period[:40]!r}")
    midnight = datetime.min.time()
    return (datetime.combine(first, midnight, tzinfo=tz),
            datetime.combine(last + timedelta(days=1), midnight, tzinfo=tz))


def _wall(moment: datetime) -> int:
    """Local wall-clock epoch (as if UTC): the SQL's `local_seconds`."""
    return int(moment.replace(tzinfo=UTC).timestamp())


def _label(wall: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(wall, UTC).replace(tzinfo=tz).isoformat()


# -- adding up grouped rows -------------------------------------------------------------------------

@dataclass
class _Sum:
    tally: Tally = field(default_factory=Tally)
    answered_wait: float = 0.0
    answered_talk: float = 0.0
    total_wait: float = 0.0
    longest: float | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, row: Any) -> None:
        t, r = self.tally, Tally.of(row)
        for name in t.__slots__:
            setattr(t, name, getattr(t, name) + getattr(r, name))
        self.answered_wait += float(row.answered_wait or 0)
        self.answered_talk += float(row.answered_talk or 0)
        self.total_wait += float(row.total_wait or 0)
        if row.longest_wait is not None:
            self.longest = max(self.longest or 0.0, float(row.longest_wait))

    def figures(self, settings: ReportSettings, p90: float | None) -> dict[str, Any]:
        t, policy = self.tally, settings.policy()
        answered = t.answered or None
        talk_avg = self.answered_talk / answered if answered else None
        return {
            "offered": t.offered, "answered": t.answered, "abandoned": t.abandoned,
            "short_abandoned": t.short_abandoned, "unanswered": t.unanswered, "incomplete": t.incomplete,
            "unanswered_by_reason": dict(sorted(self.reasons.items())),
            "service_level": service_level(t, policy.definition,
                                           abandons_within_target_met=policy.abandons_within_target_met),
            "service_level_by_definition": service_levels(t, policy),
            "abandon_rate": abandon_rate(t),
            "asa_seconds": _r(self.answered_wait / answered) if answered else None,
            "wait_p90_seconds": p90, "longest_wait_seconds": self.longest,
            "aht_seconds": _r(talk_avg + settings.after_call_seconds) if talk_avg is not None else None,
            "talk_seconds_avg": _r(talk_avg) if talk_avg is not None else None,
        }


def _r(value: float) -> float:
    return round(value, 3)


def _buckets(edges: list[float], counts: dict[int, tuple[int, int, int]]) -> list[Bucket]:
    bounds = [0.0, *edges]
    out = []
    for i, low in enumerate(bounds):
        high = edges[i] if i < len(edges) else None
        label = f"{low:g}-{high:g}" if high is not None else f"{low:g}+"
        calls, answered, abandoned = counts.get(i, (0, 0, 0))
        out.append(Bucket(label=label, from_=low, to=high, calls=calls, answered=answered,
                          abandoned=abandoned))
    return out


# -- the service ------------------------------------------------------------------------------------

class ReportService:
    """Reports in the call centre's zone (`timezone`); a report or staffing plan of one PBX in
    that PBX's own (`timezones`, its `[[pbx]] timezone`): its days are its own PBX's calendar
    days. A report of every PBX keeps the top-level zone: PBXes in several zones have no
    common midnight, so one zone has to cut all their days."""

    def __init__(self, store: CallLogStore, settings: ReportSettings | None = None, *, timezone: str = "UTC",
                 clock: Callable[[], float] = time.time, pbxes: Sequence[str] = (DEFAULT_PBX,),
                 timezones: Mapping[str, str] | None = None) -> None:
        self.store, self.settings, self.clock = store, settings or ReportSettings(), clock
        self.tz = ZoneInfo(timezone)
        self.zones = {pbx: ZoneInfo(zone) for pbx, zone in (timezones or {}).items()}
        self.pbxes = list(pbxes)  # the configured PBXes, the first (main) one first
        # Rows from before PBX ids say "main": the first PBX's when none is called so.
        self.main_is = resolve_pbx(DEFAULT_PBX, self.pbxes)

    def check_pbx(self, pbx: str | None) -> str | None:
        """A report's `pbx`: None (every PBX) or a configured PBX's id; ReportError otherwise."""
        if pbx is not None and pbx not in self.pbxes:
            raise ReportError(f"pbx must be one of {', '.join(self.pbxes)}, not {pbx[:40]!r}")
        return pbx

    def zone_of(self, pbx: str | None) -> ZoneInfo:
        """The zone of a report of `pbx` (None: every PBX's, the top-level zone)."""
        return self.zones.get(pbx, self.tz) if pbx is not None else self.tz

    async def report(self, period: str = "today", *, start: str | None = None, end: str | None = None,
                     queue: str | None = None, interval: str = "60", pbx: str | None = None) -> Report:
        """`pbx`: one configured PBX's calls and members only (None: every PBX's)."""
        self.check_pbx(pbx)
        if interval not in INTERVALS:
            raise ReportError(f"interval must be one of {', '.join(INTERVALS)}, not {interval[:40]!r}")
        if queue is not None and not (0 < len(queue) <= 128):
            raise ReportError("queue must be a queue name (1 to 128 characters)")
        now, tz = self.clock(), self.zone_of(pbx)
        begin, finish = resolve_period(period, tz, now, start, end)
        scope = q.Scope(begin, finish, tz, interval, queue, self.store.engine.dialect.name, pbx,
                        self.main_is)
        settings, policy = self.settings, self.settings.policy()
        now_dt = datetime.fromtimestamp(now, UTC)
        engine = self.store.engine

        # Three independent groups of queries, each on its own pooled connection: the database
        # works on them at once (SQLite's WAL lets readers run side by side).
        async def calls() -> tuple[Any, Any]:
            async with engine.connect() as conn:
                return (await q.tallies(conn, scope, policy, settings.wait_buckets, settings.talk_buckets),
                        await q.unanswered_reasons(conn, scope))

        async def waits_and_talk() -> tuple[Any, Any, Any]:
            async with engine.connect() as conn:
                return (await q.wait_p90(conn, scope), await q.operator_talk(conn, scope),
                        await q.operator_transfers(conn, scope))

        async def people() -> tuple[Any, Any, Any, Any]:
            async with engine.connect() as conn:
                rings = await q.operator_rings(conn, scope)
                member = await q.operator_member_times(conn, scope, now_dt)
                segments = await q.available_segments(conn, scope, now_dt)
                operators = sorted({(r.pbx, r.operator) for r in rings}
                                   | {(m.pbx, m.operator) for m in member})
                return rings, member, segments, await q.user_names(conn, operators, scope)

        (tallies, reasons), (p90, talk, transfers), (rings, member, segments, names) = await asyncio.gather(
            calls(), waits_and_talk(), people())

        total, per_queue, per_bucket = _Sum(), defaultdict(_Sum), defaultdict(_Sum)
        per_pbx: dict[str, _Sum] = defaultdict(_Sum)
        base = q.base_seconds(scope)
        week_hours: dict[tuple[int, int], int] = defaultdict(int)  # (weekday, hour) -> calls
        waits: dict[int, tuple[int, int, int]] = {}
        talks: dict[int, tuple[int, int, int]] = {}
        for row in tallies:  # grouped rows (queue x base interval), added up
            wall = row.base * base
            for s in (total, per_queue[row.queue], per_bucket[_interval_key(wall, row.base, interval)],
                      per_pbx[row.pbx]):
                s.add(row)
            week_hours[((wall // 86400 + 3) % 7, wall % 86400 // 3600)] += row.offered
            for i in range(len(settings.wait_buckets) + 1):
                old = waits.get(i, (0, 0, 0))
                waits[i] = (old[0] + _n(row, f"w{i}"), old[1] + _n(row, f"wa{i}"), old[2] + _n(row, f"wb{i}"))
            for i in range(len(settings.talk_buckets) + 1):
                old = talks.get(i, (0, 0, 0))
                talks[i] = (old[0] + _n(row, f"t{i}"), old[1] + _n(row, f"t{i}"), 0)
        for row in reasons:
            reason = row.reason or "unknown"
            for s in (total, per_queue[row.queue], per_bucket[row.bucket], per_pbx[row.pbx]):
                s.reasons[reason] = s.reasons.get(reason, 0) + row.calls

        queue_names = sorted(k for k in per_queue if k is not None)
        by_queue = {name: Figures(**per_queue[name].figures(settings, p90.get(("queue", name))))
                    for name in queue_names}
        by_pbx = {name: Figures(**per_pbx[name].figures(settings, p90.get(("pbx", name))))
                  for name in sorted(per_pbx)}
        intervals = self._intervals(scope, per_bucket, p90)
        return Report(
            period=PeriodInfo(from_=begin.isoformat(), to=finish.isoformat(), timezone=tz.key,
                              interval=interval, queue=queue, pbx=pbx),
            queues=queue_names,
            definitions=definitions(policy, settings.after_call_seconds),
            targets={name: policy.target_for(name) for name in sorted({*queue_names, *policy.targets})},
            totals=Figures(**total.figures(settings, p90.get(("total", None)))),
            by_queue=by_queue,
            by_pbx=by_pbx,
            pbxes=self.pbxes,
            intervals=intervals,
            wait_distribution=_buckets(settings.wait_buckets, waits),
            talk_distribution=_buckets(settings.talk_buckets, talks),
            by_hour_of_day=_hours(week_hours, begin, finish),
            by_weekday=_weekdays(week_hours, begin, finish),
            operators=self._operators(rings, talk, transfers, member, names),
            staffing=self._staffing(scope, intervals, total, segments),
        )

    def _keys(self, scope: q.Scope) -> list[int]:
        if scope.interval == "weekday":
            return list(range(7))
        size = q.INTERVAL_SECONDS[scope.interval]
        return list(range(_wall(scope.start) // size, (_wall(scope.end) - 1) // size + 1))

    def _intervals(self, scope: q.Scope, per_bucket: dict[Any, _Sum], p90: dict[tuple[str, Any], float]
                   ) -> list[IntervalFigures]:
        out = []
        for key in self._keys(scope):
            figures = per_bucket[key].figures(self.settings, p90.get(("bucket", key)))
            if scope.interval == "weekday":
                out.append(IntervalFigures(start=None, weekday=key, **figures))
            else:
                out.append(IntervalFigures(start=_label(key * q.INTERVAL_SECONDS[scope.interval], scope.tz),
                                           **figures))
        return out

    def _operators(self, rings: Iterable[Any], talk: dict[Key, float], transfers: dict[Key, int],
                   member: Iterable[Any], names: dict[Key, str]) -> list[OperatorFigures]:
        """One row per operator, (pbx, extension), in PBX then extension order."""
        by_ring = {(r.pbx, r.operator): r for r in rings}
        by_member = {(m.pbx, m.operator): m for m in member}
        out = []
        for op in sorted(by_ring.keys() | by_member.keys() | talk.keys()):
            ring, seen = by_ring.get(op), by_member.get(op)
            rung, answered = (ring.rung, ring.answered) if ring else (0, 0)
            own_talk = talk.get(op, 0.0)
            logged = float(seen.logged_in) if seen else None
            paused = float(seen.paused) if seen else None
            ready = (logged or 0.0) - (paused or 0.0)
            name = names.get(op) or (seen.name if seen else None) or (ring.member_name if ring else None)
            out.append(OperatorFigures(
                pbx=op[0], operator=op[1], name=name,
                rung=rung, answered=answered, missed=max(0, rung - answered), talk_seconds=_r(own_talk),
                aht_seconds=_r((own_talk + answered * self.settings.after_call_seconds) / answered)
                if answered else None,
                transfers=transfers.get(op, 0), logged_in_seconds=_r(logged) if logged is not None else None,
                paused_seconds=_r(paused) if paused is not None else None,
                occupancy=_r(min(1.0, own_talk / ready)) if seen and ready > 0 else None))
        return out

    def _staffing(self, scope: q.Scope, intervals: list[IntervalFigures], total: _Sum,
                  segments: Iterable[Any]) -> list[StaffingRow]:
        if scope.interval not in ("15", "30", "60") or not intervals:
            return []
        from reports.staffing import advise, expected  # another module of the package; lazily: optional

        s, size = self.settings, q.INTERVAL_SECONDS[scope.interval]
        target = s.policy().target_for(scope.queue)
        t = total.tally
        # Callers' mean patience (exponential, MLE): all time spent waiting / abandons (short ones
        # are not patience, they are misdials); without abandons: Erlang C.
        real_abandons = t.abandoned - t.short_abandoned
        patience = total.total_wait / real_abandons if real_abandons > 0 and total.total_wait > 0 else None
        period_aht = (total.answered_talk / t.answered + s.after_call_seconds) if t.answered else None
        actual = _staff_per_interval(segments, [iv.start for iv in intervals], size) if segments else None
        out = []
        for i, iv in enumerate(intervals):
            aht = iv.aht_seconds or period_aht
            kwargs: dict[str, Any] = {"target_fraction": s.target_fraction, "target_seconds": target,
                                      "max_occupancy": s.max_occupancy, "shrinkage": s.shrinkage,
                                      "patience_seconds": patience}
            load = iv.offered * (aht or 1.0) / size
            try:  # a bound near the answer keeps the Erlang B table short (square-root staffing)
                bound = int(load / s.max_occupancy + 5 * math.sqrt(load)) + 20
                need = advise(iv.offered, size, aht or 1.0, max_agents=bound, **kwargs)
            except ValueError:  # an extreme target: search the whole default range
                need = advise(iv.offered, size, aht or 1.0, **kwargs)
            have = actual[i] if actual is not None else None
            with_actual = None
            if have is not None and aht and iv.offered:
                with_actual = expected(iv.offered, size, aht, math.floor(have + 1e-9),
                                       target_seconds=target, patience_seconds=patience).service_level
            verdict = None
            if have is not None:
                over = math.floor(have) > need.agents  # one fewer would still meet the target
                verdict = "under" if have < need.agents else "over" if over else "ok"
            out.append(StaffingRow(start=iv.start or "", calls=iv.offered, aht_seconds=aht and _r(aht),
                                   agents=need.agents, staff=need.staff, staff_actual=have,
                                   expected_service_level=need.service_level,
                                   service_level_with_actual=with_actual, abandon_rate=need.abandon_rate,
                                   verdict=verdict))
        return out


def _n(row: Any, name: str) -> int:
    return int(getattr(row, name) or 0)


def _interval_key(wall: int, base_key: int, interval: str) -> int:
    """The interval a base group (queues.base_seconds) belongs to: the SQL's `bucket`."""
    if interval == "day":
        return wall // 86400
    if interval == "weekday":
        return (wall // 86400 + 3) % 7
    return base_key


def _staff_per_interval(segments: Iterable[Any], starts: list[str | None], size: int) -> list[float]:
    """The average number of members available in each interval: overlap seconds / length.
    Member segments are few (state changes), so this is done here rather than in SQL."""
    bounds = [datetime.fromisoformat(s).timestamp() for s in starts if s is not None]
    out = [0.0] * len(bounds)
    for seg in segments:
        i = max(0, bisect.bisect_right(bounds, seg.start) - 1)  # the interval the segment starts in
        while i < len(bounds) and bounds[i] < seg.stop:
            out[i] += max(0.0, min(seg.stop, bounds[i] + size) - max(seg.start, bounds[i]))
            i += 1
    return [round(v / size, 2) for v in out]


def _days(begin: datetime, finish: datetime) -> list[date]:
    first, n = begin.date(), (finish.date() - begin.date()).days
    return [first + timedelta(days=i) for i in range(n)]


def _hours(week_hours: dict[tuple[int, int], int], begin: datetime, finish: datetime) -> list[HourOfDay]:
    days = len(_days(begin, finish)) or 1
    calls = [0] * 24
    for (_, hour), n in week_hours.items():
        calls[hour] += n
    return [HourOfDay(hour=h, calls_per_day=round(calls[h] / days, 3)) for h in range(24)]


def _weekdays(week_hours: dict[tuple[int, int], int], begin: datetime, finish: datetime) -> list[Weekday]:
    count = [0] * 7
    for d in _days(begin, finish):
        count[d.weekday()] += 1
    calls = [0] * 7
    for (weekday, _), n in week_hours.items():
        calls[weekday] += n
    return [Weekday(weekday=i, name=WEEKDAYS[i],
                    calls_per_day=round(calls[i] / count[i], 3) if count[i] else None) for i in range(7)]
