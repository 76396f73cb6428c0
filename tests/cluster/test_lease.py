"""One owner per PBX across the cluster: the advisory-lock lease and its fencing epoch, on the
test PostgreSQL (each test in a schema of its own; the PBX ids are unique per test, since
advisory locks are per database, not per schema)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from cluster.balance import LeaseGroup
from cluster.lease import (
    PBX_OWNERS,
    Fenced,
    PbxLease,
    asyncpg_dsn,
    check_epoch,
    keepalive_settings,
    lock_key,
    require_epoch,
)
from tests.cluster.pg_proxy import PgProxy
from tests.db_fixtures import Database, database_fixture  # noqa: F401  # fixture

ON_PG = pytest.mark.parametrize("database", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                indirect=True)
FAST = {"check_interval": 0.2, "check_timeout": 0.5, "retry_interval": 0.2}
clock = time.monotonic  # the clock every lease here is given, and the one the tests measure with


@dataclass
class Db:
    engine: AsyncEngine  # on the test's schema
    dsn: str  # the same schema, for leases
    admin: asyncpg.Connection  # a third party: kills sessions, reads pg_locks


@dataclass
class Node:
    """A lease and what its callbacks saw."""

    lease: PbxLease
    acquired: list[int] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)


@pytest.fixture(name="db")
async def db_fixture(database: Database) -> AsyncIterator[Db]:
    async with database.store() as store:  # migrates the schema to head
        dsn = make_url(database.url).update_query_dict({"search_path": database.schema or "public"})
        admin = await asyncpg.connect(asyncpg_dsn(database.url))
        try:
            yield Db(store.engine, dsn.render_as_string(hide_password=False), admin)
        finally:
            await admin.close()


@pytest.fixture(name="nodes")
async def nodes_fixture() -> AsyncIterator[Callable[..., Node]]:
    made: list[Node] = []

    def make(dsn: str, pbx: str, name: str, *, on_acquired: Callable[[int], Awaitable[None]] | None = None,
             group: LeaseGroup | None = None, **options: float) -> Node:
        node = Node(lease=None)  # type: ignore[arg-type]  # set just below: the callbacks need the node
        node.lease = PbxLease(dsn, pbx, name, on_acquired=on_acquired or node.acquired.append,
                              on_lost=node.lost.append, clock=clock, group=group, **{**FAST, **options})
        made.append(node)
        return node

    yield make
    for node in made:
        await node.lease.stop()


def new_pbx() -> str:
    return f"pbx-{uuid.uuid4().hex[:8]}"


async def wait_until(condition: Callable[[], bool], within: float, *,
                     invariant: Callable[[], bool] = lambda: True) -> float:
    """Poll until `condition`; returns when it held (clock). `invariant` must hold at every sample."""
    deadline = clock() + within
    while True:
        assert invariant()
        if condition():
            return clock()
        assert clock() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def lock_holders(admin: asyncpg.Connection, pbx: str) -> list[int]:
    key = lock_key(pbx) & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks splits a bigint key into two oids
    return [r["pid"] for r in await admin.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1",
        key >> 32, key & 0xFFFF_FFFF)]


# -- without a database -----------------------------------------------------------------------


def test_lock_key_is_stable_signed_64_bit_and_per_pbx() -> None:
    assert lock_key("main") == lock_key("main") != lock_key("main2")
    assert all(-(2**63) <= lock_key(p) < 2**63 for p in ("main", "", "сайт-2"))
    # Pinned: nodes of two releases must agree on the key, or a rolling upgrade has two owners.
    assert lock_key("main") == 3043339125039339980


def test_dsn_and_keepalives() -> None:
    assert asyncpg_dsn("postgresql+asyncpg://u:p%40ss@h:5/db?search_path=s") == "postgresql://u:p%40ss@h:5/db?search_path=s"
    with pytest.raises(ValueError):
        asyncpg_dsn("sqlite+aiosqlite:///x.db")
    ka = keepalive_settings(0.5, 1.0)
    # The server drops a silent session only after its node has fenced itself, with room to spare.
    dropped_after = int(ka["tcp_keepalives_idle"]) + int(ka["tcp_keepalives_interval"]) * int(
        ka["tcp_keepalives_count"])
    assert dropped_after >= 0.5 + 1.0 + 2 and int(ka["tcp_user_timeout"]) == dropped_after * 1000
    assert dropped_after <= 5  # and still within a few seconds


def test_a_lease_belongs_to_its_own_nodes_group() -> None:
    with pytest.raises(ValueError, match="lease group of node b"):
        PbxLease("postgresql://127.0.0.1/x", "main", "a", on_acquired=lambda epoch: None,
                 on_lost=lambda reason: None, group=LeaseGroup("b"))


# -- on PostgreSQL ----------------------------------------------------------------------------


@ON_PG
async def test_one_owner_and_takeover_when_its_session_is_killed(db: Db, nodes: Callable[..., Node]) -> None:
    pbx = new_pbx()
    a, b = nodes(db.dsn, pbx, "node-a"), nodes(db.dsn, pbx, "node-b")
    await a.lease.start()
    await wait_until(lambda: a.lease.owned, 3)
    await b.lease.start()
    await asyncio.sleep(0.6)  # several tries of B's
    assert (a.lease.state, b.lease.state) == ("owner", "standby") and a.acquired == [a.lease.epoch]
    assert await lock_holders(db.admin, pbx) == [a.lease.backend_pid]
    first = a.lease.epoch
    assert first is not None

    assert await db.admin.fetchval("SELECT pg_terminate_backend($1)", a.lease.backend_pid)
    killed = clock()
    taken = await wait_until(lambda: b.lease.owned, 2)
    assert taken - killed < 2
    # A killed backend frees the lock at once, and A hears of it from the same kill (the
    # server's termination message): B's grant and A's fencing race, and under load B's may
    # come first. The fencing epoch refuses A's writes meanwhile; A must still notice soon.
    await wait_until(lambda: not a.lease.owned, 2)
    assert len(a.lost) == 1 and a.lease.epoch is None
    assert b.lease.epoch is not None and b.lease.epoch > first and b.acquired == [b.lease.epoch]
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(PBX_OWNERS).where(PBX_OWNERS.c.pbx == pbx))).one()
    assert (row.node, row.epoch) == ("node-b", b.lease.epoch)


@ON_PG
async def test_a_standby_waits_in_its_lock_request_and_gets_the_lock_when_the_owner_dies(
        db: Db, nodes: Callable[..., Node]) -> None:
    pbx = new_pbx()
    a = nodes(db.dsn, pbx, "node-a")
    await a.lease.start()
    await wait_until(lambda: a.lease.owned, 3)
    # B would poll only once a minute: a takeover within seconds is the server's grant.
    b = nodes(db.dsn, pbx, "node-b", retry_interval=60.0, standby_wait=0.3)
    await b.lease.start()
    waiting = await db.admin.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1",
        await wait_for_pid(b))
    assert waiting == 1  # B's request is queued on A's lock
    await asyncio.sleep(1.0)  # its requests time out and are asked again: no error, still standing by
    assert (a.lease.state, b.lease.state) == ("owner", "standby") and b.lost == [] and b.acquired == []

    assert await db.admin.fetchval("SELECT pg_terminate_backend($1)", a.lease.backend_pid)
    await wait_until(lambda: b.lease.owned, 5)
    assert await lock_holders(db.admin, pbx) == [b.lease.backend_pid]
    assert b.acquired == [b.lease.epoch]


async def wait_for_pid(node: Node) -> int:
    await wait_until(lambda: node.lease.backend_pid is not None, 3)
    await asyncio.sleep(0.2)  # its lock request is on its way
    assert node.lease.backend_pid is not None
    return node.lease.backend_pid


async def start_node(db: Db, nodes: Callable[..., Node], name: str, pbxes: list[str]) -> list[Node]:
    """A node's leases on `pbxes`, one group (as a cluster node has), started."""
    group = LeaseGroup(name)
    leases = [nodes(db.dsn, pbx, name, group=group) for pbx in pbxes]
    for node in leases:
        await node.lease.start()
    return leases


