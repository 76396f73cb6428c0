"""Framing: whole messages only, whatever the TCP chunking."""

from __future__ import annotations

import pytest

from bridge.ami.message import AmiFramer, encode_message, iter_capture, parse_message
from tests.capture_facts import capture_bytes

NAME = "Иван Петров"


def test_utf8_split_across_reads_is_decoded_intact() -> None:
    raw = b"Asterisk Call Manager/13.0.0\r\n" + encode_message(
        {"Event": "NewCallerid", "Channel": "PJSIP/trunk-00000001", "CallerIDName": NAME}
    )
    framer = AmiFramer()
    messages = []
    for i in range(len(raw)):  # one byte per read: every multi-byte char gets split
        messages += framer.feed(raw[i : i + 1])
    assert framer.banner == "Asterisk Call Manager/13.0.0"
    assert len(messages) == 1
    assert messages[0]["CallerIDName"] == NAME
    assert framer.pending_bytes == 0


@pytest.mark.parametrize("chunk", [1, 7, 1000, 65536])
def test_capture_frames_identically_in_any_chunking(chunk: int) -> None:
    data = capture_bytes("ringall_two_agents")
    whole = [m.pairs for m in iter_capture(data)]
    framer = AmiFramer()
    got = []
    for start in range(0, len(data), chunk):
        got += [m.pairs for m in framer.feed(data[start : start + chunk])]
    assert got == whole
    assert len(whole) == 140 + 12  # events + replies, per the captures' README


def test_empty_values_and_case_insensitive_lookup() -> None:
    msg = parse_message("Event: Cdr\r\nAccountCode: \r\nUserField:\r\nTimestamp: 12.5")
    assert msg["AccountCode"] == "" and msg["UserField"] == ""
    assert msg["accountcode"] == "" and "usERfield" in msg
    assert msg.timestamp == 12.5


def test_timestamp_falls_back_to_arrival_time() -> None:
    msg = parse_message("Event: FullyBooted\r\nStatus: Fully Booted", received_at=42.0)
    assert msg.timestamp == 42.0


def test_repeated_headers_are_all_kept() -> None:
    msg = parse_message("Response: Success\r\nChanVariable: A=1\r\nChanVariable: B=2")
    assert msg["ChanVariable"] == "A=1"
    assert msg.getall("chanvariable") == ["A=1", "B=2"]
