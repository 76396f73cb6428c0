"""The wallboard's HTTP side on the real bridge: real login, CSRF and roles; the AMI simulator
as the PBX. Asserts on the exact actions the PBX received, on its answers as shown to the
supervisor, and on the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from supervision.pbx_actions import (
    SupervisionSettings,
    queue_add_action,
    queue_pause_action,
    queue_remove_action,
    spy_action,
)
from tests.test_wallboard_service import PASSWORD, WallboardStack, until
from web.audit_log import AuditLog
from web.auth import unguarded_routes

SUPERVISION = SupervisionSettings()


class Tab:
    """One signed-in browser: cookies, the CSRF token, maybe the wallboard's socket."""

    def __init__(self, base_url: str) -> None:
        self.session = aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""
        self.frames: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def login(self, username: str) -> Tab:
        page = await (await self.session.get("/login")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        resp = await self.session.post("/login", allow_redirects=False, data={
            "username": username, "password": PASSWORD, "csrf_token": token.group(1)})
        assert resp.status == 303, await resp.text()
        self.csrf = (await (await self.session.get("/api/session")).json())["csrf_token"]
        return self

    async def post(self, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        data = body if isinstance(body, str) else json.dumps(body)
        resp = await self.session.post(path, data=data, headers={
            "X-CSRF-Token": self.csrf, "Content-Type": "application/json"})
        return resp.status, await resp.json()

    async def open_socket(self) -> None:
        ws = await self.session.ws_connect("/ws/wallboard")

        async def read() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.frames.append(json.loads(msg.data))

        self._reader = asyncio.create_task(read())
        await until(lambda: self.frames)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.session.close()


class Site(WallboardStack):
    async def __aenter__(self) -> Site:
        await super().__aenter__()
        self.tabs: list[Tab] = []
        return self

    async def __aexit__(self, *exc: object) -> None:
        for tab in self.tabs:
            await tab.close()
        await super().__aexit__(*exc)

    async def tab(self, username: str | None = None) -> Tab:
        tab = Tab(self.base_url)
        self.tabs.append(tab)
        return await tab.login(username) if username else tab

    async def sent(self, name: str) -> dict[str, str]:
        """The next `name` action the PBX received, without its ActionID."""
        assert self.sim is not None
        action = await self.sim.wait_for_action(name)
        return {k: v for k, v in action.pairs if k != "ActionID"}

    def actions(self, *names: str) -> list[str]:
        assert self.sim is not None
        return [a["Action"] for a in self.sim.actions if a.get("Action") in names]

    async def audit(self, action: str) -> list[Any]:
        return list(reversed(await AuditLog(self.bridge.store).entries(action=action)))


ACTION_ROUTES = [
    ("/api/supervisor/spy", {"operator": "101", "mode": "listen"}),
    ("/api/supervisor/spy/end", {"spyer_channel": "Local/201@supervisor-0000001f;1"}),
    ("/api/supervisor/queue/add", {"queue": "support", "extension": "105", "name": "Eve", "penalty": 0}),
    ("/api/supervisor/queue/remove", {"queue": "support", "extension": "105"}),
    ("/api/supervisor/pause", {"extension": "102", "paused": True, "reason": "lunch"}),
]


async def test_only_supervisors_and_admins_get_in_and_a_refusal_is_a_403_and_an_audit_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Site(tmp_path, ["queue_ops"]) as site:
        await site.replayed()
        anna = await site.tab("anna")
        with caplog.at_level(logging.WARNING, logger="callbridge.audit"):
            for path in ("/wallboard", "/supervisor"):
                resp = await anna.session.get(path, allow_redirects=False)
                assert (resp.status, resp.content_type) == (403, "text/html"), path
            for path, body in ACTION_ROUTES:
                status, answer = await anna.post(path, body)
                assert (status, answer["error"]) == (403, "forbidden"), path
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await anna.session.ws_connect("/ws/wallboard")
            assert refused.value.status == 403
        for path, _ in ACTION_ROUTES:
            assert f"audit: user=anna role=operator denied POST {path}" in caplog.text
        denied = await site.audit("supervisor.denied")
        assert {(e.username, e.role, e.target, e.result) for e in denied} >= {
            ("anna", "operator", path, "denied") for path, _ in ACTION_ROUTES}
        assert site.actions("Originate", "Hangup", "QueueAdd", "QueueRemove", "QueuePause") == []

        stranger = await site.tab()
        resp = await stranger.session.get("/wallboard", allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"].startswith("/login?next=")
        assert (await stranger.post("/api/supervisor/pause", ACTION_ROUTES[-1][1]))[0] == 401
        sam = await site.tab("sam")
        for path in ("/wallboard", "/supervisor"):
            resp = await sam.session.get(path)
            assert resp.status == 200 and "script-src 'self'" in resp.headers["Content-Security-Policy"]
        resp = await sam.session.post("/api/supervisor/pause", json=ACTION_ROUTES[-1][1])  # no CSRF token
        assert resp.status == 403 and (await resp.json())["error"] == "csrf"
        assert unguarded_routes(site.bridge.web_runner.app) == []


@pytest.mark.parametrize("mode", ["listen", "whisper", "barge"])
async def test_listen_whisper_barge_originate_exactly_the_chanspy_the_pbx_needs(tmp_path: Path,
                                                                               mode: str) -> None:
    async with Site(tmp_path, ["queue_ops"]) as site:
        sam = await site.tab("sam")
        status, answer = await sam.post("/api/supervisor/spy", {"operator": "101", "mode": mode})
        assert status == 200
        assert (answer["ok"], answer["response"], answer["message"]) == (True, "Success",
                                                                          "Originate successfully queued")
        assert await site.sent("Originate") == spy_action(SUPERVISION, "202", "101", mode, "Sam Supervisor")
        (line,) = await site.audit(f"spy.{mode}")
        assert (line.username, line.role, line.target, line.result) == (
            "sam", "supervisor", "101", "Success: Originate successfully queued")
        assert line.detail["listener"] == "202" and line.detail["ami"]["Data"].startswith("Local/101@agents,")


async def test_trainee_shadowing_and_what_is_refused_before_the_pbx(tmp_path: Path) -> None:
    async with Site(tmp_path, ["queue_ops"]) as site:
        root = await site.tab("root")  # an admin with no phone of his own
        status, answer = await root.post("/api/supervisor/spy", {"operator": "101", "mode": "listen"})
        assert status == 400 and "extension" in answer["message"]
        status, answer = await root.post("/api/supervisor/spy", {"operator": "101", "mode": "listen",
                                                                  "listener_extension": "105"})
        assert status == 200 and answer["ok"] and answer["detail"]["shadowing"] is True
        assert await site.sent("Originate") == spy_action(SUPERVISION, "105", "101", "listen", "Admin")
        for bad in ({"operator": "101\r\nAction: Hangup", "mode": "listen"},
                    {"operator": "101", "mode": "spy"},
                    {"operator": "101", "mode": "listen", "listener_extension": "101"},
                    {"operator": "101", "mode": "listen", "extra": 1}):
            status, answer = await root.post("/api/supervisor/spy", bad)
            assert status == 400, bad
        assert (await root.post("/api/supervisor/spy", "{not json"))[0] == 400
        status, answer = await root.post("/api/supervisor/spy/end", {"spyer_channel": "SIP/trunk-00000001"})
        assert status == 404  # only a known spy session is hung up: this is no general Hangup
        assert site.actions("Originate", "Hangup") == ["Originate"]


async def test_spy_sessions_are_shown_switched_and_ended(tmp_path: Path) -> None:
    async with Site(tmp_path, ["supervisor_spy"], speed=1.0) as site:
        sam = await site.tab("sam")
        await sam.open_socket()
        await until(lambda: sam.frames[-1]["spies"], limit=10)  # the capture's supervisor 201 listens
        (spy,) = sam.frames[-1]["spies"]
        assert (spy["state"], spy["listener"], spy["operator"], spy["operator_name"], spy["caller"]) == (
            "live", "201", "101", "Anna Operator", "Алексей Смирнов")
        assert [c["caller_number"] for c in sam.frames[-1]["live_calls"]] == ["+74951230000"]

        # Switch 201 to barge: his session ends first, then his phone is called again. The
        # simulated PBX answers it within ~0.15 s: hold that until the page showed "calling".
        assert site.sim is not None
        site.sim.hold_made_events()
        status, answer = await sam.post("/api/supervisor/spy", {"operator": "101", "mode": "barge",
                                                                 "listener_extension": "201"})
        assert status == 200 and answer["ok"]
        assert await site.sent("Hangup") == {"Action": "Hangup", "Channel": spy["spyer_channel"]}
        assert [(e["action"], e["response"], e["message"]) for e in answer["detail"]["ended"]] == [
            ("spy.end", "Success", "Channel Hungup")]
        assert await site.sent("Originate") == spy_action(SUPERVISION, "201", "101", "barge",
                                                          "Sam Supervisor")
        await until(lambda: any((s["state"], s["mode"], s["requested_by"]) == ("calling", "barge", "sam")
                                for s in sam.frames[-1]["spies"]))
        site.sim.hold_made_events(False)

        # The switch already hung that channel up: the PBX says so, and the bridge shows its answer.
        status, answer = await sam.post("/api/supervisor/spy/end", {"spyer_channel": spy["spyer_channel"]})
        assert status == 200 and (answer["response"], answer["message"]) == ("Error", "No such channel")
        assert await site.sent("Hangup") == {"Action": "Hangup", "Channel": spy["spyer_channel"]}
        ended = await site.audit("spy.end")
        assert [(e.username, e.target, e.detail["reason"]) for e in ended] == [("sam", "101", "switch"),
                                                                             ("sam", "101", "end")]
        activity = [a["text"] for a in sam.frames[-1]["activity"]]
        assert any("spy.end" in text and "Channel Hungup" in text for text in activity)


async def test_reserve_added_paused_unpaused_and_removed_through_the_pbx(tmp_path: Path) -> None:
    async with Site(tmp_path, ["queue_answered"]) as site:
        await site.replayed()
        sam = await site.tab("sam")
        await sam.open_socket()

        def member(ext: str) -> dict[str, Any] | None:
            ops = sam.frames[-1]["operators"]
            return next((o for o in ops if o["operator"] == ext and o["queues"]), None)

        status, answer = await sam.post("/api/supervisor/queue/add", {
            "queue": "support", "extension": "105", "name": "Reserve Eve", "penalty": 2})
        assert (status, answer["ok"], answer["message"]) == (200, True, "Added interface to queue")
        expected = queue_add_action(SUPERVISION, "support", "105", "Reserve Eve", 2)
        assert await site.sent("QueueAdd") == expected
        await until(lambda: member("105") is not None)  # the PBX's QueueMemberAdded, pushed to the page
        assert (member("105")["name"], member("105")["queues"]) == ("Reserve Eve", ["support"])

        status, answer = await sam.post("/api/supervisor/pause", {
            "extension": "105", "paused": True, "reason": "training", "queue": "support"})
        assert (status, answer["message"]) == (200, "Interface paused successfully")
        expected = queue_pause_action(SUPERVISION, "105", True, "training", "support")
        assert await site.sent("QueuePause") == expected
        await until(lambda: member("105")["status"] == "paused")
        assert member("105")["paused_reason"] == "training"
        status, answer = await sam.post("/api/supervisor/pause", {"extension": "105", "paused": False})
        assert (status, answer["message"]) == (200, "Interface unpaused successfully")
        assert await site.sent("QueuePause") == queue_pause_action(SUPERVISION, "105", False)
        await until(lambda: member("105")["status"] != "paused")

        remove = {"queue": "support", "extension": "105"}
        status, answer = await sam.post("/api/supervisor/queue/remove", remove)
        assert (status, answer["message"]) == (200, "Removed interface from queue")
        assert await site.sent("QueueRemove") == queue_remove_action(SUPERVISION, "support", "105")
        await until(lambda: member("105") is None)
        # The PBX says no: shown as it said it, and audited so.
        status, answer = await sam.post("/api/supervisor/queue/remove", remove)
        assert (status, answer["ok"], answer["response"], answer["message"]) == (
            200, False, "Error", "Unable to remove interface: Not there")
        status, answer = await sam.post("/api/supervisor/queue/add", {
            "queue": "support", "extension": "106", "name": "Bad\r\nAction: Hangup"})
        assert status == 400  # a CR/LF would forge an AMI header

        lines = [(e.action, e.target, e.result) for e in await site.audit("queue.")]
        assert lines == [
            ("queue.add", "support:105", "Success: Added interface to queue"),
            ("queue.pause", "105", "Success: Interface paused successfully"),
            ("queue.unpause", "105", "Success: Interface unpaused successfully"),
            ("queue.remove", "support:105", "Success: Removed interface from queue"),
            ("queue.remove", "support:105", "Error: Unable to remove interface: Not there")]

        # No PBX: the supervisor is told so, and that is audited too.
        await site.sim.stop()
        await until(lambda: sam.frames[-1]["pbx"] == "lost")
        status, answer = await sam.post("/api/supervisor/pause", {"extension": "102", "paused": True})
        assert (status, answer["ok"], answer["response"]) == (503, False, "Unavailable")
        assert (await site.audit("queue.pause"))[-1].result.startswith("Unavailable: ")


async def test_the_first_frame_is_the_state_now_and_the_page_gets_every_change(tmp_path: Path) -> None:
    async with Site(tmp_path, ["queue_ops"]) as site:
        await site.replayed()
        sam = await site.tab("sam")
        await sam.open_socket()
        first = sam.frames[0]
        assert first["type"] == "wallboard" and first["pbx"] == "connected" and first["target_seconds"] == 30
        assert [(q["name"], q["logged_in"], q["waiting"]) for q in first["queues"]] == [
            ("sales", 2, 0), ("support", 2, 0)]  # from the QueueStatus at connect and the events since
        assert {o["operator"]: o["name"] for o in first["operators"]} == {
            "101": "Anna Operator", "102": "Boris Operator", "103": "Clara Operator", "104": "Denis Operator"}
        assert first["thresholds"]["support"] == {"callers_waiting": 5, "longest_wait_seconds": 60.0}
        count = len(sam.frames)
        await asyncio.sleep(1.5)
        assert len(sam.frames) == count  # nothing changed, nothing sent
        await sam.post("/api/supervisor/pause", {"extension": "101", "paused": True, "reason": "lunch"})
        await until(lambda: next(o for o in sam.frames[-1]["operators"] if o["operator"] == "101")["status"]
                    == "paused")
