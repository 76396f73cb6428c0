"""The reports with two PBXes (SQLite and PostgreSQL): each PBX's calls and queue members are
its own (both have a "support" queue and an operator 101); `pbx` keeps one PBX's, and without
it the totals are those of both; the member log writes each event's PBX and one PBX's resync
leaves the other's members alone; the HTTP API, its CSV and `callbridge report --pbx`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord
from bridge.settings import CallbridgeSettings
from reports.member_log import MEMBER_LOG, MemberLog
from reports.models import ReportError
from reports.service import ReportService
from reports.settings import ReportSettings
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_reports_figures import DAY, at, call, hand_made_day, member_event
from tests.test_reports_http import NOW, get, reports_site, run_cli


def on_b(record: CallRecord) -> CallRecord:
    """The same call on PBX b: its id prefixed, as the bridge names the second PBX's calls."""
    return record.model_copy(update={"pbx": "b", "call_id": f"b:{record.call_id}"})


def two_pbxes_day() -> list[CallRecord]:
    """PBX a: the hand-made day (7 calls, 5 in support). PBX b: two support calls, both
    answered by its own 101 (another person than a's 101), and one abandoned."""
    a = [c.model_copy(update={"pbx": "a"}) for c in hand_made_day()]
    b = [on_b(call("s1", at(DAY, 11, 0), "answered", 8, 60, operator="101")),
         on_b(call("s2", at(DAY, 11, 30), "answered", 12, 90, operator="101")),
         on_b(call("s3", at(DAY, 12, 0), "abandoned", 30, reason="caller_hangup"))]
    return [*a, *b]


def service(store: CallLogStore) -> ReportService:
    return ReportService(store, ReportSettings(), timezone="Europe/Moscow", clock=lambda: NOW,
                         pbxes=("a", "b"))


async def test_a_pbx_filter_keeps_one_pbxs_calls_and_without_it_both_add_up(store: CallLogStore) -> None:
    await store.save(two_pbxes_day())
    svc = service(store)
    every, only_a, only_b = (await svc.report("today"), await svc.report("today", pbx="a"),
                             await svc.report("today", pbx="b"))
    assert (only_a.totals.offered, only_b.totals.offered, every.totals.offered) == (7, 3, 10)
    assert (only_a.totals.answered, only_b.totals.answered, every.totals.answered) == (4, 2, 6)
    assert only_a.by_queue["support"].offered == 5 and only_b.by_queue["support"].offered == 3
    assert every.by_queue["support"].offered == 8  # a queue name adds up over the PBXes ...
    assert {p: f.offered for p, f in every.by_pbx.items()} == {"a": 7, "b": 3}  # ... by_pbx tells them apart
    assert only_b.by_pbx.keys() == {"b"} and only_b.totals == every.by_pbx["b"]
    assert only_b.totals.wait_p90_seconds == 12.0 and only_b.period.pbx == "b" and every.period.pbx is None
    assert every.pbxes == ["a", "b"]
    # An operator is (pbx, extension): two 101s, never added up.
    ops = {(o.pbx, o.operator): (o.rung, o.answered, o.talk_seconds) for o in every.operators}
    assert ops[("b", "101")] == (2, 2, 150.0)
    assert ops[("a", "101")] == next((o.rung, o.answered, o.talk_seconds) for o in only_a.operators
                                     if o.operator == "101")
    assert {o.pbx for o in only_b.operators} == {"b"}
    with pytest.raises(ReportError, match="pbx must be one of a, b"):
        await svc.report("today", pbx="c")


async def test_the_member_log_writes_each_events_pbx_and_a_resync_touches_only_its_own(
        store: CallLogStore) -> None:
    log = MemberLog(store)
    nine = at(DAY, 9, 0)
    for pbx in ("a", "b"):  # the same interface in the same queue name on both PBXes
        ev = member_event("QueueMemberAdded", nine, "support", "101", Status="1", Paused="0")
        ev.pbx = pbx
        log.on_ami_event(ev)
    params = AmiMessage([("Event", "QueueParams"), ("Queue", "support")])
    params.pbx = "b"
    log.on_resync([], [params], nine + 3600)  # b lists nobody in its support any more
    await log.flush()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(MEMBER_LOG.c.pbx, MEMBER_LOG.c.queue, MEMBER_LOG.c.logged_in)
                                   .order_by(MEMBER_LOG.c.id))).all()
    assert [tuple(r) for r in rows] == [("a", "support", True), ("a", None, True), ("b", "support", True),
                                        ("b", None, True), ("b", "support", False), ("b", None, False)]
    await store.save(two_pbxes_day())
    svc = service(store)
    a101 = next(o for o in (await svc.report("today", pbx="a")).operators if o.operator == "101")
    b101 = next(o for o in (await svc.report("today", pbx="b")).operators if o.operator == "101")
    assert b101.logged_in_seconds == 3600.0  # from 09:00 until b's resync at 10:00
    assert a101.logged_in_seconds == at(DAY, 20, 0) - nine  # a's member stays in until now


