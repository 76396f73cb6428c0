"""The manager's figure definitions, shared by the reports (in SQL) and the wallboard (live).

Pure: no I/O. It lives below the features (not in `reports/`) because the wallboard
(`supervision`) and the reports (`reports`) are independent siblings that may not import
each other, and both must count "answered within T" the same way. `reports.definitions`
re-exports it; `reports.queries` writes the same predicates as SQL CASE expressions, and a
test checks the two agree on the same calls.

The predicates, once:
- a call is *offered* when it is finished and not internal (a spy session or consultation
  call is not a caller);
- *answered within T*: answered and `wait_seconds <= T` (T inclusive, like app_queue);
- a *short abandon*: abandoned with `wait_seconds < short_abandon_seconds` (strictly less);
- an *abandon within T*: abandoned, not short, `wait_seconds <= T`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ServiceLevelName = Literal["answered", "answered_and_abandoned", "offered"]
SERVICE_LEVEL_NAMES: tuple[ServiceLevelName, ...] = ("answered", "answered_and_abandoned", "offered")


class ServiceLevelPolicy(BaseModel):
    """Which service level is the headline, T per queue, and what a short abandon is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    definition: ServiceLevelName = "answered_and_abandoned"
    target_seconds: float = Field(30.0, gt=0)  # T for a queue without its own
    targets: dict[str, float] = Field(default_factory=dict)  # T per queue
    short_abandon_seconds: float = Field(5.0, ge=0)  # 0: no abandon is short
    abandons_within_target_met: bool = False  # SL2: does an abandon within T count as met?

    def target_for(self, queue: str | None) -> float:
        return self.targets.get(queue or "", self.target_seconds)


def met_target(outcome: str | None, wait_seconds: float, target: float) -> bool:
    return outcome == "answered" and wait_seconds <= target


def is_short_abandon(outcome: str | None, wait_seconds: float, short_seconds: float) -> bool:
    return outcome == "abandoned" and wait_seconds < short_seconds


@dataclass(slots=True)
class Tally:
    """The counts every rate is made of; the reports' SQL returns exactly these columns."""

    offered: int = 0
    answered: int = 0
    answered_within: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    abandoned_within: int = 0  # not short, waited at most T
    unanswered: int = 0
    incomplete: int = 0

    def count(self, outcome: str | None, wait_seconds: float, target: float, short_seconds: float) -> None:
        """One finished, non-internal call."""
        self.offered += 1
        if outcome == "answered":
            self.answered += 1
            self.answered_within += met_target(outcome, wait_seconds, target)
        elif outcome == "abandoned":
            self.abandoned += 1
            if is_short_abandon(outcome, wait_seconds, short_seconds):
                self.short_abandoned += 1
            elif wait_seconds <= target:
                self.abandoned_within += 1
        elif outcome == "unanswered":
            self.unanswered += 1
        else:
            self.incomplete += 1

    @classmethod
    def of(cls, row: object) -> Tally:
        """From any object (an SQL row) with the same attribute names; NULL sums are 0."""
        return cls(**{f.name: int(getattr(row, f.name) or 0) for f in fields(cls)})


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None  # no calls behind it: null, never 0


def service_level(t: Tally, definition: ServiceLevelName, *, abandons_within_target_met: bool = False
                  ) -> float | None:
    if definition == "answered":
        return _ratio(t.answered_within, t.answered)
    if definition == "answered_and_abandoned":
        met = t.answered_within + (t.abandoned_within if abandons_within_target_met else 0)
        return _ratio(met, t.answered + t.abandoned - t.short_abandoned)
    if definition == "offered":
        return _ratio(t.answered_within, t.offered - t.short_abandoned)
    raise ValueError(f"unknown service level definition {definition!r}; one of {SERVICE_LEVEL_NAMES}")


def service_levels(t: Tally, policy: ServiceLevelPolicy) -> dict[str, float | None]:
    return {name: service_level(t, name, abandons_within_target_met=policy.abandons_within_target_met)
            for name in SERVICE_LEVEL_NAMES}


