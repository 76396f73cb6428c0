"""The demo's stand-in for Asterisk writing MixMonitor files: when the bridge asks the
simulator to record, a short WAV (8 kHz mono, like Asterisk's) appears at the path it
named, so the trainer's review room has something to play."""

from __future__ import annotations

import logging
import math
import struct
import wave
from pathlib import Path

from bridge.ami.message import AmiMessage

log = logging.getLogger("callbridge.demo")

RATE = 8000


def write_demo_wav(path: Path, seconds: float = 8.0) -> None:
    """Two alternating voices' worth of tones with pauses, so seeking is audible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = bytearray()
    for n in range(int(seconds * RATE)):
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


def record_like_a_pbx(action: AmiMessage) -> None:
    if (action.get("Action") or "").lower() != "mixmonitor" or not action.get("File"):
        return
    path = Path(action["File"])
    if not path.is_absolute() or ".." in path.parts:
        return
    try:
        write_demo_wav(path)
    except OSError as exc:
        log.warning("demo recording %s not written: %s", path, exc)
