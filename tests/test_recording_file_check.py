"""The after-call file check: a recording is ok only when its file holds sound.

Asterisk's MixMonitor opens a WAV with its 44-byte header and fills in the sizes when it
closes it; a recording that never got audio is that header alone (`empty`), and one cut by a
crash keeps sound behind a header that still says 0 bytes (`ok`).
"""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import pytest

from recordings.after_call_check import check_file
from recordings.live_recording import LiveRecording
from recordings.naming import inspect_file

REL = "2026/11/24/1795508277.0-101-1.wav"


def write_wav(path: Path, seconds: float) -> bytes:
    """A 16-bit mono 8 kHz WAV of `seconds` of sound (a sawtooth); no frames: header only,
    what MixMonitor leaves when nothing was recorded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(bytes(i % 256 for i in range(int(seconds * 8000) * 2)))
    return path.read_bytes()


def header_only(path: Path) -> bytes:
    return write_wav(path, 0)


def test_a_header_only_wav_is_empty(tmp_path: Path) -> None:
    assert len(header_only(tmp_path / REL)) == 44
    assert inspect_file(tmp_path, REL) == ("empty", 44, 0.0)


def test_a_wav_with_sound_is_ok_with_its_duration(tmp_path: Path) -> None:
    size = len(write_wav(tmp_path / REL, 2.5))
    assert inspect_file(tmp_path, REL) == ("ok", size, 2.5)


def test_sound_behind_a_header_never_finalised_is_ok(tmp_path: Path) -> None:
    # A crash before MixMonitor closed the file: the header still says 0 data bytes.
    path = tmp_path / REL
    header = header_only(path)
    path.write_bytes(header + bytes(8000 * 2 * 3))  # 3 s of 16-bit 8 kHz silence
    assert inspect_file(tmp_path, REL) == ("ok", 44 + 48000, 3.0)


@pytest.mark.parametrize(("content", "status"), [
    (b"", "empty"),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "empty"),  # cut inside the header: no sound
    (b"not a wav, but something", "ok"),  # another format: its size says it has something
])
def test_other_files(tmp_path: Path, content: bytes, status: str) -> None:
    path = tmp_path / REL
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    assert inspect_file(tmp_path, REL)[:2] == (status, len(content))


def test_missing_and_outside_files_are_missing(tmp_path: Path) -> None:
    assert inspect_file(tmp_path, REL) == ("missing", None, None)
    assert inspect_file(tmp_path / "rec", "../" + REL)[0] == "missing"


async def test_the_after_call_check_flags_a_header_only_recording(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    header_only(tmp_path / REL)
    rec = LiveRecording(call_id="1795508277.0", seq=1, source="bridge", channel="Local/101@agents-1;1",
                        operator="101", file=f"/pbx/{REL}", path=REL, started_at=1795508280.0,
                        entered_at=1795508278.0, status="recording", stopped_at=1795508284.4)
    with caplog.at_level(logging.WARNING, "recordings.recorder"):
        await check_file(rec, tmp_path)
    assert (rec.status, rec.size, rec.duration) == ("empty", 44, 0.0)
    assert rec.checked_at is not None
    assert "recording 1 (101) is empty" in caplog.text
