"""The demo's recordings are as long as the channel lived (the call's talk), in the PBX's
clock, not a fixed length: DemoMixMonitor against a simulated PBX whose clock the test moves."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

from bridge.ami.message import AmiMessage
from bridge.simulator.mixmonitor_files import DemoMixMonitor


class FakeClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def now(self) -> float:
        return self.at


class FakePbx:
    def __init__(self, at: float) -> None:
        self.clock = FakeClock(at)
        self.channels: dict[str, Any] = {}


def seconds_of(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def written_none(*paths: Path) -> bool:
    return not any(path.exists() for path in paths)


def action(name: str, channel: str, file: Path | None = None) -> AmiMessage:
    pairs = [("Action", name), ("Channel", channel)] + ([("File", str(file))] if file else [])
    return AmiMessage(pairs)


async def until(check: Any, limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_a_recording_lasts_as_long_as_its_channel(tmp_path: Path) -> None:
    pbx = FakePbx(1_800_000_000.0)
    pbx.channels |= {"Local/101@agents-00000001;1": {}, "Local/102@agents-00000002;1": {}}
    recorder = DemoMixMonitor(lambda: [pbx], poll_seconds=0.01)
    first, second = tmp_path / "2026/12/06/1.0-101-1.wav", tmp_path / "2026/12/06/2.0-102-1.wav"
    recorder(action("MixMonitor", "Local/101@agents-00000001;1", first))
    recorder(action("MixMonitor", "Local/102@agents-00000002;1", second))
    await recorder.flush()
    assert seconds_of(first) == 0.0  # opened: only the header while the call goes on

    pbx.clock.at += 42.5  # 42.5 s of talk in the PBX's clock (whatever the replay speed)
    del pbx.channels["Local/101@agents-00000001;1"]  # hung up
    await until(lambda: first.stat().st_size > 44)
    await recorder.flush()
    assert abs(seconds_of(first) - 42.5) < 0.01
    assert seconds_of(second) == 0.0  # the other call still talks

    pbx.clock.at += 7.0
    recorder(action("StopMixMonitor", "Local/102@agents-00000002;1"))  # stopped before the hang-up
    await recorder.flush()
    assert abs(seconds_of(second) - 49.5) < 0.01
    await recorder.close()


async def test_paths_that_are_not_the_bridges_are_not_written(tmp_path: Path) -> None:
    pbx = FakePbx(0.0)
    pbx.channels["PJSIP/101-00000001"] = {}
    recorder = DemoMixMonitor(lambda: [pbx], poll_seconds=0.01)
    recorder(action("MixMonitor", "PJSIP/101-00000001", Path("relative.wav")))
    recorder(action("MixMonitor", "PJSIP/101-00000001", tmp_path / ".." / "escape.wav"))
    recorder(action("MixMonitor", "PJSIP/101-00000001"))
    await recorder.close()
    assert written_none(Path("relative.wav"), tmp_path.parent / "escape.wav")
