"""reports.erlang against published worked examples, an independent library (pyworkforce) for
Erlang C, and a direct numerical solution of the birth-death chain for Erlang A."""

from __future__ import annotations

import math

import pytest

from reports.erlang import QueueFigures, erlang_a, erlang_b, erlang_b_table, erlang_c

# --- independent code paths used as references -----------------------------------------------


def erlang_b_by_logsumexp(agents: int, load: float) -> float:
    """B = (A^n/n!) / sum_k A^k/k!, each term in logs (lgamma), not by the recursion."""
    logs = [k * math.log(load) - math.lgamma(k + 1) for k in range(agents + 1)]
    top = max(logs)
    return math.exp(logs[-1] - top) / sum(math.exp(v - top) for v in logs)


def chain(agents: int, arrivals_per_s: float, aht: float, patience: float) -> tuple[list[float], int]:
    """Stationary distribution of the M/M/n+M birth-death chain, truncated where it vanishes."""
    mu, theta = 1.0 / aht, 1.0 / patience
    logs = [0.0]
    k = 0
    while True:
        k += 1
        death = min(k, agents) * mu + max(k - agents, 0) * theta
        logs.append(logs[-1] + math.log(arrivals_per_s / death))
        if k > agents and logs[-1] < max(logs) - 60:
            break
    top = max(logs)
    weights = [math.exp(v - top) for v in logs]
    total = sum(weights)
    return [w / total for w in weights], agents


def chain_figures(agents: int, load: float, aht: float, patience: float,
                  target: float) -> QueueFigures:
    """Erlang A figures from the chain; the service level by integrating, with RK4, the tagged
    caller's chance to be answered within t from each queue position (backward equations)."""
    lam = load / aht
    mu, theta = 1.0 / aht, 1.0 / patience
    pi, n = chain(agents, lam, aht, patience)
    wait = sum(pi[n:])
    queue = sum((k - n) * p for k, p in enumerate(pi) if k > n)
    abandon = theta * queue / lam
    positions = len(pi) - n  # j callers ahead: 0..positions-1
    rates = [n * mu + j * theta for j in range(positions)]

    def derivative(h: list[float]) -> list[float]:
        return [rates[j] * ((h[j - 1] if j else 1.0) - h[j]) - theta * h[j] for j in range(positions)]

    h = [0.0] * positions
    steps = max(1, math.ceil(target / 0.02))
    dt = target / steps
    for _ in range(steps):
        k1 = derivative(h)
        k2 = derivative([a + dt / 2 * b for a, b in zip(h, k1, strict=True)])
        k3 = derivative([a + dt / 2 * b for a, b in zip(h, k2, strict=True)])
        k4 = derivative([a + dt * b for a, b in zip(h, k3, strict=True)])
        h = [a + dt / 6 * (b + 2 * c + 2 * d + e) for a, b, c, d, e in zip(h, k1, k2, k3, k4, strict=True)]
    service_level = (1 - wait) + sum(pi[n + j] * h[j] for j in range(positions))
    return QueueFigures(agents, wait, service_level, queue / lam, load * (1 - abandon) / agents, abandon)


# --- Erlang B ----------------------------------------------------------------------------------


def test_erlang_b_matches_the_table_and_the_direct_formula() -> None:
    assert erlang_b(10, 10.0) == pytest.approx(0.21458, abs=5e-6)  # the classic table's 10 lines, 10 E
    assert erlang_b(5, 2.0) == pytest.approx(0.03670, abs=5e-6)
    for agents, load in ((1, 0.5), (7, 3.2), (30, 25.0), (120, 100.0)):
        assert erlang_b(agents, load) == pytest.approx(erlang_b_by_logsumexp(agents, load), rel=1e-12)
    assert erlang_b_table(30, 25.0)[30] == erlang_b(30, 25.0)
    assert erlang_b(0, 5.0) == 1.0 and erlang_b(3, 0.0) == 0.0


def test_erlang_b_at_1500_agents_stays_finite_and_exact() -> None:
    b = erlang_b(1500, 1450.0)  # 1450^1500 and 1500! overflow floats by hundreds of orders
    assert 0 < b < 1
    assert b == pytest.approx(erlang_b_by_logsumexp(1500, 1450.0), rel=1e-10)


# --- Erlang C: the worked example and pyworkforce ---------------------------------------------


