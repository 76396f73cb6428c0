"""The named figure definitions (service level variants, abandon rate, short abandons), each
with its one-line text. The code lives in `bridge.calls.definitions` so the wallboard
(`supervision`, a sibling feature that may not import `reports`) uses the very same
functions; this module is the name the reports' contract (docs/reports_api.md) gives it."""

from __future__ import annotations

from bridge.calls.definitions import (
    SERVICE_LEVEL_NAMES,
    ServiceLevelName,
    ServiceLevelPolicy,
    Tally,
    abandon_rate,
    definitions,
    is_short_abandon,
    met_target,
    service_level,
    service_levels,
)

__all__ = ["SERVICE_LEVEL_NAMES", "ServiceLevelName", "ServiceLevelPolicy", "Tally", "abandon_rate",
           "definitions", "is_short_abandon", "met_target", "service_level", "service_levels"]
