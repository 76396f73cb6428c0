"""The demo's looping session: every capture of one PBX run, calls first."""

from __future__ import annotations

from bridge.demo import demo_captures
from tests.capture_facts import CAPTURES


def test_demo_plays_calls_first_and_leaves_the_restart_pair_out() -> None:
    names = [p.stem for p in demo_captures()]
    assert names[:4] == ["queue_answered", "ringall_two_agents", "blind_transfer", "attended_transfer"]
    assert not [n for n in names if n.startswith("pbx_restart_")]
    assert sorted(names) == sorted(n for n in CAPTURES if not n.startswith("pbx_restart_"))
