"""The reports' SQL: every count, sum, maximum and percentile is computed in the database
(GROUP BY with CASE), the same statements on SQLite and PostgreSQL.

Portability notes, once:
- times: the PBX's UTC `timestamptz` (SQLite: UTC text). `epoch()` is `EXTRACT(EPOCH ...)` on
  PostgreSQL and `strftime('%s')` / `julianday` on SQLite.
- local intervals: the period is cut into spans of one UTC offset (a DST change makes two), and
  a call's local wall-clock second is `epoch + CASE WHEN epoch < change THEN offset ... END`;
  integer division of that by 900 / 1800 / 3600 / 86400 is its interval, day, hour or weekday.
- the 90th percentile: nearest rank with window functions (ROW_NUMBER and COUNT over the
  partition; both databases have them): the row whose rank r is the first with 10 r >= 9 n.
- Python then only adds up grouped rows (a few per queue and interval), never call rows.
- several PBXes: a scope's `pbx` keeps one PBX's calls and member-log rows (WHERE calls.pbx /
  queue_member_log.pbx); without it every PBX's are counted. Queues of the same name on two
  PBXes add up (filter by PBX to see one); an operator is (pbx, extension): never two people
  added up, so the per-operator rows are grouped by PBX too. Rows written before PBX ids say
  "main": when no PBX is called so they are the first PBX's (as users' extensions,
  web.users.resolve_pbx): `scope.main_is` names it, and `pbx_column` reads them so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from bridge.call_log.tables import CallRow, RingRow, TransferRow
from bridge.calls.definitions import ServiceLevelPolicy
from bridge.calls.record import DEFAULT_PBX
from reports.member_log import MEMBER_LOG
from web.users import EXTENSIONS, USERS

CALLS, RINGS, TRANSFERS = CallRow.__table__, RingRow.__table__, TransferRow.__table__
INTERVAL_SECONDS = {"15": 900, "30": 1800, "60": 3600, "day": 86400}


@dataclass(frozen=True)
class Scope:
    """What a report covers: [start, end) in the call centre's zone, one queue or all calls, one
    PBX or all."""

    start: datetime  # aware
    end: datetime
    tz: ZoneInfo
    interval: str  # 15 | 30 | 60 | day | weekday
    queue: str | None
    dialect: str  # sqlite | postgresql
    pbx: str | None = None  # one PBX's calls and members (None: every PBX's)
    main_is: str | None = None  # the PBX of rows stored as "main" when no PBX has that id

    def pbx_ids(self) -> list[str]:
        """The stored ids of `pbx`'s rows: its own, and "main" if that is it."""
        assert self.pbx is not None
        return [self.pbx, DEFAULT_PBX] if self.main_is == self.pbx and self.pbx != DEFAULT_PBX else [self.pbx]

    def offsets(self) -> list[tuple[int, int]]:
        """(from UTC epoch, UTC offset seconds) spans covering the period; hourly probes find
        every DST change (zones change on the hour or half hour: a 30-min step is exact)."""
        spans: list[tuple[int, int]] = []
        t, stop = self.start.astimezone(UTC), self.end.astimezone(UTC)
        while t <= stop:
            off = int(t.astimezone(self.tz).utcoffset().total_seconds())  # type: ignore[union-attr]
            if not spans or spans[-1][1] != off:
                spans.append((int(t.timestamp()), off))
            t += timedelta(minutes=30)
        return spans


# -- dialect helpers --------------------------------------------------------------------------

def epoch_int(col: Any, dialect: str) -> ColumnElement[int]:
    if dialect == "sqlite":
        return cast(func.strftime("%s", col), Integer)
    return cast(func.floor(extract("epoch", col)), BigInteger)


def epoch_float(col: Any, dialect: str) -> ColumnElement[float]:
    if dialect == "sqlite":
        return (func.julianday(col) - 2440587.5) * 86400.0
    return cast(extract("epoch", col), Float)


def _least(dialect: str, *args: Any) -> ColumnElement[Any]:
    return func.min(*args) if dialect == "sqlite" else func.least(*args)


def _greatest(dialect: str, *args: Any) -> ColumnElement[Any]:
    return func.max(*args) if dialect == "sqlite" else func.greatest(*args)


