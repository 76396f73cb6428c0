"""The wallboard's service: figures against what the captures' events say, alerts, resync.

Most tests run the real bridge: the AMI simulator plays a capture into `BridgeService`,
whose web app gets the wallboard through `supervision.plugin.attach_wallboard`, as in any
running bridge.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from argon2 import PasswordHasher

from bridge.ami.actions import AmiActionTimeout
from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.pipeline import CallPipeline
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator
from supervision.models import AlertThresholds
from supervision.wallboard_service import (
    SupervisorError,
    WallboardService,
    WallboardSettings,
)
from tests.capture_facts import CAPTURES, FIXTURES, capture_events
from web.audit_log import AuditLog
from web.users import UserStore

PASSWORD = "correct horse battery"
USERS = [  # (username, role, display name, extensions)
    ("sam", "supervisor", "Sam Supervisor", ["202"]),
    ("root", "admin", "Admin", []),
    ("anna", "operator", "Anna Operator", ["101"]),
]
# When the captures were recorded (2026-11-24 08:17:57 UTC): the stacks' clocks start there.
RECORDED_AT = next(ev.timestamp for ev in capture_events("queue_answered") if "Timestamp" in ev)


def recorded_clock(start: float = RECORDED_AT) -> Callable[[], float]:
    """Our clock as on the day of the captures, running at the real pace: no test depends on
    the date it runs (the wallboard's "today" comes from this clock, not the machine's)."""
    offset = start - time.time()
    return lambda: time.time() + offset


async def until(predicate: Callable[[], Any], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 (the bridge works on other tasks)
            await asyncio.sleep(0.01)


class WallboardStack:
    """AMI simulator -> BridgeService with the wallboard attached (its web app on a free port)."""

    def __init__(self, tmp: Path, captures: list[str] | list[bytes], *,
                 settings: WallboardSettings | None = None,
                 users: list[tuple[str, str, str, list[str]]] = USERS,
                 clock: Callable[[], float] | None = None, timezone: str = "UTC", **sim_options: Any) -> None:
        self.db = f"sqlite+aiosqlite:///{tmp / 'callbridge.sqlite3'}"
        self.captures = [c if isinstance(c, bytes) else FIXTURES / f"{c}.ami" for c in captures]
        self.settings, self.users, self.sim_options = settings, users, sim_options
        self.clock, self.timezone = clock or recorded_clock(), timezone
        self.sim: AmiSimulator | None = None
        self.ami_port = 0

    async def __aenter__(self) -> WallboardStack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, pbx: bool = True) -> None:
        store = CallLogStore(self.db)
        await store.open()
        try:  # cheap hashes: the login is tested elsewhere, not argon2's cost
            users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
            for name, role, display, exts in self.users:
                if await users.get(name) is None:  # a restarted stack keeps its users
                    await users.add(name, PASSWORD, role=role, display_name=display, extensions=exts)
        finally:
            await store.close()
        if pbx:
            await self.start_pbx()
        else:
            import socket
            with socket.socket() as sock:  # nobody listens here until start_pbx()
                sock.bind(("127.0.0.1", 0))
                self.ami_port = sock.getsockname()[1]
        overrides: dict[str, Any] = {"wallboard": self.settings} if self.settings is not None else {}
        self.bridge = BridgeService(load_settings(
            database_url=self.db, timezone=self.timezone,
            ami={"host": "127.0.0.1", "port": self.ami_port, "ping_interval": 5.0, "backoff_max": 0.3},
            http={"host": "127.0.0.1", "port": 0, "secure_cookie": False}, **overrides), clock=self.clock)
        await self.bridge.start()
        self.wallboard = self.bridge.wallboard
        assert self.bridge.web_address is not None
        self.base_url = "http://{}:{}".format(*self.bridge.web_address)

    async def start_pbx(self, captures: list[bytes] | None = None, **options: Any) -> AmiSimulator:
        if self.sim is not None:
            await self.sim.stop()
        options = {**self.sim_options, **options}
        self.sim = AmiSimulator(captures or self.captures, port=self.ami_port, **options)
        self.ami_port = (await self.sim.start())[1]
        return self.sim

    async def stop(self) -> None:
        await self.bridge.stop()
        if self.sim is not None:
            await self.sim.stop()

    async def replayed(self) -> None:
        """Every capture event has reached the bridge's pipeline (and so the wallboard)."""
        assert self.sim is not None
        await until(lambda: self.bridge.pipeline.events_in >= len(self.sim.events), limit=20)

    async def audit(self, action: str) -> list[Any]:
        await self.wallboard.flush()
        return list(reversed(await AuditLog(self.bridge.store).entries(action=action)))


