"""`[reports]` of the main settings: the service level definition and its targets, short
abandons, the distributions' buckets, after-call work and the staffing assumptions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.calls.definitions import ServiceLevelName, ServiceLevelPolicy


def _ascending(edges: list[float]) -> list[float]:
    if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or edges[0] <= 0:
        raise ValueError("bucket edges must be positive and ascending, e.g. [10, 20, 30, 60, 120]")
    return edges


class ReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_level: ServiceLevelName = "answered_and_abandoned"  # the headline definition
    target_seconds: float = Field(30.0, gt=0)  # T; the wallboard's [wallboard] target_seconds if unset
    targets: dict[str, float] = Field(default_factory=dict)  # T per queue
    short_abandon_seconds: float = Field(5.0, ge=0)
    abandons_within_target_met: bool = False  # SL2 counts an abandon within T as met?
    wait_buckets: list[float] = Field(default_factory=lambda: [10.0, 20.0, 30.0, 60.0, 120.0])
    talk_buckets: list[float] = Field(default_factory=lambda: [60.0, 120.0, 180.0, 300.0, 600.0])
    # The PBX reports no after-call work: AHT = talk + this per answered call (your wrap-up time).
    after_call_seconds: float = Field(0.0, ge=0)
    # Staffing advice: the promise (target_fraction within T), occupancy cap and shrinkage.
    target_fraction: float = Field(0.8, gt=0, le=1)
    max_occupancy: float = Field(0.85, gt=0, le=1)
    shrinkage: float = Field(0.30, ge=0, lt=1)
    # The staffing plan of a chosen day averages the same weekday over this many weeks before it.
    forecast_weeks: int = Field(4, ge=1, le=52)

    _buckets = field_validator("wait_buckets", "talk_buckets")(_ascending)

    @field_validator("targets")
    @classmethod
    def _positive_targets(cls, targets: dict[str, float]) -> dict[str, float]:
        for queue, seconds in targets.items():
            if seconds <= 0:
                raise ValueError(f"target for queue {queue!r} must be positive")
        return targets

    def policy(self) -> ServiceLevelPolicy:
        return ServiceLevelPolicy(definition=self.service_level, target_seconds=self.target_seconds,
                                  targets=dict(self.targets),
                                  short_abandon_seconds=self.short_abandon_seconds,
                                  abandons_within_target_met=self.abandons_within_target_met)
