"""The login throttle's counters in Redis, so every node of a cluster sees every failure.

    throttle = LoginThrottle(..., secret=shared_secret, shared=RedisCounters(redis_client))

The same slots (keyed by the nodes' shared secret: hashed names, never a user name or an
address) and the same arithmetic as web.login_throttle's arrays, done by one Lua script per
check or failure, so concurrent nodes never lose an update. Keys:
`callbridge:throttle:{login}:<kind>:<slot>` (a hash: failures `n`, last failure `t`) and
`callbridge:throttle:{login}:global` (the leaky bucket: level `l`, at `a`); the `{login}`
hash tag keeps them on one Redis Cluster shard (a script may touch several). Memory stays
bounded (at most 3 x slots + 1 keys) and every key has a TTL past its forgetting time.
Times are the nodes' clocks (`now`, passed in): the script never moves a bucket backwards
when two nodes' clocks disagree a little.

Unreachable Redis (refused, timed out, an error): the call gives up within `timeout`, the
throttle uses the node's own counters (LoginThrottle keeps them always), and Redis is not
tried again for `retry_interval` seconds, so a dead Redis neither slows every login nor
floods the log: one warning when the outage starts, one line when it ends. Failing open
(no limit) would allow unlimited guessing while Redis is down; failing closed (refuse every
login) would let a Redis outage lock everybody out. Per-node limits cost at most one node's
guesses per node, and no one is locked out. Back, Redis is the truth again: what the nodes
counted during the outage stays in their own counters only (as does all of it if Redis
restarted empty).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from redis.exceptions import RedisError

from web.login_throttle import Counter, Rules

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

log = logging.getLogger(__name__)

KEY_PREFIX = "callbridge:throttle:{login}:"
T = TypeVar("T")

# ARGV: op ("check" | "fail"), now, base_delay, max_delay, forget_after, limit, window,
# counter ttl, bucket ttl, n, then each counter's `free`; KEYS: the n counters, then the
# global bucket if it takes part. Numbers go back and in as "%.17g" strings (exact doubles:
# Redis would truncate a returned Lua number to an integer) so the waits equal one node's.
_SCRIPT = """
local op, now = ARGV[1], tonumber(ARGV[2])
local base, maxd, forget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, window = tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl, bucket_ttl, n = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local function fmt(x) return string.format('%.17g', x) end
local out = {}
for i = 1, n do
  local free, f = tonumber(ARGV[10 + i]), redis.call('HMGET', KEYS[i], 'n', 't')
  local count, last = tonumber(f[1]) or 0, tonumber(f[2]) or 0
  if count > 0 and now - last >= forget then count = 0 end
  if op == 'fail' then
    redis.call('HSET', KEYS[i], 'n', math.min(count + 1, 2147483648), 't', ARGV[2])
    redis.call('EXPIRE', KEYS[i], ttl)
  else
    local wait = 0
    if count >= free then
      local delay = math.min(maxd, base * 2 ^ math.min(count - free, 40))
      wait = math.max(0, last + delay - now)
    end
    out[i] = fmt(wait)
  end
end
if #KEYS > n then
  local key = KEYS[n + 1]
  local f = redis.call('HMGET', key, 'l', 'a')
  local level, at = tonumber(f[1]) or 0, tonumber(f[2]) or 0
  level = math.max(0, level - math.max(0, now - at) * limit / window)
  if op == 'fail' then
    level = math.min(level + 1, 2 * limit)
  else
    local excess = level - (limit - 1)
    out[n + 1] = fmt(excess > 0 and excess * window / limit or 0)
  end
  redis.call('HSET', key, 'l', fmt(level), 'a', ARGV[2])
  redis.call('EXPIRE', key, bucket_ttl)
end
return out
"""


class RedisCounters:
    """web.login_throttle.SharedCounters in Redis (module docstring). `redis`: a
    `redis.asyncio.Redis` (or RedisCluster) client, shared with the rest of the node."""

    def __init__(self, redis: Redis | RedisCluster, *, timeout: float = 1.0, retry_interval: float = 5.0,
                 prefix: str = KEY_PREFIX) -> None:
        self.redis, self.prefix = redis, prefix
        self.timeout, self.retry_interval = timeout, retry_interval
        self._script = redis.register_script(_SCRIPT)  # EVALSHA, loaded again after a Redis restart
        self.down_since: float | None = None  # when the current outage began (node clock)
        self._retry_at = 0.0

    def key(self, counter: Counter) -> str:
        return f"{self.prefix}{counter.kind}:{counter.slot}"

    async def _run(self, now: float, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call()`'s result, or None while Redis is out (then logged once, retried later)."""
        if self.down_since is not None and now < self._retry_at:
            return None
        try:
            async with asyncio.timeout(self.timeout):
                result = await call()
        except (RedisError, OSError, TimeoutError) as exc:
            if self.down_since is None:
                self.down_since = now
                log.warning("Redis unreachable (%s): login throttling uses each node's own counters "
                            "until it is back", exc.__class__.__name__ + (f": {exc}" if str(exc) else ""))
            self._retry_at = now + self.retry_interval
            return None
        if self.down_since is not None:
            log.warning("Redis reachable again after %.0f s: login throttling is shared again",
                        now - self.down_since)
            self.down_since = None
        return result

    def _args(self, op: str, counters: Sequence[Counter], rules: Rules, now: float) -> list[str]:
        ttl = math.ceil(rules.forget_after) + 60  # past forgetting: the script forgets by `now` anyway
        bucket_ttl = math.ceil(2 * rules.global_window) + 60  # a full bucket (2 x limit) drains in 2 windows
        return [op, repr(float(now)), *(repr(float(x)) for x in (rules.base_delay, rules.max_delay,
                                                                 rules.forget_after)),
                str(rules.global_limit), repr(float(rules.global_window)), str(ttl), str(bucket_ttl),
                str(len(counters)), *(str(c.free) for c in counters)]

    def _keys(self, counters: Sequence[Counter], everyone: bool) -> list[str]:
        return [self.key(c) for c in counters] + ([f"{self.prefix}global"] if everyone else [])

    async def waits(self, counters: Sequence[Counter], everyone: bool, rules: Rules,
                    now: float) -> list[float] | None:
        keys, args = self._keys(counters, everyone), self._args("check", counters, rules, now)
        found = await self._run(now, lambda: self._script(keys=keys, args=args))
        return None if found is None else [float(x) for x in found]

    async def failed(self, counters: Sequence[Counter], everyone: bool, rules: Rules, now: float) -> None:
        keys, args = self._keys(counters, everyone), self._args("fail", counters, rules, now)
        await self._run(now, lambda: self._script(keys=keys, args=args))

    async def reset(self, counter: Counter, now: float) -> None:
        await self._run(now, lambda: self.redis.delete(self.key(counter)))
