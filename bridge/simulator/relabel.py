"""Make a replayed capture look like new calls: fresh Uniqueid/Linkedid values, Local
channel sequence numbers and timestamps. Used by the looping demo (so every pass is a
new set of calls, not repeats the call log would merge) and by the ingest benchmark.

`shift_times` moves every time a message states — not only `Timestamp` — so a replay can
speak in the present (the demo: `AmiSimulator(now=...)`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_ID = re.compile(rb"^((?:\w*Uniqueid|\w*Linkedid|UniqueID): \d+\.)(\d+)", re.M | re.I)
_SEQ = re.compile(rb"(@[A-Za-z0-9_]+-)([0-9a-f]{8})")
_TIMESTAMP = re.compile(rb"^Timestamp: (\d+\.\d+)", re.M)
# Every time `shift_times` moves, in one pattern so a message is scanned once (five scans
# cost more than the rest of a replayed event). Each line is one header; a header matches at
# most one branch (their names differ), so one pass equals one substitution per kind:
# - Timestamp;
# - the epoch part of every channel id field (Uniqueid, Linkedid, DestUniqueid, Cdr's
#   UniqueID...): the name's whole word, taken at once (no backtracking), ends so;
# - app_queue's member times in epoch seconds (0: never);
# - Cdr times, the PBX's local time (cdr_manager): `2026-11-24 08:19:00`;
# - security events' EventTV/SessionTV: `2026-11-24T08:19:00.277+0000`.
# A line starts after `\n` (the text is given one in front): a literal start is found fast.
_TIMES = re.compile(
    rb"\n(?:"
    rb"(Timestamp: )(\d+\.\d+)"
    rb"|(\w*+(?<=(?i:Uniqueid|Linkedid)): )(\d+)(?=\.\d)"
    rb"|((?:LoginTime|LastCall|LastPause): )([1-9]\d*)(?=\r?$)"
    rb"|((?:StartTime|AnswerTime|EndTime): )(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)"
    rb"|(\w*+(?<=TV): )(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d{4})"
    rb")", re.M)
_CDR_FORMAT, _TV_FORMAT = "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"


def relabel(raw: bytes, pass_no: int, time_offset: float = 0.0) -> bytes:
    """Rewrite one message (or a whole capture) for replay pass `pass_no` (0 = as is).

    The pass number is inserted with a fixed width, so ids of different passes can never
    collide; `time_offset` seconds are added to every `Timestamp`.
    """
    if pass_no == 0 and not time_offset:
        return raw
    id_tag = b"%04d" % pass_no
    seq_tag = b"%04x" % pass_no
    out = _ID.sub(lambda m: m[1] + id_tag + m[2], raw)
    out = _SEQ.sub(lambda m: m[1] + seq_tag + m[2], out)
    if time_offset:
        out = _TIMESTAMP.sub(lambda m: b"Timestamp: %.6f" % (float(m[1]) + time_offset), out)
    return out


def _shift_text(text: bytes, fmt: str, seconds: int) -> bytes:
    when = datetime.strptime(text.decode(), fmt) + timedelta(seconds=seconds)
    return when.strftime(fmt).encode()


def shift_times(raw: bytes, seconds: int) -> bytes:
    """Every time in `raw` moved by whole `seconds`: Timestamp, the epoch part of channel
    ids (Asterisk's `<epoch>.<counter>`, so an id still says when its channel was made),
    queue members' LoginTime/LastCall/LastPause, Cdr Start/Answer/EndTime, *TV fields.
    Whole seconds keep an id's epoch equal to its Newchannel's Timestamp second."""
    if not seconds:
        return raw

    def moved(m: re.Match[bytes]) -> bytes:
        kind = m.lastindex  # the value's group: which branch matched
        if kind == 2:
            return b"\n" + m[1] + b"%.6f" % (float(m[2]) + seconds)
        if kind in (4, 6):
            return b"\n" + m[kind - 1] + b"%d" % (int(m[kind]) + seconds)
        if kind == 8:
            return b"\n" + m[7] + _shift_text(m[8], _CDR_FORMAT, seconds)
        value = m[10]
        return b"\n" + m[9] + _shift_text(value[:19], _TV_FORMAT, seconds) + value[19:]

    return _TIMES.sub(moved, b"\n" + raw)[1:]