async def test_the_api_and_its_csv_take_a_pbx(tmp_path: Path) -> None:
    async with reports_site(tmp_path, two_pbxes_day(), service) as (client, audit, _):
        resp = await get(client, "/api/reports?pbx=b")
        body = await resp.json()
        assert resp.status == 200 and body["totals"]["offered"] == 3 and body["period"]["pbx"] == "b"
        assert body["pbxes"] == ["a", "b"]
        assert (await (await get(client, "/api/reports")).json())["totals"]["offered"] == 10
        resp = await get(client, "/api/reports?pbx=nowhere")
        assert resp.status == 400 and (await resp.json())["error"] == "pbx must be one of a, b, not 'nowhere'"
        assert (await get(client, "/api/reports?pbx=b", user="anna")).status == 403  # still supervisors only

        resp = await get(client, "/api/reports/export.csv?table=totals&pbx=b")
        (totals,) = csv.DictReader(io.StringIO(await resp.text()))
        assert (totals["pbx"], totals["offered"]) == ("b", "3")
        resp = await get(client, "/api/reports/export.csv?table=by_pbx")
        assert {r["pbx"]: r["offered"] for r in csv.DictReader(io.StringIO(await resp.text()))} == {
            "a": "7", "b": "3"}
        resp = await get(client, "/api/reports/export.csv?table=operators")
        assert {(r["pbx"], r["operator"]) for r in csv.DictReader(io.StringIO(await resp.text()))} >= {
            ("a", "101"), ("b", "101")}
        exports = await audit.entries(action="report.export")
        assert [(e.target, e.detail.get("pbx")) for e in reversed(exports)] == [
            ("totals", "b"), ("by_pbx", None), ("operators", None)]

        resp = await get(client, "/api/reports/staffing?day=typical&period=today&pbx=b")
        assert resp.status == 200 and (await resp.json())["period"]["pbx"] == "b"
        assert (await get(client, "/api/reports/staffing?pbx=nowhere")).status == 400


def test_the_command_takes_a_pbx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}"

    async def fill() -> None:
        store = CallLogStore(url)
        await store.open()
        try:
            await store.save(two_pbxes_day())
        finally:
            await store.close()

    asyncio.run(fill())
    two = CallbridgeSettings(timezone="Europe/Moscow", pbx=[{"id": "a"}, {"id": "b"}])
    monkeypatch.setattr("tests.test_reports_http.CallbridgeSettings", lambda **_: two)
    code, out = run_cli(["--table", "totals", "--pbx", "b", "--format", "csv"], url)
    (totals,) = csv.DictReader(io.StringIO(out))
    assert code == 0 and (totals["offered"], totals["pbx"]) == ("3", "b")
    code, out = run_cli(["--table", "totals"], url)
    assert code == 0 and out.splitlines()[2].split()[:2] == ["(all)", "10"]
    code, out = run_cli(["--table", "totals", "--pbx", "b"], url)
    assert code == 0 and "queue all, PBX b" in out.splitlines()[0]
    code, out = run_cli(["staffing", "--pbx", "b", "--period", "today", "--format", "json"], url)
    assert code == 0 and '"pbx": "b"' in out
    code, _ = run_cli(["--pbx", "nowhere"], url)
    assert code == 2


async def test_rows_from_before_pbx_ids_are_the_first_pbxs(store: CallLogStore) -> None:
    """The call log of a one-PBX install ("main") once `[[pbx]]` names its PBXes a and b."""
    from argon2 import PasswordHasher

    from web.users import UserStore

    users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    await users.add("anna", "anna's password 1", role="operator", display_name="Anna", extensions=["101"])
    legacy = [c.model_copy(update={"pbx": "main"}) for c in hand_made_day()]
    await store.save([*legacy, *two_pbxes_day()[len(legacy):]])
    svc = service(store)
    every, only_a = await svc.report("today"), await svc.report("today", pbx="a")
    assert only_a.totals.offered == 7 and set(every.by_pbx) == {"a", "b"}
    assert {o.pbx for o in every.operators} == {"a", "b"}
    assert next(o.name for o in only_a.operators if o.operator == "101") == "Anna"
    with pytest.raises(ReportError):
        await svc.report("today", pbx="main")  # not a configured PBX
