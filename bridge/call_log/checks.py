"""What the call log refuses to store: times that cannot be true.

A record whose answer or end comes before its entry, whose end comes before its answer,
or whose wait or talk would last longer than `MAX_CALL_SECONDS`, is a bug upstream (a
clock jump, an outage counted as talk); storing it would poison every report built on
the log. `record_problem` says what is wrong in one line, or None when the record is fine.
"""

from __future__ import annotations

from bridge.calls.record import CallRecord

MAX_CALL_SECONDS = 24 * 3600.0  # no call of a contact centre lasts a day: such a span is invented


def _span(label: str, start_name: str, start: float, end_name: str, end: float | None,
          max_seconds: float) -> str | None:
    if end is None:
        return None
    seconds = end - start
    if seconds < 0:
        return f"{end_name} is {-seconds:.3f} s before {start_name} (negative {label})"
    if seconds > max_seconds:
        return f"{end_name} is {seconds:.0f} s after {start_name} ({label} over {max_seconds:.0f} s)"
    return None


def record_problem(rec: CallRecord, max_seconds: float = MAX_CALL_SECONDS) -> str | None:
    """Why `rec` must not be stored, or None. Live calls are checked as far as they go."""
    checks = [("duration", "entered_at", rec.entered_at, "ended_at", rec.ended_at)]
    if rec.answered_at is not None:
        checks = [("wait", "entered_at", rec.entered_at, "answered_at", rec.answered_at),
                  ("talk", "answered_at", rec.answered_at, "ended_at", rec.ended_at), *checks]
    for label, start_name, start, end_name, end in checks:
        if (problem := _span(label, start_name, start, end_name, end, max_seconds)) is not None:
            return problem
    return None
