"""How an unreachable PBX is told in the log: the first failure, then a reminder with the
outage's length at most every `reminder_interval`, and its length once the PBX is back —
not one line per probe."""

from __future__ import annotations

import logging
import os
import time


class Unreachable(Exception):
    """No TCP connection to the PBX: nothing there to refuse us, so probe often."""


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "connect timed out"
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        return os.strerror(errno)
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


class OutageLog:
    def __init__(self, log: logging.Logger, probe_interval: float, reminder_interval: float) -> None:
        self.log, self.probe_interval, self.reminder_interval = log, probe_interval, reminder_interval
        self.down_since: float | None = None  # monotonic start of the current unreachable spell
        self._reminded_at = 0.0

    def unreachable(self, message: str) -> None:
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = self._reminded_at = now
            self.log.warning("%s; probing every %g s (a reminder every %g s while it lasts)",
                             message, self.probe_interval, self.reminder_interval)
        elif now - self._reminded_at >= self.reminder_interval:
            self._reminded_at = now
            self.log.warning("%s; still unreachable after %s, probing every %g s",
                             message, duration(now - self.down_since), self.probe_interval)

    def reached(self) -> str:
        """The PBX answered: '; unreachable for N s before' when it had not, else ''."""
        if self.down_since is None:
            return ""
        spell, self.down_since = time.monotonic() - self.down_since, None
        return f"; unreachable for {duration(spell)} before"
