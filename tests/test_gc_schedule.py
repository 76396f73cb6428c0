"""The collector's timetable (bridge.gc_schedule): automatic collection only as a safety net,
young passes on the timer, a full pass every `full_every`, the old settings back at stop."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from bridge.gc_schedule import SAFETY_NET, CollectorSchedule


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_the_timer_collects_young_objects_and_now_and_then_all_of_them() -> None:
    slept: list[float] = []
    ticks = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the timer, without the wall clock
        slept.append(seconds)
        if len(slept) > 7:
            ticks.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)

    before = gc.get_threshold()
    schedule = CollectorSchedule(young_every=2.0, full_every=6.0, sleep=sleep)
    schedule.start()
    try:
        assert gc.get_threshold()[0] == SAFETY_NET
        await asyncio.wait_for(ticks.wait(), 5)
    finally:
        await schedule.stop()
    assert gc.get_threshold() == before
    assert slept[:8] == [2.0] * 8
    # Seven passes: every third (6 s of 2 s ticks) a full one.
    assert (schedule.young_passes, schedule.full_passes) == (5, 2)


def test_a_pass_frees_cyclic_garbage() -> None:
    schedule = CollectorSchedule()
    gc.disable()  # only our pass may collect here
    try:
        ref = weakref.ref(Cycle())  # unreachable at once, but only a collection frees a cycle
        assert ref() is not None
        taken = schedule.collect(1)
    finally:
        gc.enable()
    assert ref() is None and taken >= 0 and schedule.young_passes == 1 and schedule.longest == taken


def test_nonsense_timetables_are_refused() -> None:
    with pytest.raises(ValueError):
        CollectorSchedule(young_every=0)
    with pytest.raises(ValueError):
        CollectorSchedule(young_every=5, full_every=1)
