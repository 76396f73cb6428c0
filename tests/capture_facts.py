"""Helpers that read what Asterisk itself says about a capture's calls, to cross-check
the call-state model against the PBX's own accounting (AgentConnect/AgentComplete
HoldTime and TalkTime, QueueCallerAbandon HoldTime, Cdr Duration)."""

from __future__ import annotations

from pathlib import Path

from bridge.ami.message import AmiMessage, iter_capture

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = sorted(p.stem for p in FIXTURES.glob("*.ami"))


def capture_bytes(name: str) -> bytes:
    return (FIXTURES / f"{name}.ami").read_bytes()


def capture_events(name: str) -> list[AmiMessage]:
    """The unsolicited events of a capture (what a live client is handed)."""
    return [m for m in iter_capture(capture_bytes(name)) if m.is_event]


def events_named(name: str, event: str) -> list[AmiMessage]:
    return [m for m in capture_events(name) if m.event == event]
