"""Writes the call log in the background, so the AMI event loop never waits on the database.

`handle(event)` is a plain, non-blocking subscriber: it keeps only the newest snapshot per
call (ten updates of a ringing call become one write). A background task saves what is
pending in batches; `flush()` is the acknowledgement: when it returns, every snapshot
handed over before the call is committed, so a crash afterwards loses none of them.
A database outage is logged and the batch retried with back-off; nothing is dropped
unless the database rejects one call's data itself (then that call is logged in full).

Finished calls also go to a spool file (`call_log_spool`) the moment they are handed
over, and leave it once committed: `stop(give_up_after=...)` can then give up on a stuck
database without losing them, and `start()` writes what a previous run left there.
Records whose times cannot be true (`call_log_checks`) are refused with one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy.exc import DataError, IntegrityError, StatementError

from bridge.call_log.checks import MAX_CALL_SECONDS, record_problem
from bridge.call_log.spool import CallLogSpool
from bridge.call_log.store import WriteFenced, WriteGuard
from bridge.calls.events import CallEvent
from bridge.calls.record import CallRecord

log = logging.getLogger(__name__)

# Errors that saving the same data again can never fix: isolate the call that causes them.
_REJECTED = (DataError, IntegrityError, ValueError, TypeError)
_ISOLATE_AFTER = 3  # attempts of a whole batch before saving its calls one by one


def describe_error(exc: BaseException) -> str:
    """One line: the driver's own error, without SQLAlchemy's SQL text and parameters."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    text = str(cause).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else type(cause).__name__}"


class CallSaver(Protocol):
    async def save(self, records: list[CallRecord]) -> None: ...