# -- what the events say ------------------------------------------------------------------------


def _ext(channel: str) -> str:
    return channel.split("/")[1].split("@")[0]  # Local/101@agents-0000001e;1 -> 101


def what_the_events_say(events: list[AmiMessage], target: float = 30.0) -> dict[str, Any]:
    """Queue and operator figures counted straight from a capture's events, apart from the board."""
    queues: dict[str, dict[str, Any]] = {}
    operators: Counter[str] = Counter()
    answered_legs: set[tuple[str, str]] = set()
    abandoned_in: dict[str, tuple[str, bool]] = {}  # caller channel -> (queue, short) of its abandon
    members: list[tuple[str, str, bool, str]] = []  # (ext, queue, paused, reason) at each member event
    for ev in events:
        name, queue = ev.event, ev.get("Queue")
        q = queues.setdefault(queue, {"offered": set(), "waiting": set(), "max_waiting": 0, "answered": 0,
                                      "in_target": 0, "abandoned": 0, "short": 0}) if queue else None
        if name == "QueueCallerJoin":
            q["offered"].add(ev["Channel"])
            q["waiting"].add(ev["Channel"])
            q["max_waiting"] = max(q["max_waiting"], len(q["waiting"]))
        elif name in ("QueueCallerLeave", "QueueCallerAbandon"):
            q["waiting"].discard(ev["Channel"])
            if name == "QueueCallerAbandon":
                q["abandoned"] += 1
                short = int(ev["HoldTime"]) < 5  # a short abandon: left out of SL2 (the reports')
                q["short"] += short
                abandoned_in[ev["Channel"]] = (queue, short)
        elif name == "VarSet" and ev.get("Variable") == "QUEUESTATUS" and ev.get("Channel") in abandoned_in:
            # app_queue reports a timeout as an abandon too; QUEUESTATUS says the caller stayed
            queue, short = abandoned_in.pop(ev["Channel"])
            queues[queue]["abandoned"] -= 1
            queues[queue]["short"] -= short
        elif name == "AgentConnect":
            q["answered"] += 1
            q["in_target"] += int(ev["HoldTime"]) <= target
        elif name == "QueueMemberPause":
            members.append((_ext(ev["Interface"]), queue, ev["Paused"] == "1", ev.get("PausedReason", "")))
        elif name in ("QueueMemberAdded", "QueueMemberRemoved"):
            members.append((_ext(ev["Interface"]), queue, name == "QueueMemberAdded", ""))
        elif name == "DialEnd" and ev["DialStatus"] == "ANSWER" and "@agents-" in ev.get("DestChannel", ""):
            ext = _ext(ev["DestChannel"])
            if (ext, ev["DestLinkedid"]) not in answered_legs:  # one call answered by this phone
                answered_legs.add((ext, ev["DestLinkedid"]))
                operators[ext] += 1
    for q in queues.values():
        handled = q["answered"] + q["abandoned"] - q["short"]
        q["percent"] = round(100.0 * q["in_target"] / handled, 1) if handled else None
    return {"queues": queues, "operators": operators, "members": members}


# A capture cut by a PBX restart ends with a live call: only its sequence is a whole scenario.
WHOLE_SCENARIOS = [c for c in CAPTURES if not c.startswith("pbx_restart_part")]