def owners_of(*node_leases: list[Node]) -> list[int]:
    """How many PBXes each node owns."""
    return [sum(n.lease.owned for n in leases) for leases in node_leases]


@ON_PG
@pytest.mark.parametrize("count", [2, 3])
async def test_a_dead_owners_pbxes_split_among_the_survivors(
        db: Db, nodes: Callable[..., Node], count: int) -> None:
    pbxes = [new_pbx() for _ in range(count)]
    a = await start_node(db, nodes, "node-a", pbxes)
    await wait_until(lambda: all(n.lease.owned for n in a), 3)  # alone: it takes them all
    b = await start_node(db, nodes, "node-b", pbxes)
    c = await start_node(db, nodes, "node-c", pbxes)
    for n in (*b, *c):
        await wait_for_pid(n)  # both in line for every PBX
    assert owners_of(a, b, c) == [count, 0, 0]  # a grant is balanced, not a standing owner

    for n in a:  # node A dies: its sessions end, every lock at once
        assert await db.admin.fetchval("SELECT pg_terminate_backend($1)", n.lease.backend_pid)
    await wait_until(lambda: sum(owners_of(b, c)) == count, 5)
    await asyncio.sleep(0.5)  # any handover has settled
    assert sum(owners_of(b, c)) == count and max(owners_of(b, c)) - min(owners_of(b, c)) <= 1
    assert max(owners_of(b, c)) == count // 2 + count % 2  # 1 and 1, or 2 and 1
    for pbx, leases in zip(pbxes, zip(b, c, strict=True), strict=True):
        owner = next(n for n in leases if n.lease.owned)
        assert await lock_holders(db.admin, pbx) == [owner.lease.backend_pid]
        # Acquired once: a lock handed on never made its node the owner.
        assert [len(n.acquired) for n in leases] == [int(n.lease.owned) for n in leases]


