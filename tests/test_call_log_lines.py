"""The bridge's log lines: one per call event, the first naming who calls where."""

from __future__ import annotations

import logging

import pytest

from bridge.call_log.log_lines import CallLogLines
from bridge.calls.pipeline import CallPipeline
from tests.capture_facts import capture_events


def lines_of(name: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    pipeline = CallPipeline()
    pipeline.subscribe(CallLogLines())
    with caplog.at_level(logging.INFO, logger="callbridge.calls"):
        pipeline.feed_all(capture_events(name))
    return [r.getMessage() for r in caplog.records if r.name == "callbridge.calls"]


def test_queue_call_lines_as_the_readme_shows_them(caplog: pytest.LogCaptureFixture) -> None:
    assert lines_of("queue_answered", caplog) == [
        "call 1795508277.0 started from +74951234567 (Иван Петров) to queue support",
        "call 1795508277.0 ringing operator 101 [support] for +74951234567 (Иван Петров)",
        "call 1795508277.0 answered by 101 after 2.0s",
        "call 1795508277.0 ended: answered by 101, wait 2.0s, talk 4.4s, caller +74951234567 (Иван Петров)",
    ]


def test_direct_call_names_the_caller_and_the_extension(caplog: pytest.LogCaptureFixture) -> None:
    first = lines_of("direct_call", caplog)[0]
    assert first.endswith("started from +74997001122 (ООО Ромашка) to 102")


def test_every_call_gets_exactly_one_started_line(caplog: pytest.LogCaptureFixture) -> None:
    lines = lines_of("burst_20_calls", caplog)
    started = [line for line in lines if " started from " in line]
    assert len(started) == 20 and not [line for line in started if "unknown number" in line]


def test_in_a_cluster_only_the_owner_of_the_pbx_tells_its_calls(caplog: pytest.LogCaptureFixture) -> None:
    owned: set[str] = set()
    pipeline = CallPipeline()
    pipeline.subscribe(CallLogLines(lambda pbx: pbx in owned))
    events = capture_events("burst_20_calls")
    half = len(events) // 2
    with caplog.at_level(logging.INFO, logger="callbridge.calls"):
        pipeline.feed_all(events[:half])  # following: the owner tells these
        assert not [r for r in caplog.records if r.name == "callbridge.calls"]
        owned.add(pipeline.tracker.pbx)  # took the PBX over
        pipeline.feed_all(events[half:])
    lines = [r.getMessage() for r in caplog.records if r.name == "callbridge.calls"]
    assert lines and any(" ended: " in line for line in lines)
