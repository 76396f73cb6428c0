"""Actions routed to a PBX's owner through Redis, against a real redis-server: round trip,
concurrency, time-outs, errors, deadlines, and at most one run of a request."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from cluster.actions import ActionClient, ActionFailed, ActionServer, OwnerUnavailable
from cluster.redis_link import actions_key
from tests.cluster.redis_server import RedisServer, redis_fixture, redis_server_fixture, until  # noqa: F401

PBX = "pbx-a"


class Owner:
    """The owner's handler: records what it ran; `release` holds it when `hold` is set."""

    def __init__(self, *, hold: bool = False) -> None:
        self.ran: list[dict[str, Any]] = []
        self.running = self.most_at_once = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        self.ran.append(request)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            await asyncio.sleep(0.01)
            if request.get("Action") == "Broken":
                raise RuntimeError("Permission denied")
            return {"Response": "Success", "ActionID": request.get("ActionID", "")}
        finally:
            self.running -= 1


async def test_round_trip_and_concurrent_requests(redis: Redis) -> None:
    owner = Owner()
    server = ActionServer(redis, PBX, owner.handle, node="owner")
    await server.start()
    client = ActionClient(redis, "n2")
    reply = await client.call(PBX, {"Action": "QueueAdd", "Queue": "support", "Interface": "PJSIP/101",
                                    "ActionID": "Иван-1"}, timeout=5)
    assert reply == {"Response": "Success", "ActionID": "Иван-1"}
    assert owner.ran == [{"Action": "QueueAdd", "Queue": "support", "Interface": "PJSIP/101",
                          "ActionID": "Иван-1"}]
    replies = await asyncio.gather(*(client.call(PBX, {"Action": "Ping", "ActionID": str(i)}, timeout=5)
                                     for i in range(20)))
    assert [r["ActionID"] for r in replies] == [str(i) for i in range(20)]
    assert owner.most_at_once > 1  # the owner ran them side by side
    await server.stop()


async def test_no_owner_is_a_clear_time_out_and_the_request_never_runs_later(redis: Redis) -> None:
    client = ActionClient(redis, "n2")
    with pytest.raises(OwnerUnavailable) as raised:
        await client.call(PBX, {"Action": "Hangup", "Channel": "PJSIP/101-1"}, timeout=0.2)
    assert str(raised.value) == f"no owner answered for PBX {PBX} within 0.2 s"
    assert raised.value.taken is False
    # An owner that comes late, with a clock that says the deadline has not passed yet,
    # still does not run it: the requester abandoned it.
    owner = Owner()
    server = ActionServer(redis, PBX, owner.handle, node="owner", clock=lambda: time.time() - 100)
    await server.start()
    await until(lambda: server.not_claimed == 1)
    assert owner.ran == []
    await server.stop()


async def test_a_handler_error_comes_back_as_action_failed(redis: Redis) -> None:
    server = ActionServer(redis, PBX, Owner().handle, node="owner")
    await server.start()
    with pytest.raises(ActionFailed, match="^Permission denied$") as raised:
        await ActionClient(redis, "n2").call(PBX, {"Action": "Broken"}, timeout=5)
    assert raised.value.error_type == "RuntimeError"
    await server.stop()


async def test_a_request_past_its_deadline_is_not_run(redis: Redis) -> None:
    owner = Owner()
    server = ActionServer(redis, PBX, owner.handle, node="owner")
    await server.start()
    # The requester's clock is 100 s behind the owner's: its deadline is already past there.
    client = ActionClient(redis, "n2", clock=lambda: time.time() - 100)
    with pytest.raises(OwnerUnavailable) as raised:
        await client.call(PBX, {"Action": "Originate"}, timeout=0.2)
    assert raised.value.taken is False
    await until(lambda: server.expired == 1)
    assert owner.ran == []
    await server.stop()


async def test_a_request_pushed_twice_runs_once(redis: Redis) -> None:
    """A retried LPUSH (the first one did arrive) puts the same request in the list twice."""
    body = json.dumps({"id": "n2:abc", "reply_to": "callbridge:action:n2:abc:reply",
                       "deadline": time.time() + 30, "node": "n2", "request": {"Action": "Originate"}})
    await redis.lpush(actions_key("callbridge", PBX), body, body)
    owner = Owner()
    server = ActionServer(redis, PBX, owner.handle, node="owner")
    await server.start()
    await until(lambda: server.served + server.not_claimed == 2)
    assert len(owner.ran) == 1 and server.not_claimed == 1
    assert await redis.llen("callbridge:action:n2:abc:reply") == 1
    assert 0 < await redis.pttl("callbridge:action:n2:abc:reply") <= 30_000
    await server.stop()


async def test_an_owner_too_slow_to_answer_says_it_took_the_request(redis: Redis) -> None:
    owner = Owner(hold=True)
    server = ActionServer(redis, PBX, owner.handle, node="owner")
    await server.start()
    with pytest.raises(OwnerUnavailable) as raised:
        await ActionClient(redis, "n2").call(PBX, {"Action": "Originate"}, timeout=0.3)
    assert raised.value.taken is True  # it may well have run: do not simply try again
    owner.release.set()
    await until(lambda: server.served == 1)
    await server.stop()


async def test_redis_down_is_owner_unavailable(redis: Redis, redis_server: RedisServer) -> None:
    redis_server.stop()
    with pytest.raises(OwnerUnavailable, match="Redis unavailable") as raised:
        await ActionClient(redis, "n2").call(PBX, {"Action": "Ping"}, timeout=1)
    assert raised.value.taken is None
