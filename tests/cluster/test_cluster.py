"""Three bridge nodes (processes) and two PBXes (simulator processes) on a shared PostgreSQL
and Redis: cards reach the right operator whichever node he is on; the owner of the PBXes
is SIGKILLed mid-call and another node takes over, the call is logged once and right and
its operator's card carries on; Redis restarts and the nodes carry on."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from bridge.call_log.store import CallLogStore
from bridge.calls.inert_rules import touch_of
from bridge.calls.replay import replay_bytes
from bridge.simulator.replay import is_unsolicited
from cluster.redis_link import DEFAULT_NAMESPACE, events_key
from cluster.stream_entries import parse_entries
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import NewContact
from tests.capture_facts import FIXTURES, capture_bytes, capture_events
from tests.cluster.harness import (
    PASSWORD,
    Node,
    Operator,
    Pbx,
    free_port,
    fresh_database,
    node_config,
)
from tests.cluster.redis_server import RedisServer, redis_server_fixture  # noqa: F401 (fixture)
from web.users import UserStore

pytestmark = pytest.mark.postgres
TAKEOVER_LIMIT = 5.0  # the promise, seconds from the owner's death to a new owner
TALK_LEFT = 5.0  # seconds from a queue_answered call's live card to past its hang-up (4.4 s talk)
CALLER = "+74951234567"  # queue_answered's caller, a contact of the built-in CRM here


async def crm_lookups(node: Node) -> float:
    """How many times this node asked the CRM about a caller (its /metrics)."""
    async with aiohttp.ClientSession() as http, http.get(node.base + "/metrics") as resp:
        assert resp.status == 200
        body = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("callbridge_crm_request_seconds_count{") and 'what="lookup"' in line)


async def published_events(redis_url: str, pbx: str) -> list[tuple[str, Any]]:
    """The PBX's stream as its owners published it: each fed event's pairs, each inert
    one's trace (a login's own FullyBooted left out)."""
    redis = Redis.from_url(redis_url)
    try:
        rows = await redis.xrange(events_key(DEFAULT_NAMESPACE, pbx))
    finally:
        await redis.aclose()
    out: list[tuple[str, Any]] = []
    for entry_id, fields in rows:
        for entry in parse_entries(entry_id, fields):
            if entry.kind == "event" and entry.payload.event != "FullyBooted":
                out.append(("event", entry.payload.pairs))
            elif entry.kind == "seen":
                at, alive, channel = entry.payload
                out.append(("seen", (float(at), bool(alive), channel)))
    return out


async def routed_pause(operator: Operator, *, paused: bool, limit: float = 20.0) -> None:
    seen = len(operator.frames)
    body = {"paused": paused, "reason": "Break" if paused else None}
    status, answer = await operator.post("/api/console/pause", body)
    assert status == 200 and all(a["ok"] for a in answer["pbx"]), answer
    await operator.wait_for_frame(lambda f: f["type"] == "agent_state" and f["paused"] is paused,
                                  after=seen, limit=limit)


@dataclass
class Lab:
    nodes: list[Node]
    pbxes: list[Pbx]
    redis: RedisServer
    store: CallLogStore

    async def owners(self) -> dict[str, str]:
        """pbx -> the node that says it owns it (now)."""
        found: dict[str, str] = {}
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            ready = await node.readyz()
            for pbx, state in ((ready or {}).get("pbx") or {}).items():
                if state.startswith("owner"):
                    found[pbx] = node.name
        return found

    async def wait_owned(self, pbxes: set[str], limit: float = 20.0, among: set[str] | None = None
                         ) -> dict[str, str]:
        async with asyncio.timeout(limit):
            while True:
                owners = await self.owners()
                if pbxes <= owners.keys() and (among is None or set(owners.values()) <= among):
                    return owners
                await asyncio.sleep(0.05)


@pytest.fixture
async def lab(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Lab]:  # noqa: F811
    url = await fresh_database()
    # Two PBXes: operator 101 answers a queue call on each (talk ~4.4 s at recorded speed).
    # Each starts once the three nodes are logged in (the owner, and two hot standbys), and
    # goes on talking while the owner is dead, as a real Asterisk does.
    pbxes = [Pbx("main", [FIXTURES / "queue_answered.ami"], tmp_path, logins=3),
             Pbx("lyon", [FIXTURES / "queue_answered.ami"], tmp_path, logins=3)]
    nodes = []
    for i in (1, 2, 3):
        port = free_port()
        config = node_config(f"node{i}", tmp_path / f"node{i}", port, redis_server.url, url, pbxes)
        nodes.append(Node(f"node{i}", tmp_path / f"node{i}", config, port))
    store = CallLogStore(url)
    lab = Lab(nodes, pbxes, redis_server, store)
    try:
        yield lab
    finally:
        for node in nodes:
            node.stop()
        for pbx in pbxes:
            pbx.stop()
        await store.close()
        for node in nodes:  # what each node said, for a failing run
            print(f"---- {node.name} ----\n{node.log_text[-6000:]}")


async def test_cards_follow_operators_across_nodes_and_survive_the_owner_dying(lab: Lab) -> None:
    first, second, third = lab.nodes
    first.start()  # alone at first: it takes both PBXes' locks
    await lab.wait_owned({"main", "lyon"}, among={"node1"})
    second.start()
    third.start()
    async with asyncio.timeout(30):
        while not all([await n.readyz() for n in (second, third)]):  # noqa: ASYNC110 (other processes)
            await asyncio.sleep(0.1)
    await lab.store.open()
    users = UserStore(lab.store)
    await users.add("anna", PASSWORD, role="operator", extensions=["101"], pbx="main")
    await users.add("boris", PASSWORD, role="operator", extensions=["101"], pbx="lyon")
    await users.add("sue", PASSWORD, role="supervisor")
    crm = BuiltinCrm(lab.store)
    await crm.create_contact(NewContact(display_name="Ivan Petrov", company="Romashka", phones=[CALLER]))
    await crm.close()
    # Anna (101 on main) on node3, Boris (101 on lyon) on node2: neither on the owner.
    anna, boris = Operator(third, "anna"), Operator(second, "boris")
    try:
        for op in (anna, boris):
            await op.sign_in()
            await op.open_console()
        for pbx in lab.pbxes:  # the PBXes come up: the owner logs in and the calls start
            pbx.start()
        main_call, lyon_call = "1795508277.0", "lyon:1795508277.0"
        await anna.wait_for_card(main_call, "live", recording=True)
        await boris.wait_for_card(lyon_call, "live", recording=True)
        # Same extension, two PBXes: each operator saw only his own PBX's call.
        assert {c["call_id"] for c in anna.cards.values()} == {main_call}
        assert {c["call_id"] for c in boris.cards.values()} == {lyon_call}
        # The caller's name on both, though only the PBXes' owner asked the CRM about him
        # (screenpop.caller_answers): its answers came to node2 and node3 through the streams.
        for op in (anna, boris):
            [card] = op.cards.values()
            assert (card["caller"]["lookup"], card["caller"]["name"]) == ("found", "Ivan Petrov")
        assert [await crm_lookups(n) for n in (second, third)] == [0, 0]
        assert await crm_lookups(first) >= 1

        # The owner hangs mid-call (both calls in talk) and the calls end at the PBXes while
        # it is hung: what they said then reached only the standbys' own sessions. Then it
        # dies, and all of that is the new owner's to feed and publish (cluster.standby).
        first.freeze()
        await asyncio.sleep(TALK_LEFT)
        killed_at = time.monotonic()
        first.kill()
        owners = await lab.wait_owned({"main", "lyon"}, limit=TAKEOVER_LIMIT + 5, among={"node2", "node3"})
        takeover = time.monotonic() - killed_at
        assert takeover <= TAKEOVER_LIMIT, f"takeover took {takeover:.1f} s"
        # The dead node's PBXes split among the survivors (cluster.balance), one each.
        assert sorted(owners.values()) == ["node2", "node3"], owners
        # The calls go on to their end at the new owner; the cards follow them.
        after_anna = await anna.wait_for_card(main_call, "after_call")
        await boris.wait_for_card(lyon_call, "after_call")
        assert after_anna["answered_at"] is not None

        # Logged once, and exactly what the capture's call was.
        expected = replay_bytes(capture_bytes("queue_answered"))[0].replay_dict()
        async with asyncio.timeout(15):
            while len(ended := [c for c in await lab.store.export() if c.ended_at]) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        logged = {c.call_id: c.replay_dict() for c in await lab.store.export()}
        # The owner at the answer recorded it (policy "all"): the file it named is the call's.
        recordings = {cid: Path(call.pop("recording")) for cid, call in logged.items()}
        assert recordings[main_call].name == recordings[lyon_call].name == "1795508277.0-101-1.wav"
        assert "lyon" in recordings[lyon_call].parts and "lyon" not in recordings[main_call].parts
        expected.pop("recording")
        assert logged[main_call] == expected
        assert logged[lyon_call] == {**expected, "call_id": lyon_call, "pbx": "lyon"}
        assert len(logged) == 2 and len(ended) == 2
        # Recorded once per call: by the owner at the answer, not by every node.
        async with lab.store.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT call_id, pbx FROM recording_files ORDER BY pbx"))).all()
        assert sorted(map(tuple, rows)) == [(main_call, "main"), (lyon_call, "lyon")]
        # Each PBX's stream holds every event the PBX sent, once and in order: the old owner's
        # up to its hang, then the new owner's, its standby's from there on.
        capture = [e for e in capture_events("queue_answered") if is_unsolicited(e)]  # what the PBX replays
        new_owner = {pbx: next(n for n in lab.nodes if n.name == name) for pbx, name in owners.items()}
        for pbx in ("main", "lyon"):
            # Besides the capture: the two events the owner's MixMonitor action made the PBX say.
            published = await published_events(lab.redis.url, pbx)
            made = [i for i, (kind, p) in enumerate(published) if kind == "event" and (
                ("Event", "MixMonitorStart") in p or ("Variable", "MIXMONITOR_FILENAME") in p)]
            assert len(made) == 2
            published = [item for i, item in enumerate(published) if i not in made]
            assert len(published) == len(capture)
            assert published == [("event", e.pairs) if kind == "event" else ("seen", touch_of(e))
                                 for e, (kind, _) in zip(capture, published, strict=True)]
            spliced = re.search(rf"PBX {pbx}: standby session taken over \((\d+) events",
                                new_owner[pbx].log_text)
            assert spliced is not None and int(spliced.group(1)) >= 30, new_owner[pbx].log_text[-3000:]

        # Boris's browser reconnects to the other live node: his card is there at once.
        other = next(n for n in (lab.nodes[1], lab.nodes[2]) if n is not boris.node)
        hello = await boris.reconnect(other)
        assert [(c["call_id"], c["state"]) for c in hello["cards"]] == [(lyon_call, "after_call")]

        # A supervisor on a node that owns neither PBX: the live wallboard of both, at once.
        sue = Operator(other, "sue")
        try:
            await sue.sign_in()
            async with sue.http.get(other.base + "/api/wallboard") as resp:
                board = await resp.json()
        finally:
            await sue.close()
        support = {q["pbx"]: (q["calls_today"], q["answered_today"]) for q in board["queues"]
                   if q["name"] == "support"}
        assert support == {"main": (1, 1), "lyon": (1, 1)}
        assert {(o["pbx"], o["calls_today"]) for o in board["operators"] if o["operator"] == "101"} == {
            ("main", 1), ("lyon", 1)}
        # An operator's action on a node that does not own his PBX: routed to the owner
        # (Redis), the PBX's answer comes back, its events reach his console through the stream.
        follower = next(n for n in (lab.nodes[1], lab.nodes[2]) if n.name != owners["main"])
        await anna.reconnect(follower)
        await routed_pause(anna, paused=True)
        # Redis restarts and loses everything: the nodes reconnect, the followers see the gap,
        # ask the owner for the PBX's picture, and the same round trip works again.
        lab.redis.stop()
        async with asyncio.timeout(10):  # a node cut from Redis is not ready (it follows nothing)
            while (ready := await follower.readyz()) is None or ready.get("redis") != "unreachable":  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        assert ready["status"] == "not ready"
        lab.redis.start()  # empty: no persistence, as after a crash
        async with asyncio.timeout(20):
            while True:
                try:
                    await routed_pause(anna, paused=False, limit=3.0)
                    break
                except (TimeoutError, AssertionError):
                    continue
        # The queue member log is the owner's to write: every row once, though two nodes saw it
        # (it writes in the background: wait for the unpause's rows).
        query = text("SELECT count(*), count(DISTINCT (pbx, at, queue, interface, source, paused)),"
                     " count(*) FILTER (WHERE source = 'QueueMemberPause' AND NOT paused)"
                     " FROM queue_member_log")
        async with asyncio.timeout(10):
            while True:
                async with lab.store.engine.connect() as conn:
                    total, distinct, unpaused = (await conn.execute(query)).one()
                if unpaused:
                    break
                await asyncio.sleep(0.1)
        assert total == distinct, (total, distinct)
        print(json.dumps({"takeover_seconds": round(takeover, 2), "owners": owners}))
    finally:
        await anna.close()
        await boris.close()