def test_worked_example_100_calls_in_30_min_aht_180_s() -> None:
    load = 100 * 180 / 1800  # 10 erlangs
    thirteen = erlang_c(13, load, aht_seconds=180, target_seconds=20)
    assert round(thirteen.service_level, 4) == 0.7956  # below 80 %: 13 are not enough
    fourteen = erlang_c(14, load, aht_seconds=180, target_seconds=20)
    assert round(fourteen.wait_probability, 4) == 0.1741
    assert round(fourteen.service_level, 4) == 0.8884
    assert round(fourteen.asa_seconds, 2) == 7.84
    assert round(fourteen.occupancy, 3) == 0.714
    assert fourteen.abandon_rate is None


def test_erlang_c_agrees_with_pyworkforce() -> None:
    import pyworkforce.queuing as pyworkforce_queuing  # the dev extra's independent Erlang C

    compared = 0
    for calls, aht, interval_min in ((20, 240, 15), (100, 180, 30), (400, 300, 60), (2000, 120, 30),
                                     (9000, 200, 60)):
        load = calls * aht / (interval_min * 60)
        theirs = pyworkforce_queuing.ErlangC(transactions=calls, aht=aht / 60, asa=20 / 60,
                                             interval=interval_min)
        assert theirs.intensity == pytest.approx(load)
        for agents in range(math.floor(load) + 1, math.floor(load) + 25):
            ours = erlang_c(agents, load, aht_seconds=aht, target_seconds=20)
            assert ours.wait_probability == pytest.approx(theirs.waiting_probability(agents), rel=1e-9)
            assert ours.service_level == pytest.approx(theirs.service_level(agents), rel=1e-9, abs=1e-12)
            assert ours.occupancy == pytest.approx(theirs.achieved_occupancy(agents), rel=1e-12)
            compared += 1
    assert compared == 5 * 24


def test_erlang_c_without_enough_agents_never_clears_the_queue() -> None:
    f = erlang_c(10, 10.0, aht_seconds=180, target_seconds=20)
    assert (f.wait_probability, f.service_level, f.asa_seconds, f.occupancy) == (1.0, 0.0, math.inf, 1.0)
    idle = erlang_c(3, 0.0, aht_seconds=180, target_seconds=20)
    assert (idle.wait_probability, idle.service_level, idle.asa_seconds) == (0.0, 1.0, 0.0)


def test_erlang_c_is_monotone_in_agents_and_target() -> None:
    figures = [erlang_c(n, 52.5, aht_seconds=210, target_seconds=30) for n in range(53, 90)]
    for fewer, more in zip(figures, figures[1:], strict=False):
        assert more.service_level > fewer.service_level
        assert more.wait_probability < fewer.wait_probability
        assert more.asa_seconds < fewer.asa_seconds
        assert more.occupancy < fewer.occupancy
    levels = [erlang_c(58, 52.5, aht_seconds=210, target_seconds=t).service_level for t in (0, 10, 20, 60)]
    assert levels == sorted(levels) and levels[0] == pytest.approx(1 - figures[5].wait_probability)


def test_erlang_c_at_1500_agents() -> None:
    f = erlang_c(1500, 1450.0, aht_seconds=180, target_seconds=20)
    b = erlang_b_by_logsumexp(1500, 1450.0)
    assert f.wait_probability == pytest.approx(1500 * b / (1500 - 1450 * (1 - b)), rel=1e-9)
    assert 0 < f.wait_probability < 1 and 0.99 < f.service_level < 1 and f.asa_seconds > 0


# --- Erlang A: the birth-death chain and the limits --------------------------------------------


@pytest.mark.parametrize(("agents", "load", "aht", "patience", "target"), [
    (14, 10.0, 180, 60, 20),  # the worked example's traffic, impatient callers
    (14, 10.0, 180, 600, 20),
    (5, 10.0, 180, 60, 20),  # half the agents needed: Erlang C has no answer, Erlang A has
    (3, 0.8, 300, 30, 15),
    (40, 33.3, 120, 90, 30),
])
def test_erlang_a_matches_the_birth_death_chain(agents: int, load: float, aht: float, patience: float,
                                                target: float) -> None:
    ours = erlang_a(agents, load, aht_seconds=aht, target_seconds=target, patience_seconds=patience)
    ref = chain_figures(agents, load, aht, patience, target)
    assert ours.wait_probability == pytest.approx(ref.wait_probability, rel=1e-9)
    assert ours.abandon_rate == pytest.approx(ref.abandon_rate, rel=1e-9)
    assert ours.asa_seconds == pytest.approx(ref.asa_seconds, rel=1e-9)
    assert ours.occupancy == pytest.approx(ref.occupancy, rel=1e-9)
    assert ours.service_level == pytest.approx(ref.service_level, rel=1e-7)


