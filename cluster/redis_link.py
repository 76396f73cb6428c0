"""What the Redis side of the cluster shares: the client it is given, key names, and how an
outage is retried and logged.

Every loop here (stream writer, stream reader, action server) survives Redis going away: it
retries with a back-off that doubles up to a ceiling, and the outage is two log lines, one
when it starts and one when it ends with its length, never one per retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("callbridge.cluster")

DEFAULT_NAMESPACE = "callbridge"


def connect(url: str, *, max_connections: int = 256, client_name: str | None = None) -> Redis:
    """A client fit for these loops.

    One retry, at once: a pooled connection left over from before a Redis restart fails its
    first command, and that should not count as an outage; longer outages are the loops'
    business (their back-off, their log lines), not hidden inside redis-py's retries. Every
    command that blocks (XREAD BLOCK, BRPOP) waits at most a few seconds, well inside
    `socket_timeout`. `max_connections` bounds the pool: each waiting action call holds one.
    """
    return Redis.from_url(
        url,
        max_connections=max_connections,
        client_name=client_name,
        socket_connect_timeout=2.0,
        socket_timeout=15.0,
        socket_keepalive=True,
        health_check_interval=10,
        retry=Retry(NoBackoff(), 1),
    )


def events_key(namespace: str, pbx: str) -> str:
    return f"{namespace}:pbx:{pbx}:events"


def actions_key(namespace: str, pbx: str) -> str:
    return f"{namespace}:pbx:{pbx}:actions"


def text(value: bytes | str) -> str:
    """Redis answers bytes, or str when the client was made with decode_responses=True."""
    return value.decode() if isinstance(value, bytes) else value


async def end_loop(task: asyncio.Task[None]) -> None:
    """Cancel a loop's task, again until it ends. redis-py's asyncio client now and then
    swallows a cancellation that lands in a blocking command (redis/redis-py#2028): the command
    just returns. So every loop also checks its own stopping flag after each command, and this
    cancels once more if it is still there."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    if not task.cancelled() and task.exception() is not None:
        log.error("%s ended with an error", task.get_name(), exc_info=task.exception())


class Outage:
    """Back-off and the two log lines of one outage of one loop (`what` names the loop)."""

    def __init__(self, what: str, *, backoff_initial: float = 0.1, backoff_max: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._clock = clock
        self._since: float | None = None
        self._delay = backoff_initial
        self.count = 0  # outages so far

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> float:
        """Note a failure; returns how long to wait before the next try."""
        if self._since is None:
            self._since = self._clock()
            self._delay = self.backoff_initial
            self.count += 1
            log.warning("%s: Redis unavailable (%s: %s); retrying with back-off up to %g s",
                        self.what, type(exc).__name__, exc, self.backoff_max)
        delay = self._delay
        self._delay = min(self._delay * 2, self.backoff_max)
        return delay

    def recovered(self, detail: str = "") -> None:
        if self._since is None:
            return
        lasted = self._clock() - self._since
        self._since = None
        log.info("%s: Redis back after %.1f s%s", self.what, lasted, f" ({detail})" if detail else "")