def local_seconds(col: Any, scope: Scope) -> ColumnElement[int]:
    """The wall-clock second (as if UTC) of a stored time in the call centre's zone."""
    epoch = epoch_int(col, scope.dialect)
    spans = scope.offsets()
    if len(spans) == 1:
        return epoch + spans[0][1]
    whens = [(epoch < nxt[0], literal(cur[1])) for cur, nxt in zip(spans, spans[1:], strict=False)]
    return epoch + case(*whens, else_=literal(spans[-1][1]))


def bucket(scope: Scope) -> ColumnElement[int]:
    """The interval key: a local epoch divided by the interval (integer division on both
    databases, the operands being integers), or the weekday (Monday 0; 1970-01-01 was a Thursday)."""
    local = local_seconds(CALLS.c.entered_at, scope)
    if scope.interval == "weekday":
        return (local // 86400 + 3) % 7
    return local // INTERVAL_SECONDS[scope.interval]


def pbx_column(col: Any, scope: Scope) -> ColumnElement[str]:
    """A stored PBX id as configured now ("main" rows: `scope.main_is`'s)."""
    if scope.main_is is None or scope.main_is == DEFAULT_PBX:
        return col
    return case((col == DEFAULT_PBX, literal(scope.main_is)), else_=col)


def _in_scope(scope: Scope) -> list[ColumnElement[bool]]:
    where = [CALLS.c.outcome.is_not(None), CALLS.c.internal.is_(False),
             CALLS.c.entered_at >= scope.start.astimezone(UTC),
             CALLS.c.entered_at < scope.end.astimezone(UTC)]
    if scope.queue is not None:
        where.append(CALLS.c.queue == scope.queue)
    if scope.pbx is not None:
        where.append(CALLS.c.pbx.in_(scope.pbx_ids()))  # the (pbx, entered_at) index serves it
    return where


def _target(policy: ServiceLevelPolicy, queue: Any) -> ColumnElement[float]:
    if not policy.targets:
        return literal(policy.target_seconds)
    return case(*[(queue == q, literal(t)) for q, t in sorted(policy.targets.items())],
                else_=literal(policy.target_seconds))


def _count(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((cond, 1), else_=0))


def tally_columns(policy: ServiceLevelPolicy, c: Any = CALLS.c) -> list[ColumnElement[Any]]:
    """The `Tally` fields and the sums the averages need, with the predicates of
    bridge.calls.definitions written as CASE expressions (over `c`: the calls' columns)."""
    o, w, t = c.outcome, c.wait_seconds, _target(policy, c.queue)
    short = literal(policy.short_abandon_seconds)
    answered = o == "answered"
    return [
        func.count().label("offered"),
        _count(answered).label("answered"),
        _count(and_(answered, w <= t)).label("answered_within"),
        _count(o == "abandoned").label("abandoned"),
        _count(and_(o == "abandoned", w < short)).label("short_abandoned"),
        _count(and_(o == "abandoned", w >= short, w <= t)).label("abandoned_within"),
        _count(o == "unanswered").label("unanswered"),
        _count(o.not_in(("answered", "abandoned", "unanswered"))).label("incomplete"),
        func.sum(case((answered, w), else_=0.0)).label("answered_wait"),
        func.sum(case((answered, c.talk_seconds), else_=0.0)).label("answered_talk"),
        func.sum(w).label("total_wait"),
        func.max(w).label("longest_wait"),
    ]


# -- the queries --------------------------------------------------------------------------------

def base_seconds(scope: Scope) -> int:
    """The finest interval the tallies are grouped by; days, weekdays and hours of the day are
    sums of these groups."""
    return INTERVAL_SECONDS.get(scope.interval, 3600)


def _between(value: Any, low: float, high: float | None) -> ColumnElement[bool]:
    return and_(value >= low, value < high) if high is not None else value >= low


async def tallies(conn: AsyncConnection, scope: Scope, policy: ServiceLevelPolicy, wait_edges: list[float],
                  talk_edges: list[float]) -> Sequence[Any]:
    """One row per (pbx, queue, base interval): the tallies everything else adds up, and the wait
    (w0..: calls, wa0..: answered, wb0..: abandoned) and talk (t0..) distributions' counts. One
    scan; the local time is computed once per call in the inner select."""
    inner = select(pbx_column(CALLS.c.pbx, scope).label("pbx"), CALLS.c.queue, CALLS.c.outcome,
                   CALLS.c.wait_seconds, CALLS.c.talk_seconds,
                   (local_seconds(CALLS.c.entered_at, scope) // base_seconds(scope)).label("base")
                   ).where(*_in_scope(scope)).subquery()
    c, o = inner.c, inner.c.outcome
    spread = []
    for i, (low, high) in enumerate(zip([0.0, *wait_edges], [*wait_edges, None], strict=True)):
        within = _between(c.wait_seconds, low, high)
        spread += [_count(within).label(f"w{i}"), _count(and_(within, o == "answered")).label(f"wa{i}"),
                   _count(and_(within, o == "abandoned")).label(f"wb{i}")]
    for i, (low, high) in enumerate(zip([0.0, *talk_edges], [*talk_edges, None], strict=True)):
        spread.append(_count(and_(o == "answered", _between(c.talk_seconds, low, high))).label(f"t{i}"))
    query = (select(c.pbx, c.queue, c.base, *tally_columns(policy, c), *spread)
             .group_by(c.pbx, c.queue, c.base))
    return (await conn.execute(query)).all()


async def unanswered_reasons(conn: AsyncConnection, scope: Scope) -> Sequence[Any]:
    key = bucket(scope).label("bucket")
    pbx = pbx_column(CALLS.c.pbx, scope).label("pbx")
    query = (select(pbx, CALLS.c.queue, key, CALLS.c.outcome_reason.label("reason"),
                    func.count().label("calls"))
             .where(*_in_scope(scope), CALLS.c.outcome == "unanswered")
             .group_by(pbx, CALLS.c.queue, key, CALLS.c.outcome_reason))
    return (await conn.execute(query)).all()


async def wait_p90(conn: AsyncConnection, scope: Scope) -> dict[tuple[str, Any], float]:
    """Nearest-rank p90 of answered calls' wait, to 0.1 s: {("total", None), ("queue", q),
    ("pbx", p), ("bucket", k)}. Intervals: ROW_NUMBER / COUNT over each interval (one sort). The
    total, the queues and the PBXes: a histogram of waits rounded to 0.1 s per PBX and queue (a
    few thousand rows), walked here: the first bin where the running count reaches 9/10 of the
    calls."""
    tenths = cast(func.round(CALLS.c.wait_seconds * 10), Integer)
    answered = select(tenths.label("tenths"), bucket(scope).label("bucket")).where(
        *_in_scope(scope), CALLS.c.outcome == "answered").subquery()
    ranked = select(answered.c.bucket, answered.c.tenths,
                    func.row_number().over(partition_by=answered.c.bucket,
                                           order_by=answered.c.tenths).label("r"),
                    func.count().over(partition_by=answered.c.bucket).label("n")).subquery()
    query = select(ranked.c.bucket, ranked.c.tenths).where(ranked.c.r * 10 >= ranked.c.n * 9,
                                                           (ranked.c.r - 1) * 10 < ranked.c.n * 9)
    out: dict[tuple[str, Any], float] = {("bucket", r.bucket): r.tenths / 10
                                          for r in (await conn.execute(query)).all()}
    pbx = pbx_column(CALLS.c.pbx, scope).label("pbx")
    histogram = (select(pbx, CALLS.c.queue, tenths.label("tenths"), func.count().label("n"))
                 .where(*_in_scope(scope), CALLS.c.outcome == "answered")
                 .group_by(pbx, CALLS.c.queue, tenths).order_by(tenths))
    rows = (await conn.execute(histogram)).all()
    for kind in ("total", "queue", "pbx"):
        groups: dict[Any, list[Any]] = {}
        for r in rows:
            groups.setdefault(None if kind == "total" else getattr(r, kind), []).append(r)
        for key, bins in groups.items():
            need, seen = sum(b.n for b in bins) * 9, 0
            for b in bins:  # sorted by wait
                seen += b.n
                if seen * 10 >= need:
                    out[(kind, key)] = b.tenths / 10
                    break
    return out


async def operator_rings(conn: AsyncConnection, scope: Scope) -> Sequence[Any]:
    """Per operator (pbx, extension): calls his phone rang for, calls he answered (his ring answered)."""
    answered_call = case((RINGS.c.answered_at.is_not(None), RINGS.c.call_id), else_=None)
    pbx = pbx_column(CALLS.c.pbx, scope).label("pbx")
    query = (select(pbx, RINGS.c.operator, func.count(RINGS.c.call_id.distinct()).label("rung"),
                    func.count(answered_call.distinct()).label("answered"),
                    func.max(RINGS.c.member_name).label("member_name"))
             .select_from(RINGS.join(CALLS, CALLS.c.call_id == RINGS.c.call_id))
             .where(*_in_scope(scope)).group_by(pbx, RINGS.c.operator))
    return (await conn.execute(query)).all()


async def operator_talk(conn: AsyncConnection, scope: Scope) -> dict[tuple[str, str], float]:
    """Each operator's own talk, as the wallboard's talk segments: the answering operator talks
    from his answer to his first hand-over (or the end); a colleague who takes a transferred
    caller talks from the transfer to the next one (or the end). The stored talk_seconds per
    answering operator (one indexed pass), then the few transferred calls' corrections. Keyed
    by (pbx, extension)."""
    d, pbx = scope.dialect, pbx_column(CALLS.c.pbx, scope).label("pbx")
    answered = (select(pbx, CALLS.c.answered_by, func.sum(CALLS.c.talk_seconds).label("talk"))
                .where(*_in_scope(scope), CALLS.c.answered_by.is_not(None), CALLS.c.outcome == "answered")
                .group_by(pbx, CALLS.c.answered_by))
    talk = {(r.pbx, r.answered_by): float(r.talk or 0.0) for r in (await conn.execute(answered)).all()}
    nxt = func.lead(TRANSFERS.c.at).over(partition_by=TRANSFERS.c.call_id, order_by=TRANSFERS.c.seq)
    first = func.row_number().over(partition_by=TRANSFERS.c.call_id, order_by=TRANSFERS.c.seq)
    handover = (select(pbx, CALLS.c.answered_by, CALLS.c.ended_at, TRANSFERS.c.to_operator,
                       TRANSFERS.c.at,
                       nxt.label("next_at"), first.label("nth"))
                .select_from(TRANSFERS.join(CALLS, CALLS.c.call_id == TRANSFERS.c.call_id))
                .where(*_in_scope(scope), TRANSFERS.c.to_operator.is_not(None),
                       CALLS.c.answered_by.is_not(None), CALLS.c.outcome == "answered")).subquery()
    h = handover.c
    taken = _greatest(d, epoch_float(func.coalesce(h.next_at, h.ended_at), d) - epoch_float(h.at, d), 0.0)
    given_up = _greatest(d, epoch_float(h.ended_at, d) - epoch_float(h.at, d), 0.0)
    query = select(h.pbx, h.answered_by, h.to_operator, h.nth, taken.label("taken"),
                   given_up.label("given_up"))
    for r in (await conn.execute(query)).all():  # one row per transfer: a few per hundred calls
        to, by = (r.pbx, r.to_operator), (r.pbx, r.answered_by)
        talk[to] = talk.get(to, 0.0) + float(r.taken)
        if r.nth == 1:  # from his first hand-over on, the answering operator no longer talks
            talk[by] = talk.get(by, 0.0) - float(r.given_up)
    return talk


async def operator_transfers(conn: AsyncConnection, scope: Scope) -> dict[tuple[str, str], int]:
    pbx = pbx_column(CALLS.c.pbx, scope).label("pbx")
    query = (select(pbx, TRANSFERS.c.from_operator, func.count().label("n"))
             .select_from(TRANSFERS.join(CALLS, CALLS.c.call_id == TRANSFERS.c.call_id))
             .where(*_in_scope(scope), TRANSFERS.c.from_operator.is_not(None))
             .group_by(pbx, TRANSFERS.c.from_operator))
    return {(r.pbx, r.from_operator): r.n for r in (await conn.execute(query)).all()}


async def user_names(conn: AsyncConnection, operators: list[tuple[str, str]],
                     scope: Scope) -> dict[tuple[str, str], str]:
    """The users' names of (pbx, extension)s: an extension is a user's on one PBX."""
    extensions = sorted({ext for _, ext in operators})
    if not extensions:
        return {}
    query = (select(pbx_column(EXTENSIONS.c.pbx, scope).label("pbx"), EXTENSIONS.c.extension,
                    USERS.c.display_name)
             .select_from(EXTENSIONS.join(USERS, USERS.c.id == EXTENSIONS.c.user_id))
             .where(EXTENSIONS.c.extension.in_(extensions)))
    return {(r.pbx, r.extension): r.display_name for r in (await conn.execute(query)).all()}


def _member_segments(scope: Scope, now: datetime, queue_rows: bool) -> Any:
    """Member-log states as [at, until) segments clipped to the period (and to now): the
    next change of the same member ends a state (LEAD), the last one lasts until now."""
    d, m = scope.dialect, MEMBER_LOG.c
    end = min(scope.end.astimezone(UTC), now)
    # A member is (pbx, queue, interface): two PBXes may both have Local/101@agents/n in "support".
    pbx = pbx_column(m.pbx, scope)
    lead = func.lead(m.at).over(partition_by=(pbx, m.queue, m.interface), order_by=(m.at, m.id))
    which = (m.queue == scope.queue) if queue_rows and scope.queue is not None else (
        m.queue.is_not(None) if queue_rows else m.queue.is_(None))
    where = [which, m.at < end] + ([m.pbx.in_(scope.pbx_ids())] if scope.pbx is not None else [])
    rows = select(pbx.label("pbx"), m.queue, m.interface, m.operator, m.name, m.logged_in, m.paused, m.at,
                  lead.label("until")).where(*where).subquery()
    start_e, end_e = scope.start.astimezone(UTC).timestamp(), end.timestamp()
    seg_from = _greatest(d, epoch_float(rows.c.at, d), literal(start_e))
    seg_to = _least(d, func.coalesce(epoch_float(rows.c.until, d), literal(end_e)), literal(end_e))
    return rows, seg_from, seg_to


async def operator_member_times(conn: AsyncConnection, scope: Scope, now: datetime) -> Sequence[Any]:
    """Per operator (pbx, extension): seconds logged in and seconds paused in the period (his
    overall rows)."""
    rows, seg_from, seg_to = _member_segments(scope, now, queue_rows=False)
    span = _greatest(scope.dialect, seg_to - seg_from, 0.0)
    query = (select(rows.c.pbx, rows.c.operator, func.max(rows.c.name).label("name"),
                    func.sum(case((rows.c.logged_in, span), else_=0.0)).label("logged_in"),
                    func.sum(case((and_(rows.c.logged_in, rows.c.paused), span), else_=0.0)).label("paused"))
             .where(rows.c.operator.is_not(None)).group_by(rows.c.pbx, rows.c.operator))
    return (await conn.execute(query)).all()


async def available_segments(conn: AsyncConnection, scope: Scope, now: datetime) -> Sequence[Any]:
    """[from, to) epochs when one member was logged in and not paused (the queue's rows for a
    queue, the operators' overall rows for all queues): a few rows per operator and day."""
    rows, seg_from, seg_to = _member_segments(scope, now, queue_rows=scope.queue is not None)
    query = (select(seg_from.label("start"), seg_to.label("stop"))
             .where(rows.c.logged_in, or_(rows.c.paused.is_(False)), seg_to > seg_from))
    return (await conn.execute(query)).all()


# -- the staffing plan (reports.forecast) -------------------------------------------------------

def _local_day_and_slot(scope: Scope, slot_seconds: int) -> Any:
    """Calls of the scope with their local day (days since 1970-01-01) and slot of the day."""
    local = local_seconds(CALLS.c.entered_at, scope)
    return select(CALLS.c.queue, CALLS.c.outcome, CALLS.c.wait_seconds, CALLS.c.talk_seconds,
                  (local // 86400).label("day"), (local % 86400 // slot_seconds).label("slot")
                  ).where(*_in_scope(scope)).subquery()


async def day_slot_tallies(conn: AsyncConnection, scope: Scope, policy: ServiceLevelPolicy, days: list[int],
                           slot_seconds: int) -> Sequence[Any]:
    """One row per (local day, slot of the day) of `days` (days since 1970-01-01, local) with the
    tallies and sums of `tally_columns`: what the staffing plan averages. One scan of the span
    from the first day to the last; the days' filter is on the computed local day."""
    inner = _local_day_and_slot(scope, slot_seconds)
    c = inner.c
    query = (select(c.day, c.slot, *tally_columns(policy, c)).where(c.day.in_(days))
             .group_by(c.day, c.slot))
    return (await conn.execute(query)).all()


async def recorded_days(conn: AsyncConnection, scope: Scope, days: list[int]) -> set[int]:
    """Which of `days` have any finished, non-internal call at all (every queue): the days the
    call log was being kept and the call centre was open."""
    inner = _local_day_and_slot(replace(scope, queue=None), 86400)
    query = select(inner.c.day).where(inner.c.day.in_(days)).group_by(inner.c.day)
    return {int(r.day) for r in (await conn.execute(query)).all()}
