"""The demo's stand-in for Asterisk writing MixMonitor files: when the bridge asks the
simulator to record a channel, the file appears at the path it named (a WAV that is only
its header, as MixMonitor opens it), and when the channel hangs up (or StopMixMonitor)
it holds as many seconds of sound as the channel lived since, in the PBX's clock — so a
call with 40 s of talk has a 40 s recording, at any replay speed.

    recorder = DemoMixMonitor(lambda: [s.state for s in simulator.sessions])
    simulator.action_hooks.append(recorder)
    ...
    await recorder.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import wave
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bridge.ami.message import AmiMessage

log = logging.getLogger("callbridge.demo")

RATE = 8000
LONGEST = 3600.0  # seconds: a channel that never hangs up does not fill the disk


class _Clock(Protocol):
    def now(self) -> float: ...


class PbxView(Protocol):
    """What the recorder reads of a simulated PBX (bridge.simulator.state.PbxCore)."""

    clock: _Clock
    channels: dict[str, Any]


def write_demo_wav(path: Path, seconds: float = 8.0) -> None:
    """Two alternating voices' worth of tones with pauses, so seeking is audible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for n in range(int(max(0.0, seconds) * RATE)):
        t = n / RATE
        turn = int(t // 1.5) % 3  # caller, operator, silence
        freq = (330.0, 440.0, 0.0)[turn]
        level = 0.0 if freq == 0.0 else 0.25 * (0.6 + 0.4 * math.sin(2 * math.pi * 3 * t))
        frames += struct.pack("<h", int(32767 * level * math.sin(2 * math.pi * freq * t)))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(frames))


def _target(action: AmiMessage) -> Path | None:
    path = Path(action.get("File") or "")
    return path if action.get("File") and path.is_absolute() and ".." not in path.parts else None


@dataclass
class _Open:
    path: Path
    pbx: PbxView | None
    started: float


class DemoMixMonitor:
    """An action hook of the simulator (`action_hooks`): MixMonitor opens a file,
    StopMixMonitor or the channel's hang-up closes it with the channel's time of sound.
    `pbxes` gives the simulated PBXs (their clocks and live channels)."""

    def __init__(self, pbxes: Callable[[], Iterable[PbxView]], *, poll_seconds: float = 0.05) -> None:
        self.pbxes, self.poll_seconds = pbxes, poll_seconds
        self._open: dict[str, _Open] = {}  # channel -> its running recording
        self._watcher: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._last: dict[Path, asyncio.Task[None]] = {}  # a file's writes happen in order

    def __call__(self, action: AmiMessage) -> None:
        name, channel = (action.get("Action") or "").lower(), action.get("Channel") or ""
        if name == "mixmonitor" and (path := _target(action)) is not None:
            pbx = next((p for p in self.pbxes() if channel in p.channels), None)
            self._open[channel] = _Open(path, pbx, pbx.clock.now() if pbx else 0.0)
            self._write(path, 0.0)  # as MixMonitor opens it: the header, no sound yet
            if self._watcher is None or self._watcher.done():
                self._watcher = asyncio.get_running_loop().create_task(self._watch())
        elif name == "stopmixmonitor" and channel in self._open:
            self._close(channel)

    def _close(self, channel: str) -> None:
        rec = self._open.pop(channel)
        seconds = rec.pbx.clock.now() - rec.started if rec.pbx is not None else 0.0
        self._write(rec.path, min(LONGEST, max(0.0, seconds)))

    async def _watch(self) -> None:
        while self._open:
            await asyncio.sleep(self.poll_seconds)
            for channel, rec in list(self._open.items()):
                if rec.pbx is None or channel not in rec.pbx.channels:  # hung up
                    self._close(channel)

    def _write(self, path: Path, seconds: float) -> None:
        before = self._last.get(path)

        async def write() -> None:
            if before is not None:
                await asyncio.gather(before, return_exceptions=True)
            try:
                await asyncio.to_thread(write_demo_wav, path, seconds)
            except OSError as exc:
                log.warning("demo recording %s not written: %s", path, exc)

        task = asyncio.get_running_loop().create_task(write())
        self._writes.add(task)
        self._last[path] = task
        task.add_done_callback(self._writes.discard)
        task.add_done_callback(lambda done: self._forget(path, done))

    def _forget(self, path: Path, done: asyncio.Task[None]) -> None:
        if self._last.get(path) is done:
            del self._last[path]

    async def flush(self) -> None:
        """Every file write started so far is done."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.flush()
