"""The call log's safety nets: the spool of finished calls, and the checks before writing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.call_log.checks import record_problem
from bridge.call_log.spool import CallLogSpool, SpoolInUse, default_spool_path
from bridge.call_log.store import CallLogStore
from bridge.call_log.writer import CallLogWriter
from bridge.calls.events import CallEnded, CallStarted
from bridge.calls.record import CallRecord
from tests.test_call_log import T0, CountingStore, minimal_call, ts


def finished(call_id: str, at: float = T0, **fields: object) -> CallRecord:
    return minimal_call(call_id, at, **{"outcome": "abandoned", "ended_at": ts(9, at), **fields})


def spool_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line]


# -- the spool file --------------------------------------------------------------------------

def test_default_spool_lives_beside_a_sqlite_file_else_under_var() -> None:
    beside = Path("/srv/cb/log.sqlite3.spool.jsonl")
    assert default_spool_path("sqlite+aiosqlite:////srv/cb/log.sqlite3") == beside
    assert default_spool_path("postgresql+asyncpg://u:p@db/cb") == Path("var/call-log-spool.jsonl")


def test_spool_keeps_calls_until_committed_then_empties(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    spool = CallLogSpool(path)
    assert spool.open() == []
    a, b = finished("a"), finished("b")
    spool.append(a)
    spool.append(b)
    assert len(spool_lines(path)) == 2
    spool.committed([a])
    assert spool.outstanding == 1 and len(spool_lines(path)) == 2  # dead line kept until compaction
    newer_b = finished("b", dialed="200")
    spool.append(newer_b)
    spool.committed([b])  # an older snapshot committed: the newer one must stay
    assert spool.outstanding == 1
    spool.committed([newer_b])
    assert spool.outstanding == 0 and path.read_bytes() == b""
    spool.close()


def test_spool_survives_a_torn_last_line_and_reopens_with_what_it_held(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.jsonl"
    spool = CallLogSpool(path)
    spool.open()
    kept = finished("kept")
    spool.append(kept)
    spool.close()
    with path.open("ab") as out:  # a SIGKILL in the middle of an append
        out.write(b'{"call_id": "torn", "entered_')
    again = CallLogSpool(path)
    assert again.open() == [kept]
    assert "line 2 unreadable" in caplog.text
    again.append(finished("next"))
    again.close()
    assert [CallRecord.model_validate_json(line).call_id for line in spool_lines(path)] == ["kept", "next"]


def test_one_spool_per_bridge(tmp_path: Path) -> None:
    first = CallLogSpool(tmp_path / "spool.jsonl")
    first.open()
    with pytest.raises(SpoolInUse, match="in use by another process"):
        CallLogSpool(tmp_path / "spool.jsonl").open()
    first.close()


def test_compaction_rewrites_only_the_outstanding_calls(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    spool = CallLogSpool(path)
    spool.open()
    stuck = finished("stuck")
    spool.append(stuck)
    for i in range(300):
        rec = finished(f"c{i}")
        spool.append(rec)
        spool.committed([rec])
    assert spool.outstanding == 1 and len(spool_lines(path)) <= 257 + 1
    spool.close()
    # Dead lines since the last compaction come back too: written again, an upsert, harmless.
    reopened = CallLogSpool(path).open()
    assert stuck in reopened and len(reopened) <= 258


# -- the writer with a spool ----------------------------------------------------------------

async def test_finished_calls_outlive_a_dead_database_and_are_written_once_at_next_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.jsonl"
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'log.sqlite3'}")
    await store.open()
    dead = CountingStore(store, fail_times=10**9)
    writer = CallLogWriter(dead, max_delay=0.01, retry_initial=0.01, spool=CallLogSpool(path))
    await writer.start()
    live = minimal_call("live", T0)
    writer.handle(CallStarted(at=T0, call=live))
    calls = [finished(f"call-{i}", ts(i)) for i in range(3)]
    for rec in calls:
        writer.handle(CallEnded(at=rec.ended_at, call=rec))
    assert len(spool_lines(path)) == 3  # on disk the moment they were handed over
    await writer.stop(give_up_after=0.2)
    assert "3 finished call(s) kept in" in caplog.text
    assert await store.count() == 0

    again = CallLogWriter(CountingStore(store), max_delay=0.01, spool=CallLogSpool(path))
    await again.start()
    assert set(again.recovered) == {r.call_id for r in calls}
    await again.flush()
    assert [await store.get(r.call_id) for r in calls] == calls
    assert path.read_bytes() == b""  # committed: nothing left to replay
    await again.stop()
    third = CallLogWriter(store, spool=CallLogSpool(path))
    await third.start()
    assert third.recovered == {}
    await third.stop()
    assert await store.count() == 3
    await store.close()


# -- checks before writing ------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "problem"), [
    ({"answered_at": ts(10), "ended_at": ts(4)}, "ended_at is 6.000 s before answered_at (negative talk)"),
    ({"answered_at": ts(-3), "ended_at": ts(4)}, "answered_at is 3.000 s before entered_at (negative wait)"),
    ({"ended_at": ts(-1)}, "ended_at is 1.000 s before entered_at (negative duration)"),
    ({"answered_at": ts(5), "ended_at": ts(5 + 25 * 3600)}, "talk over 86400 s"),
    ({"ended_at": ts(90000)}, "ended_at is 90000 s after entered_at (duration over 86400 s)"),
])
def test_impossible_times_are_named(fields: dict, problem: str) -> None:
    found = record_problem(minimal_call("x", T0, **fields))
    assert found is not None and problem in found


def test_true_times_pass() -> None:
    assert record_problem(minimal_call("x", T0, answered_at=ts(3), ended_at=ts(3))) is None
    assert record_problem(minimal_call("x", T0)) is None  # live
    assert record_problem(minimal_call("x", T0, ended_at=ts(7200)), max_seconds=3600) is not None


async def test_writer_refuses_an_impossible_record_with_one_line(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="bridge.call_log.writer")
    path = tmp_path / "spool.jsonl"
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'log.sqlite3'}")
    await store.open()
    writer = CallLogWriter(store, max_delay=0.01, spool=CallLogSpool(path))
    await writer.start()
    bad = finished("bad-1", answered_at=ts(30), ended_at=ts(12))
    good = finished("good-1")
    writer.handle(CallEnded(at=T0, call=bad))
    writer.handle(CallEnded(at=T0, call=good))
    await writer.flush()
    await writer.stop()
    assert await store.get("bad-1") is None and await store.get("good-1") == good
    assert writer.refused == 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == ("call log: refusing call bad-1: ended_at is 18.000 s before answered_at "
                    "(negative talk); not stored")
    assert "bad-1" not in path.read_text()
    await store.close()
