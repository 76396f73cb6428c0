"""Login throttling that an attacker can neither flush nor turn against the real user.

Four limits, all checked before any password is verified (a refused try costs no hash):

- per account: `account_free` failures, then each further try waits `base_delay` doubling per
  failure up to `max_delay` (exponential delay, never a permanent lock-out);
- per client address (IPv6 by /64: one host has billions of addresses): the same with
  `address_free`, so one address cannot spray guesses over many accounts;
- a global ceiling: a leaky bucket of `global_limit` failures draining over `global_window`;
  when it is full every login without a device cookie waits;
- a device cookie (HMAC-signed, set at each successful login) lets its browser sign in to
  its own account through the account, address and global limits, counted on a bucket of
  its own (`account_free` failures, then the same delays). So an attacker hammering
  `anna` from the proxy's shared address delays the attacker, not Anna at her desk.

The counters sit in fixed-size arrays indexed by a keyed hash (keyed by `secret`), so
memory is constant, nothing is ever evicted, and no number of throwaway user names or
addresses can flush the count of a real account. Two keys may share a slot (4096 of them):
that only makes the limit stricter for both, and the key is secret, so the attacker cannot
aim a collision. Failures are forgotten only by time (`forget_after` without a failure) or,
for an account and a device, by a successful login.

The state is per process by default (one node, nothing else to run). A cluster gives
`shared` (web.shared_state.RedisCounters): the same slots and arithmetic kept in Redis, so
every node sees every failure; the nodes must share `secret` (it keys the slots and signs
the device cookies). Each node also keeps counting in its own arrays: when the shared store
is unreachable its verdicts come from what this node saw (never a lock-out for everybody,
never unlimited guessing: at most one node's limits per node).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SlotCounters:
    """Failure counts in `size` fixed slots (never grows, never evicts)."""

    def __init__(self, size: int, key: bytes, *, free: int, base_delay: float, max_delay: float,
                 forget_after: float) -> None:
        self.size, self._key = size, key
        self.free, self.base_delay = free, base_delay
        self.max_delay, self.forget_after = max_delay, forget_after
        self._failures = array("I", bytes(4 * size))
        self._last = array("d", bytes(8 * size))

    def slot(self, name: str) -> int:
        digest = hashlib.blake2b(name.encode("utf-8", "replace"), key=self._key, digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.size

    def _count(self, slot: int, now: float) -> int:
        if self._failures[slot] and now - self._last[slot] >= self.forget_after:
            self._failures[slot] = 0
        return self._failures[slot]

    def retry_after(self, name: str, now: float) -> float:
        slot = self.slot(name)
        count = self._count(slot, now)
        if count < self.free:
            return 0.0
        delay = min(self.max_delay, self.base_delay * 2.0 ** min(count - self.free, 40))
        return max(0.0, self._last[slot] + delay - now)

    def failed(self, name: str, now: float) -> None:
        slot = self.slot(name)
        self._failures[slot] = min(self._count(slot, now) + 1, 2**31)
        self._last[slot] = now

    def reset(self, name: str) -> None:
        self._failures[self.slot(name)] = 0


class LeakyBucket:
    """At most `limit` failures per `window` seconds over everybody."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._level, self._at = 0.0, 0.0

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._at) * self.limit / self.window)
        self._at = now

    def retry_after(self, now: float) -> float:
        self._drain(now)
        excess = self._level - (self.limit - 1)
        return excess * self.window / self.limit if excess > 0 else 0.0

    def failed(self, now: float) -> None:
        self._drain(now)
        self._level = min(self._level + 1.0, 2.0 * self.limit)


@dataclass(frozen=True)
class Verdict:
    retry_after: float  # seconds; 0: the password may be checked
    limit: str  # which limit refused ("account", "address", "global", "device") or ""


@dataclass(frozen=True)
class Counter:
    """One slot counter a login touches (a shared store keeps it under `kind` and `slot`)."""

    kind: str  # "account", "address" or "device"
    slot: int
    free: int  # failures before the delays start


@dataclass(frozen=True)
class Rules:
    """The delays and the global ceiling, the same for every counter."""

    base_delay: float
    max_delay: float
    forget_after: float
    global_limit: int
    global_window: float


class SharedCounters(Protocol):
    """Counters every node sees (web.shared_state.RedisCounters), with the arithmetic of
    SlotCounters and LeakyBucket. `everyone`: the global bucket too, after `counters`.
    Unreachable: `waits` gives None and the others do nothing (the caller falls back)."""

    async def waits(self, counters: Sequence[Counter], everyone: bool, rules: Rules,
                    now: float) -> list[float] | None: ...

    async def failed(self, counters: Sequence[Counter], everyone: bool, rules: Rules, now: float) -> None: ...

    async def reset(self, counter: Counter, now: float) -> None: ...


def subkey(secret: bytes, purpose: str) -> bytes:
    """A key for one use derived from the (configured or random) secret; any length of secret."""
    return hmac.new(secret, f"callbridge-throttle:{purpose}".encode(), hashlib.sha256).digest()


Touched = tuple[str, SlotCounters, str]  # (kind, its counters, the name counted)


