"""AMI actions asked on any node, run by the PBX's owner, answered back: a Redis list per PBX.

Public API::

    server = ActionServer(redis, pbx, handler, node="n1")   # the owner only; handler(dict) -> dict
    await server.start(); ...; await server.stop(grace=2.0)

    client = ActionClient(redis, node="n2")
    reply = await client.call(pbx, {"Action": "QueueAdd", ...}, timeout=5.0)   # -> handler's dict
    # raises OwnerUnavailable (no answer in time; `.taken` says whether it may still have run)
    #        ActionFailed (the handler raised; its message)

The requester LPUSHes {id, reply_to, deadline, request} onto `<ns>:pbx:<pbx>:actions` and
BRPOPs its own reply key; the owner BRPOPs the list, skips requests past their deadline, runs
the handler (concurrently, up to `max_concurrent`) and LPUSHes the reply, which expires after
`reply_ttl`. Deadlines are absolute wall-clock times, so the nodes' clocks must agree (NTP) to
well within an action's time-out.

At most once, cluster-wide: before running a request the owner must win `SET <claim> NX`; a
requester that times out tries to win the same key. Exactly one of them does, so a request
pushed twice (a retried LPUSH), popped by two owners in a hand-over, or abandoned by its
requester runs at most once, and `OwnerUnavailable.taken` is False only when it certainly
never will. A request the owner popped but never claimed (it stopped or crashed) is lost: the
requester times out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cluster.redis_link import DEFAULT_NAMESPACE, Outage, actions_key, end_loop, text
from cluster.settings import default_node_id

log = logging.getLogger("callbridge.cluster")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_QUEUE_TTL = 60.0  # a PBX's request list outlives its last push this long (s): no owner, no pile
_CLAIM_MARGIN = 60.0  # a claim outlives its request's deadline this long (s): clocks differ
_WAIT_SLICE = 1.0  # the longest single BRPOP (s): far inside any socket time-out


class OwnerUnavailable(Exception):
    """No owner answered in time. `taken`: False, the request never ran and never will; True,
    the owner took it (it may have run); None, unknown (Redis failed mid-call)."""

    def __init__(self, message: str, *, taken: bool | None = False) -> None:
        super().__init__(message)
        self.taken = taken


class ActionFailed(Exception):
    """The owner's handler raised; `error_type` is the exception's class name."""

    def __init__(self, message: str, *, error_type: str = "") -> None:
        super().__init__(message)
        self.error_type = error_type


def _claim_key(namespace: str, request_id: str) -> str:
    return f"{namespace}:action:{request_id}:claim"


class ActionServer:
    def __init__(self, redis: Redis, pbx: str, handler: Handler, *, node: str | None = None,
                 namespace: str = DEFAULT_NAMESPACE, max_concurrent: int = 32, reply_ttl: float = 30.0,
                 poll: float = 1.0, backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self.pbx = pbx
        self._handler = handler
        self.node = node or default_node_id()
        self.namespace = namespace
        self.key = actions_key(namespace, pbx)
        self.reply_ttl = reply_ttl
        self.poll = poll
        self._clock = clock
        self._slots = asyncio.Semaphore(max_concurrent)
        self._outage = Outage(f"action server for PBX {pbx}", backoff_initial=backoff_initial,
                              backoff_max=backoff_max)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._running: set[asyncio.Task[None]] = set()
        self.served = self.expired = self.not_claimed = self.malformed = 0

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"action-server-{self.pbx}")

    async def stop(self, grace: float = 2.0) -> None:
        """Stop taking requests; give running handlers `grace` seconds to answer, then cancel them.
        A request popped but not yet claimed is lost without running (its requester times
        out knowing it never ran)."""
        if self._task is not None:
            self._stopping = True
            await end_loop(self._task)
            self._task = None
        if self._running:
            _done, late = await asyncio.wait(set(self._running), timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping:
            await self._slots.acquire()  # pop only what can run now; the rest waits in Redis
            try:
                popped = await self._redis.brpop([self.key], timeout=self.poll)
            except (RedisError, OSError) as exc:
                self._slots.release()
                await asyncio.sleep(self._outage.failed(exc))
                continue
            except BaseException:
                self._slots.release()
                raise
            self._outage.recovered()
            if popped is None or self._stopping:
                self._slots.release()
                if popped is not None:  # popped as we stop: back where it was, for the next owner
                    with suppress(RedisError, OSError):
                        await self._redis.rpush(self.key, popped[1])
                continue
            task = asyncio.create_task(self._serve(popped[1]))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("action server for PBX %s: request failed", self.pbx, exc_info=task.exception())

    async def _serve(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            request_id, reply_to = str(message["id"]), str(message["reply_to"])
            deadline, request = float(message["deadline"]), message["request"]
            if not isinstance(request, dict):
                raise TypeError("request is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            self.malformed += 1
            log.warning("action server for PBX %s: malformed request skipped (%s)", self.pbx, exc)
            return
        now = self._clock()
        if now > deadline:
            self.expired += 1
            log.info("action %s for PBX %s skipped: its deadline passed %.1f s ago",
                     request_id, self.pbx, now - deadline)
            return
        try:
            claimed = await self._redis.set(_claim_key(self.namespace, request_id), self.node, nx=True,
                                            px=int((deadline - now + _CLAIM_MARGIN) * 1000))
        except (RedisError, OSError) as exc:  # unclaimed, so never run: its requester can tell
            log.warning("action %s for PBX %s dropped: Redis unavailable (%s)", request_id, self.pbx, exc)
            return
        if not claimed:  # run already, or abandoned by its requester
            self.not_claimed += 1
            return
        try:
            result = await self._handler(request)
            reply: dict[str, Any] = {"id": request_id, "ok": True, "result": result}
            body = json.dumps(reply, ensure_ascii=False)
        except Exception as exc:
            body = json.dumps({"id": request_id, "ok": False, "error": str(exc) or type(exc).__name__,
                               "error_type": type(exc).__name__}, ensure_ascii=False)
        self.served += 1
        await self._reply(reply_to, body, deadline)

    async def _reply(self, reply_to: str, body: str, deadline: float) -> None:
        """It ran: worth a few tries while its requester still waits."""
        delay = 0.05
        while True:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.lpush(reply_to, body)
                    pipe.pexpire(reply_to, int(self.reply_ttl * 1000))
                    await pipe.execute()
                return
            except (RedisError, OSError) as exc:
                if self._clock() + delay > deadline:
                    log.warning("action server for PBX %s: reply to %s lost (%s)", self.pbx, reply_to, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)


class ActionClient:
    def __init__(self, redis: Redis, node: str, *, namespace: str = DEFAULT_NAMESPACE,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self.node = node
        self.namespace = namespace
        self._clock = clock

    async def call(self, pbx: str, request: dict[str, Any], *,
                   timeout: float) -> dict[str, Any]:  # noqa: ASYNC109 (a deadline that travels)
        request_id = f"{self.node}:{uuid.uuid4().hex}"
        reply_to = f"{self.namespace}:action:{request_id}:reply"
        deadline = self._clock() + timeout
        body = json.dumps({"id": request_id, "reply_to": reply_to, "deadline": deadline,
                           "node": self.node, "request": request}, ensure_ascii=False)
        unavailable = f"no owner answered for PBX {pbx} within {timeout} s"
        queue = actions_key(self.namespace, pbx)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.lpush(queue, body)
                pipe.pexpire(queue, int(max(_QUEUE_TTL, timeout + 5) * 1000))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise OwnerUnavailable(f"{unavailable}: Redis unavailable ({exc})", taken=None) from exc
        try:
            while (left := deadline - self._clock()) > 0:
                # Each BRPOP is a pooled connection of its own for as long as it waits.
                popped = await self._redis.brpop([reply_to], timeout=max(0.01, min(left, _WAIT_SLICE)))
                if popped is not None:
                    return self._answer(popped[1])
            # Too late: abandon it. If the owner claimed it first, its answer may be on its way.
            if await self._redis.set(_claim_key(self.namespace, request_id), f"abandoned by {self.node}",
                                     nx=True, px=int(_CLAIM_MARGIN * 1000)):
                raise OwnerUnavailable(unavailable, taken=False)
            late = await self._redis.rpop(reply_to)
        except (RedisError, OSError) as exc:
            raise OwnerUnavailable(f"{unavailable}: Redis unavailable ({exc})", taken=None) from exc
        if late is not None:
            return self._answer(late)
        raise OwnerUnavailable(unavailable, taken=True)

    @staticmethod
    def _answer(raw: bytes | str) -> dict[str, Any]:
        reply = json.loads(text(raw))
        if not reply.get("ok"):
            raise ActionFailed(str(reply.get("error", "")), error_type=str(reply.get("error_type", "")))
        result = reply.get("result")
        return result if isinstance(result, dict) else {"result": result}
