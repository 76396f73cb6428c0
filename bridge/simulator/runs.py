"""Which replay session an `AmiSimulator` login gets, and the PBX runs behind them.

A session whose connection ended without `Logoff` is parked and resumed by the next login
(the PBX lived on behind a dropped link). In per-connection mode every capture is a run of
its own PBX: when a run's capture ends, that PBX dies, its sessions are never resumed, and
the next login starts the next capture on a fresh PBX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bridge.simulator.replay import Boot, CaptureEvent, ReplaySession


class ReplayRuns:
    def __init__(self, events: list[CaptureEvent], boots: Sequence[Boot | None], captures: int, *,
                 loop: bool, per_connection: bool, pass_span: float,
                 now: Callable[[], float] | None = None) -> None:
        self.events, self.boots, self.loop, self.now = events, boots, loop, now
        self.per_connection, self.pass_span = per_connection, pass_span
        self.captures = [[e for e in events if e.capture == i] for i in range(captures)]
        self.sessions: list[ReplaySession] = []  # every session started, in order
        self.parked: list[ReplaySession] = []
        self.run = 0  # the PBX run now up; counts on past the list's end when looping
        self.run_logins: list[int] = []  # the login (1-based) that started each run

    def take(self, rate: float, login: int) -> ReplaySession:
        """The session for a new login: a parked one of the live run, else a new one."""
        if self.parked:
            return self.parked.pop(0)
        if not self.per_connection:
            session = ReplaySession(self.events, self.loop, rate, boots=self.boots,
                                    pass_span=self.pass_span, now=self.now)
        else:
            count = len(self.captures) or 1
            if len(self.run_logins) <= self.run:
                self.run_logins.append(login)
            events = self.captures[self.run % count] if self.captures else []
            session = ReplaySession(events, False, rate, boots=self.boots, run=self.run,
                                    pass_no=self.run // count, pass_span=self.pass_span, now=self.now)
        self.sessions.append(session)
        return session

    def park(self, session: ReplaySession) -> None:
        if not session.dead:
            self.parked.append(session)

    def ends_run(self, session: ReplaySession) -> bool:
        """Whether `session` running out of events is its PBX dying (per-connection mode,
        not the last capture unless looping)."""
        return (self.per_connection and not session.dead and session.run == self.run
                and (self.loop or session.run < len(self.captures) - 1))

    def died(self, session: ReplaySession) -> None:
        """`session`'s PBX died: none of its run's sessions is resumed; the next run is up."""
        self.run = session.run + 1
        self.parked.clear()
        for other in self.sessions:
            if other.run == session.run:
                other.dead = True
