"""CRM configuration (`[crm]` in the TOML file, `CALLBRIDGE_CRM__...` in the environment).

    [crm]
    default_region = "RU"
    budget_ms = 300
    [crm.cache]
    ttl_seconds = 300
    [[crm.adapters]]
    type = "builtin"
    [[crm.adapters]]
    type = "mypackage.crm:MyAdapter"   # any CrmAdapter: "module:Class"
    name = "sales"
    options = { base_url = "https://crm.example", token = "..." }
"""

from __future__ import annotations

from typing import Any

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # "builtin", a name given to crm_adapters.adapter_registry.register_adapter_type, or "module:Class".
    type: str = "builtin"
    name: str | None = None  # defaults to the type; must be unique among the adapters
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)  # handed to the adapter's constructor

    @property
    def display_name(self) -> str:
        return self.name or self.type.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_seconds: float = Field(300.0, ge=0, description="how long a found contact is served from memory")
    not_found_ttl_seconds: float = Field(60.0, ge=0, description="same for 'not found' (shorter: "
                                         "a contact created elsewhere shows up soon)")
    max_entries: int = Field(10_000, ge=1, description="least recently used numbers are dropped beyond")
    stale_max_age_seconds: float = Field(
        86_400.0, ge=0, description="how old a last known good answer may be when the CRM is down")


class BreakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(5, ge=1, description="consecutive failures that open the circuit")
    reset_after_seconds: float = Field(30.0, gt=0, description="open this long before one trial request")
    max_reset_after_seconds: float = Field(300.0, gt=0, description="cap when trials keep failing "
                                           "(the wait doubles after each failed trial)")


class CrmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_region: str = Field("RU", description="ISO country for numbers dialled in national form")
    budget_ms: int = Field(300, ge=1, description="a lookup answers within this; later results "
                           "arrive as updates")
    request_timeout_seconds: float = Field(10.0, gt=0, description="a CRM request is abandoned after this")
    min_extension_digits: int = Field(3, ge=1)
    max_extension_digits: int = Field(4, ge=1)
    history_limit: int = Field(20, ge=1, le=500)
    merge_call_log_history: bool = Field(True, description="add the bridge's own call log to a "
                                         "CRM's history of a contact")
    cache: CacheSettings = Field(default_factory=CacheSettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    adapters: list[AdapterConfig] = Field(default_factory=lambda: [AdapterConfig()])

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}: use an ISO 3166 code such as RU, UA, DE, US")
        return region

    @model_validator(mode="after")
    def _consistent(self) -> CrmSettings:
        if self.min_extension_digits > self.max_extension_digits:
            raise ValueError("min_extension_digits is greater than max_extension_digits")
        names = [a.display_name for a in self.adapters if a.enabled]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"adapter names must be unique, repeated: {', '.join(duplicates)}")
        return self

    @property
    def budget_seconds(self) -> float:
        return self.budget_ms / 1000.0
