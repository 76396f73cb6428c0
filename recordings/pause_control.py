"""Pausing and resuming a call's recordings: MixMonitorMute (both directions) on every
running leg of the call, the paused span marked when the PBX says Success.

`RecordingPauses` is a part of `recordings.recorder.Recorder` (it uses the recorder's
recordings by call, its sender, clock and saver).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from recordings.live_recording import LiveRecording, action_outcome, mark_muted
from recordings.store import RecordingInfo


class NoActiveRecording(LookupError):
    """pause/resume on a call that has no running recording."""


class RecordingControlError(RuntimeError):
    """The PBX refused MixMonitorMute on one or more legs."""


class RecordingPauses:
    _calls: dict[str, list[LiveRecording]]
    _send: Callable[..., Awaitable[Any]]  # send(action, pbx=ID)

    if TYPE_CHECKING:  # the Recorder's
        def pbx_now(self, pbx: str = ...) -> float: ...

        def _touch(self, rec: LiveRecording) -> None: ...

    async def pause(self, call_id: str) -> list[RecordingInfo]:
        """Mute (both directions) every running recording of the call."""
        return await self._set_mute(call_id, True)

    async def resume(self, call_id: str) -> list[RecordingInfo]:
        return await self._set_mute(call_id, False)

    async def _set_mute(self, call_id: str, state: bool) -> list[RecordingInfo]:
        recs = [r for r in self._calls.get(call_id, []) if r.open]
        if not recs:
            raise NoActiveRecording(call_id)
        pbx = recs[0].pbx  # one call, one PBX
        channels = list(dict.fromkeys(r.channel for r in recs))
        results = await asyncio.gather(*(self._send({
            "Action": "MixMonitorMute", "Channel": ch, "Direction": "both", "State": "1" if state else "0",
        }, pbx=pbx) for ch in channels), return_exceptions=True)
        failed = []
        for channel, result in zip(channels, results, strict=True):
            ok, error = action_outcome(result)
            if not ok:
                failed.append(f"{channel}: {error}")
                continue
            for rec in recs:
                if rec.channel == channel and rec.open:
                    mark_muted(rec, state, self.pbx_now(pbx), confirmed=False)
                    self._touch(rec)
        if failed:
            raise RecordingControlError("; ".join(failed))
        return [r.info() for r in recs]