@pytest.mark.parametrize("capture", WHOLE_SCENARIOS)
async def test_figures_after_each_scenario_equal_what_the_events_say(tmp_path: Path, capture: str) -> None:
    events = capture_events(capture)
    said = what_the_events_say(events)
    waiting_seen: Counter[str] = Counter()
    members_seen: list[tuple[str, str, bool, str]] = []
    async with WallboardStack(tmp_path, [capture]) as stack:
        service = stack.wallboard

        def watch(ev: AmiMessage) -> None:  # after the wallboard's own subscriber, event by event
            for q in service.snapshot().queues:
                waiting_seen[q.name] = max(waiting_seen[q.name], q.waiting)
            if ev.event in ("QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved"):
                ext, queue = _ext(ev["Interface"]), ev["Queue"]
                op = next((o for o in service.snapshot().operators if o.operator == ext), None)
                member = op is not None and queue in op.queues
                if ev.event == "QueueMemberPause" and op is not None:
                    member = member and op.status == "paused"
                members_seen.append((ext, queue, member, op.paused_reason or "" if op else ""))

        stack.bridge.pipeline.subscribe_raw(watch)
        await stack.replayed()
        snap = service.snapshot()
        pbx_says = await stack.bridge.client.send_list_action({"Action": "QueueSummary"})
        summary = {m["Queue"]: m for m in pbx_says}

    queues = {q.name: q for q in snap.queues}
    for name, q in said["queues"].items():
        view = queues[name]
        assert (view.calls_today, view.answered_today, view.abandoned_today) == (
            len(q["offered"]), q["answered"], q["abandoned"]), name
        assert view.answered_in_target_percent == q["percent"], name
        assert view.waiting == len(q["waiting"]) and waiting_seen[name] == q["max_waiting"], name
    for name, view in queues.items():  # the PBX's own count of members and callers agrees
        pbx = summary[name]
        assert (view.logged_in, view.free, view.waiting) == (
            int(pbx["LoggedIn"]), int(pbx["Available"]), int(pbx["Callers"])), name
    ops = {o.operator: o for o in snap.operators}
    assert {ext: o.calls_today for ext, o in ops.items() if o.calls_today} == dict(said["operators"])
    # Reserve added, paused with a reason, unpaused, removed: as each event said.
    assert members_seen == said["members"]
    assert snap.live_calls == []  # every call of the capture hung up


def test_the_oracle_reads_the_burst_as_the_readme_describes() -> None:
    said = what_the_events_say(capture_events("burst_20_calls"))["queues"]["support"]
    assert (len(said["offered"]), said["answered"], said["abandoned"], said["max_waiting"]) == (20, 2, 18, 20)


async def test_burst_raises_the_alert_at_once_and_clears_it_and_both_are_audited(tmp_path: Path) -> None:
    settings = WallboardSettings(thresholds={"support": AlertThresholds(callers_waiting=5,
                                                                        longest_wait_seconds=None)})
    alerts: list[tuple[int, list[str]]] = []
    async with WallboardStack(tmp_path, ["burst_20_calls"], settings=settings) as stack:
        service = stack.wallboard
        stack.bridge.pipeline.subscribe_raw(lambda ev: alerts.append(
            (len(service.board.queues["support"].waiting) if "support" in service.board.queues else 0,
             [a.kind for a in service.board.alerts.values()])) if ev.event == "QueueCallerJoin" else None)
        await stack.replayed()
        raised, cleared = await stack.audit("alert.raised"), await stack.audit("alert.cleared")
    # The fifth caller raised it: synchronously, with the event, not at the next tick.
    assert [kinds for waiting, kinds in alerts if waiting == 4] == [[]]
    assert all(kinds == ["callers_waiting"] for waiting, kinds in alerts if waiting >= 5)
    assert [(e.username, e.target, e.result, e.detail["limit"]) for e in raised] == [
        ("system", "support", "callers_waiting", 5)]
    assert [(e.username, e.target, e.result) for e in cleared] == [("system", "support", "callers_waiting")]
    assert service.board.alerts == {}
    kinds = [a["kind"] for a in service.activity]
    assert kinds.index("alert.raised") < kinds.index("alert.cleared")


class FakeAudit:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    async def record(self, username: str, action: str, **fields: Any) -> None:
        self.lines.append({"username": username, "action": action, **fields})


