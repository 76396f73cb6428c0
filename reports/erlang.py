"""Erlang B, C and A: the queueing formulas behind the staffing advice. Pure (no I/O).

Notation: `load` A is the offered traffic in erlangs (calls per second x AHT), `agents` n the
operators on the phones, `target_seconds` t the promised answer time, `patience_seconds` the
callers' mean patience (Erlang A only).

**Erlang B** (blocking in M/M/n/n) by the recursion B(0) = 1, B(k) = A B(k-1) / (k + A B(k-1)):
every step stays in [0, 1], so it neither overflows nor loses precision at thousands of agents
(the textbook A^n/n! over a sum of such terms overflows floats past n of about 170).

**Erlang C** (M/M/n, callers wait forever) from Erlang B, for n > A:
probability of waiting C = n B / (n - A (1 - B)); service level P(W <= t) = 1 - C e^{-(n-A) t/AHT};
ASA E[W] = C AHT / (n - A); occupancy A / n. With n <= A the queue grows without limit: C = 1,
service level 0, ASA unbounded (`math.inf`).

**Erlang A** (M/M/n+M, Palm's model: exponential patience of mean 1/theta; Garnett, Mandelbaum &
Reiman 2002, "Designing a call center with impatient customers"; Mandelbaum & Zeltyn, "The
Palm/Erlang-A queue, with applications to call centers"). With lambda the arrival rate, mu = 1/AHT,
x = lambda/theta, a = n mu/theta, rho = A/n and

    J = S(a, x),    S(b, y) = sum_{k>=0} y^k / ((b+1)(b+2)...(b+k))
      = Gamma(b+1) e^y y^-b P(b, y)   (P: the regularized lower incomplete gamma function),

(J is the sum of the birth-death chain's queue states relative to the state "n busy, nobody
waiting"), the results are, with E = Erlang B(n, A) and pi_n = E / (1 - E + E J):
- probability of waiting P(W>0) = pi_n J;
- abandon rate P(Ab) = theta E[Q] / lambda = pi_n (J (1 - 1/rho) + 1/rho)
  (equivalently pi_n sum_k k t_k / x with t_k the series' terms, which we use when J comes from the
  series: every term positive, no cancellation);
- the offered wait V (the wait of a caller who would never hang up) has, on V > 0, the density
  pi_n n mu exp(-n mu v + x (1 - e^{-theta v})) (inverting the Laplace transform
  pi_n n mu/(n mu + s) S((n mu + s)/theta, x)); a caller is answered within t when V <= t and his own
  patience outlasts V, so
  service level = P(answered within t) / offered
                = 1 - P(W>0) + pi_n a/(a+1) S(a+1, x) (1 - P(a+1, x e^{-theta t}) / P(a+1, x)).
  Callers who hang up count as not answered within t (the conservative "answered within T /
  offered" definition).
- ASA: the mean time callers spend waiting, answered or not, E[W] = P(Ab) / theta (Little's law
  on the queue);
- occupancy: the load actually served over the agents, A (1 - P(Ab)) / n.
As patience grows without bound every figure tends to Erlang C's (the tests check it).

S(b, y) is computed in logs: by its series (terms fall from 1, so no overflow) when y < b + 1, and
otherwise from the continued fraction of the upper incomplete gamma function Q = 1 - P (modified
Lentz), as in Numerical Recipes' gser/gcf. Ratios of P values are taken as differences of logs, in
which the Gamma factors cancel exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 1e-16
_TINY = 1e-300
_MAX_TERMS = 10_000_000  # the series needs ~10 sqrt(b) terms; this is b ~ 1e12, far past any real call centre


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What a queue with `agents` operators is expected to do. Fractions are 0..1."""

    agents: int
    wait_probability: float
    service_level: float
    asa_seconds: float  # math.inf when the queue grows without limit (Erlang C with n <= A)
    occupancy: float
    abandon_rate: float | None  # None for Erlang C (nobody hangs up)


def erlang_b(agents: int, load: float) -> float:
    """Blocking probability of M/M/n/n, by the stable recursion."""
    _check_agents_load(agents, load)
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_b_table(max_agents: int, load: float) -> list[float]:
    """Erlang B for 0..max_agents agents in one pass (the staffing search reads it by index)."""
    _check_agents_load(max_agents, load)
    table = [1.0]
    for k in range(1, max_agents + 1):
        prev = table[-1]
        table.append(load * prev / (k + load * prev))
    return table


def erlang_c(agents: int, load: float, *, aht_seconds: float, target_seconds: float,
             erlang_b_value: float | None = None) -> QueueFigures:
    """Erlang C figures. `erlang_b_value` may pass B(agents, load) already known."""
    _check_agents_load(agents, load)
    _check_positive("aht_seconds", aht_seconds)
    _check_non_negative("target_seconds", target_seconds)
    if load == 0:
        return QueueFigures(agents, 0.0, 1.0, 0.0, 0.0, None)
    if agents <= load:  # every agent busy all the time (none at all: no occupancy to speak of)
        return QueueFigures(agents, 1.0, 0.0, math.inf, 1.0 if agents else 0.0, None)
    b = erlang_b(agents, load) if erlang_b_value is None else erlang_b_value
    spare = agents - load
    c = min(1.0, agents * b / (spare + load * b))  # n B / (n - A (1 - B)), rearranged
    service_level = 1.0 - c * math.exp(-spare * target_seconds / aht_seconds)
    return QueueFigures(
        agents=agents,
        wait_probability=c,
        service_level=_clamp(service_level),
        asa_seconds=c * aht_seconds / spare,
        occupancy=load / agents,
        abandon_rate=None,
    )


