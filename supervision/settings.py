"""`[wallboard]` of the main settings: targets, alert thresholds, refresh timing, the
supervisor actions' timeout and supervision (ChanSpy, queue actions) settings; and the
time zone type of the top-level `timezone` setting (where "today" starts)."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bridge.calls.definitions import ServiceLevelPolicy
from supervision.models import AlertThresholds
from supervision.pbx_actions import SupervisionSettings


def _known_zone(name: str) -> str:
    """An IANA zone name the machine's tz database knows (checked at load, not at midnight)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: an IANA name such as 'Europe/Moscow' or 'UTC'"
                         ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class WallboardSettings(BaseModel):
    """`[wallboard]` of the main settings."""

    model_config = ConfigDict(extra="forbid")

    target_seconds: float = Field(30.0, gt=0)  # answered within this wait counts as on target
    # The reports' definition of "answered within T" (set from [reports] by the main settings).
    service_level: ServiceLevelPolicy | None = None
    after_call_seconds: float = Field(10.0, ge=0)  # an operator shows after-call work this long
    default_thresholds: AlertThresholds = Field(default_factory=AlertThresholds)
    thresholds: dict[str, AlertThresholds] = Field(default_factory=dict)  # per queue, over the default
    alert_sound: bool = True  # the pages' alert sound starts on (each page can switch it off)
    tick_seconds: float = Field(1.0, gt=0)  # alerts and timers refresh this often
    coalesce_seconds: float = Field(0.05, ge=0)  # the rest of a burst joins the frame
    action_timeout: float = Field(10.0, gt=0)  # seconds to wait for the PBX's answer
    supervision: SupervisionSettings = Field(default_factory=SupervisionSettings)
