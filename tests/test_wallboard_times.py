"""The wallboard's alerts come from correct times only: the board runs on the PBX's clock,
follows it when it is set back (the demo's replay starts each capture in the present after
the previous one ran ahead at `--speed 10`), and a late event never shortens a wait. The
frame says which zone the page's clock and times are shown in.
"""

from __future__ import annotations

from unittest import mock

from bridge.ami.message import AmiMessage
from supervision.http import WallboardHub
from supervision.models import AlertThresholds
from supervision.wallboard_service import WallboardService, WallboardSettings


def queue_event(name: str, at: float, channel: str) -> AmiMessage:
    return AmiMessage([("Event", name), ("Timestamp", f"{at:.6f}"), ("Queue", "support"),
                       ("Channel", channel), ("CallerIDNum", "+74951234567")])


def service_at(ours: list[float], timezone: str = "UTC") -> WallboardService:
    limits = AlertThresholds(callers_waiting=None, longest_wait_seconds=60)
    settings = WallboardSettings(default_thresholds=limits)
    return WallboardService(settings, send_action=mock.AsyncMock(), clock=lambda: ours[0], timezone=timezone)


def longest(service: WallboardService) -> float:
    return next(q for q in service.snapshot().queues if q.name == "support").longest_wait_seconds


async def test_a_pbx_clock_set_back_gives_no_alert_from_the_old_time() -> None:
    ours = [50_000.0]
    service = service_at(ours)
    # A capture replayed ten times faster than recorded: its PBX time runs 600 s in 60 s.
    service.on_ami_event(queue_event("QueueCallerJoin", 1000.0, "Local/support@inbound-1;2"))
    ours[0] += 60
    service.on_ami_event(queue_event("QueueCallerLeave", 1600.0, "Local/support@inbound-1;2"))
    # The next capture starts in the present again: 540 s behind what the board had.
    service.on_ami_event(queue_event("QueueCallerJoin", 1060.0, "Local/support@inbound-2;2"))
    ours[0] += 2
    await service.flush()
    assert longest(service) == 2.0  # not 542 s
    assert service.board.alerts == {}
    assert not [a for a in service.activity if a["kind"] == "alert.raised"]


async def test_a_late_event_does_not_shorten_a_wait() -> None:
    ours = [50_000.0]
    service = service_at(ours)
    service.on_ami_event(queue_event("QueueCallerJoin", 1000.0, "Local/support@inbound-1;2"))
    ours[0] += 30
    await service.flush()  # the board's tick, every second
    # An event dated 2 s ago reaches us only now (a backlog): the waits keep running.
    service.on_ami_event(AmiMessage([("Event", "Newexten"), ("Timestamp", "1028.000000")]))
    assert longest(service) == 30.0


async def test_the_frame_carries_the_pbx_time_and_the_call_centres_zone() -> None:
    ours = [50_000.0]
    service = service_at(ours, timezone="Europe/Moscow")
    service.on_ami_event(queue_event("QueueCallerJoin", 1000.0, "Local/support@inbound-1;2"))
    ours[0] += 3
    frame = WallboardHub(service).frame()
    assert frame["at"] == 1003.0  # the PBX's clock, which the page's clock and timers run on
    assert frame["timezone"] == "Europe/Moscow"
