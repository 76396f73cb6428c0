"""Retention: recordings older than `retention_days` are purged (file deleted, row kept and
marked `purged`, so the call log and the reviews still show that there was one).

`purge(..., dry_run=True)` only lists what would go. A row whose path would leave the
recordings folder is never touched on disk (reported as refused).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from recordings.naming import UnsafePath, resolve_under
from recordings.settings import RecordingSettings
from recordings.store import RecordingInfo, RecordingStore

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    cutoff: datetime | None
    dry_run: bool
    purged: list[RecordingInfo] = field(default_factory=list)  # or, in a dry run, would be
    freed_bytes: int = 0
    refused: list[tuple[RecordingInfo, str]] = field(default_factory=list)


def _delete(root: Path, relpath: str) -> int:
    """Delete one file under `root`; returns the bytes freed (0 if it was already gone)."""
    path = resolve_under(root, relpath)
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


async def purge(store: RecordingStore, settings: RecordingSettings, *, dry_run: bool = False,
                now: datetime | None = None) -> PurgeReport:
    if settings.retention_days is None:
        return PurgeReport(cutoff=None, dry_run=dry_run)
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=settings.retention_days)
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run)
    for rec in await store.older_than(cutoff):
        if rec.status in ("starting", "recording"):
            continue  # a call older than the retention still running: leave it alone
        if rec.path is not None:
            try:
                resolve_under(settings.directory, rec.path)
            except UnsafePath as exc:
                report.refused.append((rec, str(exc)))
                log.warning("recording %s not purged: %s", rec.id, exc)
                continue
        if dry_run:
            report.purged.append(rec)
            report.freed_bytes += rec.size_bytes or 0
            continue
        if rec.path is not None:  # else the file lies outside our folder: not ours to delete
            report.freed_bytes += await asyncio.to_thread(_delete, settings.directory, rec.path)
        assert rec.id is not None
        await store.mark_purged(rec.id, now)
        report.purged.append(rec)
    if not dry_run and report.purged:
        log.info("purged %d recordings older than %s (%d bytes)", len(report.purged),
                 cutoff.date().isoformat(), report.freed_bytes)
    return report
