"""Call classes the log must not get wrong: queue timeout vs abandon (QUEUESTATUS), and
caller names as AMI escapes them (ast_escape_c). Proven on queue_timeout and
caller_names_escaped."""

from __future__ import annotations

import pytest

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import unescape_ami
from bridge.calls.replay import replay_events
from tests.capture_facts import capture_events


def with_queue_status(value: str | None) -> list[AmiMessage]:
    """queue_timeout.ami with its QUEUESTATUS changed (None: the variable removed)."""
    out = []
    for ev in capture_events("queue_timeout"):
        if ev.event == "VarSet" and ev.get("Variable") == "QUEUESTATUS":
            if value is None:
                continue
            ev = AmiMessage([(k, value if k == "Value" else v) for k, v in ev.pairs], ev.received_at)
        out.append(ev)
    return out


def test_queue_timeout_is_unanswered_not_abandoned() -> None:
    (call,) = replay_events(capture_events("queue_timeout"))
    assert (call.outcome, call.outcome_reason) == ("unanswered", "timeout")
    assert call.rung == ["101", "102"] and call.answered_by is None
    assert call.wait_seconds == 7.0 and call.talk_seconds == 0.0
    assert call.caller_name == 'Patrick "Paddy" O\'Brien'


@pytest.mark.parametrize("status", ["TIMEOUT", "FULL", "JOINEMPTY", "LEAVEEMPTY", "JOINUNAVAIL",
                                    "LEAVEUNAVAIL", "WITHDRAW"])
def test_every_queue_give_up_status_is_unanswered_with_its_reason(status: str) -> None:
    (call,) = replay_events(with_queue_status(status))
    assert (call.outcome, call.outcome_reason) == ("unanswered", status.lower())


def test_without_queue_status_the_abandon_is_the_callers() -> None:
    (call,) = replay_events(with_queue_status(None))
    assert (call.outcome, call.outcome_reason) == ("abandoned", "caller_hangup")


def test_continue_settles_nothing() -> None:
    (call,) = replay_events(with_queue_status("CONTINUE"))
    assert call.outcome == "abandoned"


def test_escaped_names_reach_the_log_as_the_caller_sent_them() -> None:
    calls = replay_events(capture_events("caller_names_escaped"))
    assert [(c.caller_number, c.caller_name, c.answered_by) for c in calls] == [
        ("+12125550147", 'Anna "Annie" Smith', "102"),
        ("+33559123456", "D'Artagnan", "101"),
        ("+442079460123", "Back\\Slash Co", "102"),
    ]
    assert {(c.outcome, c.wait_seconds, c.talk_seconds) for c in calls} == {("answered", 2.0, 3.5)}


@pytest.mark.parametrize(("sent", "meant"), [
    ("D\\'Artagnan", "D'Artagnan"),
    ('Anna \\"Annie\\" Smith', 'Anna "Annie" Smith'),
    ("Back\\\\Slash Co", "Back\\Slash Co"),
    ("Why\\?", "Why?"),
    ("Line\\nBreak\\tTab", "Line\nBreak\tTab"),
    ("Иван Петров", "Иван Петров"),
    # Older Asterisk sends names raw: a lone backslash before another letter stays.
    ("C:\\Users", "C:\\Users"),
    ("", ""),
    (None, None),
])
def test_unescape_undoes_ast_escape_c_only(sent: str | None, meant: str | None) -> None:
    assert unescape_ami(sent) == meant
