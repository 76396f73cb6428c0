"""Oversized AMI frames (issue 14, item 4): an unterminated 32 MB header took 5.9 s, a 60 MB one
18 s and 441 MB (the framer rescanned its whole buffer on every read). Now a message is capped,
the rest of it dropped with one warning, and the framing work is linear in the bytes fed."""

from __future__ import annotations

import logging

import pytest

from bridge.ami.message import AmiFramer

CHUNK = 64 * 1024
HUGE = 32 * 1024 * 1024
CAP = 1024 * 1024


def feed_unterminated_header(framer: AmiFramer) -> list[int]:
    """The attack: `Event: X` then a 32 MB header value with no line end, in 64 KiB reads;
    the framer's buffer size after each read."""
    pending = []
    framer.feed(b"Asterisk Call Manager/7.0.3\r\nEvent: Flood\r\nValue: ")
    chunk = b"A" * CHUNK
    for _ in range(HUGE // CHUNK):
        framer.feed(chunk)
        pending.append(framer.pending_bytes)
    return pending


def test_a_32_mb_unterminated_header_is_framed_in_linear_work_and_bounded_memory(
        caplog: pytest.LogCaptureFixture) -> None:
    framer = AmiFramer()
    with caplog.at_level(logging.WARNING, logger="bridge.ami.message"):
        pending = feed_unterminated_header(framer)
        after = framer.feed(b"\r\n\r\nEvent: Hangup\r\nChannel: PJSIP/101-00000001\r\n\r\n")
    assert max(pending) <= CAP + CHUNK  # memory: never more than the cap and one read
    assert framer.bytes_scanned <= 2 * (HUGE + CAP)  # work: each byte searched about once
    assert [m.event for m in after] == ["Hangup"]  # framing goes on after the dropped message
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "max_message_bytes" in warnings[0].getMessage()


def test_the_cap_is_configurable_and_a_whole_oversized_message_is_dropped() -> None:
    framer = AmiFramer(max_message_bytes=4096)
    big = b"Event: Big\r\nValue: " + b"B" * 5000 + b"\r\n\r\n"
    messages = framer.feed(big + b"Event: Small\r\n\r\n")
    assert [m.event for m in messages] == ["Small"] and framer.dropped_messages == 1
    assert [m.event for m in framer.feed(b"Event: Small\r\n\r\n")] == ["Small"]


def test_a_terminator_split_across_reads_is_still_found() -> None:
    framer = AmiFramer()
    data = b"Event: One\r\nA: 1\r\n\r\nEvent: Two\r\n\r\n"
    events = [m.event for i in range(len(data)) for m in framer.feed(data[i:i + 1])]
    assert events == ["One", "Two"] and framer.bytes_scanned <= 4 * len(data)
