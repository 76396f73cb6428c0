"""Two bridge nodes (processes), one PBX, one lock: the owner's database link stalls (every
byte dropped, no connection closed, as on a dead network path). The owner fences itself
(it stops its AMI link and its writes), the other node can not become a second owner
while the database still holds the first one's session, and takes the PBX once that
session is gone. No sample ever shows two owners."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from tests.capture_facts import FIXTURES
from tests.cluster.harness import Node, Pbx, free_port, fresh_database, node_config
from tests.cluster.pg_proxy import PgProxy
from tests.cluster.redis_server import RedisServer, redis_server_fixture  # noqa: F401 (fixture)

pytestmark = pytest.mark.postgres


async def owner_states(nodes: list[Node]) -> dict[str, str]:
    """node -> its word on the PBX (owner / standby / ...); "?" when it does not answer."""
    states = {}
    for node in nodes:
        ready = await node.readyz()
        states[node.name] = ((ready or {}).get("pbx") or {}).get("main", "?")
    return states


async def test_a_stalled_owner_fences_itself_and_no_second_owner_appears(
        tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811
    url = await fresh_database()
    pbx = Pbx("main", [FIXTURES / "queue_answered.ami"], tmp_path)
    host, port = re.search(r"@([^:/]+):(\d+)/", url).groups()  # type: ignore[union-attr]
    proxy = PgProxy(host, int(port))
    await proxy.start()
    stalled_url = url.replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    nodes = []
    for name, db in (("node1", stalled_url), ("node2", url)):
        http = free_port()
        nodes.append(Node(name, tmp_path / name, node_config(name, tmp_path / name, http, redis_server.url,
                                                             db, [pbx]), http))
    first, second = nodes
    try:
        pbx.start()
        first.start()
        async with asyncio.timeout(20):
            while (await owner_states([first]))["node1"] != "owner":  # noqa: ASYNC110 (a process)
                await asyncio.sleep(0.05)
        second.start()
        async with asyncio.timeout(20):
            while (await owner_states([second]))["node2"] != "standby":  # noqa: ASYNC110 (a process)
                await asyncio.sleep(0.05)

        proxy.freeze()  # node1's database link goes silent
        frozen_at, frozen_wall = time.monotonic(), time.time()
        samples = []
        while time.monotonic() - frozen_at < 6.0:  # the server keeps node1's session (and lock)
            states = await owner_states(nodes)
            samples.append(states)
            assert list(states.values()).count("owner") <= 1, f"two owners: {states}"
            assert states["node2"] != "owner", "node2 took a lock the database still gives node1"
            await asyncio.sleep(0.1)
        assert samples[-1]["node1"] != "owner"
        # node1 fenced itself within its check interval + timeout (0.5 + 1.0 s): its own log says
        # when (the host's clock, as time.time() here; the log's local time, to the ms).
        fenced = re.search(r"^(\S+ \S+) \S+ +callbridge.cluster: pbx main: no longer its owner",
                           first.log_text, re.MULTILINE)
        assert fenced is not None, first.log_text[-2000:]
        fenced_at = time.mktime(time.strptime(fenced.group(1)[:19], "%Y-%m-%d %H:%M:%S")) + \
            int(fenced.group(1)[20:23]) / 1000
        assert 0 <= fenced_at - frozen_wall < 2.5, fenced_at - frozen_wall

        await proxy.close()  # the path breaks for good: the server ends node1's session
        async with asyncio.timeout(10):
            while True:
                states = await owner_states(nodes)
                assert list(states.values()).count("owner") <= 1, f"two owners: {states}"
                if states["node2"] == "owner":
                    break
                await asyncio.sleep(0.1)
    finally:
        for node in nodes:
            node.stop()
        pbx.stop()
        await proxy.close()
        for node in nodes:
            print(f"---- {node.name} ----\n{node.log_text[-4000:]}")
