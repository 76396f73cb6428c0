"""The wallboard's live figures, proven on the real captures."""

from __future__ import annotations

from bridge.ami.message import AmiMessage, iter_capture
from bridge.calls.definitions import ServiceLevelPolicy
from bridge.calls.pipeline import CallPipeline
from supervision.models import AlertThresholds
from supervision.queue_board import QueueBoard
from tests.capture_facts import capture_bytes, capture_events


def play(name: str, board: QueueBoard, on_event=None) -> None:
    pipeline = CallPipeline()
    pipeline.subscribe(board.handle_domain)
    for ev in capture_events(name):
        if "ActionID" in ev:
            continue
        board.handle(ev)
        pipeline.feed(ev)
        if on_event is not None:
            on_event(ev)


def test_alerts_of_one_queue_are_evaluated_alone_when_named() -> None:
    board = QueueBoard(default_thresholds=AlertThresholds(callers_waiting=1, longest_wait_seconds=None))
    for queue in ("support", "sales"):
        board.handle(AmiMessage([("Event", "QueueCallerJoin"), ("Queue", queue),
                                 ("Channel", f"SIP/{queue}-1"), ("Timestamp", "100.0")]))
    raised, _ = board.evaluate_alerts(100.0, "sales")
    assert [a.queue for a in raised] == ["sales"]
    assert board.evaluate_alerts(100.0, "nowhere") == ([], [])
    raised, _ = board.evaluate_alerts(100.0)
    assert [a.queue for a in raised] == ["support"]  # sales' is up already


def test_burst_waiting_rises_to_twenty_and_alert_raises_then_clears() -> None:
    board = QueueBoard(default_thresholds=AlertThresholds(callers_waiting=5, longest_wait_seconds=None))
    waiting, raised, cleared = [], [], []

    def watch(ev) -> None:
        waiting.append(board.snapshot(ev.timestamp).queues[0].waiting if board.queues else 0)
        up, down = board.evaluate_alerts(ev.timestamp)
        raised.extend(up)
        cleared.extend(down)

    play("burst_20_calls", board, watch)
    assert max(waiting) == 20
    assert waiting[-1] == 0
    assert [(a.queue, a.kind) for a in raised] == [("support", "callers_waiting")]
    assert [(a.queue, a.kind) for a in cleared] == [("support", "callers_waiting")]


def test_burst_day_figures() -> None:
    board = QueueBoard(target_seconds=30)
    play("burst_20_calls", board)
    last = capture_events("burst_20_calls")[-1].timestamp
    (support,) = board.snapshot(last).queues
    assert (support.calls_today, support.answered_today, support.abandoned_today) == (20, 2, 18)
    # 2 answered, both within 30 s; the 18 abandons all came within 5 s: short abandons, which the
    # reports' default definition (SL2, bridge.calls.definitions) leaves out
    assert support.answered_in_target_percent == 100.0
    counting_every_abandon = QueueBoard(policy=ServiceLevelPolicy(short_abandon_seconds=0))
    play("burst_20_calls", counting_every_abandon)
    (support,) = counting_every_abandon.snapshot(last).queues
    assert support.answered_in_target_percent == 10.0  # 2 of 20 handled
    assert support.waiting == 0 and support.longest_wait_seconds == 0


def test_ringall_operators_ring_then_one_talks_then_after_call() -> None:
    board = QueueBoard(after_call_seconds=10)
    states = []

    def watch(ev) -> None:
        snap = board.snapshot(ev.timestamp)
        states.append({o.operator: o.status for o in snap.operators})

    play("ringall_two_agents", board, watch)
    assert {"103": "ringing", "104": "ringing"}.items() <= next(s for s in states if "104" in s).items()
    talking = [s for s in states if s.get("104") == "talking"]
    assert talking[0].get("103") == "ringing"  # Clara's CANCEL comes 5 µs after Denis's ANSWER
    assert talking[-1].get("103") == "available"
    end = capture_events("ringall_two_agents")[-1].timestamp
    (denis,) = [o for o in board.snapshot(end).operators if o.operator == "104"]
    assert denis.status == "after_call"
    assert (denis.calls_today, denis.average_talk_seconds) == (1, 4.4)
    assert board.snapshot(end + 60).operators[0].status != "after_call"


def test_talking_operator_shows_the_caller_while_the_call_is_up() -> None:
    board = QueueBoard()
    seen = []

    def watch(ev) -> None:
        if ev.event == "AgentConnect":
            snap = board.snapshot(ev.timestamp + 3)
            seen.append(({o.operator: (o.status, o.with_caller) for o in snap.operators}, snap.live_calls))

    play("queue_answered", board, watch)
    operators, live = seen[0]
    assert operators["101"] == ("talking", "Иван Петров")
    assert [(c.caller_name, c.queue, c.operator) for c in live] == [("Иван Петров", "support", "101")]


