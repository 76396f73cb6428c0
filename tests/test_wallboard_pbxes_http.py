"""The wallboard's HTTP side with two PBXes on the real bridge: two AMI simulators as PBX "a"
and PBX "b" (`[[pbx]]`), each with a "support" queue. `/api/wallboard?pbx=` and the socket's
`?pbx=` filter, an action names its PBX and only that PBX receives it, one PBX down shows as
such while the other's figures stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from bridge.call_log.store import CallLogStore
from bridge.service import BridgeService
from bridge.settings import load_settings
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES
from tests.test_wallboard_http import Tab
from tests.test_wallboard_service import PASSWORD, USERS, recorded_clock, until
from web.audit_log import AuditLog
from web.users import UserStore


class TwoPbxes:
    """PBX a replays `queue_answered`, PBX b `queue_abandoned`; one bridge for both."""

    def __init__(self, tmp: Path) -> None:
        self.db = f"sqlite+aiosqlite:///{tmp / 'callbridge.sqlite3'}"
        self.sims = {"a": AmiSimulator([FIXTURES / "queue_answered.ami"]),
                     "b": AmiSimulator([FIXTURES / "queue_abandoned.ami"])}
        self.tabs: list[Tab] = []

    async def __aenter__(self) -> TwoPbxes:
        store = CallLogStore(self.db)
        await store.open()
        try:
            users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
            for name, role, display, exts in USERS:
                await users.add(name, PASSWORD, role=role, display_name=display, extensions=exts)
        finally:
            await store.close()
        pbxes = []
        for pbx, sim in self.sims.items():
            host, port = await sim.start()
            pbxes.append({"id": pbx, "host": host, "port": port, "ping_interval": 5.0, "backoff_max": 0.3})
        self.bridge = BridgeService(load_settings(
            database_url=self.db, timezone="UTC", pbx=pbxes,
            http={"host": "127.0.0.1", "port": 0, "secure_cookie": False}), clock=recorded_clock())
        await self.bridge.start()
        assert self.bridge.web_address is not None
        self.base_url = "http://{}:{}".format(*self.bridge.web_address)
        events = sum(len(sim.events) for sim in self.sims.values())
        await until(lambda: self.bridge.pipeline.events_in >= events, limit=20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for tab in self.tabs:
            await tab.close()
        await self.bridge.stop()
        for sim in self.sims.values():
            await sim.stop()

    async def tab(self, username: str) -> Tab:
        tab = Tab(self.base_url)
        self.tabs.append(tab)
        return await tab.login(username)

    def actions(self, pbx: str, name: str) -> list[dict[str, str]]:
        return [{k: v for k, v in a.pairs if k != "ActionID"} for a in self.sims[pbx].actions
                if a.get("Action") == name]


async def board(tab: Tab, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = await tab.session.get(f"/api/wallboard{query}")
    return resp.status, await resp.json()


async def test_two_pbxes_on_the_wallboard_filtered_acted_on_and_one_lost(tmp_path: Path) -> None:
    async with TwoPbxes(tmp_path) as site:
        sam = await site.tab("sam")
        status, every = await board(sam)
        assert status == 200 and [p["id"] for p in every["pbxes"]] == ["a", "b"]
        figures = {(q["pbx"], q["name"]): (q["calls_today"], q["answered_today"], q["abandoned_today"])
                   for q in every["queues"]}
        assert figures[("a", "support")] == (1, 1, 0) and figures[("b", "support")] == (1, 0, 1)
        status, only_b = await board(sam, "?pbx=b")
        assert status == 200 and only_b["pbx_filter"] == "b"
        assert {q["pbx"] for q in only_b["queues"]} == {"b"}
        assert {o["pbx"] for o in only_b["operators"]} <= {"b"}
        status, refused = await board(sam, "?pbx=nowhere")
        assert status == 400 and "nowhere" in refused["message"]
        anna = await site.tab("anna")
        assert (await anna.session.get("/api/wallboard?pbx=b")).status == 403

        ws = await sam.session.ws_connect("/ws/wallboard?pbx=a")
        first = await ws.receive_json(timeout=5)
        await ws.close()
        assert first["pbx_filter"] == "a" and {q["pbx"] for q in first["queues"]} == {"a"}

        # A pause on b's 101: only b's PBX is asked, and the audit line names it.
        status, answer = await sam.post("/api/supervisor/pause",
                                        {"extension": "101", "paused": True, "reason": "lunch", "pbx": "b"})
        assert status == 200 and answer["pbx"] == "b"
        assert [a["Interface"] for a in site.actions("b", "QueuePause")] == ["Local/101@agents/n"]
        assert site.actions("a", "QueuePause") == []
        (line,) = await AuditLog(site.bridge.store).entries(action="queue.pause")
        assert (line.username, line.target, line.detail["pbx"]) == ("sam", "101", "b")
        status, answer = await sam.post("/api/supervisor/pause", {"extension": "101", "paused": True,
                                                                  "pbx": "Nowhere"})
        assert status == 400

        # b goes down: shown so, and a's figures stay.
        await site.sims["b"].stop()
        await until(lambda: not site.bridge.pbx_ready("b"))
        status, every = await board(sam)
        assert every["pbxes"] == [{"id": "a", "state": "connected"}, {"id": "b", "state": "lost"}]
        assert every["pbx"] == "lost" and (await board(sam, "?pbx=a"))[1]["pbx"] == "connected"
        assert {(q["pbx"], q["name"]) for q in every["queues"]} >= {("a", "support")}