@ON_PG
async def test_a_grant_nobody_else_waits_for_is_kept(db: Db, nodes: Callable[..., Node]) -> None:
    one, two = new_pbx(), new_pbx()
    group = LeaseGroup("node-a")
    a1, a2 = nodes(db.dsn, one, "node-a", group=group), nodes(db.dsn, two, "node-a", group=group)
    await a1.lease.start()
    await wait_until(lambda: a1.lease.owned, 3)
    b2 = nodes(db.dsn, two, "node-b")
    await b2.lease.start()
    await wait_until(lambda: b2.lease.owned, 3)
    await a2.lease.start()  # A, owning one PBX already, waits for B's
    await wait_for_pid(a2)
    assert await db.admin.fetchval("SELECT pg_terminate_backend($1)", b2.lease.backend_pid)
    await wait_until(lambda: a2.lease.owned, 5)  # B is gone: nobody to hand it to
    await asyncio.sleep(0.5)
    assert (a1.lease.owned, a2.lease.owned) == (True, True) and a2.acquired == [a2.lease.epoch]


@ON_PG
async def test_two_pbxes_two_owners(db: Db, nodes: Callable[..., Node]) -> None:
    one, two = new_pbx(), new_pbx()
    a1, b2, b1 = nodes(db.dsn, one, "node-a"), nodes(db.dsn, two, "node-b"), nodes(db.dsn, one, "node-b")
    for node in (a1, b2):
        await node.lease.start()
    await wait_until(lambda: a1.lease.owned and b2.lease.owned, 3)
    await b1.lease.start()
    await asyncio.sleep(0.5)
    assert (a1.lease.state, b2.lease.state, b1.lease.state) == ("owner", "owner", "standby")
    assert a1.lease.epoch == b2.lease.epoch == 1  # epochs count per PBX


@ON_PG
async def test_an_owner_that_cannot_start_lets_go_and_tries_again(db: Db, nodes: Callable[..., Node]) -> None:
    started: list[int] = []

    async def start_once_failing(epoch: int) -> None:
        started.append(epoch)
        if len(started) == 1:
            raise RuntimeError("AMI login refused")

    a = nodes(db.dsn, new_pbx(), "node-a", on_acquired=start_once_failing)
    await a.lease.start()
    await wait_until(lambda: len(started) == 2 and a.lease.owned, 3)
    assert started == [1, 2] and a.lease.epoch == 2
    assert a.lost == ["on_acquired failed: RuntimeError: AMI login refused"]


