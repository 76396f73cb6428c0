"""The PBX's clock as the console sees it (screenpop.operator_state.PbxClock): the pages
are told its offset only when it differs by CLOCK_STEP or more from what they have."""

from __future__ import annotations

from screenpop.operator_state import CLOCK_STEP, PbxClock


def test_a_pbx_on_our_time_is_never_announced_but_its_precise_offset_is_kept() -> None:
    now = [1000.0]
    clock = PbxClock(lambda: now[0])
    assert clock.observe(1000.4) is False  # pages have 0 (their Hello): close enough
    assert clock.known and clock.offset == 0.4  # what a new page's Hello says
    now[0] = 1010.0
    assert clock.observe(1010.9) is False  # jitter


def test_a_pbx_off_by_more_than_a_step_is_announced_once_then_on_each_jump() -> None:
    now = [1000.0]
    clock = PbxClock(lambda: now[0])
    assert clock.observe(1000.0 - 300) is True and clock.offset == -300
    assert clock.observe(1000.0 - 300 + CLOCK_STEP / 2) is False
    assert clock.observe(1000.0 - 300 + CLOCK_STEP * 2) is True  # its clock was set
    assert clock.told == clock.offset == -300 + CLOCK_STEP * 2
