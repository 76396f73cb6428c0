"""The wallboard with two PBXes of their own `operator_pattern` and `timezone` (BridgeParts'
`pbx_settings`): a's operators are 1xx and its day is UTC's, b's are 2xx and its day is Tokyo's.
Every clock is passed in: 2026-11-24 15:30 UTC is 00:30 on 25 Nov in Tokyo, so b's "today"
started half an hour ago while a's started at 00:00 UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

from bridge.ami.message import AmiMessage
from bridge.calls.events import CallEnded
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import CallRecord
from bridge.calls.tracker import CallTracker
from supervision.http import WallboardHub
from supervision.wallboard_service import WallboardService
from web.features import PbxFacts

FACTS = {"a": PbxFacts(operator_pattern=r"^1\d{2}$", timezone="UTC"),
         "b": PbxFacts(operator_pattern=r"^2\d{2}$", timezone="Asia/Tokyo")}
NOW = datetime(2026, 11, 24, 15, 30, tzinfo=UTC).timestamp()
B_MIDNIGHT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC).timestamp()  # 25 Nov 00:00 in Tokyo


def two_pbxes(history: object = None) -> WallboardService:
    service = WallboardService(send_action=mock.AsyncMock(), clock=lambda: NOW, timezone="UTC",
                               pbx_settings=FACTS, history=history)  # type: ignore[arg-type]
    service.attach(CallPipeline(trackers=[CallTracker(FACTS["a"].operator_pattern, pbx="a"),
                                          CallTracker(FACTS["b"].operator_pattern, pbx="b",
                                                      id_prefix="b:")]))
    return service


def member(pbx: str, interface: str) -> AmiMessage:
    ev = AmiMessage([("Event", "QueueMemberAdded"), ("Queue", "support"), ("Interface", interface),
                     ("MemberName", interface), ("Status", "1"), ("Paused", "0"),
                     ("Timestamp", f"{NOW - 60:.6f}")])
    ev.pbx = pbx
    return ev


def answered(pbx: str, call_id: str, entered_at: float, operator: str) -> CallRecord:
    return CallRecord(call_id=call_id, pbx=pbx, queue="support", answered_by=operator, outcome="answered",
                      ended_by="hangup", entered_at=entered_at, answered_at=entered_at + 5,
                      ended_at=entered_at + 65)


def test_each_pbxs_operators_are_the_extensions_matching_its_own_pattern() -> None:
    service = two_pbxes()
    for pbx in ("a", "b"):
        for phone in ("PJSIP/101", "PJSIP/201"):
            service.on_ami_event(member(pbx, phone))
    operators = {(o.pbx, o.operator) for o in service.snapshot().operators}
    assert operators == {("a", "101"), ("b", "201")}  # b's 101 is a trunk or an IVR there


def test_each_pbxs_today_starts_at_its_own_midnight() -> None:
    service = two_pbxes()
    for pbx, prefix in (("a", ""), ("b", "b:")):
        service.on_call_event(CallEnded(at=B_MIDNIGHT + 600,  # before and after Tokyo's midnight
                                        call=answered(pbx, f"{prefix}1.1", B_MIDNIGHT - 600, "201")))
        service.on_call_event(CallEnded(at=B_MIDNIGHT + 900,
                                        call=answered(pbx, f"{prefix}2.1", B_MIDNIGHT + 300, "201")))
    support = {q.pbx: q.calls_today for q in service.snapshot().queues}
    assert support == {"a": 2, "b": 1}  # a's day is 24 Nov (UTC); b's 25 Nov began at 15:00 UTC
    assert service.today_starts("a") == datetime(2026, 11, 24, tzinfo=UTC)
    assert service.today_starts("b").timestamp() == B_MIDNIGHT


async def test_todays_figures_after_a_restart_start_at_each_pbxs_midnight() -> None:
    asked: list[datetime] = []

    async def history(since: datetime) -> list[CallRecord]:
        asked.append(since)
        return [answered("a", "1.1", B_MIDNIGHT - 600, "101"),
                answered("b", "b:1.1", B_MIDNIGHT - 600, "201"),  # 23:50 on 24 Nov in Tokyo
                answered("b", "b:2.1", B_MIDNIGHT + 300, "201")]

    service = two_pbxes(history)
    await service.start()
    await service.stop()
    assert asked == [datetime(2026, 11, 24, tzinfo=UTC)]  # one query, from the earliest midnight
    snap = service.snapshot()
    assert {q.pbx: q.calls_today for q in snap.queues} == {"a": 1, "b": 1}
    assert {(o.pbx, o.operator, o.calls_today) for o in snap.operators} == {("a", "101", 1), ("b", "201", 1)}


def test_the_frame_names_each_pbxs_zone_and_shows_a_filtered_pbx_in_its_own() -> None:
    hub = WallboardHub(two_pbxes())
    frame = hub.frame()
    assert (frame["timezone"], frame["timezones"]) == ("UTC", {"a": "UTC", "b": "Asia/Tokyo"})
    assert hub.frame(pbx="b")["timezone"] == "Asia/Tokyo"


def test_without_pbx_settings_every_pbx_keeps_the_top_level_pattern_and_zone() -> None:
    service = WallboardService(send_action=mock.AsyncMock(), clock=lambda: NOW, timezone="Asia/Tokyo")
    service.attach(CallPipeline(trackers=[CallTracker(pbx="a"), CallTracker(pbx="b", id_prefix="b:")]))
    assert {str(service.zone(p)) for p in ("a", "b")} == {"Asia/Tokyo"}
    assert service.today_starts("a") == service.today_starts("b")
    service.on_ami_event(member("b", "PJSIP/201"))  # the default pattern: 2-6 digits
    assert [(o.pbx, o.operator) for o in service.snapshot().operators] == [("b", "201")]
