"""What the wallboard shows: pydantic shapes sent to the supervisor's page."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from bridge.calls.record import DEFAULT_PBX

OperatorStatus = Literal["available", "ringing", "talking", "after_call", "paused", "offline"]
AlertKind = Literal["callers_waiting", "longest_wait"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class AlertThresholds(_Frozen):
    """When a queue is in trouble (None: no alert of that kind)."""

    callers_waiting: int | None = 5
    longest_wait_seconds: float | None = 60.0


class Alert(_Frozen):
    queue: str
    pbx: str = DEFAULT_PBX  # the PBX of the queue: names are per PBX
    kind: AlertKind
    value: float
    limit: float
    since: float


class QueueView(_Frozen):
    name: str
    pbx: str = DEFAULT_PBX  # two PBXes may both have a "support": (pbx, name) is the queue
    waiting: int
    longest_wait_seconds: float
    logged_in: int
    free: int
    calls_today: int
    answered_today: int
    abandoned_today: int
    answered_in_target_percent: float | None  # None before the first finished call today


class OperatorView(_Frozen):
    operator: str
    pbx: str = DEFAULT_PBX  # extensions are per PBX too
    name: str | None
    status: OperatorStatus
    paused_reason: str | None = None
    since: float | None = None  # talking since / after-call since
    with_caller: str | None = None
    call_id: str | None = None
    queues: list[str]
    calls_today: int
    average_talk_seconds: float | None


class LiveCallView(_Frozen):
    call_id: str
    pbx: str = DEFAULT_PBX
    caller_number: str | None
    caller_name: str | None
    queue: str | None
    operator: str | None
    duration_seconds: float
    recording: bool


class WallboardSnapshot(_Frozen):
    type: Literal["wallboard"] = "wallboard"
    at: float
    queues: list[QueueView]
    operators: list[OperatorView]
    live_calls: list[LiveCallView]
    alerts: list[Alert]
    target_seconds: float