async def test_longest_wait_threshold_per_queue_raises_with_time_and_clears_when_the_caller_leaves() -> None:
    now = [1000.0]
    audit = FakeAudit()
    off = AlertThresholds(callers_waiting=None, longest_wait_seconds=None)
    three_seconds = AlertThresholds(callers_waiting=None, longest_wait_seconds=3)
    settings = WallboardSettings(default_thresholds=off, thresholds={"support": three_seconds})
    service = WallboardService(settings, send_action=mock.AsyncMock(), audit=audit, clock=lambda: now[0])
    pipeline = CallPipeline()
    service.attach(pipeline)
    events = capture_events("queue_abandoned")  # one caller waits 6 s, then gives up
    join = next(i for i, ev in enumerate(events) if ev.event == "QueueCallerJoin")
    pipeline.feed_all(events[: join + 1])
    await service.flush()
    assert service.board.alerts == {}
    now[0] += 2.0  # no event for a while: the tick sees the wait grow
    await service.flush()
    assert service.board.alerts == {}
    now[0] += 1.5
    await service.flush()
    (alert,) = service.board.alerts.values()
    assert (alert.queue, alert.kind, alert.limit) == ("support", "longest_wait", 3) and alert.value >= 3
    pipeline.feed_all(events[join + 1:])
    await service.flush()
    assert service.board.alerts == {}
    assert [(a["action"], a["username"], a["target"]) for a in audit.lines] == [
        ("alert.raised", "system", "support"), ("alert.cleared", "system", "support")]


async def test_a_flush_returns_once_the_audit_lines_another_flush_took_are_written() -> None:
    class SlowAudit(FakeAudit):  # the database takes its time over the first line
        def __init__(self) -> None:
            super().__init__()
            self.go_on = asyncio.Event()

        async def record(self, username: str, action: str, **fields: Any) -> None:
            await self.go_on.wait()
            await super().record(username, action, **fields)

    audit = SlowAudit()
    limits = AlertThresholds(callers_waiting=1, longest_wait_seconds=None)
    service = WallboardService(WallboardSettings(default_thresholds=limits), send_action=mock.AsyncMock(),
                               audit=audit, clock=lambda: 1000.0)
    pipeline = CallPipeline()
    service.attach(pipeline)
    events = capture_events("queue_abandoned")
    join = next(i for i, ev in enumerate(events) if ev.event == "QueueCallerJoin")
    pipeline.feed_all(events[: join + 1])  # raised: its audit line waits to be written
    ticking = asyncio.create_task(service.flush())  # the tick takes it and waits on the database
    await asyncio.sleep(0)
    asked = asyncio.create_task(service.flush())  # a reader of the audit log flushes too
    await asyncio.sleep(0.05)
    assert not asked.done()  # not before the line the tick took is written
    audit.go_on.set()
    await asyncio.wait_for(asyncio.gather(ticking, asked), 5)
    assert [(a["action"], a["target"]) for a in audit.lines] == [("alert.raised", "support")]


async def test_a_reconnect_replaces_queue_calls_and_spy_sessions_by_what_the_pbx_says(tmp_path: Path) -> None:
    async with WallboardStack(tmp_path, ["supervisor_spy"], speed=2) as stack:
        service = stack.wallboard
        await until(lambda: service.spies.sessions, limit=15)
        (spyer,) = service.spies.sessions
        # What a lost connection can leave behind: a caller who left, a session that ended.
        ghost = AmiMessage([("Event", "QueueCallerJoin"), ("Timestamp", f"{service.now():.6f}"),
                            ("Queue", "support"), ("Channel", "Local/ghost@inbound-00000000;2")])
        service.board.handle(ghost)
        stale = service.spies.sessions[spyer].model_copy(update={"spyer_channel": "Local/299@supervisor-1;1"})
        service.spies.sessions[stale.spyer_channel] = stale
        logins = stack.sim.logins
        await stack.sim.drop_connections()
        await until(lambda: stack.sim.logins > logins and service.snapshot().queues[-1].waiting == 0)
        snap = service.snapshot()
        assert list(service.spies.sessions) == [spyer]  # the live one stays, the ghost is gone
        anna = next(o for o in snap.operators if o.operator == "101")
        assert anna.status == "talking" and anna.with_caller == "Алексей Смирнов"
        assert [c.caller_number for c in snap.live_calls] == ["+74951230000"]  # not the supervisor's call
        support = next(q for q in snap.queues if q.name == "support")
        assert (support.logged_in, support.free, support.waiting) == (2, 1, 0)


