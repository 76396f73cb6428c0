"""The reports' figures (reports.service over reports.queries) on SQLite and PostgreSQL: the
recorded captures, a hand-made day, a generated month against a reference count in Python,
time zones, the member log and the staffing rows. Every test passes its own clock."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.definitions import ServiceLevelPolicy, Tally, service_levels
from bridge.calls.record import CallRecord, RingRecord, TransferRecord
from bridge.calls.replay import replay_bytes
from reports.member_log import MemberLog
from reports.models import ReportError
from reports.service import ReportService
from reports.settings import ReportSettings
from tests.capture_facts import capture_bytes
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401

MSK = ZoneInfo("Europe/Moscow")
NOV24 = datetime(2026, 11, 24, 12, tzinfo=UTC).timestamp()  # the captures' day, as "now"
CAPTURES = ["attended_transfer", "blind_transfer", "burst_20_calls", "direct_call", "live_channels_snapshot",
            "queue_abandoned", "queue_answered", "recording", "recording_mute", "ringall_two_agents",
            "supervisor_spy", "supervisor_whisper_barge", "queue_timeout", "blonde_transfer"]


def at(day: date, hh: int, mm: int, ss: float = 0.0, tz: ZoneInfo = MSK) -> float:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=tz).timestamp() + ss


def call(cid: str, entered: float, outcome: str, wait: float, talk: float = 0.0, *,
         queue: str | None = "support", operator: str | None = None, reason: str | None = None,
         rung: list[str] | None = None,
         transfer_to: str | None = None) -> CallRecord:
    answered = entered + wait if outcome == "answered" else None
    end = (answered + talk) if answered is not None else entered + wait
    rings = [RingRecord(operator=op, queue=queue, started_at=entered, ended_at=answered or end,
                        answered_at=answered if op == operator else None,
                        result="ANSWER" if op == operator else "NOANSWER")
             for op in (rung or ([operator] if operator else []))]
    transfers = []
    if transfer_to and answered is not None:
        mid = answered + talk / 2
        transfers = [TransferRecord(kind="blind", **{"from": operator, "to": transfer_to}, at=mid)]
        rings.append(RingRecord(operator=transfer_to, started_at=mid, ended_at=mid, answered_at=mid,
                                result="ANSWER"))
    return CallRecord(call_id=cid, queue=queue, outcome=outcome, outcome_reason=reason, entered_at=entered,
                      answered_at=answered, ended_at=end, ended_by="hangup", answered_by=operator,
                      rung=[r.operator for r in rings], rings=rings, transfers=transfers)


async def service(store: CallLogStore, now: float, tz: str = "Europe/Moscow", **settings: object
                  ) -> ReportService:
    return ReportService(store, ReportSettings(**settings), timezone=tz, clock=lambda: now)


# -- the recorded captures -----------------------------------------------------------------------

async def test_the_captures_day(store: CallLogStore) -> None:
    for name in CAPTURES:
        await store.save(replay_bytes(capture_bytes(name)))
    report = await (await service(store, NOV24, "UTC")).report("today")
    t = report.totals
    # By hand from the captures (README "What a call is"): 31 callers on Nov 24 (internal spy
    # sessions are not callers; queue_timeout and blonde_transfer are another day); 12 answered
    # (waits 1.0, 1.0, 3.0 and nine of 2.0 s), 19 abandoned of which the burst's 18 after 3.4 s.
    assert (t.offered, t.answered, t.abandoned, t.short_abandoned, t.unanswered) == (31, 12, 19, 18, 0)
    assert t.service_level_by_definition == {
        "answered": 1.0, "answered_and_abandoned": pytest.approx(12 / 13), "offered": pytest.approx(12 / 13)}
    assert t.service_level == pytest.approx(12 / 13)  # the default: SL2
    assert t.abandon_rate == pytest.approx(1 / 13)  # queue_abandoned's 6.4 s of 31 - 18
    assert t.asa_seconds == pytest.approx(23 / 12, abs=0.01)
    assert t.wait_p90_seconds == pytest.approx(2.0, abs=0.01)  # rank 11 of 12
    assert t.longest_wait_seconds == pytest.approx(6.4, abs=0.01)
    assert report.queues == ["sales", "support"] and report.by_queue["sales"].offered == 1
    assert report.by_queue["support"].offered == 29  # + 1 direct call in the totals
    ops = {o.operator: o for o in report.operators}
    anna, clara = ops["101"], ops["103"]
    # Anna: rung for blind, burst .74, live, queue_abandoned, queue_answered, spy, whisper; took 6
    assert (anna.rung, anna.answered, anna.missed, anna.transfers) == (7, 6, 1, 1)
    assert anna.talk_seconds == pytest.approx(2.0 + 0.4 + 7.4 + 4.4 + 11.4 + 15.4, abs=0.1)
    assert anna.name == "Anna Operator" and anna.logged_in_seconds is None and anna.occupancy is None
    # Clara took the blind and the attended transfers (rang for ringall too): her talk runs
    # from each hand-over to the end
    assert (clara.rung, clara.answered, clara.transfers) == (3, 2, 0)
    assert clara.talk_seconds == pytest.approx(9.4 + 8.95, abs=0.1)
    other_day = await (await service(store, NOV24 + 12 * 86400, "UTC")).report("today")  # Dec 6
    assert other_day.totals.unanswered_by_reason == {"timeout": 1}
    assert (other_day.totals.offered, other_day.totals.answered) == (2, 1)


# -- a hand-made day ------------------------------------------------------------------------------

DAY = date(2026, 11, 24)


def hand_made_day() -> list[CallRecord]:
    return [
        call("a1", at(DAY, 9, 1), "answered", 10, 100, operator="101", rung=["102", "101"]),
        call("a2", at(DAY, 9, 5), "answered", 40, 200, operator="102", transfer_to="103"),
        call("a3", at(DAY, 9, 7), "abandoned", 3, reason="caller_hangup"),  # short
        call("a4", at(DAY, 9, 10), "abandoned", 20, reason="caller_hangup"),
        call("b1", at(DAY, 9, 20), "unanswered", 60, reason="timeout", rung=["101"]),
        call("c1", at(DAY, 14, 0), "answered", 5, 50, queue="sales", operator="104"),
        call("x1", at(DAY, 9, 30), "answered", 0, 30, queue=None, operator="101"),  # direct
    ]


async def test_a_hand_made_day_per_quarter_hour(store: CallLogStore) -> None:
    await store.save(hand_made_day())
    report = await (await service(store, at(DAY, 20, 0))).report("today", queue="support", interval="15")
    assert len(report.intervals) == 96 and report.intervals[36].start == "2026-11-24T09:00:00+03:00"
    q9, q915 = report.intervals[36], report.intervals[37]
    assert (q9.offered, q9.answered, q9.abandoned, q9.short_abandoned) == (4, 2, 2, 1)
    assert q9.service_level_by_definition == {"answered": 0.5, "answered_and_abandoned": pytest.approx(1 / 3),
                                              "offered": pytest.approx(1 / 3)}
    assert q9.abandon_rate == pytest.approx(1 / 3)
    assert (q9.asa_seconds, q9.wait_p90_seconds, q9.longest_wait_seconds) == (25.0, 40.0, 40.0)
    assert (q9.aht_seconds, q9.talk_seconds_avg) == (150.0, 150.0)
    assert (q915.offered, q915.unanswered, q915.unanswered_by_reason) == (1, 1, {"timeout": 1})
    assert q915.service_level_by_definition == {"answered": None, "answered_and_abandoned": None,
                                                "offered": 0.0}
    assert q915.asa_seconds is None and q915.aht_seconds is None  # null, never 0 or an error
    assert report.intervals[0].offered == 0 and report.intervals[0].service_level is None
    waits = {b.label: b.calls for b in report.wait_distribution}
    assert waits == {"0-10": 1, "10-20": 1, "20-30": 1, "30-60": 1, "60-120": 1, "120+": 0}
    ops = {o.operator: o for o in report.operators}
    assert (ops["101"].rung, ops["101"].answered, ops["101"].missed) == (2, 1, 1)  # a1 taken, b1 missed
    assert (ops["102"].answered, ops["102"].transfers, ops["102"].talk_seconds) == (1, 1, 100.0)
    assert (ops["103"].answered, ops["103"].talk_seconds) == (1, 100.0)  # from the hand-over on
    assert "104" not in ops  # sales


async def test_settings_change_the_definitions(store: CallLogStore) -> None:
    await store.save(hand_made_day())
    svc = await service(store, at(DAY, 20, 0), targets={"support": 45}, short_abandon_seconds=0,
                        abandons_within_target_met=True, after_call_seconds=10, service_level="answered")
    t = (await svc.report("today", queue="support", interval="day")).totals
    # T 45 s: a1 and a2 met; no abandon is short now, and a3 (3 s) and a4 (20 s) are abandons
    # within T, which now count as met; b1 (timeout) is not in SL2's denominator
    assert t.service_level == 1.0 and t.short_abandoned == 0
    assert t.service_level_by_definition == {"answered": 1.0, "answered_and_abandoned": 1.0,
                                             "offered": pytest.approx(2 / 5)}
    assert t.aht_seconds == 160.0
    assert "10 s after-call work" in (await svc.report("today")).definitions["aht_seconds"]


async def test_all_queues_include_direct_calls_and_hours_are_averaged(store: CallLogStore) -> None:
    await store.save(hand_made_day())
    report = await (await service(store, at(DAY + timedelta(days=1), 12, 0))).report("last7")
    assert report.totals.offered == 7 and sum(f.offered for f in report.by_queue.values()) == 6
    hours = {h.hour: h.calls_per_day for h in report.by_hour_of_day}
    assert hours[9] == pytest.approx(6 / 7, abs=1e-3) and hours[14] == pytest.approx(1 / 7, abs=1e-3)
    weekdays = {w.name: w.calls_per_day for w in report.by_weekday}
    assert weekdays["Tue"] == 7.0 and weekdays["Wed"] == 0.0  # Nov 24 is a Tuesday; one of each


# -- time zones ---------------------------------------------------------------------------------

async def test_local_days_and_a_dst_change(store: CallLogStore) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    sunday = date(2026, 3, 29)  # clocks go 02:00 -> 03:00: a 23-hour day
    await store.save([call("d1", at(sunday, 1, 30, tz=berlin), "answered", 2, 10, operator="101"),
                      call("d2", at(sunday, 3, 30, tz=berlin), "answered", 2, 10, operator="101"),
                      call("d3", at(sunday, 23, 59, tz=berlin), "answered", 2, 10, operator="101"),
                      call("d4", at(sunday + timedelta(days=1), 0, 0, tz=berlin), "answered", 2, 10,
                           operator="101")])
    svc = await service(store, at(sunday, 12, 0, tz=berlin), "Europe/Berlin")
    report = await svc.report("today", interval="60")
    assert (report.period.from_, report.period.to) == ("2026-03-29T00:00:00+01:00",
                                                       "2026-03-30T00:00:00+02:00")
    busy = {iv.start: iv.offered for iv in report.intervals if iv.offered}
    assert busy == {"2026-03-29T01:00:00+01:00": 1, "2026-03-29T03:00:00+02:00": 1,
                    "2026-03-29T23:00:00+02:00": 1}
    weekday = await svc.report("range", start="2026-03-29", end="2026-03-30", interval="weekday")
    assert [iv.offered for iv in weekday.intervals] == [1, 0, 0, 0, 0, 0, 3]  # Mon, ..., Sun


async def test_bad_queries_are_clear_errors(store: CallLogStore) -> None:
    svc = await service(store, NOV24)
    for kwargs, words in [({"period": "month"}, "period must be"), ({"period": "range"}, "needs 'from'"),
                          ({"period": "range", "start": "2026-11-24", "end": "24.11"}, "'to' must be a date"),
                          ({"period": "range", "start": "2026-11-25", "end": "2026-11-24"}, "before"),
                          ({"period": "range", "start": "2020-01-01", "end": "2026-01-01"}, "at most"),
                          ({"interval": "5"}, "interval must be")]:
        with pytest.raises(ReportError, match=words):
            await svc.report(**kwargs)  # type: ignore[arg-type]


# -- a generated month against a count in Python --------------------------------------------------

def generate_month(first: date, days: int, calls_per_day: int, seed: int, tz: ZoneInfo = MSK,
                   operators: int = 20) -> list[CallRecord]:
    """Calls between 08:00 and 20:00 local, busier at 11 and 15; a fixed seed, so the same month
    every time (tests and bench/reports.py)."""
    rnd = random.Random(seed)
    ops = [str(101 + i) for i in range(operators)]
    out: list[CallRecord] = []
    for d in range(days):
        day = first + timedelta(days=d)
        for n in range(calls_per_day):
            hour = min(19.99, max(8.0, rnd.gauss(rnd.choice((11.0, 15.0)), 2.2)))
            entered = at(day, int(hour), 0, (hour % 1) * 3600, tz=tz)
            queue = "support" if rnd.random() < 0.7 else "sales"
            roll, wait = rnd.random(), round(rnd.expovariate(1 / 25.0), 1)
            first_op, second = rnd.sample(ops, 2)
            cid = f"{day.isoformat()}-{n}"
            if roll < 0.82:
                out.append(call(cid, entered, "answered", wait, round(rnd.expovariate(1 / 180.0), 1),
                                queue=queue, operator=first_op,
                                rung=[second, first_op] if wait > 15 else None,
                                transfer_to=second if rnd.random() < 0.05 else None))
            elif roll < 0.95:
                out.append(call(cid, entered, "abandoned", wait, queue=queue, reason="caller_hangup",
                                rung=[first_op]))
            else:
                out.append(call(cid, entered, "unanswered", 60.0 + wait, queue=queue,
                                reason=rnd.choice(("timeout", "timeout", "joinempty")), rung=[first_op]))
    return out


def reference(calls: list[CallRecord], policy: ServiceLevelPolicy) -> Tally:
    tally = Tally()
    for c in calls:
        tally.count(c.outcome, c.wait_seconds, policy.target_for(c.queue), policy.short_abandon_seconds)
    return tally


async def test_a_generated_month(store: CallLogStore) -> None:
    first = date(2026, 11, 1)
    month = generate_month(first, 30, 200, seed=12)
    await store.save(month)
    settings = {"targets": {"sales": 20}}
    svc = await service(store, at(date(2026, 12, 1), 9, 0), **settings)
    policy = ReportSettings(**settings).policy()  # type: ignore[arg-type]
    report = await svc.report("range", start="2026-11-01", end="2026-11-30", interval="60")
    assert report.totals.offered == 6000 and report.targets == {"sales": 20, "support": 30}
    expected = reference(month, policy)
    assert report.totals.answered == expected.answered and report.totals.abandoned == expected.abandoned
    assert report.totals.service_level_by_definition == pytest.approx(service_levels(expected, policy))
    # A few intervals, counted apart in Python from the generated calls
    for day, hour in [(date(2026, 11, 3), 11), (date(2026, 11, 17), 15), (date(2026, 11, 30), 8)]:
        begin = at(day, hour, 0)
        inside = [c for c in month if begin <= c.entered_at < begin + 3600]
        iv = next(i for i in report.intervals if i.start == datetime.fromtimestamp(begin, MSK).isoformat())
        ref = reference(inside, policy)
        answered = sorted(c.wait_seconds for c in inside if c.outcome == "answered")
        assert (iv.offered, iv.answered, iv.short_abandoned) == (
            ref.offered, ref.answered, ref.short_abandoned)
        assert iv.service_level_by_definition == pytest.approx(service_levels(ref, policy))
        assert iv.asa_seconds == pytest.approx(sum(answered) / len(answered), abs=1e-3)
        assert iv.wait_p90_seconds == pytest.approx(answered[-(-9 * len(answered) // 10) - 1])
        assert iv.longest_wait_seconds == pytest.approx(max(c.wait_seconds for c in inside))
    sales = [c for c in month if c.queue == "sales"]
    assert report.by_queue["sales"].service_level == pytest.approx(
        service_levels(reference(sales, policy), policy)["answered_and_abandoned"])
    reasons = {"timeout": 0, "joinempty": 0}
    for c in month:
        if c.outcome == "unanswered":
            reasons[c.outcome_reason] += 1  # type: ignore[index]
    assert report.totals.unanswered_by_reason == reasons
    assert len(report.staffing) == 720 and all(s.agents >= 0 for s in report.staffing)
    busiest = max(report.staffing, key=lambda s: s.calls)
    assert busiest.agents >= 1 and busiest.staff >= busiest.agents and busiest.staff_actual is None


# -- the member log -----------------------------------------------------------------------------

def member_event(name: str, ts: float, queue: str, ext: str, **fields: str) -> AmiMessage:
    pairs = [("Event", name), ("Timestamp", f"{ts:.6f}"), ("Queue", queue), ("MemberName", f"Op {ext}"),
             ("Interface", f"Local/{ext}@agents/n"), *fields.items()]
    return AmiMessage(pairs, ts)


async def test_member_log_gives_logged_in_paused_occupancy_and_actual_staff(store: CallLogStore) -> None:
    log = MemberLog(store)
    nine = at(DAY, 9, 0)
    log.on_ami_event(member_event("QueueMemberAdded", nine - 3600, "support", "101", Status="1", Paused="0"))
    log.on_ami_event(member_event("QueueMemberAdded", nine - 3600, "sales", "101", Status="1", Paused="0"))
    log.on_ami_event(member_event("QueueMemberStatus", nine - 60, "support", "101", Status="2", Paused="0"))
    log.on_ami_event(member_event("QueueMemberPause", nine + 1800, "support", "101", Paused="1",
                                  PausedReason="lunch"))
    log.on_ami_event(member_event("QueueMemberPause", nine + 1800, "sales", "101", Paused="1"))
    log.on_ami_event(member_event("QueueMemberPause", nine + 2700, "support", "101", Paused="0"))
    log.on_ami_event(member_event("QueueMemberPause", nine + 2700, "sales", "101", Paused="0"))
    # after a reconnect the PBX no longer lists him in support: out from then
    log.on_resync([], [AmiMessage([("Event", "QueueParams"), ("Queue", "support")]),
                       AmiMessage([("Event", "QueueMember"), ("Queue", "sales"), ("Name", "Op 101"),
                                   ("Location", "Local/101@agents/n"), ("Status", "1"), ("Paused", "0")])],
                  nine + 3600)
    log.on_ami_event(member_event("QueueMemberRemoved", nine + 5400, "sales", "101"))
    await log.flush()
    await store.save(hand_made_day())
    svc = await service(store, at(DAY, 20, 0))
    report = await svc.report("today", interval="60")
    anna = next(o for o in report.operators if o.operator == "101")
    # Logged in from 08:00 to 10:30 (the day starts before: all of it is in "today"), paused
    # 09:30-09:45 in both queues
    assert anna.logged_in_seconds == 9000.0 and anna.paused_seconds == 900.0
    assert anna.occupancy == pytest.approx((100 + 30) / (9000 - 900), abs=1e-3)  # a1 and the direct call
    staff = {s.start[11:16]: s.staff_actual for s in report.staffing}
    assert staff["08:00"] == 1.0 and staff["09:00"] == 0.75 and staff["10:00"] == 0.5 and staff["11:00"] == 0
    nine_row = next(s for s in report.staffing if s.start[11:16] == "09:00")
    assert nine_row.verdict == "under" and nine_row.agents >= 1  # 6 calls, 0.75 of an operator
    support = await svc.report("today", queue="support", interval="60")
    assert {s.start[11:16]: s.staff_actual for s in support.staffing}["10:00"] == 0.0  # out of support at 10
