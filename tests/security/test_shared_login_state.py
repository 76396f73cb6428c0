"""Issue 15: the login throttle and the login's signing keys are shared by the nodes of a
cluster. Two nodes (two LoginThrottles, two aiohttp apps on one database) share a private
redis-server: a failure on one counts on the other exactly as on one node; a form or a
device cookie from one node is good on the other given the same secret; Redis down, each
node falls back to its own counters (logged once). Clocks are passed in; no wall clock."""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from tests.cluster.redis_server import RedisServer, redis_server_fixture  # noqa: F401 (fixture)
from tests.security.site import PEER_HEADER, fake_peer
from tests.test_auth_http import FAST, PW, Browser, Clock
from web.auth_http import setup_auth
from web.login_throttle import LoginThrottle, Verdict
from web.shared_state import RedisCounters
from web.users import UserStore

SECRET = b"cluster secret key, the same on every node"
WRONG = "not the password"


@pytest.fixture(name="clients")
async def clients_fixture(redis_server: RedisServer) -> AsyncIterator[list[Redis]]:
    """One client per node (each node has its own connection pool)."""
    made = [Redis.from_url(redis_server.url) for _ in range(2)]
    yield made
    for client in made:
        await client.aclose()


LIMITS: dict[str, Any] = {"account_free": 3, "address_free": 5, "base_delay": 10.0, "max_delay": 100.0,
                          "forget_after": 500.0, "global_limit": 8, "global_window": 300.0}


def _throttle(clock: Clock, redis: Redis | None = None, secret: bytes = SECRET,
              **options: Any) -> LoginThrottle:
    shared = RedisCounters(redis, **options) if redis is not None else None
    return LoginThrottle(**LIMITS, secret=secret, shared=shared, clock=clock)


async def test_two_nodes_sharing_redis_decide_exactly_as_one_node(clients: list[Redis]) -> None:
    clock = Clock()
    nodes = [_throttle(clock, client) for client in clients]
    one = _throttle(clock)  # the reference: one node, counters in memory
    rng = random.Random(15)
    names = ["anna", "boris", *(f"x{i}" for i in range(8))]  # throwaway names fill the global bucket
    addresses = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::/64"]
    devices = [None, None, None, "anna:dev1", "boris:dev2"]
    refused = set()
    for _ in range(1000):
        clock.now += rng.choice([0.0, 0.0, 0.25, 0.5, 1.0, 3.7, 12.5, 40.0, 130.0, 600.0])
        node = rng.choice(nodes)
        name, where, device = rng.choice(names), rng.choice(addresses), rng.choice(devices)
        verdict = await node.check(name, where, device)
        assert verdict == await one.check(name, where, device)
        refused.add(verdict.limit)
        if verdict.retry_after == 0:
            if rng.random() < 0.85:
                await node.failed(name, where, device)
                await one.failed(name, where, device)
            else:
                await node.succeeded(name, device)
                await one.succeeded(name, device)
    assert refused == {"", "account", "address", "global", "device"}  # every limit was exercised
    assert all(isinstance(n.shared, RedisCounters) and n.shared.down_since is None for n in nodes)
    keys = [k.decode() for k in await clients[0].keys("*")]
    assert keys and all(k.startswith("callbridge:throttle:") for k in keys)
    assert not any(part in k for k in keys for part in ("anna", "boris", "10.0.0", "2001"))  # hashed names
    assert min([await clients[0].ttl(k) for k in keys]) > 0  # every key expires


async def test_failures_on_node_a_hold_the_account_on_node_b_with_one_nodes_retry_after(
        clients: list[Redis]) -> None:
    clock = Clock()
    a, b, one = _throttle(clock, clients[0]), _throttle(clock, clients[1]), _throttle(clock)
    for _ in range(3):
        clock.now += 1.5
        for node in (a, one):
            assert (await node.check("anna", "10.0.0.9", None)).retry_after == 0
            await node.failed("anna", "10.0.0.9", None)
    clock.now += 2.25
    on_b, alone = await b.check("anna", "10.7.7.7", None), await one.check("anna", "10.7.7.7", None)
    assert on_b == alone == Verdict(7.75, "account")
    await b.succeeded("anna", None)  # the real user signs in on B: A forgets the account's failures
    assert await a.check("anna", "10.7.7.7", None) == Verdict(0.0, "")


def test_a_device_cookie_from_node_a_is_good_on_node_b_only_with_the_same_secret() -> None:
    clock = Clock()
    a, b = _throttle(clock), _throttle(clock)
    stranger = _throttle(clock, secret=b"another cluster's secret key.....")
    token = a.device_token("anna")
    assert b.device_id(token, "anna") == a.device_id(token, "anna") is not None
    assert stranger.device_id(token, "anna") is None
    assert b.device_id(token, "boris") is None  # bound to the account it was issued to
    assert LoginThrottle(clock=clock).device_id(token, "anna") is None  # no secret: random per process


# -- two apps (nodes) on one database and one Redis ------------------------------------------------

