"""Staffing advice for one interval: how many operators meet the service-level promise. Pure.

`advise(...)` finds the smallest number of agents on the phones whose expected service level
(Erlang C; Erlang A when callers' patience is given) reaches the target and whose occupancy stays
within the cap (people answering call after call without a breath burn out and leave), then adds
shrinkage (breaks, training, meetings): staff = ceil(agents / (1 - shrinkage)).
`expected(...)` gives the same figures for a given number of agents ("the service level with
the staff we had"). The formulas and their definitions are in `reports.erlang`.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict

from reports.erlang import QueueFigures, erlang_a, erlang_b_table, erlang_c

# Float slack when comparing with the targets: 80.0 % must accept a computed 0.7999999999999999.
_SLACK = 1e-12


class StaffingAdvice(BaseModel):
    """Agents on the phones and staff on the roster for one interval. Fractions are 0..1."""

    model_config = ConfigDict(frozen=True)

    agents: int
    staff: int
    service_level: float
    asa_seconds: float | None  # None: unbounded (Erlang C with agents <= load: the queue only grows)
    occupancy: float
    wait_probability: float
    abandon_rate: float | None  # None without patience (Erlang C); Erlang A's expected rate with it


def offered_load(calls: float, interval_seconds: float, aht_seconds: float) -> float:
    """Traffic in erlangs: calls per second times the average handling time."""
    _check_volume(calls, interval_seconds, aht_seconds)
    return calls * aht_seconds / interval_seconds


def advise(calls: float, interval_seconds: float, aht_seconds: float, *, target_fraction: float,
           target_seconds: float, max_occupancy: float = 0.85, shrinkage: float = 0.30,
           patience_seconds: float | None = None, max_agents: int = 5000) -> StaffingAdvice:
    """The smallest number of agents meeting `target_fraction` answered within `target_seconds`
    with occupancy <= `max_occupancy`; ValueError on bad input or when `max_agents` is not enough."""
    load = offered_load(calls, interval_seconds, aht_seconds)
    _check_fraction("target_fraction", target_fraction, allow_zero=True)
    _check_non_negative("target_seconds", target_seconds)
    _check_fraction("max_occupancy", max_occupancy, allow_zero=False)
    _check_shrinkage(shrinkage)
    _check_patience(patience_seconds)
    if isinstance(max_agents, bool) or not isinstance(max_agents, int) or max_agents < 1:
        raise ValueError(f"max_agents must be a whole number >= 1, not {max_agents!r}")
    if load == 0:
        return _advice(_idle(patience_seconds), shrinkage)

    table = erlang_b_table(max_agents, load)

    def figures(n: int) -> QueueFigures:
        return _figures(n, load, aht_seconds, target_seconds, patience_seconds, table[n])

    def meets(f: QueueFigures) -> bool:
        return (f.service_level >= target_fraction - _SLACK and f.occupancy <= max_occupancy + _SLACK
                and math.isfinite(f.asa_seconds))

    # Service level rises and occupancy falls with every agent added, so "meets" flips once:
    # bisect for the first n that meets both (Erlang B for every n is already in the table).
    low = 1 if patience_seconds is not None else math.floor(load) + 1  # Erlang C needs n > A
    top = figures(max_agents) if low <= max_agents else None
    if top is None or not meets(top):
        raise ValueError(
            f"{calls:g} calls in {interval_seconds:g} s with AHT {aht_seconds:g} s need more than "
            f"{max_agents} agents to reach {target_fraction:.0%} within {target_seconds:g} s "
            f"at occupancy <= {max_occupancy:.0%}")
    high = max_agents
    best = top
    while low < high:
        mid = (low + high) // 2
        f = figures(mid)
        if meets(f):
            high, best = mid, f
        else:
            low = mid + 1
    return _advice(best, shrinkage)


def expected(calls: float, interval_seconds: float, aht_seconds: float, agents: int, *,
             target_seconds: float, shrinkage: float = 0.30,
             patience_seconds: float | None = None) -> StaffingAdvice:
    """The figures to expect with `agents` on the phones (Erlang C; Erlang A with patience)."""
    load = offered_load(calls, interval_seconds, aht_seconds)
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 0:
        raise ValueError(f"agents must be a whole number >= 0, not {agents!r}")
    _check_non_negative("target_seconds", target_seconds)
    _check_shrinkage(shrinkage)
    _check_patience(patience_seconds)
    if load == 0:
        return _advice(_idle(patience_seconds, agents), shrinkage)
    return _advice(_figures(agents, load, aht_seconds, target_seconds, patience_seconds, None), shrinkage)


def _figures(agents: int, load: float, aht_seconds: float, target_seconds: float,
             patience_seconds: float | None, erlang_b_value: float | None) -> QueueFigures:
    if patience_seconds is None:
        return erlang_c(agents, load, aht_seconds=aht_seconds, target_seconds=target_seconds,
                        erlang_b_value=erlang_b_value)
    return erlang_a(agents, load, aht_seconds=aht_seconds, target_seconds=target_seconds,
                    patience_seconds=patience_seconds, erlang_b_value=erlang_b_value)


def _idle(patience_seconds: float | None, agents: int = 0) -> QueueFigures:
    """No calls: nobody waits, every (no) call is answered in time."""
    return QueueFigures(agents, 0.0, 1.0, 0.0, 0.0, None if patience_seconds is None else 0.0)


def _advice(f: QueueFigures, shrinkage: float) -> StaffingAdvice:
    # the rounding guards ceil(14 / 0.7) = ceil(20.000000000000004) from giving 21
    staff = math.ceil(round(f.agents / (1.0 - shrinkage), 9))
    return StaffingAdvice(
        agents=f.agents,
        staff=staff,
        service_level=f.service_level,
        asa_seconds=f.asa_seconds if math.isfinite(f.asa_seconds) else None,
        occupancy=f.occupancy,
        wait_probability=f.wait_probability,
        abandon_rate=f.abandon_rate,
    )


# --- input checks: one clear sentence each ----------------------------------------------------


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, not {value!r}")


def _check_volume(calls: float, interval_seconds: float, aht_seconds: float) -> None:
    _check_non_negative("calls", calls)
    _finite("interval_seconds", interval_seconds)
    if interval_seconds <= 0:
        raise ValueError(f"the interval must be longer than 0 s, not {interval_seconds:g} s")
    _finite("aht_seconds", aht_seconds)
    if aht_seconds <= 0:
        raise ValueError(f"the average handling time must be longer than 0 s, not {aht_seconds:g} s")


def _check_non_negative(name: str, value: float) -> None:
    _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must not be negative, not {value:g}")


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> None:
    _finite(name, value)
    if value > 1 or value < 0 or (value == 0 and not allow_zero):
        bounds = "0 to 1" if allow_zero else "above 0 and at most 1"
        raise ValueError(f"{name} must be a fraction {bounds} (0.8 = 80 %), not {value:g}")


def _check_shrinkage(shrinkage: float) -> None:
    _finite("shrinkage", shrinkage)
    if not 0 <= shrinkage < 1:
        raise ValueError(f"shrinkage must be a fraction from 0 up to (not including) 1, not {shrinkage:g}")


def _check_patience(patience_seconds: float | None) -> None:
    if patience_seconds is None:
        return
    _finite("patience_seconds", patience_seconds)
    if patience_seconds <= 0:
        raise ValueError(f"the callers' patience must be longer than 0 s, not {patience_seconds:g} s")
