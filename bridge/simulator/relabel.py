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
# The epoch part of every channel id field (Uniqueid, Linkedid, DestUniqueid, Cdr's UniqueID...).
_ID_EPOCH = re.compile(rb"^(\w*(?:Uniqueid|Linkedid): )(\d+)(?=\.\d)", re.M | re.I)
# app_queue's member times in epoch seconds (0: never).
_EPOCH_SECONDS = re.compile(rb"^((?:LoginTime|LastCall|LastPause): )([1-9]\d*)(?=\r?$)", re.M)
# Cdr times, the PBX's local time (cdr_manager): `2026-11-24 08:19:00`.
_CDR_TIME = re.compile(rb"^((?:StartTime|AnswerTime|EndTime): )(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", re.M)
# Security events' EventTV/SessionTV: `2026-11-24T08:19:00.277+0000`.
_TV = re.compile(rb"^(\w*TV: )(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)([+-]\d{4})", re.M)


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
    out = _TIMESTAMP.sub(lambda m: b"Timestamp: %.6f" % (float(m[1]) + seconds), raw)
    out = _ID_EPOCH.sub(lambda m: m[1] + b"%d" % (int(m[2]) + seconds), out)
    out = _EPOCH_SECONDS.sub(lambda m: m[1] + b"%d" % (int(m[2]) + seconds), out)
    out = _CDR_TIME.sub(lambda m: m[1] + _shift_text(m[2], "%Y-%m-%d %H:%M:%S", seconds), out)
    tv = "%Y-%m-%dT%H:%M:%S"
    return _TV.sub(lambda m: m[1] + _shift_text(m[2][:19], tv, seconds) + m[2][19:] + m[3], out)
