"""The operator console's settings: `[console]` in the configuration file.

```toml
[console]
wrapup_seconds = 120                         # an after-call card closes itself this long after the call
wrapup_codes = ["Resolved", "Call back", "Sale", "Complaint"]
pause_reasons = ["Break", "Lunch", "Training", "Back office"]
member_interface = "Local/{ext}@agents/n"    # the operator's queue member interface
originate_channel = "Local/{ext}@from-internal"  # click-to-dial rings this (his phone) first
originate_context = "from-internal"          # ... then dials the number in this context
```
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _clean_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        value = value.strip()
        if not value or len(value) > 60:
            raise ValueError(f"an entry must have 1-60 characters: {value!r}")
        if value not in out:
            out.append(value)
    return out


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wrapup_seconds: float = Field(120.0, gt=0, le=24 * 3600,
                                  description="an after-call card closes itself this long after the call")
    wrapup_codes: list[str] = Field(default_factory=lambda: ["Resolved", "Call back", "Sale", "Complaint"],
                                    description="what the operator picks when he closes a card")
    pause_reasons: list[str] = Field(default_factory=lambda: ["Break", "Lunch", "Training", "Back office"],
                                     description="why an operator pauses himself in his queues")
    member_interface: str = Field("Local/{ext}@agents/n",
                                  description="queue member interface of an extension")
    originate_channel: str = Field("Local/{ext}@from-internal",
                                   description="click-to-dial: the operator's own phone, rung first")
    originate_context: str = Field("from-internal", description="click-to-dial: the context of the number")
    originate_timeout_ms: int = Field(30_000, gt=0)

    @field_validator("wrapup_codes", "pause_reasons")
    @classmethod
    def _entries(cls, values: list[str]) -> list[str]:
        return _clean_list(values)

    @field_validator("member_interface", "originate_channel")
    @classmethod
    def _has_ext(cls, value: str) -> str:
        if "{ext}" not in value:
            raise ValueError("must contain {ext} (the operator's extension)")
        return value


class ScreenPopSettings(BaseModel):
    """The cards' timing and the hub's limits (from [console]'s wrap-up time, unless given)."""

    after_call_seconds: float = Field(1800.0, gt=0, description="an after-call card left open closes itself")
    history_items: int = Field(10, ge=0, le=100, description="interactions shown on a card")
    queue_size: int = Field(256, ge=8, description="cards waiting per browser before it counts as dead")
    heartbeat_seconds: float = Field(20.0, gt=0, description="WebSocket ping interval")
    send_timeout_seconds: float = Field(10.0, gt=0, description="a socket that takes no frame this long "
                                        "is dropped")
