"""The admins' user API (web/admin_http.py) on the real bridge: admin role only (a refusal is
a 403 and an audit row), CSRF as every state-changing request, the CLI's rules, no admin
locking himself out, the password never in the audit log, the admin's login landing; with
several PBXes, extensions on a configured PBX."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from bridge.call_log.store import CallLogStore
from tests.test_wallboard_http import Tab
from tests.test_wallboard_service import WallboardStack
from web.access import USER_KEY
from web.admin_http import add_admin_routes
from web.audit_log import AuditLog
from web.users import UserStore


async def test_only_admins_with_the_csrf_token_change_users_and_all_is_audited(tmp_path: Path) -> None:
    async with WallboardStack(tmp_path, ["queue_answered"]) as stack:
        sam, root = Tab(stack.base_url), Tab(stack.base_url)
        try:
            await sam.login("sam")
            assert (await sam.session.get("/admin/users")).status == 403
            status, _ = await sam.post("/api/admin/users/anna", {"active": False})
            assert status == 403

            await root.login("root")
            resp = await root.session.get("/login", allow_redirects=False)  # signed in: sent to his page
            assert resp.headers["Location"] == "/admin/users"
            no_csrf = await root.session.post("/api/admin/users/anna", json={"active": False})
            assert no_csrf.status == 403
            status, body = await root.post("/api/admin/users/root", {"active": False})
            assert status == 400 and "cannot disable yourself" in body["message"]
            status, body = await root.post("/api/admin/users/root",
                                           {"role": "operator", "extensions": ["109"]})
            assert status == 400
            status, body = await root.post("/api/admin/users", {"username": "ivan", "password": "short",
                                                                "role": "trainer"})
            assert status == 400 and "at least 10 characters" in body["message"]
            status, body = await root.post("/api/admin/users", {"username": "anna", "password": "x" * 12,
                                                                "role": "trainer"})
            assert status == 409
            status, body = await root.post("/api/admin/users/nobody", {"active": False})
            assert status == 404
            ivan = {"username": "ivan", "password": "secret ivan 1", "role": "operator"}
            status, body = await root.post("/api/admin/users", {**ivan, "extensions": ["1x"]})
            assert status == 400 and "not an extension" in body["message"]
            status, body = await root.post("/api/admin/users", {**ivan, "extensions": ["107"]})
            assert status == 200 and body["user"]["extensions"] == ["107"]
            status, body = await root.post("/api/admin/users/ivan", {"role": "supervisor"})
            assert status == 200 and body["user"]["role"] == "supervisor"
        finally:
            await sam.close()
            await root.close()
        rows = list(reversed(await AuditLog(stack.bridge.store).entries()))
    denied = [(r.username, r.action, r.target) for r in rows if r.action == "admin.denied"]
    assert denied == [("sam", "admin.denied", "/admin/users"),
                      ("sam", "admin.denied", "/api/admin/users/anna")]
    mine = [(r.action, r.target, (r.result or "").split(":")[0]) for r in rows if r.username == "root"]
    assert mine == [("user.update", "root", "refused"), ("user.update", "root", "refused"),
                    ("user.add", "ivan", "refused"), ("user.add", "anna", "refused"),
                    ("user.update", "nobody", "refused"), ("user.add", "ivan", "refused"),
                    ("user.add", "ivan", "ok"), ("user.update", "ivan", "ok")]
    assert not any("secret" in str(r.detail) or "password" in str(r.detail) for r in rows)


async def test_with_several_pbxes_an_operators_extensions_are_on_a_configured_one(tmp_path: Path) -> None:
    """Issue 15: the PBX goes with the extensions; the page learns the PBXes from the list."""
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'cb.sqlite3'}")
    users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    await users.open()
    await users.add("root", "correct horse battery", role="admin")

    @web.middleware
    async def as_root(request: web.Request, handler: Callable) -> web.StreamResponse:
        request[USER_KEY] = await users.get("root")
        return await handler(request)

    app = web.Application(middlewares=[as_root])
    add_admin_routes(app, users, AuditLog(store), operator_pattern=r"^\d{3}$", pbxes=("msk", "spb"))
    try:
        async with TestClient(TestServer(app)) as client:
            async def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                resp = await client.post(path, json=body)
                return resp.status, await resp.json()

            listed = await (await client.get("/api/admin/users")).json()
            # root was stored as "main": the first PBX's.
            assert listed["pbxes"] == ["msk", "spb"] and listed["users"][0]["pbx"] == "msk"
            ivan = {"username": "ivan", "password": "secret ivan 1", "role": "operator",
                    "extensions": ["201"]}
            status, body = await post("/api/admin/users", {**ivan, "pbx": "kzn"})
            assert status == 400 and "Unknown PBX 'kzn': one of msk, spb" in body["message"]
            status, body = await post("/api/admin/users", {**ivan, "pbx": "spb"})
            assert status == 200 and (body["user"]["pbx"], body["user"]["extensions"]) == ("spb", ["201"])
            status, body = await post("/api/admin/users", {**ivan, "username": "olga"})  # the first PBX's 201
            assert status == 200 and body["user"]["pbx"] == "msk"
            status, body = await post("/api/admin/users/olga", {"pbx": "spb"})  # ivan's 201 there
            assert status == 409 and "on PBX spb: 201 (bound to ivan)" in body["message"]
            status, body = await post("/api/admin/users/olga", {"pbx": "spb", "extensions": ["202"]})
            assert status == 200 and (body["user"]["pbx"], body["user"]["extensions"]) == ("spb", ["202"])
            assert (await post("/api/admin/users/olga", {"pbx": "kzn"}))[0] == 400
        rows = await AuditLog(store).entries(username="root")
        assert ("user.update", "olga", "ok", "spb") in [(r.action, r.target, r.result, r.detail.get("pbx"))
                                                        for r in rows]
    finally:
        await users.close()
        await store.close()


async def test_an_extension_must_match_the_operator_pattern_of_its_pbx(tmp_path: Path) -> None:
    """PBX a numbers its phones 1xx, b 2xx: each PBX's own `operator_pattern` (BridgeParts)."""
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'cb.sqlite3'}")
    users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    await users.open()
    await users.add("root", "correct horse battery", role="admin")

    @web.middleware
    async def as_root(request: web.Request, handler: Callable) -> web.StreamResponse:
        request[USER_KEY] = await users.get("root")
        return await handler(request)

    app = web.Application(middlewares=[as_root])
    add_admin_routes(app, users, AuditLog(store), operator_pattern=r"^1\d{2}$", pbxes=("a", "b"),
                     patterns={"a": r"^1\d{2}$", "b": r"^2\d{2}$"})
    try:
        async with TestClient(TestServer(app)) as client:
            async def post(path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
                resp = await client.post(path, json=body)
                return resp.status, await resp.json()

            ivan = {"username": "ivan", "password": "secret ivan 1", "role": "operator", "pbx": "b"}
            status, body = await post("/api/admin/users", {**ivan, "extensions": ["101"]})
            assert status == 400 and body["message"] == (
                "Extension '101' is not an extension: matching operator_pattern ^2\\d{2}$ on PBX b")
            status, body = await post("/api/admin/users", {**ivan, "extensions": ["201"]})
            assert status == 200 and (body["user"]["pbx"], body["user"]["extensions"]) == ("b", ["201"])
            olga = {**ivan, "username": "olga", "pbx": None}  # the first PBX, a
            assert (await post("/api/admin/users", {**olga, "extensions": ["201"]}))[0] == 400
            status, body = await post("/api/admin/users", {**olga, "extensions": ["101"]})
            assert status == 200 and body["user"]["pbx"] == "a"
            assert (await post("/api/admin/users/ivan", {"extensions": ["102"]}))[0] == 400  # on b
            status, body = await post("/api/admin/users/olga", {"pbx": "b"})  # her 101 is no phone of b
            assert status == 400 and "'101'" in body["message"] and "on PBX b" in body["message"]
            status, body = await post("/api/admin/users/olga", {"pbx": "b", "extensions": ["202"]})
            assert status == 200 and (body["user"]["pbx"], body["user"]["extensions"]) == ("b", ["202"])
            assert (await users.get("olga")).extensions == ["202"]  # type: ignore[union-attr]
    finally:
        await users.close()
        await store.close()
