"""Recording rules of the call-state model (MixMonitor), proven on the recording and
recording_mute captures. Mixed into CallTracker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import unescape_ami
from bridge.calls.events import CallRecordingStarted, CallUpdated
from bridge.calls.working import Recording

if TYPE_CHECKING:
    from bridge.calls.tracker import CallTracker


class RecordingRules:
    def recording_handlers(self: CallTracker) -> dict[str, Callable[[AmiMessage, float], None]]:
        return {"MixMonitorStart": self._on_mixmonitor_start, "MixMonitorStop": self._on_mixmonitor_stop}

    def recording_variables(self: CallTracker) -> dict[str, Callable[[AmiMessage, float], None]]:
        return {"MIXMONITOR_FILENAME": self._on_mixmonitor_filename}

    def _on_mixmonitor_filename(self: CallTracker, ev: AmiMessage, at: float) -> None:
        channel, value = ev.get("Channel"), unescape_ami(ev.get("Value")) or None
        call = self._call_for(ev, at)
        if call is None or not channel or not value:
            return
        rec = call.open_recording(channel)
        if rec is not None and rec.file is None:
            rec.file = value
        else:  # Asterisk sets the variable just before MixMonitorStart
            self._pending_recording_file[channel] = value

    def _on_mixmonitor_start(self: CallTracker, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        if call is None:
            return
        channel = ev["Channel"]
        rec = Recording(channel=channel, started_at=at, operator=call.current_operator,
                        file=self._pending_recording_file.pop(channel, None))
        call.recordings.append(rec)
        self._emit(CallRecordingStarted, call, at, recording=rec.record())

    def _on_mixmonitor_stop(self: CallTracker, ev: AmiMessage, at: float) -> None:
        call = self._call_for(ev, at)
        rec = call.open_recording(ev["Channel"]) if call else None
        if call is not None and rec is not None:
            rec.stopped_at = at
            self._emit(CallUpdated, call, at)
