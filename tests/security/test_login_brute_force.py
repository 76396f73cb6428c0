"""Login brute force (issue 14, item 1): the throttle can be neither flushed, nor multiplied
by addresses, nor spoofed through X-Forwarded-For, nor turned against the real user; and
every try costs the same argon2 work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from tests.security.site import PEER_HEADER, LoginSite, login_site
from tests.test_auth_http import PW

WRONG = "not the password"


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[LoginSite]:
    site = await login_site(tmp_path)
    yield site
    await site.close()


async def test_throwaway_usernames_neither_flush_the_throttle_nor_pass_the_global_ceiling(
        site: LoginSite) -> None:
    for _ in range(5):
        assert await site.attempt("anna", WRONG, peer="10.1.1.1") == 401
    assert await site.attempt("anna", WRONG, peer="10.1.1.1") == 429
    # 10,050 cheap tries (empty passwords) with throwaway names, from many addresses.
    statuses = [await site.attempt(f"x{i}", "", peer=f"10.2.{i // 250}.{i % 250}") for i in range(10_050)]
    assert statuses.count(401) <= 300  # the global ceiling: at most 300 failures a minute get checked
    assert await site.attempt("anna", WRONG, peer="10.1.1.1") == 429  # still throttled: nothing flushed


async def test_twenty_addresses_do_not_multiply_the_guesses_at_one_account(site: LoginSite) -> None:
    checked = [await site.attempt("anna", WRONG, peer=f"10.3.0.{n}") for n in range(20) for _ in range(5)]
    assert checked.count(401) <= 5 and checked.count(429) >= 95


async def test_a_flood_on_her_account_does_not_lock_anna_out(site: LoginSite) -> None:
    proxy = {PEER_HEADER: "10.0.0.1"}  # behind the TLS proxy everybody has its address
    anna = site.browser()
    await anna.request("GET", "/login", headers=proxy)
    page = await anna.request("GET", "/login", headers=proxy)
    token = (await page.text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = {"username": "anna", "password": PW, "csrf_token": token}
    assert (await anna.request("POST", "/login", headers=proxy, data=form)).status == 303
    csrf = await anna.csrf()
    await anna.request("POST", "/logout", headers={**proxy, "X-CSRF-Token": csrf})
    # The attacker, from the same (proxy) address, hammers her account.
    tries = [await site.attempt("anna", WRONG, peer="10.0.0.1") for _ in range(40)]
    assert tries.count(401) <= 5
    # Anna, in her own browser, still signs in with her password.
    page = await anna.request("GET", "/login", headers=proxy)
    token = (await page.text()).split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = await anna.request("POST", "/login", headers=proxy, data={**form, "csrf_token": token})
    assert resp.status == 303 and resp.headers["Location"] == "/console"
    # From a new browser she waits for the delay, never for ever: then the password passes.
    stranger = site.browser()
    refused = await stranger.login("anna")
    assert refused.status == 429
    site.clock.now += int(refused.headers["Retry-After"])
    assert (await site.browser().login("anna")).status == 303


async def test_forwarded_for_is_believed_only_from_trusted_proxies(site: LoginSite, tmp_path: Path) -> None:
    # No trusted proxy: a header the attacker writes himself changes nothing.
    spoofed = [await site.attempt(f"u{i}", WRONG, peer="10.4.0.9", forwarded_for=f"192.0.2.{i}")
               for i in range(100)]
    assert spoofed.count(401) <= 20  # the per-address limit held
    behind = await login_site(tmp_path / "proxied", trusted_proxies=["10.0.0.1"])
    try:
        # Through the trusted proxy: the client's address (the proxy's append) is what counts,
        # whatever the client put in front of it.
        attacker = [await behind.attempt(f"v{i}", WRONG, peer="10.0.0.1",
                                         forwarded_for=f"198.51.100.{i % 250}, 203.0.113.7")
                    for i in range(30)]
        assert attacker.count(401) == 20 and attacker[-1] == 429
        # A colleague behind the same proxy is not blocked by the attacker's address.
        assert await behind.attempt("boris", PW, peer="10.0.0.1", forwarded_for="203.0.113.8") == 303
        # The proxy's own address is not the client: a direct peer's header is ignored.
        assert await behind.attempt("w", WRONG, peer="10.9.9.9", forwarded_for="203.0.113.8") == 401
    finally:
        await behind.close()


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002 (argon2's name)
        self.verifications += 1
        return super().verify(hash, password)


async def test_empty_unknown_and_overlong_passwords_cost_one_hash_each(tmp_path: Path) -> None:
    hasher = CountingHasher()
    site = await login_site(tmp_path, hasher=hasher)
    try:
        for username, password in (("anna", ""), ("", ""), ("", "secret"), ("nobody", "whatever"),
                                   ("anna", "x" * 5000), ("Bad Name!", "whatever"), ("anna", WRONG)):
            before = hasher.verifications
            assert await site.attempt(username, password, peer="10.5.0.1") == 401
            assert hasher.verifications - before == 1, (username, password[:10])
    finally:
        await site.close()
