"""Exactly one owner per PBX across the cluster, with fencing.

Ownership is a PostgreSQL session-level advisory lock (`pg_advisory_lock`) held on a
connection of its own, not a pool's: the lock lives exactly as long as that server session,
so a node that crashes or is cut off loses it without anyone having to expire anything, and
no lease times need to agree between machines.

- The server must notice a dead node: the session sets small TCP keep-alives and a TCP user
  time-out, so a silent peer's session (and lock) is dropped within a few seconds.
- The node must notice first. An owner asks `SELECT 1` every `check_interval`; an answer
  later than `check_timeout` (or any error, or the connection closing) fences it at once:
  `owned` turns False and `on_lost` runs before anything else, so it stops acting on the PBX
  within `check_interval + check_timeout` of its last good answer. The keep-alives are
  derived from those two and last at least two seconds longer, so a cut-off owner has
  stopped before the server lets the next one in. A stalled connection is `terminate()`d,
  never waited on.
- A session killed on the server (pg_terminate_backend, a restart) frees the lock at once,
  and the owner learns of it from the same kill: the next owner may be granted the lock a
  moment before the old one has fenced itself.
- Whatever slips through such a window (that moment, a whole VM paused mid-write) is caught
  by the fencing epoch: every takeover bumps `pbx_owners.epoch`, and a writer calls `check_epoch`
  inside its write transaction. Its `FOR SHARE` row lock makes a concurrent takeover's bump
  wait for the writer's commit, so a write is either before the takeover or refused.

The lock needs a direct connection (or a session-pooling pgbouncer): transaction pooling
would hand the session, and so the lock, to somebody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal, cast

import asyncpg
from sqlalchemy import BigInteger, String, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bridge.call_log.tables import Base, UtcDateTime
from cluster.balance import HOLDERS, LeaseGroup, application_name, heir

log = logging.getLogger("callbridge.cluster")

LeaseState = Literal["owner", "standby", "stopped"]
# Versioned: another use of advisory locks in the same database will not pick the same keys.
_LOCK_NAMESPACE = b"callbridge/pbx-owner/v1\x00"
_BUMP_EPOCH = """
INSERT INTO pbx_owners (pbx, node, epoch, since) VALUES ($1, $2, 1, now())
ON CONFLICT (pbx) DO UPDATE SET epoch = pbx_owners.epoch + 1, node = EXCLUDED.node, since = EXCLUDED.since
RETURNING epoch
"""


class PbxOwnerRow(Base):
    """Who took each PBX last, and the fencing epoch: one more at every takeover."""

    __tablename__ = "pbx_owners"

    pbx: Mapped[str] = mapped_column(String, primary_key=True)
    node: Mapped[str] = mapped_column(String, nullable=False)
    epoch: Mapped[int] = mapped_column(BigInteger, nullable=False)
    since: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)


PBX_OWNERS = PbxOwnerRow.__table__


class Fenced(Exception):
    """A writer's epoch is no longer the PBX's: another node has taken it over."""

    def __init__(self, pbx: str, epoch: int, current: int | None) -> None:
        super().__init__(f"pbx {pbx}: epoch {epoch} is fenced off (the current epoch is {current})")
        self.pbx, self.epoch, self.current = pbx, epoch, current


async def current_epoch(db: AsyncSession | AsyncConnection, pbx: str) -> int | None:
    """The PBX's epoch, row locked `FOR SHARE` until the caller's transaction ends (on
    PostgreSQL; SQLite has one writer at a time anyway and no FOR SHARE)."""
    query = select(PBX_OWNERS.c.epoch).where(PBX_OWNERS.c.pbx == pbx).with_for_update(read=True)
    return (await db.execute(query)).scalar_one_or_none()


async def check_epoch(db: AsyncSession | AsyncConnection, pbx: str, epoch: int) -> bool:
    """Whether `epoch` is still the PBX's. Call it inside the write transaction: the row lock
    holds a takeover back until that transaction ends."""
    return await current_epoch(db, pbx) == epoch


async def require_epoch(db: AsyncSession | AsyncConnection, pbx: str, epoch: int) -> None:
    """`check_epoch`, raising `Fenced` (so the transaction rolls back) when it says no."""
    current = await current_epoch(db, pbx)
    if current != epoch:
        raise Fenced(pbx, epoch, current)


def lock_key(pbx: str) -> int:
    """The PBX's advisory lock key: a signed 64-bit int, the same on every node and release."""
    digest = hashlib.sha256(_LOCK_NAMESPACE + pbx.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def asyncpg_dsn(dsn: str) -> str:
    """A libpq-style DSN for asyncpg from a SQLAlchemy URL (`postgresql+asyncpg://...`).
    Query parameters stay: asyncpg sends unknown ones as session settings (`search_path`)."""
    url = make_url(dsn)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(f"the PBX lease needs PostgreSQL, not {url.get_backend_name()}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def keepalive_settings(check_interval: float, check_timeout: float) -> dict[str, str]:
    """Session settings under which the server drops a silent node's session (so its lock)
    at least two seconds after that node has fenced itself (whole seconds: the kernel's unit)."""
    idle = max(1, math.ceil(check_interval + check_timeout))
    interval, count = 1, 2
    return {
        "tcp_keepalives_idle": str(idle),
        "tcp_keepalives_interval": str(interval),
        "tcp_keepalives_count": str(count),
        # Keep-alives stay quiet while sent data is unacknowledged; this bounds that case too.
        "tcp_user_timeout": str((idle + interval * count) * 1000),
    }


def _describe(exc: BaseException, check_timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer from PostgreSQL within {check_timeout:g}s"
    if isinstance(exc, _LeaseProblem):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


class _LeaseProblem(Exception):
    """A problem whose message is the whole reason."""


class PbxLease:
    """This node's claim on one PBX: standing by, owning it, or stopped.

    `on_acquired(epoch)` runs (it may be a coroutine, run as a task beside the checks) when the
    node becomes the owner; `on_lost(reason)` runs, synchronously, exactly once after each
    `on_acquired` — when the lease is lost, when `on_acquired` fails, and on `stop()` — and
    before another node can be let in by this one.
    """

    def __init__(self, dsn: str, pbx: str, node: str, *, check_interval: float = 0.5,
                 check_timeout: float = 1.0, retry_interval: float = 1.0,
                 on_acquired: Callable[[int], Awaitable[None] | None],
                 on_lost: Callable[[str], None], clock: Callable[[], float] = time.monotonic,
                 connect_timeout: float = 5.0, standby_wait: float = 10.0,
                 group: LeaseGroup | None = None) -> None:
        if min(check_interval, check_timeout, retry_interval, connect_timeout, standby_wait) <= 0:
            raise ValueError("lease intervals and time-outs must be positive")
        if group is not None and group.node != node:
            raise ValueError(f"a lease of node {node} in the lease group of node {group.node}")
        self.pbx, self.node = pbx, node
        self.key = lock_key(pbx)
        self._dsn = asyncpg_dsn(dsn)
        self._check_interval, self._check_timeout = check_interval, check_timeout
        self._retry_interval, self._connect_timeout = retry_interval, connect_timeout
        self._standby_wait = standby_wait  # one lock request's wait, at most, while another node owns it
        self._on_acquired, self._on_lost, self._clock = on_acquired, on_lost, clock
        self._group = group  # the node's other leases: a grant may be handed on (cluster.balance)
        self._settings = {**keepalive_settings(check_interval, check_timeout),
                          "application_name": application_name(pbx, node)}
        self._state: LeaseState = "stopped"
        self._since = clock()
        self._epoch: int | None = None
        self._conn: asyncpg.Connection | None = None
        self._locked = False  # the lock is held on self._conn (owner, or between grant and epoch)
        self._closed = asyncio.Event()  # self._conn went away under us
        self._task: asyncio.Task[None] | None = None
        self._acquired_task: asyncio.Task[None] | None = None
        self._problem: str | None = None  # the last problem logged: one line per new problem
        self.backend_pid: int | None = None  # the server session of self._conn (pg_locks, pg_stat_activity)

    @property
    def owned(self) -> bool:
        return self._state == "owner"

    @property
    def epoch(self) -> int | None:
        """The fencing epoch while owner, else None."""
        return self._epoch

    @property
    def state(self) -> LeaseState:
        return self._state

    @property
    def since(self) -> float:
        """When `state` last changed, on the injected clock."""
        return self._since

    async def start(self) -> None:
        if self._task is not None:
            return
        self._set_state("standby")
        log.info("pbx %s: node %s stands by (trying for the lock)", self.pbx, self.node)
        self._task = asyncio.create_task(self._run(), name=f"pbx-lease-{self.pbx}")

    async def stop(self) -> None:
        """Fence, then let go: unlock and close within about `check_timeout` (a connection that
        does not answer by then is terminated, which releases the lock as well)."""
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        while not task.done():  # a cancel swallowed inside (a library's wait_for): ask again
            await asyncio.wait({task}, timeout=1.0)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._fence("stopped")
        conn, locked = self._conn, self._locked
        self._drop_connection(terminate=False)
        if conn is not None:
            try:
                async with asyncio.timeout(self._check_timeout):
                    if locked:
                        await conn.execute("SELECT pg_advisory_unlock($1)", self.key)
                    await conn.close()
            except Exception:  # stalled, or interrupted mid-query by the cancel: cut it
                conn.terminate()
        self._set_state("stopped")
        log.info("pbx %s: node %s stopped%s", self.pbx, self.node, " (lock released)" if locked else "")

    # -- the task ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._session()
            except Exception as exc:  # every failure ends the same way: fenced, reconnect later
                reason = _describe(exc, self._check_timeout)
                self._fence(reason)  # an owner's loss is logged there, and remembered as the problem
                self._drop_connection(terminate=True)
                if reason != self._problem:
                    log.warning("pbx %s: node %s cannot hold a lease session: %s (retrying every %gs)",
                                self.pbx, self.node, reason, self._retry_interval)
                    self._problem = reason
            await asyncio.sleep(self._retry_interval)

    async def _session(self) -> None:
        try:
            conn = await asyncpg.connect(self._dsn, timeout=self._connect_timeout,
                                         server_settings=self._settings)
        except TimeoutError:
            raise _LeaseProblem(f"no connection to PostgreSQL within {self._connect_timeout:g}s") from None
        self._conn, self.backend_pid = conn, conn.get_server_pid()
        self._closed.clear()
        conn.add_termination_listener(self._on_terminated)
        # Standing by on this connection: a blocking lock request, which the server grants
        # the moment the owner's session ends (a takeover waits for no poll). lock_timeout
        # bounds each request, so that it doubles as the connection's health check.
        await self._ask(conn.execute(f"SET lock_timeout = {int(self._standby_wait * 1000)}"))
        while True:
            await self._wait_in_line(conn)
            self._locked = True
            if not await self._handed_on(conn):
                break
            self._locked = False
        await self._ask(conn.execute("RESET lock_timeout"))  # an owner's writes may wait on rows
        # Still not the owner: an error here (table missing, time-out) drops the connection,
        # and the lock with it.
        epoch = cast(int, await self._ask(conn.fetchval(_BUMP_EPOCH, self.pbx, self.node)))
        self._problem = None
        self._epoch = epoch
        self._set_state("owner")
        log.info("pbx %s: node %s is the owner now (epoch %d, backend pid %d)",
                 self.pbx, self.node, epoch, self.backend_pid)
        # An owner that cannot start lets go (a failing on_acquired ends the ownership).
        try:
            result = self._on_acquired(epoch)
        except Exception as exc:
            raise self._acquire_failed(exc) from exc
        if inspect.isawaitable(result):
            # Beside the checks, not before them: a slow start must not leave the lease unwatched.
            self._acquired_task = asyncio.ensure_future(result)
        while True:
            await self._pause(self._check_interval)
            acquired = self._acquired_task
            if acquired is not None and acquired.done():
                self._acquired_task = None
                failure = None if acquired.cancelled() else acquired.exception()
                if failure is not None:
                    raise self._acquire_failed(failure) from failure
            await self._ask(conn.fetchval("SELECT 1"))

    async def _wait_in_line(self, conn: asyncpg.Connection) -> None:
        while True:
            try:
                async with asyncio.timeout(self._standby_wait + self._check_timeout):
                    await conn.execute("SELECT pg_advisory_lock($1)", self.key)
                return
            except asyncpg.exceptions.LockNotAvailableError:  # still owned by another node: ask again
                self._problem = None

    async def _handed_on(self, conn: asyncpg.Connection) -> bool:
        """Just granted: hand the lock on to a waiting node that owns fewer PBXes (unlocked,
        True), or keep it (False). See cluster.balance."""
        if self._group is None:
            return False
        async with self._group.deciding:
            to = heir(cast(list[Any], await self._ask(conn.fetch(HOLDERS))), self.key, self._group.tag)
            if to is None:
                return False
            await self._ask(conn.execute("SELECT pg_advisory_unlock($1)", self.key))
        log.info("pbx %s: node %s handed the lock on to a waiting node that owns fewer PBXes (lease tag %s); "
                 "waiting in line again", self.pbx, self.node, to)
        return True

    def _acquire_failed(self, exc: BaseException) -> _LeaseProblem:
        log.error("pbx %s: on_acquired failed", self.pbx, exc_info=exc)
        return _LeaseProblem(f"on_acquired failed: {type(exc).__name__}: {exc}")

    async def _ask(self, query: Awaitable[object]) -> object:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
        # comes as its query completes, and stop() then waits for a task that never ends.
        async with asyncio.timeout(self._check_timeout):
            return await query

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()
        if self._closed.is_set():
            raise _LeaseProblem("the connection to PostgreSQL closed")

    def _on_terminated(self, conn: asyncpg.Connection) -> None:
        # The server or the network closed it: fence now, not at the next check.
        if conn is self._conn:
            self._fence("the connection to PostgreSQL closed")
            self._closed.set()

    def _fence(self, reason: str) -> None:
        """Stop being the owner, telling `on_lost` first; a no-op when not the owner."""
        if not self.owned:
            return
        epoch, self._epoch = self._epoch, None
        self._set_state("standby")
        self._problem = reason  # said here once; the task does not say it again
        try:
            self._on_lost(reason)
        except Exception:
            log.exception("pbx %s: on_lost failed", self.pbx)
        finally:
            log.log(logging.INFO if reason == "stopped" else logging.WARNING,
                    "pbx %s: node %s is no longer the owner (epoch %s): %s",
                    self.pbx, self.node, epoch, reason)
            acquired, self._acquired_task = self._acquired_task, None
            if acquired is not None and not acquired.done():
                acquired.cancel()

    def _drop_connection(self, *, terminate: bool) -> None:
        conn, self._conn, self._locked, self.backend_pid = self._conn, None, False, None
        if conn is not None:
            conn.remove_termination_listener(self._on_terminated)
            if terminate:
                conn.terminate()  # never waits: the connection may be stalled

    def _set_state(self, state: LeaseState) -> None:
        if state != self._state:
            self._state, self._since = state, self._clock()
