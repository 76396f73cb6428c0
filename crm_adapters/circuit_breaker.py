"""The circuit breaker in front of each CRM adapter.

After `failure_threshold` consecutive failures the adapter is skipped for
`reset_after_seconds`, then one trial request decides (the wait doubles, up to
`max_reset_after_seconds`, while trials fail).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from crm_adapters.settings import BreakerSettings

Clock = Callable[[], float]


class CircuitBreaker:
    """closed -> open after repeated failures -> half_open (one trial) -> closed or open."""

    def __init__(self, settings: BreakerSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self.state: Literal["closed", "open", "half_open"] = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.wait = settings.reset_after_seconds

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self._clock() >= self.opened_at + self.wait:
            self.state = "half_open"  # this caller makes the one trial request
            return True
        return False

    def success(self) -> None:
        self.state, self.failures, self.wait = "closed", 0, self.settings.reset_after_seconds

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open":
            self.wait = min(self.wait * 2, self.settings.max_reset_after_seconds)
        elif self.failures < self.settings.failure_threshold:
            return
        self.state, self.opened_at = "open", self._clock()

    def abandon(self) -> None:
        """A trial request was cancelled: let the next request try again."""
        if self.state == "half_open":
            self.state, self.opened_at = "open", self._clock() - self.wait
