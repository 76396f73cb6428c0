"""Make a replayed capture look like new calls: fresh Uniqueid/Linkedid values, Local
channel sequence numbers and timestamps. Used by the looping demo (so every pass is a
new set of calls, not repeats the call log would merge) and by the ingest benchmark."""

from __future__ import annotations

import re

_ID = re.compile(rb"^((?:\w*Uniqueid|\w*Linkedid|UniqueID): \d+\.)(\d+)", re.M | re.I)
_SEQ = re.compile(rb"(@[A-Za-z0-9_]+-)([0-9a-f]{8})")
_TIMESTAMP = re.compile(rb"^Timestamp: (\d+\.\d+)", re.M)


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