def test_spy_sessions_are_rebuilt_from_chanspy_channels_after_a_reconnect() -> None:
    ours = 1_796_531_541.0  # our machine's clock, which the service dates a resync by after FullyBooted
    service = WallboardService(send_action=mock.AsyncMock(), clock=lambda: ours)
    service.on_ami_event(AmiMessage([("Event", "Newexten"), ("Timestamp", "5000.000000")]))  # the PBX's

    def channel(name: str, app: str, data: str, linkedid: str, duration: str = "00:00:05") -> AmiMessage:
        return AmiMessage([("Event", "CoreShowChannel"), ("Channel", name), ("Linkedid", linkedid),
                           ("Application", app), ("ApplicationData", data), ("Duration", duration)])

    channels = [channel("PJSIP/101-00000001", "Queue", "support", "1.1"),
                channel("Local/201@supervisor-0000002a;1", "ChanSpy", "PJSIP/101,qBE", "2.1", "00:01:00"),
                channel("Local/202@supervisor-0000002b;1", "ChanSpy", "Local/103@agents,qwE", "3.1")]
    service.on_resync(channels, [], at=ours)  # dated by the PBX's time, not the service's guess
    sessions = {s.supervisor: s for s in service.spies.sessions.values()}
    assert {k: (s.operator, s.mode, s.call_id) for k, s in sessions.items()} == {
        "201": ("101", "barge", "1.1"), "202": ("103", "whisper", None)}
    assert sessions["201"].started_at == 4940.0
    assert service.spy_calls == {"2.1", "3.1"}
    service.on_resync(channels[:2], [], at=ours + 1)
    assert [s.supervisor for s in service.spies.sessions.values()] == ["201"]


@pytest.mark.parametrize("timezone", ["UTC", "Pacific/Honolulu"])  # there it is still 23 Nov
async def test_todays_figures_come_back_from_the_call_log_after_a_restart(tmp_path: Path,
                                                                          timezone: str) -> None:
    stack = WallboardStack(tmp_path, ["queue_answered"], timezone=timezone)
    async with stack:
        await stack.replayed()
        assert [q.calls_today for q in stack.wallboard.snapshot().queues] == [0, 1]  # sales, support
    stack.captures = [FIXTURES / "queue_ops.ami"]  # the second run sees no calls at all
    async with stack:
        await stack.replayed()
        support = next(q for q in stack.wallboard.snapshot().queues if q.name == "support")
        anna = next(o for o in stack.wallboard.snapshot().operators if o.operator == "101")
        assert str(stack.wallboard.board.tz) == timezone  # `timezone` of the settings reached the board
    assert (support.calls_today, support.answered_today, support.answered_in_target_percent) == (1, 1, 100.0)
    assert (anna.calls_today, anna.average_talk_seconds) == (1, 4.4)


async def test_an_unanswered_listener_phone_and_a_silent_pbx_are_told_and_audited() -> None:
    audit = FakeAudit()
    queued = AmiMessage([("Response", "Success"), ("ActionID", "a1"),
                         ("Message", "Originate successfully queued")])
    send = mock.AsyncMock(return_value=queued)
    service = WallboardService(send_action=send, audit=audit)
    sam = SimpleNamespace(username="sam", display_name="Sam Supervisor", role="supervisor",
                          extensions=["202"])
    result = await service.spy(sam, "101", "whisper")
    assert (result.ok, result.action_id, list(service.pending)) == (True, "a1", ["a1"])
    service.on_ami_event(AmiMessage([("Event", "OriginateResponse"), ("Timestamp", "1000.0"),
                                     ("ActionID", "a1"), ("Response", "Failure"), ("Reason", "3"),
                                     ("Uniqueid", "1000.7")]))
    await service.flush()
    assert service.pending == {} and service.activity[-1]["kind"] == "spy.failed"
    assert (audit.lines[-1]["action"], audit.lines[-1]["username"], audit.lines[-1]["result"]) == (
        "spy.originate_response", "sam", "Failure: Reason 3")

    send.side_effect = AmiActionTimeout("QueuePause", "a2", 10.0)
    result = await service.pause(sam, "102", True, "lunch")
    assert (result.ok, result.response) == (False, "Timeout")
    assert audit.lines[-1]["action"] == "queue.pause" and audit.lines[-1]["result"].startswith("Timeout: ")
    with pytest.raises(SupervisorError):
        await service.queue_remove(sam, "support", "1O5")  # not an extension: never sent
    assert send.await_count == 2
