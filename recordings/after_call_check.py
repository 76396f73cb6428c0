"""The after-call file check of one recording: the file exists and is not empty, its WAV
duration read; a missing, empty or refused recording is logged. The recording is final
after it (`checked_at`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

from recordings.live_recording import LiveRecording
from recordings.naming import inspect_file

log = logging.getLogger("recordings.recorder")  # the recorder's log, as before the split


async def check_file(rec: LiveRecording, directory: Path) -> None:
    if rec.status not in ("failed", "purged"):
        if rec.path is None:
            rec.status = "external"  # named by the PBX outside our folder: not ours to check
        else:
            status, size, duration = await asyncio.to_thread(
                inspect_file, directory, rec.path)
            rec.status, rec.size = status, size
            if duration is None and status == "ok" and rec.stopped_at is not None:
                duration = round(rec.stopped_at - rec.started_at, 3)  # not a readable WAV
            rec.duration = duration
    rec.checked_at = datetime.now(UTC)
    if rec.status in ("missing", "empty", "failed"):
        log.warning("call %s: recording %d (%s) is %s: %s", rec.call_id, rec.seq,
                    rec.operator or "-", rec.status, rec.error or rec.file)