class CallLogWriter:
    def __init__(
        self,
        store: CallSaver,
        *,
        batch_size: int = 200,
        max_delay: float = 0.2,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        spool: CallLogSpool | None = None,
        max_call_seconds: float = MAX_CALL_SECONDS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._store = store
        self._batch_size = batch_size
        self._max_delay = max_delay
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self.spool = spool
        self._max_call_seconds = max_call_seconds
        # Calls a previous run left in the spool (written first at start).
        self.recovered: dict[str, CallRecord] = {}
        # call_id -> (oldest unwritten hand-over number, newest snapshot); first-come order.
        self._pending: dict[str, tuple[int, CallRecord]] = {}
        self._in_flight: dict[str, int] = {}
        self._handed = 0
        self._wake = asyncio.Event()  # something is pending
        self._hurry = asyncio.Event()  # write now: a full batch, a flush or the stop
        self._committed = asyncio.Event()  # replaced after each commit; flush() waits on it
        self._flushers = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # In a cluster: which PBXes' calls this node writes (those it owns), and the check,
        # in each write's transaction, that it still owns them (fencing; cluster.lease).
        self.accepts: Callable[[str], bool] = lambda pbx: True
        self.guard: WriteGuard | None = None
        self.batches_written = 0
        self.calls_written = 0
        self.failures = 0
        self.refused = 0

    # -- subscriber side (sync, never blocks) ---------------------------------------------

    def handle(self, event: CallEvent) -> None:
        """Domain-event subscriber: remember the call's newest snapshot."""
        self.submit(event.call)

    def submit(self, record: CallRecord) -> None:
        if not self.accepts(record.pbx):
            return  # another node owns this PBX: it writes the call
        problem = record_problem(record, self._max_call_seconds)
        if problem is not None:
            self.refused += 1
            log.error("call log: refusing call %s: %s; not stored", record.call_id, problem)
            return
        if self.spool is not None and self.spool.is_open and not record.live:
            try:
                self.spool.append(record)
            except OSError as exc:  # a full disk must not stop event handling; the DB may still take it
                log.error("call log: cannot spool finished call %s to %s: %s", record.call_id,
                          self.spool.path, exc)
        self._queue(record)

    def _queue(self, record: CallRecord) -> None:
        self._handed += 1
        # Keep the oldest unwritten hand-over number: a flush() that waits for it must
        # wait for the newer snapshot that replaces it.
        previous = self._pending.get(record.call_id)
        seq = previous[0] if previous is not None else self._handed
        self._pending[record.call_id] = (seq, record)
        self._wake.set()
        if len(self._pending) >= self._batch_size:
            self._hurry.set()

    @property
    def pending(self) -> int:
        """Calls waiting to be written, the batch being written included."""
        return len(self._pending.keys() | self._in_flight.keys())

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        if self.spool is not None and not self.spool.is_open:
            self.recovered = {rec.call_id: rec for rec in self.spool.open()}
            if self.recovered:
                log.warning("call log: %d finished call(s) from the spool %s were not written by the "
                            "last run; writing them now", len(self.recovered), self.spool.path)
            for rec in self.recovered.values():
                self._queue(rec)  # already in the spool: not appended again
        self._task = asyncio.create_task(self._run(), name="call-log-writer")

    async def stop(self, *, give_up_after: float | None = None) -> bool:
        """Write everything pending, then end the task. With `give_up_after` seconds, stop
        anyway when the database is still down then (finished calls stay in the spool, the
        rest is logged as lost) and return False."""
        if self._task is None:
            return True
        self._stopping = True
        self._wake.set()
        self._hurry.set()
        task = self._task
        try:
            await asyncio.wait_for(asyncio.shield(task), give_up_after)
        except TimeoutError:
            task.cancel()
            # A driver blocked on a locked database may take its own time to honour the
            # cancel (SQLAlchemy rolls back on the same stuck connection): do not wait for it.
            await asyncio.wait({task}, timeout=0.2)
            spooled = self.spool.outstanding if self.spool is not None and self.spool.is_open else 0
            log.error("call log: stopped with %d call(s) not written (database unavailable)%s", self.pending,
                      f"; {spooled} finished call(s) kept in {self.spool.path}, written at the next start"
                      if self.spool is not None and spooled else "")
            return False
        finally:
            self._task = None
            if self.spool is not None:
                self.spool.close()
        return True

    async def flush(self) -> None:
        """Return once every snapshot handed over so far is committed."""
        target = self._handed
        self._flushers += 1
        self._hurry.set()
        try:
            while self._outstanding(target):
                task = self._task
                if task is None or task.done():
                    raise RuntimeError("call log writer is not running: call start() first")
                committed = asyncio.ensure_future(self._committed.wait())
                try:
                    await asyncio.wait({committed, task}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    committed.cancel()
        finally:
            self._flushers -= 1

    def _outstanding(self, target: int) -> bool:
        return any(seq <= target for seq, _ in self._pending.values()) or any(
            seq <= target for seq in self._in_flight.values()
        )

    # -- the background task ----------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._hurry.is_set():
                # Let a burst gather into one batch, but never hold a call longer than this.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._max_delay)
            batch = self._take_batch()
            if not (self._stopping or self._flushers or len(self._pending) >= self._batch_size):
                self._hurry.clear()
            await self._write(batch)

    def _take_batch(self) -> dict[str, tuple[int, CallRecord]]:
        """Up to batch_size calls, ended calls first: a busy stream of live updates must
        not hold back the final state of finished calls."""
        ended = [cid for cid, (_, rec) in self._pending.items() if not rec.live]
        live = (cid for cid, (_, rec) in self._pending.items() if rec.live)
        chosen = ended[: self._batch_size]
        for cid in live:
            if len(chosen) >= self._batch_size:
                break
            chosen.append(cid)
        batch = {cid: self._pending.pop(cid) for cid in chosen}
        self._in_flight = {cid: seq for cid, (seq, _) in batch.items()}
        return batch

    async def _write(self, batch: dict[str, tuple[int, CallRecord]]) -> None:
        attempt = 0
        delay = self._retry_initial
        handled: list[CallRecord] = []  # committed, or rejected for good: out of the spool
        while batch:
            attempt += 1
            started = time.monotonic()
            size, ended = len(batch), sum(not rec.live for _, rec in batch.values())
            try:
                if attempt > _ISOLATE_AFTER:
                    await self._save_one_by_one(batch, handled)
                else:
                    records = [rec for _, rec in batch.values()]
                    await self._save(records)
                    handled.extend(records)
            except WriteFenced as exc:  # the new owner resyncs these calls from the PBX
                log.warning("call log: %s; %d call(s) left to the new owner", exc, len(batch))
                handled.extend(rec for _, rec in batch.values())
                batch = {}
                break
            except asyncio.CancelledError:
                self._requeue(batch)
                self._unspool(handled)
                raise
            except Exception as exc:
                self.failures += 1
                log.error(
                    "call log: saving %d call(s) failed (attempt %d): %s; retrying in %.2fs",
                    len(batch), attempt, describe_error(exc), delay,
                )
                log.debug("call log: the failed save", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                self._refresh(batch)
                continue
            self.batches_written += 1
            self.calls_written += len(batch)  # what _save_one_by_one left: none
            log.debug(
                "call log: wrote %d call(s) (%d ended) in %.0f ms; %d pending",
                size, ended, (time.monotonic() - started) * 1000, len(self._pending),
            )
            break
        self._unspool(handled)
        self._in_flight = {}
        self._committed.set()
        self._committed = asyncio.Event()

    def _unspool(self, records: list[CallRecord]) -> None:
        if self.spool is not None and records:
            try:
                self.spool.committed(records)
            except OSError as exc:  # harmless: a dead entry is written again (upsert) at start
                log.warning("call log: cannot compact the spool %s: %s", self.spool.path, exc)

    async def _save_one_by_one(self, batch: dict[str, tuple[int, CallRecord]],
                               handled: list[CallRecord]) -> None:
        """A batch that keeps failing: save its calls one at a time, so one call whose data
        the database rejects cannot hold back the others. An outage still raises (retry)."""
        for cid, (_, rec) in list(batch.items()):
            try:
                await self._save([rec])
                self.calls_written += 1
            except _REJECTED as exc:
                self._drop_rejected(rec, exc)
            handled.append(rec)
            del batch[cid]

    async def _save(self, records: list[CallRecord]) -> None:
        if self.guard is None:
            await self._store.save(records)
        else:
            await self._store.save(records, guard=self.guard)

    def _refresh(self, batch: dict[str, tuple[int, CallRecord]]) -> None:
        """Before a retry, take the newer snapshots that arrived for the batch's calls."""
        for cid in list(batch):
            newer = self._pending.pop(cid, None)
            if newer is not None:  # its number stays the batch's older one, for flush()
                batch[cid] = (batch[cid][0], newer[1])

    def _requeue(self, batch: dict[str, tuple[int, CallRecord]]) -> None:
        for cid, (seq, rec) in batch.items():
            newer = self._pending.get(cid)  # a newer pending snapshot wins
            self._pending[cid] = (seq, newer[1] if newer is not None else rec)
        self._in_flight = {}

    def _drop_rejected(self, rec: CallRecord, exc: Exception) -> None:
        log.error(
            "call log: the database rejects call %s (%s); it is NOT logged, its record: %s",
            rec.call_id, describe_error(exc), rec.model_dump_json(by_alias=True),
        )
