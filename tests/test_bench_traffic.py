"""The benches' traffic: real captures rewritten into many calls, arriving evenly or at random."""

from __future__ import annotations

import statistics

from bench import _screenpop_traffic as traffic
from bridge.calls.replay import replay_bytes

CALM = [c for c in traffic.CALL_CAPTURES if c != "burst_20_calls"]


def starts(stream: bytes) -> list[float]:
    return sorted(r.entered_at for r in replay_bytes(stream))


def gaps(built: traffic.Traffic) -> list[float]:
    times = starts(built.stream)
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_poisson_arrivals_keep_the_passes_and_their_mean_rate_but_not_the_even_gaps() -> None:
    even = traffic.build(150, spacing_per_call=0.1, captures=CALM)
    poisson = traffic.build(150, spacing_per_call=0.1, captures=CALM, poisson=True)
    assert poisson.by_template == even.by_template and poisson.calls == even.calls >= 150
    assert len(starts(poisson.stream)) == poisson.calls  # each a call of its own (offline replay)
    # One call per pass, so a call's start is its pass's (plus the capture's constant lead).
    one = ["queue_answered"]
    assert [round(g, 3) for g in gaps(traffic.build(40, spacing_per_call=0.1, captures=one))] == [0.1] * 39
    spread = gaps(traffic.build(400, spacing_per_call=0.1, captures=one, poisson=True))
    # Exponential gaps of mean 0.1 s: as spread as they are long, many short ones.
    assert 0.09 < statistics.mean(spread) < 0.11
    assert 0.8 < statistics.pstdev(spread) / statistics.mean(spread) < 1.2
    assert 0.3 < sum(g < 0.05 for g in spread) / len(spread) < 0.5  # 1 - e^-0.5 = 0.39


def test_the_burst_capture_comes_only_when_asked_for() -> None:
    assert "burst_20_calls" not in traffic.build(60, captures=CALM).by_template
    assert "burst_20_calls" in traffic.build(200, seed=5).by_template
