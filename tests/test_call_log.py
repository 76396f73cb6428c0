"""The call log on SQLite and PostgreSQL: schema, round trip, upsert, export, the writer."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DataError, OperationalError

import bridge.schema  # noqa: F401  # every table shares the one schema (CRM, users, audit, ...)
from bridge.call_log.store import CallLogStore, alembic_config, head_revision
from bridge.call_log.tables import Base, RecordingRow, RingRow, TransferRow
from bridge.call_log.writer import CallLogWriter
from bridge.calls.events import CallAnswered, CallEnded, CallRinging, CallStarted, CallTransferred
from bridge.calls.record import CallRecord, RecordingRecord, RingRecord, TransferRecord
from tests.db_fixtures import Database, database_fixture, store_fixture  # noqa: F401  # fixtures

ROOT = Path(__file__).resolve().parent.parent
T0 = 1795508278.002005  # an AMI Timestamp: microsecond digits


def ts(offset: float, base: float = T0) -> float:
    """A time `offset` seconds after `base`, as the AMI gives it: whole microseconds.
    (The log keeps microseconds: such times come back bit for bit; see the next test.)"""
    return round(base + offset, 6)

CALL_LOG_TABLES = {"calls", "call_rings", "call_transfers", "call_recordings"}
TABLES = set(Base.metadata.tables) | {"alembic_version"}


def answered_call(call_id: str = "1795508340.50", at: float = T0) -> CallRecord:
    """A queue call rung to two operators, answered by 102, handed to 103, recorded."""
    return CallRecord(
        call_id=call_id,
        caller_number="+74951114455",
        caller_name="Мария Иванова",
        queue="support",
        answered_by="102",
        rung=["102", "103"],
        outcome="answered",
        entered_at=at,
        answered_at=ts(2.048113, at),
        ended_at=ts(17.431902, at),
        rings=[
            RingRecord(operator="102", queue="support", member_name="Анна Смирнова", started_at=ts(0.5, at),
                       ended_at=ts(2.048113, at), answered_at=ts(2.048113, at), result="ANSWER"),
            RingRecord(operator="103", queue="support", member_name="Пётр Козлов", started_at=ts(0.5, at),
                       ended_at=ts(2.048113, at), result="CANCEL"),
            RingRecord(operator="103", started_at=ts(9.1, at), ended_at=ts(9.1, at), answered_at=ts(9.1, at),
                       result="ANSWER"),
        ],
        transfers=[TransferRecord(kind="attended", from_operator="102", to_operator="103", at=ts(9.1, at))],
        recordings=[
            RecordingRecord(file=None, channel="PJSIP/102-0000001a", operator="102", started_at=ts(2.1, at),
                            stopped_at=ts(3.0, at)),
            RecordingRecord(file="/var/spool/asterisk/monitor/support-1795508340.50.wav",
                            channel="PJSIP/102-0000001a", operator="102", started_at=ts(3.2, at)),
        ],
    )


def ringing_call(call_id: str = "1795508400.61", at: float = ts(60)) -> CallRecord:
    """The same kind of call while live: still ringing, no outcome yet."""
    return CallRecord(
        call_id=call_id,
        caller_number="+78123334455",
        caller_name="ООО «Ромашка»",
        queue="sales",
        rung=["101"],
        entered_at=at,
        rings=[RingRecord(operator="101", queue="sales", member_name="Иван", started_at=ts(0.3, at))],
    )


def ended(rec: CallRecord, **changes: object) -> CallRecord:
    return rec.model_copy(update=changes)


def minimal_call(call_id: str, at: float, **fields: object) -> CallRecord:
    return CallRecord(call_id=call_id, entered_at=at, **fields)


# -- schema --------------------------------------------------------------------------------


async def test_migration_creates_exactly_the_tables_at_head(store: CallLogStore) -> None:
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        indexes = await conn.run_sync(lambda c: {i["name"] for i in inspect(c).get_indexes("calls")})
        diff = await conn.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}),
                                       Base.metadata)
        )

        def current(sync_conn: object) -> str:
            cfg = alembic_config()
            cfg.attributes["connection"] = sync_conn
            out = io.StringIO()
            cfg.stdout = out
            with redirect_stdout(out):
                command.current(cfg)
            return out.getvalue().strip()

        shown = await conn.run_sync(current)
    assert tables == TABLES and tables >= CALL_LOG_TABLES
    assert {"ix_calls_entered_at", "ix_calls_caller_number"} <= indexes
    assert diff == []  # the migration builds what the ORM tables describe
    assert await store.revision() == head_revision()
    assert shown == f"{head_revision()} (head)"


async def test_open_twice_is_idempotent(database: Database) -> None:
    first = database.store()
    await first.open()
    await first.open()  # same object: no second engine, no error
    await first.save([answered_call()])
    await first.close()
    async with database.store() as again:  # a restart: the upgrade finds nothing to do
        assert await again.revision() == head_revision()
        assert await again.count() == 1
        async with again.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT count(*) FROM alembic_version"))).scalar_one()
        assert versions == 1


def test_alembic_command_line_with_the_bundled_ini(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.sqlite3'}"
    ini = str(ROOT / "bridge" / "migrations" / "alembic.ini")

    def alembic(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "alembic", "-c", ini, "-x", f"url={url}", *args],
                              capture_output=True, text=True, check=True, cwd=tmp_path)
        return done.stdout.strip()

    alembic("upgrade", "head")
    assert alembic("current") == f"{head_revision()} (head)"
    alembic("downgrade", "base")
    assert alembic("current") == ""


# -- round trip, upsert, queries ------------------------------------------------------------


async def test_round_trip_is_exact(store: CallLogStore) -> None:
    calls = [answered_call(), ringing_call(), minimal_call("1795509000.7", ts(700), internal=True,
                                                           dialed="103", attached_mid_call=True,
                                                           outcome="incomplete", ended_at=ts(701))]
    await store.save(calls)
    for original in calls:
        back = await store.get(original.call_id)
        assert back == original
        assert back is not None and back.replay_dict() == original.replay_dict()
    assert await store.get("no-such-call") is None
    assert [c.replay_dict() for c in await store.export()] == [c.replay_dict() for c in calls]


async def test_get_many_finds_the_logged_calls_among_many_ids_in_chunks(
        store: CallLogStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import bridge.call_log.store as store_module

    monkeypatch.setattr(store_module, "_IN_CHUNK", 2)  # several chunks from a few ids
    calls = [minimal_call(f"1795509000.{n}", ts(n)) for n in range(5)]
    await store.save([answered_call(), *calls])
    wanted = [c.call_id for c in calls[1:]] + ["no-such-call", calls[1].call_id]
    found = await store.get_many(wanted)
    assert found == {c.call_id: c for c in calls[1:]}
    assert await store.get_many([]) == {}


async def test_times_keep_their_microseconds(store: CallLogStore) -> None:
    # AMI Timestamps come back bit for bit; a time.time() value (finer than a microsecond)
    # comes back within half a microsecond, its wait and talk seconds unchanged.
    ami = minimal_call("ami", 1795508278.002005, answered_at=1795508280.999999, ended_at=1795508339.000001,
                       outcome="answered")
    clock = 1795508278.123456789
    fine = minimal_call("clock", clock, answered_at=clock + 2.5, ended_at=clock + 63.75, outcome="answered")
    await store.save([ami, fine])
    assert await store.get("ami") == ami
    back = await store.get("clock")
    assert back is not None
    assert abs(back.entered_at - clock) <= 0.5e-6 and abs(back.ended_at - fine.ended_at) <= 0.5e-6  # type: ignore[operator]
    assert back.replay_dict() == fine.replay_dict()
    assert (back.wait_seconds, back.talk_seconds) == (2.5, 61.2)
    async with store.engine.connect() as conn:
        query = text("SELECT entered_at FROM calls WHERE call_id = 'clock'")
        stored = (await conn.execute(query)).scalar_one()
    assert str(stored).startswith("2026-11-24 08:17:58.123457")  # UTC, microseconds


async def test_live_call_saved_again_when_it_changes_and_when_it_ends(store: CallLogStore) -> None:
    live = ringing_call()
    await store.save([live])
    assert await store.get(live.call_id) == live
    assert [c.call_id for c in await store.live_calls()] == [live.call_id]

    at = live.entered_at
    answered = ended(live, answered_by="101", answered_at=ts(4.0, at), rings=[
        RingRecord(operator="101", queue="sales", member_name="Иван", started_at=ts(0.3, at),
                   answered_at=ts(4.0, at), ended_at=ts(4.0, at), result="ANSWER")])
    await store.save([answered])
    final = ended(answered, ended_at=ts(95.5, at), outcome="answered",
                  transfers=[TransferRecord(kind="blind", from_operator="101", to_operator="105",
                                            at=ts(90, at))],
                  recordings=[RecordingRecord(file="/var/spool/asterisk/monitor/x.wav",
                                              channel="PJSIP/101-00000031", operator="101",
                                              started_at=ts(4.1, at), stopped_at=ts(95.5, at))])
    await store.save([final])

    assert await store.get(live.call_id) == final
    assert await store.live_calls() == []
    assert (await store.count(), await store.count(live=True), await store.count(live=False)) == (1, 0, 1)
    async with store.engine.connect() as conn:  # children replaced, not piled up
        for table, expected in ((RingRow, 1), (TransferRow, 1), (RecordingRow, 1)):
            rows = (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            assert rows == expected, table.__tablename__


async def test_a_batch_with_several_snapshots_of_a_call_keeps_the_last(store: CallLogStore) -> None:
    live, done = ringing_call(), ended(ringing_call(), ended_at=ts(70), outcome="abandoned")
    await store.save([live, answered_call(), done])
    assert await store.get(live.call_id) == done
    assert await store.count() == 2


async def test_export_order_and_since(store: CallLogStore) -> None:
    # Saved out of order; two calls entered at the same instant sort by call_id.
    calls = [minimal_call("c", ts(30)), minimal_call("a", T0), minimal_call("b2", ts(10)),
             minimal_call("b1", ts(10)), minimal_call("d", ts(3600), outcome="answered", ended_at=ts(3700))]
    await store.save(calls)
    assert [c.call_id for c in await store.export()] == ["a", "b1", "b2", "c", "d"]
    since = datetime.fromtimestamp(ts(10), UTC)
    assert [c.call_id for c in await store.export(since=since)] == ["b1", "b2", "c", "d"]
    assert [c.call_id for c in await store.export(since=since.astimezone())] == ["b1", "b2", "c", "d"]
    assert [c.call_id for c in await store.export(since=datetime.fromtimestamp(ts(10.000001), UTC))] == [
        "c", "d"]
    until = datetime.fromtimestamp(ts(3600), UTC)
    assert [c.call_id for c in await store.export(since=since, until=until)] == ["b1", "b2", "c"]
    assert [c.call_id for c in await store.live_calls()] == ["a", "b1", "b2", "c"]
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.export(since=datetime(2026, 11, 24))


async def test_real_capture_calls_round_trip(store: CallLogStore) -> None:
    from bridge.calls.replay import replay_bytes
    from tests.capture_facts import CAPTURES, capture_bytes

    calls = [call for name in CAPTURES for call in replay_bytes(capture_bytes(name))]
    assert len(calls) > 20
    await store.save(calls)
    exported = {c.call_id: c for c in await store.export()}
    assert exported == {c.call_id: c for c in calls}


async def test_store_must_be_opened_first(database: Database) -> None:
    closed = database.store()
    with pytest.raises(RuntimeError, match="not open"):
        await closed.get("x")


# -- the writer -------------------------------------------------------------------------------


class CountingStore:
    """Wraps a real store; counts the saves, can fail the first ones like an outage."""

    def __init__(self, inner: CallLogStore, fail_times: int = 0) -> None:
        self.inner, self.fail_times, self.saves = inner, fail_times, 0

    async def save(self, records: list[CallRecord]) -> None:
        self.saves += 1
        if self.fail_times:
            self.fail_times -= 1
            lost = ConnectionError("server closed the connection unexpectedly")
            raise OperationalError("INSERT INTO calls ...", {}, lost)
        await self.inner.save(records)


async def test_writer_coalesces_updates_final_state_wins(store: CallLogStore) -> None:
    counting = CountingStore(store)
    writer = CallLogWriter(counting, max_delay=0.05)
    await writer.start()
    live = ringing_call()
    writer.handle(CallStarted(at=live.entered_at, call=live))
    for i in range(50):  # caller-id, rings, ... many snapshots of one call
        writer.handle(CallRinging(at=ts(i, live.entered_at), call=ended(live, dialed=str(i)), operator="101"))
    final = ended(live, dialed="49", answered_by="101", answered_at=ts(5, live.entered_at),
                  ended_at=ts(20, live.entered_at), outcome="answered")
    writer.handle(CallEnded(at=final.ended_at, call=final))
    assert writer.pending == 1  # handle() only replaced the pending snapshot
    await writer.flush()
    assert writer.pending == 0
    assert counting.saves == 1
    assert await store.count() == 1
    assert await store.get(live.call_id) == final
    await writer.stop()


async def test_flushed_calls_survive_a_crash(database: Database) -> None:
    first = database.store()
    await first.open()
    writer = CallLogWriter(first, max_delay=10)  # a long delay: only flush() writes soon
    await writer.start()
    done = answered_call()
    writer.handle(CallAnswered(at=done.answered_at or 0, call=done, operator="102"))
    writer.handle(CallEnded(at=done.ended_at or 0, call=done))
    await writer.flush()  # the acknowledgement
    writer.handle(CallStarted(at=ts(60), call=ringing_call()))  # handed over, never acknowledged
    # The crash: the task dies, nothing is stopped or flushed, the store is abandoned.
    assert writer._task is not None
    writer._task.cancel()
    await asyncio.gather(writer._task, return_exceptions=True)
    await first.engine.dispose()

    async with database.store() as after_restart:
        assert await after_restart.get(done.call_id) == done
    await first.close()


async def test_writer_retries_after_a_database_failure(
    store: CallLogStore, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = CountingStore(store, fail_times=2)
    writer = CallLogWriter(flaky, max_delay=0.01, retry_initial=0.01)
    await writer.start()
    first = answered_call()
    writer.handle(CallEnded(at=first.ended_at or 0, call=first))
    with caplog.at_level(logging.DEBUG, logger="bridge.call_log.writer"):
        await asyncio.wait_for(writer.flush(), 10)
    assert await store.get(first.call_id) == first
    assert (flaky.saves, writer.failures, writer.batches_written) == (3, 2, 1)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "saving 1 call(s) failed (attempt 1): OperationalError" in errors[0]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("wrote 1 call(s) (1 ended)" in line for line in debug)
    await writer.stop()


async def test_writer_rides_out_a_real_database_error(store: CallLogStore) -> None:
    """The table is briefly gone (as in a botched manual migration): saves fail on the
    real database, the writer keeps retrying, and the call lands once it is back."""
    async with store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE calls RENAME TO calls_away"))
    writer = CallLogWriter(store, max_delay=0.01, retry_initial=0.02, retry_max=0.05)
    await writer.start()
    done = answered_call()
    writer.handle(CallEnded(at=done.ended_at or 0, call=done))
    for _ in range(500):
        if writer.failures >= 2:
            break
        await asyncio.sleep(0.01)
    assert writer.failures >= 2 and writer.pending == 1
    async with store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE calls_away RENAME TO calls"))
    await asyncio.wait_for(writer.flush(), 10)
    assert await store.get(done.call_id) == done
    await writer.stop()


async def test_stop_writes_everything_pending(store: CallLogStore) -> None:
    writer = CallLogWriter(store, batch_size=7, max_delay=10)
    await writer.start()
    calls = [minimal_call(f"1795508{i:03d}.1", ts(i), caller_name="Звонящий", outcome="abandoned",
                          ended_at=ts(i + 3)) for i in range(30)]
    for rec in calls:
        writer.handle(CallEnded(at=rec.ended_at or 0, call=rec))
    await writer.stop()
    assert writer.pending == 0 and writer.batches_written == 5
    assert await store.export() == calls


# -- writer logic without a database ------------------------------------------------------------


class RecordingSaver:
    def __init__(self, reject: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.reject = reject

    async def save(self, records: list[CallRecord]) -> None:
        if self.reject in {r.call_id for r in records}:
            raise DataError("INSERT", {}, ValueError("invalid byte sequence for encoding UTF8: 0x00"))
        self.batches.append([r.call_id for r in records])


async def test_ended_calls_go_first_when_the_queue_is_busy() -> None:
    saver = RecordingSaver()
    writer = CallLogWriter(saver, batch_size=3, max_delay=0.01)
    for i in range(7):
        writer.handle(CallStarted(at=T0, call=minimal_call(f"live{i}", T0)))
    done = minimal_call("done", T0, outcome="abandoned", ended_at=ts(1))
    writer.handle(CallEnded(at=ts(1), call=done))
    assert writer.pending == 8
    await writer.start()
    await writer.flush()
    assert saver.batches[0][0] == "done"
    assert sorted(sum(saver.batches, [])) == sorted([f"live{i}" for i in range(7)] + ["done"])
    await writer.stop()


async def test_a_call_the_database_rejects_does_not_block_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    saver = RecordingSaver(reject="bad")
    writer = CallLogWriter(saver, max_delay=0.01, retry_initial=0.001)
    for call_id in ("a", "bad", "b"):
        writer.handle(CallEnded(at=T0, call=minimal_call(call_id, T0, caller_name="Имя\x00",
                                                         outcome="abandoned", ended_at=ts(1))))
    await writer.start()
    await asyncio.wait_for(writer.flush(), 10)
    assert sorted(sum(saver.batches, [])) == ["a", "b"]
    rejected = [r.getMessage() for r in caplog.records if "rejects call bad" in r.getMessage()]
    assert len(rejected) == 1 and '"call_id":"bad"' in rejected[0]  # its data is in the log
    await writer.stop()


async def test_flush_needs_a_running_writer() -> None:
    writer = CallLogWriter(RecordingSaver())
    writer.handle(CallTransferred(at=T0, call=answered_call(),
                                  transfer=TransferRecord(kind="blind", from_operator="102",
                                                          to_operator="104", at=T0)))
    with pytest.raises(RuntimeError, match="not running"):
        await writer.flush()


async def test_stop_can_give_up_on_a_dead_database(caplog: pytest.LogCaptureFixture) -> None:
    dead = CountingStore(None, fail_times=10**9)  # type: ignore[arg-type]
    writer = CallLogWriter(dead, max_delay=0.01, retry_initial=0.01)
    await writer.start()
    writer.handle(CallEnded(at=T0, call=minimal_call("lost", T0, outcome="abandoned", ended_at=ts(1))))
    await writer.stop(give_up_after=0.2)
    assert not writer.running and writer.pending == 1 and dead.saves >= 2
    assert any("stopped with 1 call(s) not written" in r.getMessage() for r in caplog.records)
