"""/healthz, /readyz and /metrics of a running bridge: what a load balancer and Prometheus
read, and that only the ops networks get it."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES
from tests.test_service import ended_calls, until


def settings_for(host: str, port: int, db: Path, **http: object):
    return load_settings(database_url=f"sqlite+aiosqlite:///{db}",
                         ami={"host": host, "port": port, "ping_interval": 1.0, "ping_timeout": 1.0,
                              "backoff_max": 0.5, "probe_interval": 0.2},
                         http={"port": 0, **http})


def metric(text: str, name: str) -> float:
    """The value of one sample line (`name` includes its labels)."""
    (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[-1])


async def test_ready_metrics_and_health_follow_the_pbx(tmp_path: Path) -> None:
    # Paced (the 2 s ring lasts 0.4 s): unpaced, the whole call can end before the caller's
    # lookup answers, and a card never shown is rightly no pop.
    async with AmiSimulator([FIXTURES / "queue_answered.ami"], speed=5) as sim:
        service = BridgeService(settings_for(*sim.address, tmp_path / "log.sqlite3"))
        await service.start()
        base = "http://{}:{}".format(*service.web_address)
        try:
            await ended_calls(service, 1)
            await until(lambda: service.pbx_ready())
            async with aiohttp.ClientSession() as http:
                async with http.get(base + "/healthz") as resp:
                    assert (resp.status, await resp.json()) == (200, {"status": "alive"})
                async with http.get(base + "/readyz") as resp:
                    assert resp.status == 200
                    assert await resp.json() == {"status": "ready", "database": "ok",
                                                 "pbx": {"main": "owner"}}
                async with http.get(base + "/metrics") as resp:
                    assert resp.status == 200 and resp.content_type == "text/plain"
                    text = await resp.text()
                assert metric(text, 'callbridge_ami_connected{pbx="main"}') == 1.0
                assert metric(text, 'callbridge_pbx_owner{pbx="main"}') == 1.0
                assert metric(text, 'callbridge_ami_events_total{pbx="main"}') > 20
                assert metric(text, 'callbridge_live_calls{pbx="main"}') == 0.0
                assert metric(text, "callbridge_call_log_calls_written_total") >= 1
                assert metric(text, "callbridge_call_log_queue") == 0.0
                assert metric(text, 'callbridge_crm_breaker_state{adapter="builtin",state="closed"}') == 1.0
                # The capture rings 101 once: one card popped, from the ring's arrival.
                assert metric(text, "callbridge_card_pop_seconds_count") == 1.0
                assert 0 < metric(text, "callbridge_card_pop_seconds_sum") < 1.0
                await sim.stop()  # the PBX goes away: this node owns it and is not connected
                await until(lambda: not service.pbx_ready())
                async with http.get(base + "/readyz") as resp:
                    assert resp.status == 503
                    assert (await resp.json())["pbx"] == {"main": "owner, not connected"}
        finally:
            await service.stop()


async def test_only_the_ops_networks_are_answered(tmp_path: Path) -> None:
    service = BridgeService(settings_for("127.0.0.1", 1, tmp_path / "log.sqlite3",
                                         ops_networks=["10.0.0.0/8"]))
    await service.start()
    base = "http://{}:{}".format(*service.web_address)
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/healthz", "/readyz", "/metrics"):
                async with http.get(base + path) as resp:
                    assert resp.status == 403, path
                    assert "ops_networks" in (await resp.json())["message"]
    finally:
        await service.stop()


async def test_a_tls_proxys_public_origin_and_the_shared_key_reach_the_login_checks(tmp_path: Path) -> None:
    from web.auth import AUTH_KEY

    service = BridgeService(settings_for("127.0.0.1", 1, tmp_path / "log.sqlite3",
                                         public_origins=["https://calls.example.com/"],
                                         secret_key="one key for every node, 16+"))
    await service.start()
    try:
        assert service.web_runner is not None
        auth = service.web_runner.app[AUTH_KEY]
        assert auth.allowed_origins == frozenset({"https://calls.example.com"})
        assert auth.secret == b"one key for every node, 16+"
    finally:
        await service.stop()