def test_queue_ops_reserve_added_paused_and_removed() -> None:
    board = QueueBoard()
    views = {}

    def watch(ev) -> None:
        if ev.event in ("QueueMemberAdded", "QueueMemberPause", "QueueMemberRemoved"):
            snap = board.snapshot(ev.timestamp)
            views.setdefault(ev.event + ev.get("Paused", ""), {o.operator: o for o in snap.operators})

    play("queue_ops", board, watch)
    assert "105" in views["QueueMemberAdded0"]
    boris = views["QueueMemberPause1"]["102"]
    assert (boris.status, boris.paused_reason) == ("paused", "lunch")
    assert views["QueueMemberPause0"]["102"].status == "available"
    assert "105" not in {m.operator for q in board.queues.values() for m in q.members.values()}


def test_queue_status_answer_replaces_live_state() -> None:
    items = [m for m in iter_capture(capture_bytes("live_channels_snapshot"))
             if m.event in ("QueueParams", "QueueMember", "QueueEntry")]
    board = QueueBoard()
    board.apply_queue_status(items, at=1795508405.0)
    snap = board.snapshot(1795508405.0)
    support = next(q for q in snap.queues if q.name == "support")
    assert (support.logged_in, support.waiting) == (2, 0)
    assert support.free == 1  # Anna is in a call (InCall 1), Boris is free
    assert {o.operator for o in snap.operators} == {"101", "102", "103", "104"}


async def test_waiting_callers_come_back_from_queue_status_after_a_reconnect() -> None:
    """Mid-burst the bridge reconnects: the PBX's QueueStatus lists every caller still
    waiting (QueueEntry), and the board's picture equals the one built from the events."""
    import asyncio

    from bridge.ami.client import AmiClient
    from bridge.simulator.server import AmiSimulator
    from tests.capture_facts import FIXTURES

    # What the simulator replays: the unsolicited events (no ActionID, not its FullyBooted).
    events = [e for e in capture_events("burst_20_calls") if "ActionID" not in e and e.event != "FullyBooted"]
    cut = next(i for i, e in enumerate(events) if e.event == "QueueCallerJoin" and e["Position"] == "20")
    from_events = QueueBoard()
    for ev in events[: cut + 1]:
        from_events.handle(ev)
    at = events[cut].timestamp
    async with AmiSimulator([FIXTURES / "burst_20_calls.ami"], speed=None,
                            drop_after_events=cut + 1) as sim:
        client = AmiClient(*sim.address, "callbridge", "callbridge", backoff_initial=0.5)
        await client.start()
        async with asyncio.timeout(10):
            while len(sim.sent_events) < cut + 1:  # noqa: ASYNC110 (polls the simulator)
                await asyncio.sleep(0.01)
            # The PBX goes on slowly after the reconnect, so its answer describes this moment.
            sim.drop_after_events, sim.speed = None, 0.0001
            while sim.logins < 2 or not client.ready:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        items = list(await client.send_list_action({"Action": "QueueStatus"}))
        await client.stop()
    entries = [i for i in items if i.event == "QueueEntry"]
    assert len(entries) == 20
    assert [e["Position"] for e in entries] == [str(n) for n in range(1, 21)]
    assert {e["CallerIDName"] for e in entries} == {f"Caller {n}" for n in range(20)}
    board = QueueBoard()
    board.apply_queue_status(items, at=at)
    (support,) = [q for q in board.snapshot(at).queues if q.name == "support"]
    (expected,) = [q for q in from_events.snapshot(at).queues if q.name == "support"]
    assert support.waiting == expected.waiting == 20
    assert abs(support.longest_wait_seconds - expected.longest_wait_seconds) <= 1.0


def test_waiting_callers_names_are_unescaped_as_the_caller_sent_them() -> None:
    """QueueCallerJoin carries the channel's C-escaped name; QueueEntry (QueueStatus) the raw one."""
    board = QueueBoard()
    seen: set[str | None] = set()

    def watch(ev) -> None:
        for queue in board.queues.values():
            seen.update(name for _, _, name in queue.waiting.values())

    play("caller_names_escaped", board, watch)
    assert seen == {'Anna "Annie" Smith', "D'Artagnan", "Back\\Slash Co"}
    raw = QueueBoard()
    raw.handle(AmiMessage.from_dict({"Event": "QueueEntry", "Queue": "support", "Channel": "x", "Wait": "1",
                                     "CallerIDNum": "+33559123456", "CallerIDName": "Back\\Slash Co"}))
    assert [name for _, _, name in raw.queues["support"].waiting.values()] == ["Back\\Slash Co"]