class LoginThrottle:
    """The login limits (module docstring). `clock`: epoch seconds, moved by tests."""

    def __init__(self, *, account_free: int = 5, address_free: int = 20, base_delay: float = 60.0,
                 max_delay: float = 15 * 60.0, forget_after: float = 3600.0, global_limit: int = 300,
                 global_window: float = 60.0, slots: int = 4096, device_max_age: float = 30 * 86400.0,
                 secret: bytes | None = None, shared: SharedCounters | None = None,
                 clock: Callable[[], float]) -> None:
        if min(account_free, address_free, global_limit, slots) < 1 or min(base_delay, global_window) <= 0:
            raise ValueError("login limits must be positive")
        self.clock, self.shared = clock, shared
        # Slot keys and device cookies: unguessable; shared by the nodes given the same secret.
        self.secret = secret or secrets.token_bytes(32)
        self.rules = Rules(base_delay, max_delay, forget_after, global_limit, global_window)
        common = {"base_delay": base_delay, "max_delay": max_delay, "forget_after": forget_after}
        self.accounts = SlotCounters(slots, subkey(self.secret, "account"), free=account_free, **common)
        self.addresses = SlotCounters(slots, subkey(self.secret, "address"), free=address_free, **common)
        self.devices = SlotCounters(slots, subkey(self.secret, "device"), free=account_free, **common)
        self.everyone = LeakyBucket(global_limit, global_window)
        self.device_max_age = device_max_age

    # -- device cookies: "<issued>.<nonce>.<hmac(username, issued, nonce)>" --------------------

    def _sign(self, username: str, issued: str, nonce: str) -> str:
        message = f"device:{username}:{issued}:{nonce}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def device_token(self, username: str) -> str:
        issued, nonce = str(int(self.clock())), secrets.token_urlsafe(16)
        return f"{issued}.{nonce}.{self._sign(username, issued, nonce)}"

    def device_id(self, token: str | None, username: str) -> str | None:
        """The device's id if `token` is a live device cookie issued to `username`, else None."""
        parts = (token or "").split(".")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
            return None
        issued, nonce, mac = parts
        if not hmac.compare_digest(self._sign(username, issued, nonce), mac):
            return None
        if not 0 <= self.clock() - int(issued) < self.device_max_age:
            return None
        return f"{username}:{nonce}"

    # -- the decision -----------------------------------------------------------------------

    def _touched(self, username: str, address: str, device: str | None) -> list[Touched]:
        if device is not None:  # a browser this account signed in from: only its own bucket
            return [("device", self.devices, device)]
        return [("account", self.accounts, username), ("address", self.addresses, address)]

    @staticmethod
    def _shared(touched: list[Touched]) -> list[Counter]:
        return [Counter(kind, c.slot(name), c.free) for kind, c, name in touched]

    async def check(self, username: str, address: str, device: str | None) -> Verdict:
        now, touched = self.clock(), self._touched(username, address, device)
        everyone = device is None  # a device's own login passes the global ceiling
        limits = [kind for kind, _, _ in touched] + (["global"] if everyone else [])
        waits = [c.retry_after(name, now) for _, c, name in touched]
        if everyone:
            waits.append(self.everyone.retry_after(now))
        if self.shared is not None:
            # Reachable, the shared counters are the truth (they saw every node's failures,
            # and a success on another node reset them); unreachable, this node's own count.
            shared = await self.shared.waits(self._shared(touched), everyone, self.rules, now)
            waits = waits if shared is None else shared
        for limit, wait in zip(limits, waits, strict=True):
            if wait > 0:
                return Verdict(wait, limit)
        return Verdict(0.0, "")

    async def failed(self, username: str, address: str, device: str | None) -> None:
        now, touched = self.clock(), self._touched(username, address, device)
        for _, counters, name in touched:
            counters.failed(name, now)
        if device is None:
            self.everyone.failed(now)
        if self.shared is not None:
            await self.shared.failed(self._shared(touched), device is None, self.rules, now)

    async def succeeded(self, username: str, device: str | None) -> None:
        # The address keeps its count: an attacker's own valid login must not reset it; nor
        # does a device-cookie login reset the account's (the attacker's delay stays).
        touched = self._touched(username, "", device)[:1]  # the device's, else the account's
        _, counters, name = touched[0]
        counters.reset(name)
        if self.shared is not None:
            await self.shared.reset(self._shared(touched)[0], self.clock())


def seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


# -- the client's address ------------------------------------------------------------------

def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.5", "192.168.0.0/24", "::1"]` -> networks; ValueError names a bad entry."""
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: {value!r} is not an IP address or network") from None
    return tuple(nets)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: web.Request, trusted: tuple[Network, ...]) -> str:
    """The peer's address, or, when the peer is a trusted proxy, the nearest untrusted hop of
    `X-Forwarded-For` (read right to left: only the proxies' own appends are believed)."""
    peer = request.remote or "-"
    ip = _ip(peer)
    if not trusted or ip is None or not any(ip in net for net in trusted):
        return peer
    hops = [h for header in request.headers.getall("X-Forwarded-For", []) for h in header.split(",")]
    for hop in reversed(hops[-32:]):
        hop_ip = _ip(hop)
        if hop_ip is None:
            break  # garbage: trust nothing further left
        if not any(hop_ip in net for net in trusted):
            return str(hop_ip)
    return peer


def address_key(address: str) -> str:
    """What the per-address limit counts: an IPv6 address by its /64 (one host's share)."""
    ip = _ip(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip or address)
