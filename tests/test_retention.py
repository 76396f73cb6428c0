"""Retention: purge respects retention_days and --dry-run, on SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

import recordings.review_store  # noqa: F401  # its tables on Base.metadata
from bridge.call_log.store import CallLogStore, alembic_config
from bridge.call_log.tables import Base
from recordings.cli import add_recording_commands, run_recording_command
from recordings.retention import purge
from recordings.settings import RecordingSettings
from recordings.store import RecordingInfo, RecordingStore
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_recorder import write_wav

RECORDING_TABLES = {"recording_files", "recording_comments", "recording_scores"}
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # the purge command gets this clock too


def _rec(seq: int, days_old: float, **fields: object) -> RecordingInfo:
    started = (NOW - timedelta(days=days_old)).timestamp()
    values: dict[str, object] = {
        "call_id": f"{int(started)}.{seq}", "seq": 1, "source": "bridge", "operator": "101",
        "channel": "Local/101@agents-00000001;1", "file": None, "path": f"old/{seq}.wav", "format": "wav",
        "started_at": started, "stopped_at": started + 30, "offset_seconds": 2.0, "status": "ok"}
    return RecordingInfo(**(values | fields))


def _alembic(conn: Connection, verb: str, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    getattr(command, verb)(cfg, revision)


async def test_migration_0005_builds_the_recording_tables(store: CallLogStore) -> None:
    def tables(c: Connection) -> set[str]:
        return set(inspect(c).get_table_names())

    async with store.engine.begin() as conn:
        assert await conn.run_sync(tables) >= RECORDING_TABLES
        diff = await conn.run_sync(lambda c: compare_metadata(
            MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata))
        assert [d for d in diff if any(t in repr(d) for t in RECORDING_TABLES)] == []
        await conn.run_sync(_alembic, "downgrade", "0004")
        assert not await conn.run_sync(tables) & RECORDING_TABLES
        await conn.run_sync(_alembic, "upgrade", "head")
        assert await conn.run_sync(tables) >= RECORDING_TABLES


async def _stock(store: CallLogStore, root: Path) -> tuple[RecordingStore, dict[str, int]]:
    recordings = RecordingStore(store)
    ids = {}
    for name, rec in {"old": _rec(1, 40), "older": _rec(2, 100), "fresh": _rec(3, 10),
                      "live": _rec(4, 45, status="recording", stopped_at=None),
                      "gone": _rec(5, 50, status="missing"),
                      "sneaky": _rec(6, 60, path="../outside.wav")}.items():
        if rec.path and ".." not in rec.path and rec.status != "missing":
            write_wav(root / rec.path, 1.0)
        ids[name] = await recordings.save(rec)
    (root.parent / "outside.wav").write_bytes(b"keep me")
    return recordings, ids


async def test_purge_respects_retention_and_dry_run(store: CallLogStore, tmp_path: Path) -> None:
    root = tmp_path / "rec"
    recordings, ids = await _stock(store, root)
    settings = RecordingSettings(directory=root, retention_days=30)

    listed = await purge(recordings, settings, dry_run=True, now=NOW)
    assert sorted(r.id for r in listed.purged) == sorted([ids["old"], ids["older"], ids["gone"]])
    assert [r.id for r, _ in listed.refused] == [ids["sneaky"]]
    assert all((root / f"old/{n}.wav").exists() for n in (1, 2, 3, 4))  # a dry run deletes nothing
    assert {r.status for r in await recordings.search()} >= {"ok", "recording"}

    done = await purge(recordings, settings, now=NOW)
    assert sorted(r.id for r in done.purged) == sorted([ids["old"], ids["older"], ids["gone"]])
    assert done.freed_bytes == (root / "old/3.wav").stat().st_size * 2
    assert not (root / "old/1.wav").exists() and not (root / "old/2.wav").exists()
    assert (root / "old/3.wav").exists() and (root / "old/4.wav").exists()  # fresh, still recording
    assert (tmp_path / "outside.wav").read_bytes() == b"keep me"
    old = await recordings.get(ids["old"])
    assert old is not None and old.status == "purged" and old.purged_at == NOW
    assert (await recordings.get(ids["fresh"])).status == "ok"  # type: ignore[union-attr]
    again = await purge(recordings, settings, now=NOW)
    assert again.purged == []  # purged rows stay, and are not purged twice


async def test_no_retention_means_keep_forever(store: CallLogStore, tmp_path: Path) -> None:
    recordings, _ = await _stock(store, tmp_path / "rec")
    report = await purge(recordings, RecordingSettings(directory=tmp_path / "rec"), now=NOW)
    assert report.cutoff is None and report.purged == []


@pytest.mark.parametrize("dry_run", [True, False])
async def test_the_purge_command(tmp_path: Path, capsys: pytest.CaptureFixture[str], dry_run: bool) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}"  # the command opens its own store
    store = CallLogStore(url)
    await store.open()
    try:
        recordings, ids = await _stock(store, tmp_path / "rec")
        for rec_id in (ids["sneaky"], ids["gone"]):  # leave the command the plain cases
            await recordings.mark_purged(rec_id, NOW)
    finally:
        await store.close()
    parser = argparse.ArgumentParser()
    add_recording_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["recordings", "purge", *(["--dry-run"] if dry_run else [])])

    class Settings:
        database_url = url
        recordings = RecordingSettings(directory=tmp_path / "rec", retention_days=30)

    assert await run_recording_command(args, Settings(), clock=lambda: NOW) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    verb = "would purge" if dry_run else "purged"
    assert sorted(line.split("\t")[1] for line in lines) == sorted(str(ids[n]) for n in ("old", "older"))
    assert all(line.startswith(verb + "\t") for line in lines)
    assert f"{verb} 2 recordings" in out.err
    assert (tmp_path / "rec/old/1.wav").exists() == dry_run