def abandon_rate(t: Tally) -> float | None:
    return _ratio(t.abandoned - t.short_abandoned, t.offered - t.short_abandoned)


def definitions(policy: ServiceLevelPolicy, after_call_seconds: float = 0.0) -> dict[str, str]:
    """Every figure's one-line definition, keyed by the figure's name in the report."""
    short = f"caller hung up after waiting less than {policy.short_abandon_seconds:g} s"
    sl2_met = "count as met" if policy.abandons_within_target_met else "count as not met"
    acw = (f"talk + {after_call_seconds:g} s after-call work per call (configured; the PBX does not "
           "report it)" if after_call_seconds else "talk time only (after-call work is not measured)")
    sl = {
        "answered": "answered within T / answered (Asterisk's servicelevel)",
        "answered_and_abandoned": f"answered within T / (answered + abandoned - short abandons); abandons "
                                  f"within T {sl2_met} (SL2)",
        "offered": "answered within T / (offered - short abandons)",
    }
    return {
        "offered": "finished calls to the queue (or, for all queues, every finished call that is not "
                   "internal: direct calls too), by the time the caller entered",
        "answered": "an operator (or an application) answered",
        "abandoned": "the caller hung up before an answer (short abandons included)",
        "short_abandoned": f"short abandons: {short}",
        "unanswered": "the system gave up: queue timeout, full, empty, or every phone busy / not answering",
        "unanswered_by_reason": "unanswered calls by the queue's QUEUESTATUS or the phones' last DialStatus",
        "incomplete": "we saw only part of the call (bridge or PBX connection lost) and cannot settle it",
        "target_seconds": "T: the promised answer time, per queue (answered within T means wait <= T)",
        "service_level": f"the configured definition ({policy.definition}): {sl[policy.definition]}",
        **{f"service_level_by_definition.{name}": text for name, text in sl.items()},
        "abandon_rate": "(abandoned - short abandons) / (offered - short abandons)",
        "asa_seconds": "average speed of answer: the mean wait of answered calls",
        "wait_p90_seconds": "90th percentile of answered calls' wait (nearest rank: 90% waited at most this)",
        "longest_wait_seconds": "the longest wait of any offered call, answered or not",
        "aht_seconds": f"average handling time of answered calls: {acw}",
        "talk_seconds_avg": "mean talk time of answered calls (answer to hang-up)",
        "wait_distribution": "offered calls by how long they waited (from <= wait < to)",
        "talk_distribution": "answered calls by talk time (from <= talk < to)",
        "by_hour_of_day": "offered calls per hour of the day, divided by the days in the period",
        "by_weekday": "offered calls per weekday, divided by how many of that weekday the period has",
        "operators.rung": "calls on which the operator's phone rang (once per call, retries included)",
        "operators.answered": "calls the operator answered (first answer, or taken over by a transfer)",
        "operators.missed": "calls that rang the operator's phone and that he did not answer",
        "operators.talk_seconds": "the operator's own talk time (until he transferred the caller on)",
        "operators.aht_seconds": "(talk + after-call work) / calls answered",
        "operators.transfers": "transfers the operator made",
        "operators.logged_in_seconds": "time logged in to at least one queue and reachable (queue member "
                                       "events, from when the bridge saw them)",
        "operators.paused_seconds": "logged-in time paused in every queue he is logged in to",
        "operators.occupancy": "talk / (logged in - paused); null without member events",
        "staffing.agents": "operators needed on the phones for the target (Erlang C, or Erlang A with the "
                           "callers' measured patience), capped by the maximum occupancy",
        "staffing.staff": "agents / (1 - shrinkage)",
        "staffing.staff_actual": "average operators logged in and not paused during the interval",
        "staffing.expected_service_level": "the service level the needed agents would give",
        "staffing.service_level_with_actual": "the service level the staff one had would give (Erlang)",
        "staffing.verdict": "under: fewer operators available than the agents needed; over: one fewer "
                            "would still be enough; ok: between",
    }
