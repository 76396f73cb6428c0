"""The shapes a report leaves in (docs/reports_api.md): pydantic models the API, the CSV
export, the command and the page all read."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.calls.record import DEFAULT_PBX


class ReportError(ValueError):
    """A bad query (period, dates, interval): the message says what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)


class Figures(_Model):
    offered: int
    answered: int
    abandoned: int
    short_abandoned: int
    unanswered: int
    incomplete: int
    unanswered_by_reason: dict[str, int]
    service_level: float | None
    service_level_by_definition: dict[str, float | None]
    abandon_rate: float | None
    asa_seconds: float | None
    wait_p90_seconds: float | None
    longest_wait_seconds: float | None
    aht_seconds: float | None
    talk_seconds_avg: float | None


class IntervalFigures(Figures):
    start: str | None  # local ISO time; None for weekdays
    weekday: int | None = None  # Monday 0, with interval=weekday


class Bucket(_Model):
    label: str
    from_: float = Field(alias="from")
    to: float | None
    calls: int
    answered: int
    abandoned: int


class HourOfDay(_Model):
    hour: int
    calls_per_day: float


class Weekday(_Model):
    weekday: int
    name: str
    calls_per_day: float | None  # None when the period has no such weekday


class OperatorFigures(_Model):
    operator: str
    pbx: str = DEFAULT_PBX  # an operator is an extension of a PBX: two PBXes' 101 are two people
    name: str | None
    rung: int
    answered: int
    missed: int
    talk_seconds: float
    aht_seconds: float | None
    transfers: int
    logged_in_seconds: float | None
    paused_seconds: float | None
    occupancy: float | None


class StaffingRow(_Model):
    start: str
    calls: int
    aht_seconds: float | None
    agents: int
    staff: int
    staff_actual: float | None
    expected_service_level: float | None
    service_level_with_actual: float | None
    abandon_rate: float | None
    verdict: Literal["under", "over", "ok"] | None


class PeriodInfo(_Model):
    from_: str = Field(alias="from")
    to: str
    timezone: str
    interval: str
    queue: str | None
    pbx: str | None = None  # the one PBX reported on (None: every PBX)


class Report(_Model):
    period: PeriodInfo
    queues: list[str]
    definitions: dict[str, str]
    targets: dict[str, float]
    totals: Figures
    by_queue: dict[str, Figures]  # a queue name: the same name on several PBXes adds up (see by_pbx)
    by_pbx: dict[str, Figures] = Field(default_factory=dict)  # each PBX's calls, every queue
    pbxes: list[str] = Field(default_factory=lambda: [DEFAULT_PBX])  # the configured PBXes, main first
    intervals: list[IntervalFigures]
    wait_distribution: list[Bucket]
    talk_distribution: list[Bucket]
    by_hour_of_day: list[HourOfDay]
    by_weekday: list[Weekday]
    operators: list[OperatorFigures]
    staffing: list[StaffingRow]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
