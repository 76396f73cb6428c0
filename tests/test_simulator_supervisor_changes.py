"""The demo's simulated PBX keeps what a supervisor did: the replayed queue-member events of
a capture (recorded on a PBX where another supervisor paused Boris and added "Reserve Eve")
must not undo a pause, rename or remove a member that the supervisor just set up himself.

The replay session is driven by hand (the server's loop does the same: rewrite, send, apply),
and every event that would go out is read by the wallboard's QueueBoard, as the bridge would.
"""

from __future__ import annotations

from bridge.ami.message import AmiMessage
from bridge.simulator.replay import ReplaySession, load_events
from supervision.queue_board import QueueBoard
from tests.capture_facts import FIXTURES

BORIS, EVE = "Local/102@agents/n", "Local/105@agents/n"


def action(**headers: str) -> AmiMessage:
    return AmiMessage(list(headers.items()))


def play(session: ReplaySession, board: QueueBoard, count: int) -> list[AmiMessage]:
    sent = []
    for _ in range(count):
        item = session.relabelled_next()
        session.state.apply(item.message)
        session.position += 1
        board.handle(item.message)
        sent.append(item.message)
    return sent


def session_of(*names: str, loop: bool = False) -> ReplaySession:
    return ReplaySession(load_events([FIXTURES / f"{n}.ami" for n in names]), loop, 1.0)


def test_a_supervisors_pause_stays_through_replayed_member_events() -> None:
    session, board = session_of("queue_ops", "queue_answered", loop=True), QueueBoard()
    answer = session.state.answer(action(Action="QueuePause", Interface=BORIS, Queue="support", Paused="true",
                                         Reason="coaching"))
    for message in answer.messages[1:]:
        board.handle(AmiMessage(message))
    assert board.queues["support"].members[BORIS].paused
    # Two passes of the loop: the capture's own pause ("lunch") and unpause of Boris, and every
    # QueueMemberStatus (Paused: 0) of the calls.
    sent = play(session, board, 2 * len(session.events))
    boris = board.queues["support"].members[BORIS]
    assert (boris.paused, boris.paused_reason) == (True, "coaching")
    assert session.state.queues["support"].members[BORIS]["Paused"] == "1"
    about_boris = [m for m in sent if m.get("Interface") == BORIS]
    assert about_boris and all(m["Paused"] == "1" and m["PausedReason"] == "coaching" for m in about_boris)
    # The device's own state still comes from the replay.
    assert {m.get("Status") for m in about_boris} >= {"1"}


def test_a_reserve_member_the_supervisor_added_keeps_his_name_and_stays() -> None:
    session, board = session_of("queue_ops"), QueueBoard()
    answer = session.state.answer(action(Action="QueueAdd", Queue="support", Interface=EVE,
                                         MemberName="Eva Reserve", Penalty="2", Paused="false"))
    for message in answer.messages[1:]:
        board.handle(AmiMessage(message))
    sent = play(session, board, len(session.events))
    # The capture adds "Reserve Eve" and later removes her: neither undoes this supervisor's add.
    eve = board.queues["support"].members[EVE]
    assert (eve.name, eve.penalty, eve.membership) == ("Eva Reserve", 2, "dynamic")
    assert session.state.queues["support"].members[EVE]["MemberName"] == "Eva Reserve"
    assert not [m for m in sent if m.event == "QueueMemberRemoved" and m.get("Interface") == EVE]
    assert all(m["MemberName"] == "Eva Reserve" for m in sent if m.get("Interface") == EVE)


def test_a_member_the_supervisor_removed_is_not_brought_back_and_others_replay_as_recorded() -> None:
    session, board = session_of("queue_ops"), QueueBoard()
    session.state.answer(action(Action="QueueAdd", Queue="support", Interface=EVE, MemberName="Eve"))
    session.state.answer(action(Action="QueueRemove", Queue="support", Interface=EVE))
    sent = play(session, board, len(session.events))
    assert EVE not in board.queues["support"].members
    assert EVE not in session.state.queues["support"].members
    # Untouched members: the recorded events, byte for byte (Boris's lunch pause and unpause).
    recorded = [e.message for e in session.events if e.message.get("Interface") == BORIS]
    assert [m.pairs for m in sent if m.get("Interface") == BORIS] == [m.pairs for m in recorded]
