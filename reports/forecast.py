"""The staffing plan: operators needed per interval of a chosen day, or of the typical day of a
period, from the call log's history (docs/reports_api.md, `GET /api/reports/staffing`).

- a chosen day (past, today or future): the same weekday over the last N weeks before it (before
  today, for today and future days): for each interval of the day, the average offered calls, the
  AHT and the callers' patience over those days -> `reports.staffing.advise`; for the intervals of
  the chosen day that are over, the operators actually available and the service level the
  averaged traffic would have had with them;
- `typical`: the same over every finished day of a period (the average day), with the average
  of the operators available on those days.

A day whose call log holds no call at all (before the bridge ran, or a closed day) is left out of
the average: `history_days` lists the days that were averaged. Intervals are local wall-clock
slots of the day (00:00, 01:00, ...): on a day the clocks change, a repeated hour's calls add up
in one slot. The sums are SQL (`reports.queries.day_slot_tallies`); Python divides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from bridge.calls.definitions import definitions
from reports import queries as q
from reports.models import PeriodInfo, ReportError, _Model
from reports.service import ReportService, _staff_per_interval, resolve_period
from reports.staffing import advise, expected

PLAN_INTERVALS = ("15", "30", "60")
MAX_WEEKS = 52
EARLIEST = date(2000, 1, 1)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

PLAN_DEFINITIONS = {
    "staffing.calls": "average offered calls in the interval over the history days",
    "staffing.aht_seconds": "average handling time of the interval's answered calls over the history days "
                            "(talk + after-call work); the history's overall AHT when none was answered",
    "staffing.patience_seconds": "callers' mean patience in the interval over the history days: total wait / "
                                 "abandons after the short-abandon time (Erlang A); the history's overall "
                                 "patience when the interval has no such abandon; none: Erlang C",
    "history_days": "the days averaged: for a chosen day, the same weekday in each of the last N weeks "
                    "before it (before today for today and later days); for the typical day, every "
                    "finished day of the period; a day without a single call in the call log is left out",
}


class PlanRow(_Model):
    start: str | None  # local ISO time of the chosen day's interval; None for the typical day
    time: str  # "09:00", local wall clock
    calls: float  # average offered calls
    aht_seconds: float | None
    patience_seconds: float | None
    agents: int
    staff: int
    staff_actual: float | None
    expected_service_level: float | None
    service_level_with_actual: float | None
    abandon_rate: float | None
    verdict: Literal["under", "over", "ok"] | None


class StaffingPlan(_Model):
    day: str  # YYYY-MM-DD, or "typical"
    weekday: int | None  # Monday 0; None for the typical day
    weeks: int | None  # None for the typical day
    period: PeriodInfo  # the chosen day, or the period the typical day averages
    history_days: list[str]
    definitions: dict[str, str]
    target_seconds: float
    target_fraction: float
    max_occupancy: float
    shrinkage: float
    patience_seconds: float | None  # over the whole history (the intervals' fallback)
    staffing: list[PlanRow] = Field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def history_for_day(day: date, today: date, weeks: int) -> list[date]:
    """The same weekday as `day` in each of the `weeks` weeks before it (before today, for today
    and later days), oldest first."""
    limit = min(day, today)
    latest = limit - timedelta(days=(limit.weekday() - day.weekday()) % 7 or 7)
    return [latest - timedelta(days=7 * k) for k in range(weeks - 1, -1, -1)]


def _weeks(value: str | int | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        weeks = int(value)
    except (TypeError, ValueError):
        weeks = 0
    if not 1 <= weeks <= MAX_WEEKS or str(value).strip() != str(weeks):
        raise ReportError(f"weeks must be a whole number from 1 to {MAX_WEEKS}, not {str(value)[:40]!r}")
    return weeks


def _chosen_day(value: str, today: date) -> date:
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"day must be a date like 2026-12-07 or 'typical', not {value[:40]!r}") from None
    if len(value) != 10 or not EARLIEST <= day <= today + timedelta(days=366):
        raise ReportError(f"day must be a YYYY-MM-DD from {EARLIEST} to a year from today, "
                          f"not {value[:40]!r}")
    return day


@dataclass
class _Slot:
    offered: int = 0
    answered: int = 0
    real_abandons: int = 0
    talk: float = 0.0
    wait: float = 0.0

    def add(self, row: Any) -> None:
        self.offered += int(row.offered or 0)
        self.answered += int(row.answered or 0)
        self.real_abandons += int(row.abandoned or 0) - int(row.short_abandoned or 0)
        self.talk += float(row.answered_talk or 0)
        self.wait += float(row.total_wait or 0)

    def aht(self, after_call: float) -> float | None:
        return self.talk / self.answered + after_call if self.answered else None

    def patience(self) -> float | None:
        return self.wait / self.real_abandons if self.real_abandons > 0 and self.wait > 0 else None


async def staffing_plan(service: ReportService, day: str = "typical", *, weeks: str | int | None = None,
                        period: str | None = None, start: str | None = None, end: str | None = None,
                        queue: str | None = None, interval: str = "60",
                        pbx: str | None = None) -> StaffingPlan:
    """The plan of docs/reports_api.md (of one PBX's calls and members if `pbx`, its days in that
    PBX's zone); ReportError (a 400) on a bad query."""
    if interval not in PLAN_INTERVALS:
        raise ReportError(f"a staffing plan is per 15, 30 or 60 minutes: interval must be one of "
                          f"{', '.join(PLAN_INTERVALS)}, not {interval[:40]!r}")
    if queue is not None and not (0 < len(queue) <= 128):
        raise ReportError("queue must be a queue name (1 to 128 characters)")
    service.check_pbx(pbx)
    settings, tz, now = service.settings, service.zone_of(pbx), service.clock()  # one PBX: its days
    today = datetime.fromtimestamp(now, tz).date()
    chosen: date | None = None
    n_weeks: int | None = None
    if day == "typical":
        if weeks not in (None, ""):
            raise ReportError("weeks goes with a chosen day, not with day=typical (the period's days)")
        shown = resolve_period(period or "today", tz, now, start, end)
        candidates = [d for d in _dates(shown[0].date(), shown[1].date()) if d < today]
    else:
        if period is not None or start is not None or end is not None:
            raise ReportError("period, from and to go with day=typical; a chosen day averages the same "
                              "weekday of the last weeks (weeks=N)")
        chosen, n_weeks = _chosen_day(day, today), _weeks(weeks, settings.forecast_weeks)
        candidates = history_for_day(chosen, today, n_weeks)
        shown = (_local(chosen, 0, tz), _local(chosen + timedelta(days=1), 0, tz))
    size, policy = q.INTERVAL_SECONDS[interval], settings.policy()
    target = policy.target_for(queue)
    keys = [d.toordinal() - EPOCH_ORDINAL for d in candidates]
    dialect = service.store.engine.dialect.name
    rows: list[Any] = []
    recorded: set[int] = set()
    segments: list[Any] = []
    async with service.store.engine.connect() as conn:
        if candidates:
            scope = _days_scope(candidates[0], candidates[-1], tz, interval, queue, dialect, pbx,
                                service.main_is)
            rows = list(await q.day_slot_tallies(conn, scope, policy, keys, size))
            recorded = await q.recorded_days(conn, scope, keys)
        history = [d for d, k in zip(candidates, keys, strict=True) if k in recorded]
        actual_days = history if chosen is None else [chosen] if chosen <= today else []
        if actual_days:
            seg_scope = _days_scope(actual_days[0], actual_days[-1], tz, interval, queue, dialect, pbx,
                                    service.main_is)
            segments = list(await q.available_segments(conn, seg_scope, datetime.fromtimestamp(now, UTC)))

    slots = 86400 // size
    per_slot, overall = [_Slot() for _ in range(slots)], _Slot()
    for row in rows:
        if int(row.slot) < slots:
            per_slot[int(row.slot)].add(row)
            overall.add(row)
    overall_aht, overall_patience = overall.aht(settings.after_call_seconds), overall.patience()
    actual = _actual_staff(segments, actual_days, slots, size, tz, now) if segments else None
    out = []
    for s, slot in enumerate(per_slot):
        calls = slot.offered / len(history) if history else 0.0
        aht = slot.aht(settings.after_call_seconds) or overall_aht
        patience = slot.patience() or overall_patience
        need = _advise(calls, size, aht or 1.0, target, patience, settings)
        have = actual[s] if actual is not None else None
        with_actual = None
        if have is not None and aht and calls:
            with_actual = expected(calls, size, aht, math.floor(have + 1e-9), target_seconds=target,
                                   patience_seconds=patience).service_level
        verdict = None
        if have is not None:
            verdict = "under" if have < need.agents else "over" if math.floor(have) > need.agents else "ok"
        out.append(PlanRow(start=_local(chosen, s * size, tz).isoformat() if chosen is not None else None,
                           time=f"{s * size // 3600:02d}:{s * size % 3600 // 60:02d}", calls=round(calls, 3),
                           aht_seconds=round(aht, 3) if aht and calls else None,
                           patience_seconds=round(patience, 3) if patience and calls else None,
                           agents=need.agents, staff=need.staff, staff_actual=have,
                           expected_service_level=need.service_level, service_level_with_actual=with_actual,
                           abandon_rate=need.abandon_rate, verdict=verdict))
    defs = definitions(policy, settings.after_call_seconds)
    return StaffingPlan(
        day=chosen.isoformat() if chosen is not None else "typical",
        weekday=chosen.weekday() if chosen is not None else None, weeks=n_weeks,
        period=PeriodInfo(from_=shown[0].isoformat(), to=shown[1].isoformat(), timezone=tz.key,
                          interval=interval, queue=queue, pbx=pbx),
        history_days=[d.isoformat() for d in history],
        definitions={**{k: v for k, v in defs.items() if k.startswith("staffing.")}, **PLAN_DEFINITIONS},
        target_seconds=target, target_fraction=settings.target_fraction, max_occupancy=settings.max_occupancy,
        shrinkage=settings.shrinkage,
        patience_seconds=round(overall_patience, 3) if overall_patience else None,
        staffing=out)


def _local(day: date, seconds: int, tz: ZoneInfo) -> datetime:
    """The wall-clock time `seconds` after the local midnight of `day`."""
    return datetime.combine(day, time(seconds // 3600, seconds % 3600 // 60), tzinfo=tz)


def _days_scope(first: date, last: date, tz: ZoneInfo, interval: str, queue: str | None,
                dialect: str, pbx: str | None = None, main_is: str | None = None) -> q.Scope:
    """From the local midnight of `first` to the one after `last`."""
    end = _local(last + timedelta(days=1), 0, tz)
    return q.Scope(_local(first, 0, tz), end, tz, interval, queue, dialect, pbx, main_is)


def _dates(first: date, end: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((end - first).days)]


def _advise(calls: float, size: int, aht: float, target: float, patience: float | None, settings: Any) -> Any:
    kwargs: dict[str, Any] = {"target_fraction": settings.target_fraction, "target_seconds": target,
                              "max_occupancy": settings.max_occupancy, "shrinkage": settings.shrinkage,
                              "patience_seconds": patience}
    load = calls * aht / size
    bound = int(load / settings.max_occupancy + 5 * math.sqrt(load)) + 20
    try:  # a bound near the answer keeps the Erlang B table short (square-root staffing)
        return advise(calls, size, aht, max_agents=bound, **kwargs)
    except ValueError:  # an extreme target: search the whole default range
        return advise(calls, size, aht, **kwargs)


def _actual_staff(segments: list[Any], days: list[date], slots: int, size: int, tz: ZoneInfo,
                  now: float) -> list[float | None]:
    """Operators available per slot, averaged over `days`; a slot over on none of them: None."""
    starts = [_local(d, s * size, tz) for d in days for s in range(slots)]
    staff = _staff_per_interval(segments, [s.isoformat() for s in starts], size)
    out: list[float | None] = []
    for s in range(slots):
        picks = [i * slots + s for i in range(len(days))]
        done = [i for i in picks if starts[i].timestamp() + size <= now]
        out.append(round(sum(staff[i] for i in done) / len(done), 2) if done else None)
    return out
