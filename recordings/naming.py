"""Recording file names and files, and the refusal of any path trickery.

A file name is made only from what the bridge itself validated: the call id (Asterisk's
Linkedid, digits and dots, after the PBX's id and a colon on all PBXes but the first), the
operator's extension (digits), a sequence number and the date. Caller-supplied text
(names, numbers, dialled digits) never reaches a path.
Every path read back (from the database, a request) is resolved again under the root
and refused if it would leave it, symlinks included.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path, PurePosixPath

from recordings.settings import RecordingSettings

# "<pbx>:" (a `[[pbx]]` id) before the Linkedid on every PBX but the first.
CALL_ID = re.compile(r"(?:[a-z0-9][a-z0-9_-]{0,31}:)?[0-9]{1,20}(?:\.[0-9]{1,20})?")
OPERATOR = re.compile(r"[0-9]{1,20}")
# What any request parameter may never contain: a separator, a dot-dot, NUL or control.
_TRICKERY = re.compile(r"\.\.|[/\\\x00-\x1f\x7f]|%2e|%2f|%5c|%00", re.IGNORECASE)


class UnsafePath(ValueError):
    """A name or path that could leave the recordings folder; refused."""


def valid_call_id(value: str | None) -> bool:
    return value is not None and CALL_ID.fullmatch(value) is not None


def valid_operator(value: str | None) -> bool:
    return value is not None and OPERATOR.fullmatch(value) is not None


def check_parameter(name: str, value: str) -> str:
    """A request parameter that must not smuggle a path: raises UnsafePath."""
    if _TRICKERY.search(value):
        raise UnsafePath(f"{name}: path characters are not allowed")
    return value


def recording_relpath(call_id: str, operator: str, seq: int, when: datetime,
                      fmt: str = "wav") -> PurePosixPath:
    """`YYYY/MM/DD/<call_id>-<operator>-<seq>.<fmt>`, relative to the recordings folder; a call
    of another PBX than the first (`<pbx>:<Linkedid>`) under `<pbx>/`: two PBXes may hand out
    the same Linkedid, and each PBX's files can be a folder (a mount) of their own."""
    if not valid_call_id(call_id):
        raise UnsafePath(f"call id {call_id!r} is not [<pbx>:]<digits>[.<digits>]")
    if not valid_operator(operator):
        raise UnsafePath(f"operator {operator!r} is not an extension (digits)")
    if seq < 1 or fmt not in ("wav",):
        raise UnsafePath(f"bad sequence number {seq} or format {fmt!r}")
    pbx, _, linkedid = call_id.rpartition(":")
    day = PurePosixPath(f"{when:%Y}", f"{when:%m}", f"{when:%d}", f"{linkedid}-{operator}-{seq}.{fmt}")
    return pbx / day if pbx else day


def pbx_file(settings: RecordingSettings, relpath: PurePosixPath) -> str:
    """The absolute file name Asterisk is told to write."""
    return str(settings.pbx_root / relpath)


def relative_to_pbx_root(settings: RecordingSettings, file: str | None) -> PurePosixPath | None:
    """A file named by the PBX (MIXMONITOR_FILENAME), relative to the recordings folder,
    or None when it lies elsewhere (the bridge then neither checks nor serves it)."""
    if not file:
        return None
    path = PurePosixPath(file)
    if not path.is_absolute() or ".." in path.parts:
        return None
    try:
        rel = path.relative_to(settings.pbx_root)
    except ValueError:
        return None
    return rel if rel.parts else None


def resolve_under(root: Path, relpath: str | PurePosixPath) -> Path:
    """`root/relpath` as a real path, refused (UnsafePath) if it is absolute, has `..`,
    a backslash or NUL, or resolves (through symlinks) outside `root`."""
    text = str(relpath)
    if not text or "\x00" in text or "\\" in text:
        raise UnsafePath("empty path, NUL or backslash")
    rel = PurePosixPath(text)
    if rel.is_absolute() or ".." in rel.parts:
        raise UnsafePath(f"{text!r} is not a plain relative path")
    base = root.resolve()
    full = (base / rel).resolve()
    if not full.is_relative_to(base):
        raise UnsafePath(f"{text!r} leaves the recordings folder")
    return full


def inspect_file(root: Path, relpath: str) -> tuple[str, int | None, float | None]:
    """(status, size, duration) of a recording file: ok, missing or empty. A WAV with no sound
    after its header (Asterisk's 44-byte file of a recording that never got audio) is empty."""
    try:
        path = resolve_under(root, relpath)
    except UnsafePath:
        return "missing", None, None
    try:
        size = path.stat().st_size
        audio = _wav_audio(path, size) if size else (0, None)
    except FileNotFoundError:
        return "missing", None, None
    except OSError:
        audio = None  # unreadable now: its size says it has something
    if audio is None:  # not a WAV (yet): size alone decides
        return ("ok" if size else "empty"), size, None
    sound, duration = audio
    return ("ok" if sound else "empty"), size, duration


def _wav_audio(path: Path, size: int) -> tuple[int, float | None] | None:
    """(bytes of sound, seconds) of a RIFF/WAVE file; None if it is not one. Counted from the
    file's length, not the header's sizes: Asterisk writes those when it closes the file, so a
    recording cut by a crash says 0 while holding sound (a declared size only trims trailing
    chunks)."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        byte_rate = 0
        while len(chunk := f.read(8)) == 8:
            kind, declared = chunk[:4], int.from_bytes(chunk[4:], "little")
            if kind == b"data":
                sound = max(0, size - f.tell())
                if 0 < declared < sound:
                    sound = declared
                return sound, round(sound / byte_rate, 3) if byte_rate else None
            body = f.read(declared + (declared & 1))  # chunks are padded to an even length
            if kind == b"fmt " and len(body) >= 12:
                byte_rate = int.from_bytes(body[8:12], "little")
    return 0, None  # header cut short before any sound
