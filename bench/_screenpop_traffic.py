"""Traffic for bench/screenpop_latency.py: the real captures of tests/fixtures, replayed as many
new calls that ring many operators.

The captures only ring extensions 101-104, each from one of a dozen callers. Every pass
takes one capture and rewrites, in the raw bytes only (no event is invented or reshaped):

- Uniqueid/Linkedid values and Local channel sequence numbers (bridge.simulator.relabel),
  so each pass is new calls;
- the operators' extensions 101-104 -> a group of four of the bench's 500 extensions
  (1000-1499; pass k uses group k mod 125, the four roles rotating each time round):
  `Local/101@agents-…;1`, `Local/101@agents/n` interfaces, `Exten: 101`, `AGENT_RING_101`, ...
  (`rewritten_headers()` lists every header the rewrite touches);
- each external caller number -> a number of its own for that pass (same prefix, valid),
  so a CRM lookup is a new caller every call (no lucky cache hits in the 50 ms run);
- timestamps: pass k starts `spacing` recorded seconds after pass k-1 (or, with
  `poisson`, after a random gap of that mean: calls arriving independently, as callers do),
  and the passes are merged in timestamp order, so calls overlap as they would on a busy PBX.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from bridge.calls.replay import replay_bytes
from bridge.simulator.relabel import relabel
from bridge.simulator.server import is_unsolicited, split_capture
from crm_adapters.phone_numbers import normalize

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"

# Every capture with calls in it (queue_ops has none: it only adds/pauses queue members).
CALL_CAPTURES = [
    "queue_answered", "queue_abandoned", "ringall_two_agents", "direct_call", "blind_transfer",
    "attended_transfer", "supervisor_spy", "supervisor_whisper_barge", "recording", "recording_mute",
    "live_channels_snapshot", "burst_20_calls",
]
CAPTURE_OPERATORS = ("101", "102", "103", "104")
FIRST_EXTENSION = 1000
OPERATORS = 500
GROUPS = OPERATORS // len(CAPTURE_OPERATORS)

# 101-104 as a token of their own: not inside a timestamp, id, hex session id or longer number.
_OPERATOR = re.compile(rb"(?<![0-9A-Za-z.])10([1-4])(?![0-9A-Za-z])")
_CALLER_NUM = re.compile(rb"^(?:CallerIDNum|ConnectedLineNum): (\+?\d{10,15})\r?$", re.M)


def extensions() -> list[str]:
    return [str(FIRST_EXTENSION + i) for i in range(OPERATORS)]


def group_extension(group: int, capture_ext: str, turn: int = 0) -> str:
    """The bench extension that plays `capture_ext` (101-104) in `group`; the roles rotate
    with `turn`, so every phone of a group is rung (101 rings far more often than 104)."""
    size = len(CAPTURE_OPERATORS)
    return str(FIRST_EXTENSION + group * size + (CAPTURE_OPERATORS.index(capture_ext) + turn) % size)


@dataclass
class Template:
    name: str
    events: list[tuple[float, bytes]]  # (recorded timestamp, raw message) of the unsolicited events
    callers: list[bytes]  # external caller numbers, longest first
    calls: int  # calls in it (bridge.calls.replay)


@dataclass
class Traffic:
    stream: bytes  # one merged capture, no banner (AmiSimulator takes bytes)
    events: int
    calls: int
    passes: int
    callers: list[str] = field(default_factory=list)  # every caller number used (as sent)
    by_template: dict[str, int] = field(default_factory=dict)  # passes per capture
    span: float = 0.0  # recorded seconds from the first event to the last


def load_template(name: str) -> Template:
    data = (FIXTURES / f"{name}.ami").read_bytes()
    events: list[tuple[float, bytes]] = []
    last = 0.0
    for raw, message in split_capture(data):
        if not is_unsolicited(message):
            continue  # the simulator skips them too (answers to the recorder's actions)
        stamp = message.get("Timestamp")
        last = float(stamp) if stamp else last
        events.append((last, raw))
    callers = sorted({m[1] for _, raw in events for m in _CALLER_NUM.finditer(raw)}, key=len, reverse=True)
    return Template(name, events, callers, len(replay_bytes(data)))


def _caller_for(number: bytes, pass_no: int, index: int) -> bytes:
    """The caller's number for this pass: same country/area prefix, last 6 digits unique."""
    serial = (pass_no * 32 + index) % 1_000_000
    return number[:-6] + b"%06d" % serial


def build(calls: int, *, spacing_per_call: float = 0.05, seed: int = 5,
          captures: list[str] | None = None, poisson: bool = False) -> Traffic:
    """At least `calls` calls; each pass starts `spacing_per_call` x (its calls) recorded
    seconds after the previous one (0.05 s per call: 20 calls per recorded second); with
    `poisson`, each of its calls adds an exponential gap of that mean instead."""
    rng = random.Random(seed)
    gaps = random.Random(seed + 1_000)  # its own: the same passes either way
    templates = [load_template(n) for n in (captures or CALL_CAPTURES)]
    merged: list[tuple[float, int, int, bytes]] = []
    callers: list[str] = []
    by_template: dict[str, int] = {}
    start = min(t.events[0][0] for t in templates)
    total_calls = pass_no = 0
    at = 0.0
    while total_calls < calls:
        pass_no += 1
        if pass_no >= 10_000:
            raise ValueError("at most 9,999 passes (relabel's fixed-width pass tag)")
        template = rng.choice(templates)
        group, turn = (pass_no - 1) % GROUPS, (pass_no - 1) // GROUPS
        by_template[template.name] = by_template.get(template.name, 0) + 1
        mapping = {ext.encode(): group_extension(group, ext, turn).encode() for ext in CAPTURE_OPERATORS}
        numbers = {old: _caller_for(old, pass_no, i) for i, old in enumerate(template.callers)}
        callers += [n.decode() for n in numbers.values()]
        offset = start + at - template.events[0][0]
        for index, (stamp, raw) in enumerate(template.events):
            out = relabel(raw, pass_no, offset)
            out = _OPERATOR.sub(lambda m, mp=mapping: mp[b"10" + m[1]], out)
            for old, new in numbers.items():
                out = out.replace(old, new)
            merged.append((stamp + offset, pass_no, index, out))
        total_calls += template.calls
        at += (sum(gaps.expovariate(1 / spacing_per_call) for _ in range(template.calls)) if poisson
               else spacing_per_call * template.calls)
    merged.sort(key=lambda e: (e[0], e[1], e[2]))
    bad = [n for n in callers if normalize(n, "RU") is None]
    if bad:
        raise ValueError(f"rewritten caller numbers that are not phone numbers: {bad[:5]}")
    span = merged[-1][0] - merged[0][0] if merged else 0.0
    return Traffic(b"".join(e[3] for e in merged), len(merged), total_calls, pass_no, callers, by_template,
                   span)


def rewritten_headers() -> dict[bytes, int]:
    """Which header keys the extension rewrite touches (a check that it hits only operator fields)."""
    keys: dict[bytes, int] = {}
    for name in CALL_CAPTURES:
        for _, raw in load_template(name).events:
            for line in raw.split(b"\r\n"):
                if _OPERATOR.search(line):
                    key = line.split(b":", 1)[0]
                    keys[key] = keys.get(key, 0) + 1
    return keys