def erlang_a(agents: int, load: float, *, aht_seconds: float, target_seconds: float,
             patience_seconds: float, erlang_b_value: float | None = None) -> QueueFigures:
    """Erlang A (M/M/n+M) figures; see the module docstring for the formulas."""
    _check_agents_load(agents, load)
    _check_positive("aht_seconds", aht_seconds)
    _check_non_negative("target_seconds", target_seconds)
    _check_positive("patience_seconds", patience_seconds)
    if load == 0:
        return QueueFigures(agents, 0.0, 1.0, 0.0, 0.0, 0.0)
    if agents == 0:  # every caller waits until he gives up
        return QueueFigures(0, 1.0, 0.0, patience_seconds, 0.0, 1.0)
    b = erlang_b(agents, load) if erlang_b_value is None else erlang_b_value
    x = load * patience_seconds / aht_seconds  # lambda / theta
    a = agents * patience_seconds / aht_seconds  # n mu / theta
    rho = load / agents

    log_j, abandon_given_wait = _log_j_and_abandon_given_wait(a, x, rho)
    # P(W>0) = B J / (1 - B + B J) = 1 / (1 + (1 - B) / (B J)), in logs (J overflows floats when n << A)
    if b <= 0.0:
        wait_probability = 0.0
    elif b >= 1.0:
        wait_probability = 1.0
    else:
        wait_probability = _one_over_one_plus_exp(math.log1p(-b) - math.log(b) - log_j)
    abandon_rate = wait_probability * abandon_given_wait

    # answered within t among those who wait, relative to P(W>0): a/(a+1) S(a+1, x) / J (1 - R)
    log_s1 = _log_s(a + 1.0, x)
    theta_t = target_seconds / patience_seconds
    u = math.exp(-theta_t)
    log_r = (x * -math.expm1(-theta_t) - (a + 1.0) * theta_t + _log_s(a + 1.0, x * u) - log_s1)
    answered_when_waiting = math.exp(math.log(a) - math.log1p(a) + log_s1 - log_j) * -math.expm1(log_r)
    service_level = 1.0 - wait_probability + wait_probability * answered_when_waiting
    return QueueFigures(
        agents=agents,
        wait_probability=_clamp(wait_probability),
        service_level=_clamp(service_level),
        asa_seconds=abandon_rate * patience_seconds,
        occupancy=_clamp(rho * (1.0 - abandon_rate)),
        abandon_rate=_clamp(abandon_rate),
    )


# --- S(b, y) and the incomplete gamma function, in logs ---------------------------------------


def _series(b: float, y: float) -> tuple[float, float]:
    """(sum t_k, sum k t_k) with t_0 = 1, t_k = t_{k-1} y / (b + k); for y < b + 1 (terms fall)."""
    term, total, moment = 1.0, 1.0, 0.0
    for k in range(1, _MAX_TERMS):
        term *= y / (b + k)
        total += term
        moment += k * term
        if term < total * _EPS:
            return total, moment
    raise ArithmeticError(f"incomplete gamma series did not converge (b={b}, y={y})")


def _log_q_continued_fraction(b: float, y: float) -> float:
    """log Q(b, y), the regularized upper incomplete gamma function, for y >= b + 1 (modified Lentz)."""
    bn = y + 1.0 - b
    c = 1.0 / _TINY
    d = 1.0 / bn
    h = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - b)
        bn += 2.0
        d = an * d + bn
        d = _TINY if abs(d) < _TINY else d
        c = bn + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return -y + b * math.log(y) - math.lgamma(b) + math.log(h)
    raise ArithmeticError(f"incomplete gamma continued fraction did not converge (b={b}, y={y})")


def _log_s(b: float, y: float) -> float:
    """log S(b, y) = log sum_k y^k / ((b+1)...(b+k)) = log(Gamma(b+1) e^y y^-b P(b, y))."""
    if y <= 0.0:
        return 0.0
    if y < b + 1.0:
        return math.log(_series(b, y)[0])
    if b <= 0.0:
        return y  # S(0, y) = e^y
    log_p = math.log1p(-math.exp(_log_q_continued_fraction(b, y)))
    return log_p + y - b * math.log(y) + math.lgamma(b + 1.0)


def _log_j_and_abandon_given_wait(a: float, x: float, rho: float) -> tuple[float, float]:
    """log J and P(Ab | W>0) = 1 - 1/rho + 1/(rho J)."""
    if x < a + 1.0:
        total, moment = _series(a, x)
        return math.log(total), _clamp(moment / (x * total))  # E[Q] theta / (lambda P(W>0))
    log_j = _log_s(a, x)  # here x > a, so rho > 1 and nothing cancels
    return log_j, _clamp(1.0 - 1.0 / rho + math.exp(-math.log(rho) - log_j))


# --- checks --------------------------------------------------------------------------------


def _one_over_one_plus_exp(z: float) -> float:
    """1 / (1 + e^z) without overflow for large z."""
    if z > 0:
        e = math.exp(-z)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(z))


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def _check_agents_load(agents: int, load: float) -> None:
    if isinstance(agents, bool) or not isinstance(agents, int) or agents < 0:
        raise ValueError(f"agents must be a whole number >= 0, not {agents!r}")
    _check_non_negative("load", load)


def _check_positive(name: str, value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, not {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
