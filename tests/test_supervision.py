"""Supervisor actions: the AMI actions built, and spy sessions from the captures."""

from __future__ import annotations

import pytest

from supervision.pbx_actions import (
    SpyBook,
    SupervisionSettings,
    queue_add_action,
    queue_pause_action,
    queue_remove_action,
    spy_action,
)
from tests.capture_facts import capture_events

SETTINGS = SupervisionSettings()


@pytest.mark.parametrize(("mode", "options"), [("listen", "qdE"), ("whisper", "qwdE"), ("barge", "qBdE")])
def test_spy_originate_matches_what_the_captured_pbx_was_sent(mode: str, options: str) -> None:
    action = spy_action(SETTINGS, "201", "101", mode)
    # The captures' README: Originate Channel=Local/201@supervisor Application=ChanSpy
    # Data=Local/101@agents,q... CallerID="Supervisor <201>"; `d`: the mode switches by DTMF.
    assert action["Channel"] == "Local/201@supervisor"
    assert action["Application"] == "ChanSpy"
    assert action["Data"] == f"Local/101@agents,{options}"
    assert action["CallerID"] == '"Supervisor" <201>'


def test_sip_pbx_templates() -> None:
    sip = SupervisionSettings(supervisor_channel="PJSIP/{ext}", operator_spy_prefix="PJSIP/{ext}",
                              member_interface="PJSIP/{ext}")
    assert spy_action(sip, "201", "101", "barge")["Data"] == "PJSIP/101,qBdE"
    assert queue_add_action(sip, "support", "105", "Reserve Eve", 2)["Interface"] == "PJSIP/105"


def test_hostile_input_never_reaches_the_dialplan() -> None:
    with pytest.raises(ValueError):
        spy_action(SETTINGS, "201", "101&Local/999@x", "listen")
    with pytest.raises(ValueError):
        queue_remove_action(SETTINGS, "support", "105,evil")
    action = spy_action(SETTINGS, "201", "101", "listen", supervisor_name='Eve" <666>')
    assert action["CallerID"] == '"Eve 666" <201>'


def test_queue_actions_shape() -> None:
    assert queue_add_action(SETTINGS, "support", "105", "Reserve Eve") == {
        "Action": "QueueAdd", "Queue": "support", "Interface": "Local/105@agents/n",
        "MemberName": "Reserve Eve", "Penalty": "0", "Paused": "false"}
    assert queue_pause_action(SETTINGS, "102", True, "lunch") == {
        "Action": "QueuePause", "Interface": "Local/102@agents/n", "Paused": "true", "Reason": "lunch"}
    assert queue_pause_action(SETTINGS, "102", False, queue="support")["Paused"] == "false"


def test_spy_sessions_follow_chanspy_events_of_the_whisper_barge_capture() -> None:
    book = SpyBook.create()
    book.requested_mode("202", "whisper")
    book.requested_mode("203", "barge")
    timeline = []
    for ev in capture_events("supervisor_whisper_barge"):
        if book.handle(ev) is not None:
            timeline.append(sorted((s.supervisor, s.operator, s.mode) for s in book.sessions.values()))
    assert timeline == [
        [("202", "101", "whisper")],
        [("202", "101", "whisper"), ("203", "101", "barge")],  # barge starts before whisper stops
        [("203", "101", "barge")],
        [],
    ]


def test_ending_a_spy_session_hangs_up_the_spyer() -> None:
    book = SpyBook.create()
    for ev in capture_events("supervisor_spy"):
        if ev.event == "ChanSpyStart":
            book.handle(ev)
            break
    (session,) = book.of_supervisor("201")
    assert session.call_id == "1795508364.58" and session.operator == "101"
    assert book.hangup_action(session) == {"Action": "Hangup", "Channel": session.spyer_channel}