@dataclass
class Node:
    client: TestClient

    async def attempt(self, username: str, password: str, peer: str = "10.0.0.1",
                      cookies: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        page = await self.client.get("/login")
        token = (await page.text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        jar = {"callbridge_login": page.cookies["callbridge_login"].value, **(cookies or {})}
        resp = await self.client.post(
            "/login", data={"username": username, "password": password, "csrf_token": token},
            headers={PEER_HEADER: peer, "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
            allow_redirects=False)
        await resp.release()
        return resp


@pytest.fixture(name="users")
async def users_fixture(tmp_path: Path) -> AsyncIterator[UserStore]:
    users = UserStore(f"sqlite+aiosqlite:///{tmp_path / 'auth.sqlite3'}", hasher=FAST)
    await users.open()
    await users.add("anna", PW, role="operator", display_name="Anna", extensions=["101"])
    yield users
    await users.close()


@pytest.fixture(name="make_node")
async def make_node_fixture(users: UserStore) -> AsyncIterator[Any]:
    made: list[TestClient] = []

    async def make(clock: Clock, **options: Any) -> Node:
        app = web.Application(middlewares=[fake_peer])
        setup_auth(app, users, secure_cookie=False, clock=clock, **options)
        client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
        await client.start_server()
        made.append(client)
        return Node(client)

    yield make
    for client in made:
        await client.close()


async def test_a_login_form_from_node_a_signs_in_on_node_b_given_the_same_secret(make_node: Any) -> None:
    clock = Clock()
    a, b = await make_node(clock, secret=SECRET), await make_node(clock, secret=SECRET)
    other = await make_node(clock, secret=b"not the cluster's secret key....")
    anna = Browser(a.client)
    page = await anna.request("GET", "/login")
    token = (await page.text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"username": "anna", "password": PW, "csrf_token": token}
    refused = await Browser(other.client).request("POST", "/login", data=form,
                                                  headers=anna.headers())
    assert refused.status == 403  # another key: the form is not this cluster's
    on_b = Browser(b.client)
    on_b.cookies = dict(anna.cookies)
    resp = await on_b.request("POST", "/login", data=form)
    assert (resp.status, resp.headers["Location"]) == (303, "/console")
    assert (await Browser(a.client).request("GET", "/api/session", headers=on_b.headers())).status == 200


async def test_nodes_share_the_throttle_and_honour_each_others_device_cookies(
        make_node: Any, clients: list[Redis]) -> None:
    clock = Clock()
    a = await make_node(clock, secret=SECRET, redis=clients[0])
    b = await make_node(clock, secret=SECRET, redis=clients[1])
    device = (await a.attempt("anna", PW)).cookies["callbridge_device"].value  # Anna's own browser
    for _ in range(5):
        assert (await a.attempt("anna", WRONG)).status == 401
    held = await b.attempt("anna", WRONG)
    assert held.status == 429 and held.headers["Retry-After"] == "60"  # as one node: the full delay
    clock.now += 20
    assert (await a.attempt("anna", PW)).headers["Retry-After"] == "40"
    # Anna's browser, its device cookie from A, signs in on B through the attacker's delay.
    assert (await b.attempt("anna", PW, cookies={"callbridge_device": device})).status == 303
    # Without her device cookie she waits on B as on A (the delay is the cluster's, not A's).
    assert (await b.attempt("anna", PW, peer="10.0.0.2")).headers["Retry-After"] == "40"


async def test_a_shared_throttle_needs_a_shared_secret_of_16_bytes_or_more(users: UserStore) -> None:
    with pytest.raises(ValueError, match="shared secret"):
        setup_auth(web.Application(), users, redis=object())
    with pytest.raises(ValueError, match="16 bytes"):
        setup_auth(web.Application(), users, secret=b"short")


# -- Redis down ------------------------------------------------------------------------------------

async def test_redis_down_each_node_uses_its_own_counters_and_says_so_once(
        redis_server: RedisServer, clients: list[Redis], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.shared_state")
    clock = Clock()
    a, b = _throttle(clock, clients[0], retry_interval=5.0), _throttle(clock, clients[1], retry_interval=5.0)
    await a.failed("anna", "10.0.0.1", None)
    await a.failed("anna", "10.0.0.1", None)  # shared: B sees 2 of 3 free failures too
    redis_server.stop()
    # A counted those 2 itself as well: its third failure holds the account on A at once.
    assert await a.check("anna", "10.0.0.1", None) == Verdict(0.0, "")
    await a.failed("anna", "10.0.0.1", None)
    assert await a.check("anna", "10.0.0.1", None) == Verdict(10.0, "account")
    # B saw nothing itself: no lock-out, but its own limit holds after 3 failures (no free-for-all).
    for _ in range(3):
        assert (await b.check("anna", "10.0.0.2", None)).retry_after == 0
        await b.failed("anna", "10.0.0.2", None)
    assert (await b.check("anna", "10.0.0.2", None)).limit == "account"
    outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage) == 2 and {r.levelno for r in outage} == {logging.WARNING}  # once per node
    redis_server.start()  # back (empty: no persistence)
    assert await a.check("boris", "10.0.0.3", None) == Verdict(0.0, "")  # not retried within 5 s
    assert not any("reachable again" in r.getMessage() for r in caplog.records)
    clock.now += 5
    assert await a.check("anna", "10.0.0.1", None) == Verdict(0.0, "")  # shared again: Redis's (empty) count
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(back) == 1
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 2


async def test_a_redis_that_never_answers_costs_a_login_at_most_the_timeout(
        caplog: pytest.LogCaptureFixture) -> None:
    # A listener that accepts and never answers (a blackholed Redis): the check gives up.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = Redis(host="127.0.0.1", port=silent.getsockname()[1])
        try:
            clock = Clock()
            node = _throttle(clock, client, timeout=0.2)
            started = time.monotonic()
            assert await node.check("anna", "10.0.0.1", None) == Verdict(0.0, "")
            assert time.monotonic() - started < 2
            assert node.shared is not None and "unreachable (TimeoutError" in caplog.text
        finally:
            await client.aclose()