def test_erlang_a_worked_example_numbers() -> None:
    # Pinned from the chain above, so a change in the formulas shows up as numbers.
    f = erlang_a(14, 10.0, aht_seconds=180, target_seconds=20, patience_seconds=60)
    assert round(f.wait_probability, 4) == 0.1115
    assert round(f.abandon_rate, 4) == 0.0303
    assert round(f.service_level, 4) == 0.9438
    assert round(f.asa_seconds, 2) == 1.82


def test_erlang_a_at_1500_agents_matches_the_chain() -> None:
    load, aht, patience = 1450.0, 180.0, 300.0
    ours = erlang_a(1500, load, aht_seconds=aht, target_seconds=20, patience_seconds=patience)
    pi, n = chain(1500, load / aht, aht, patience)
    assert ours.wait_probability == pytest.approx(sum(pi[n:]), rel=1e-8)
    queue = sum((k - n) * p for k, p in enumerate(pi) if k > n)
    assert ours.abandon_rate == pytest.approx(queue / patience / (load / aht), rel=1e-8)
    short = erlang_a(1385, load, aht_seconds=aht, target_seconds=20, patience_seconds=patience)
    pi, n = chain(1385, load / aht, aht, patience)  # fewer agents than erlangs: the other branch
    assert short.wait_probability == pytest.approx(sum(pi[n:]), rel=1e-8)
    queue = sum((k - n) * p for k, p in enumerate(pi) if k > n)
    assert short.abandon_rate == pytest.approx(queue / patience / (load / aht), rel=1e-8)
    overloaded = erlang_a(1000, 1200.0, aht_seconds=aht, target_seconds=20, patience_seconds=600)
    assert overloaded.abandon_rate == pytest.approx(200 / 1200, rel=1e-3)  # the excess load hangs up
    assert overloaded.occupancy == pytest.approx(1.0, abs=1e-9)


def test_erlang_a_tends_to_erlang_c_as_patience_grows() -> None:
    c = erlang_c(14, 10.0, aht_seconds=180, target_seconds=20)
    gaps = []
    for patience in (1e3, 1e5, 1e7, 1e9):
        a = erlang_a(14, 10.0, aht_seconds=180, target_seconds=20, patience_seconds=patience)
        gaps.append(abs(a.service_level - c.service_level))
        assert a.abandon_rate < 10 / patience
    assert gaps == sorted(gaps, reverse=True)
    assert a.wait_probability == pytest.approx(c.wait_probability, rel=1e-6)
    assert a.service_level == pytest.approx(c.service_level, rel=1e-6)
    assert a.asa_seconds == pytest.approx(c.asa_seconds, rel=1e-6)
    assert a.occupancy == pytest.approx(c.occupancy, rel=1e-6)


def test_erlang_a_is_monotone_in_agents_and_patience() -> None:
    figures = [erlang_a(n, 25.0, aht_seconds=180, target_seconds=20, patience_seconds=90)
               for n in range(1, 50)]
    for fewer, more in zip(figures, figures[1:], strict=False):
        assert more.service_level >= fewer.service_level
        assert more.wait_probability < fewer.wait_probability
        assert more.abandon_rate < fewer.abandon_rate
        assert more.occupancy < fewer.occupancy
    rates = [erlang_a(26, 25.0, aht_seconds=180, target_seconds=20, patience_seconds=p).abandon_rate
             for p in (5, 30, 120, 600)]
    assert rates == sorted(rates, reverse=True)


def test_erlang_a_edges() -> None:
    none = erlang_a(0, 5.0, aht_seconds=180, target_seconds=20, patience_seconds=45)
    assert (none.service_level, none.abandon_rate, none.asa_seconds) == (0.0, 1.0, 45)
    idle = erlang_a(4, 0.0, aht_seconds=180, target_seconds=20, patience_seconds=45)
    assert (idle.service_level, idle.wait_probability, idle.abandon_rate) == (1.0, 0.0, 0.0)
    at_once = erlang_a(14, 10.0, aht_seconds=180, target_seconds=0, patience_seconds=60)
    assert at_once.service_level == pytest.approx(1 - at_once.wait_probability)


@pytest.mark.parametrize("call", [
    lambda: erlang_b(-1, 1.0),
    lambda: erlang_b(2, -0.5),
    lambda: erlang_b(2, math.nan),
    lambda: erlang_c(2, 1.0, aht_seconds=0, target_seconds=20),
    lambda: erlang_c(2, 1.0, aht_seconds=60, target_seconds=-1),
    lambda: erlang_a(2, 1.0, aht_seconds=60, target_seconds=20, patience_seconds=0),
    lambda: erlang_a(2, 1.0, aht_seconds=60, target_seconds=20, patience_seconds=math.inf),
])
def test_bad_input_is_a_value_error(call) -> None:
    with pytest.raises(ValueError):
        call()