@ON_PG
async def test_a_stalled_owner_fences_itself_and_nobody_takes_over_until_the_server_lets_go(
        db: Db, nodes: Callable[..., Node]) -> None:
    pbx = new_pbx()
    server = make_url(db.dsn)
    async with PgProxy(server.host or "127.0.0.1", server.port or 5432) as proxy:
        via_proxy = server.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        a = nodes(via_proxy, pbx, "node-a", connect_timeout=1.0)
        b = nodes(db.dsn, pbx, "node-b")
        await a.lease.start()
        await wait_until(lambda: a.lease.owned, 3)
        await b.lease.start()
        await asyncio.sleep(0.5)
        assert b.lease.state == "standby"
        a_pid, a_epoch = a.lease.backend_pid, a.lease.epoch
        assert a_epoch is not None

        def one_owner_at_most() -> bool:
            return not (a.lease.owned and b.lease.owned)

        proxy.freeze()
        frozen_at = clock()
        await wait_until(lambda: not a.lease.owned, 2, invariant=one_owner_at_most)
        # Fenced by its own check, within check_interval + check_timeout (+ scheduling margin).
        assert a.lease.since - frozen_at <= FAST["check_interval"] + FAST["check_timeout"] + 0.3
        assert a.lease.state == "standby" and len(a.lost) == 1 and "no answer" in a.lost[0]

        # A's server session still holds the lock (the proxy keeps its TCP connection up): B waits.
        watch_until = clock() + 2.5
        while clock() < watch_until:
            assert one_owner_at_most() and not b.lease.owned
            await asyncio.sleep(0.05)
        assert await lock_holders(db.admin, pbx) == [a_pid]

        await proxy.close()  # the connection drops: the server ends A's session, and the lock with it
        closed_at = clock()
        taken = await wait_until(lambda: b.lease.owned, 3, invariant=one_owner_at_most)
        assert taken - closed_at < 2
        assert b.lease.epoch is not None and b.lease.epoch > a_epoch
        assert await lock_holders(db.admin, pbx) == [b.lease.backend_pid]
        assert not a.lease.owned and a.acquired == [a_epoch]


@ON_PG
async def test_check_epoch_fences_a_writer_and_holds_a_takeover_until_its_commit(
        db: Db, nodes: Callable[..., Node]) -> None:
    pbx = new_pbx()
    a = nodes(db.dsn, pbx, "node-a")
    b = nodes(db.dsn, pbx, "node-b", check_timeout=2.0)
    await a.lease.start()
    await wait_until(lambda: a.lease.owned, 3)
    first = a.lease.epoch
    assert first is not None

    async with AsyncSession(db.engine) as session, session.begin():  # a writer of A's, mid-write
        assert await check_epoch(session, pbx, first)
        began = clock()
        await a.lease.stop()
        assert clock() - began < FAST["check_timeout"] + 0.2 and a.lost == ["stopped"]
        await b.lease.start()
        await asyncio.sleep(0.8)
        # B has the lock, but its epoch bump waits on the writer's row lock.
        assert await lock_holders(db.admin, pbx) == [b.lease.backend_pid]
        assert not b.lease.owned
    await wait_until(lambda: b.lease.owned, 2)
    second = b.lease.epoch
    assert second == first + 1

    async with db.engine.begin() as conn:
        assert not await check_epoch(conn, pbx, first)
        assert await check_epoch(conn, pbx, second)
        with pytest.raises(Fenced, match=f"epoch {first} is fenced off"):
            await require_epoch(conn, pbx, first)
    async with db.engine.begin() as conn:
        assert not await check_epoch(conn, "no-such-pbx", 1)


async def test_stop_asks_again_when_the_lease_task_swallowed_the_cancel() -> None:
    """Python 3.11's wait_for can swallow a cancel that comes as its awaitable completes (the
    lease uses asyncio.timeout for that reason); stop() must end the task all the same."""
    lease = PbxLease("postgresql://127.0.0.1:1/none", new_pbx(), "n1", on_acquired=lambda epoch: None,
                     on_lost=lambda reason: None, clock=clock, **FAST)
    swallowed: list[int] = []

    async def stubborn() -> None:
        for _ in range(2):  # swallows two cancels, as an unlucky wait_for would, then ends on one
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed.append(1)
        await asyncio.sleep(3600)

    task = lease._task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.ensure_future(lease.stop())
    try:
        done, _ = await asyncio.wait({stopping}, timeout=10)  # wait() cancels nothing on time-out
        assert stopping in done, "stop() never returned: it waited for a task that swallowed its cancel"
        assert task.done() and swallowed == [1, 1] and lease.state == "stopped"
    finally:
        for _ in range(3):  # a failed run leaves no task behind that the loop's close waits for
            task.cancel()
            await asyncio.sleep(0)
