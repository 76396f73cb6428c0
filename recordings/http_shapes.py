"""What the recordings API sends about a recording: its JSON (never a server path), the
words a user reads when it has no audio, its score cards, and the call's events on its
timeline. The handlers are in recordings.http."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bridge.calls.record import CallRecord
from recordings.review_store import ScoreCard
from recordings.store import RecordingInfo

SERVABLE = ("ok", "stopped")

# Why there is nothing to play, in the user's words (a badge, and the sentence by the player).
NO_AUDIO: dict[str, tuple[str, str]] = {
    "starting": ("still recording", "No audio yet: the call is still being recorded."),
    "recording": ("still recording", "No audio yet: the call is still being recorded."),
    "missing": ("file missing", "No audio: the recording's file is missing (the PBX did not write it, "
                                "or it was moved)."),
    "empty": ("nothing recorded", "No audio: the file holds no sound (nothing was recorded)."),
    "failed": ("not recorded", "No audio: this call was not recorded (the PBX refused to record it)."),
    "external": ("kept by the PBX", "No audio here: the PBX saved this recording outside the recordings "
                                    "folder."),
    "purged": ("deleted (retention)", "No audio: the recording was deleted after the retention period."),
}
GONE = ("no audio", "No audio to play.")  # a status this list does not know yet


def dump_recording(rec: RecordingInfo, url_prefix: str) -> dict[str, Any]:
    """A recording for the pages: `audio_url` when it plays, else `audio_badge` and
    `audio_note` say why not."""
    data = rec.model_dump(mode="json", exclude={"file", "path"})  # no server paths to browsers
    plays = rec.status in SERVABLE and rec.path is not None  # what the audio route serves
    data["audio_url"] = f"{url_prefix}/{rec.id}/audio" if plays else None
    badge, note = (None, None) if plays else NO_AUDIO.get(rec.status, GONE)
    data["audio_badge"], data["audio_note"] = badge, note
    data["problem"] = rec.problem
    return data


def card_json(card: ScoreCard) -> dict[str, Any]:
    return card.model_dump(mode="json") | {"percent": card.percent}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def timeline(call: CallRecord | None, rec: RecordingInfo) -> list[dict[str, Any]]:
    """The call's events, each at its time and at its offset in this recording."""
    items: list[tuple[float, dict[str, Any]]] = []
    if call is not None:
        items.append((call.entered_at, {"event": "entered", "queue": call.queue}))
        for ring in call.rings:
            items.append((ring.started_at, {"event": "rung", "operator": ring.operator}))
            if ring.answered_at is not None:
                items.append((ring.answered_at, {"event": "answered", "operator": ring.operator}))
        for tr in call.transfers:
            items.append((tr.at, {"event": "transferred", "kind": tr.kind, "from": tr.from_operator,
                                  "to": tr.to_operator}))
        if call.ended_at is not None:
            items.append((call.ended_at, {"event": "hung_up", "outcome": call.outcome}))
    items.append((rec.started_at, {"event": "recording_started", "operator": rec.operator}))
    for span in rec.paused:
        items.append((rec.started_at + span.start, {"event": "paused"}))
        if span.end is not None:
            items.append((rec.started_at + span.end, {"event": "resumed"}))
    if rec.stopped_at is not None:
        items.append((rec.stopped_at, {"event": "recording_stopped"}))
    items.sort(key=lambda item: item[0])
    return [{**body, "at": _iso(at), "offset_seconds": round(at - rec.started_at, 3)} for at, body in items]
