"""Finished calls not yet committed to the call log, kept in a local file.

The writer appends every finished call (a snapshot with `ended_at`) here as soon as it
receives it: one JSON line, written before `append` returns (in the kernel's cache: a
SIGKILL of this process loses nothing), then fsync'd off the event loop, one fsync at a
time for whatever was appended meanwhile (a power cut may lose the last few ms; an fsync
per call on the loop cost the cluster's owner 13% of its time, bench/cluster.py). Once the database has
committed that snapshot its entry is dead; the file is truncated when nothing is
outstanding and rewritten (atomically) when dead lines dominate. At start the writer
hands what the file still holds to the database again, so a SIGTERM with a stuck
database, or a SIGKILL, loses no finished call. Saving is an upsert by call id: a call
written twice (killed between the commit and the compaction) is still logged once.

One bridge per spool: the file is locked (flock) while open.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from bridge.calls.record import CallRecord

log = logging.getLogger(__name__)

DEFAULT_SPOOL = Path("var/call-log-spool.jsonl")
_COMPACT_AFTER = 256  # dead lines tolerated before a rewrite (when they also outnumber the live ones)


def default_spool_path(database_url: str) -> Path:
    """Beside a SQLite file (`x.sqlite3` -> `x.sqlite3.spool.jsonl`), else `var/call-log-spool.jsonl`."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(f"{url.database}.spool.jsonl")
    return DEFAULT_SPOOL


class SpoolInUse(RuntimeError):
    """Another process holds the spool: two bridges must not share one."""


class CallLogSpool:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._outstanding: dict[str, CallRecord] = {}  # call_id -> the spooled snapshot
        self._lines = 0  # lines in the file, dead ones included
        self._syncing = self._sync_again = False

    @property
    def outstanding(self) -> int:
        """Finished calls in the spool that the database has not committed yet."""
        return len(self._outstanding)

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> list[CallRecord]:
        """Lock the file and return the calls it holds (newest snapshot per call)."""
        if self._fd is not None:
            return list(self._outstanding.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolInUse(f"call log spool {self.path} is in use by another process; "
                             "give each bridge its own (setting call_log_spool)") from None
        self._fd = fd
        self._outstanding, self._lines, clean = self._read()
        if not clean:
            self._rewrite()  # drop a torn last line, so the next append starts on a fresh line
        return list(self._outstanding.values())

    def _read(self) -> tuple[dict[str, CallRecord], int, bool]:
        data = self.path.read_bytes()
        records: dict[str, CallRecord] = {}
        lines = bad = 0
        for number, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            lines += 1
            try:
                rec = CallRecord.model_validate_json(line)
            except (ValidationError, ValueError) as exc:
                bad += 1  # a line cut by a kill mid-write; the snapshot before it, if any, stands
                log.warning("call log spool %s: line %d unreadable, skipped (%s)", self.path, number,
                            str(exc).splitlines()[0])
                continue
            records[rec.call_id] = rec
        return records, lines, bad == 0 and (not data or data.endswith(b"\n"))

    def append(self, rec: CallRecord) -> None:
        """Persist one finished call (fsync'd) before the database is asked to store it."""
        if self._fd is None:
            raise RuntimeError("call log spool is not open")
        os.write(self._fd, rec.model_dump_json().encode() + b"\n")
        self._outstanding[rec.call_id] = rec
        self._lines += 1
        self._sync_soon()

    def _sync_soon(self) -> None:
        if self._syncing:
            self._sync_again = True  # the running fsync may have missed this line: one more after it
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a replay, a test): at once
            _fsync_quietly(self._fd)
            return
        self._syncing = True
        loop.run_in_executor(None, _fsync_quietly, self._fd).add_done_callback(self._synced)

    def _synced(self, _: object) -> None:
        self._syncing = False
        if self._sync_again and self._fd is not None:
            self._sync_again = False
            self._sync_soon()

    def committed(self, records: Iterable[CallRecord]) -> None:
        """These snapshots are in the database: their entries are dead."""
        if self._fd is None:
            return
        for rec in records:
            # Only that very snapshot: a newer one spooled meanwhile must still be written.
            if self._outstanding.get(rec.call_id) == rec:
                del self._outstanding[rec.call_id]
        if not self._outstanding:
            if self._lines:
                os.ftruncate(self._fd, 0)
                # fsync'd off the loop: a power cut that undoes the truncation only writes
                # committed calls again at start (an upsert: each still logged once).
                self._sync_soon()
                self._lines = 0
        elif self._lines - len(self._outstanding) > max(_COMPACT_AFTER, len(self._outstanding)):
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by one holding only the outstanding calls (atomic rename)."""
        assert self._fd is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        payload = b"".join(rec.model_dump_json().encode() + b"\n" for rec in self._outstanding.values())
        with open(tmp, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        # The lock lives on the old inode: take it on the new file before the rename publishes it.
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        os.close(self._fd)
        self._fd = fd
        self._lines = len(self._outstanding)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _fsync_quietly(fd)  # what a pending background fsync has not covered yet
            os.close(fd)  # releases the lock


def _fsync_quietly(fd: int | None) -> None:
    """fsync, where the descriptor may have been closed or replaced meanwhile (a rewrite, the
    close): that file's data was fsync'd by the rewrite or the close itself."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.fsync(fd)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsync'd
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

