"""Recordings over HTTP: Range on a real WAV, who may hear what (audited), path trickery,
comments and scores, an operator's own reviews; one run through the real login."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.events import CallAnswered
from bridge.calls.record import CallRecord, RingRecord, TransferRecord
from recordings.http import RecordingsApi, setup_recordings
from recordings.recorder import Recorder
from recordings.review_store import ReviewStore
from recordings.settings import Criterion, RecordingSettings
from recordings.store import PausedSpan, RecordingInfo, RecordingStore
from tests.test_auth_http import Browser
from tests.test_recorder import write_wav
from web.access import USER_KEY
from web.audit_log import AuditEntry, AuditLog
from web.auth import unguarded_routes
from web.auth_http import setup_auth
from web.users import User, UserStore

T0 = 1795508320.261248
CRITERIA = [Criterion(name="Greeting", max_points=5), Criterion(name="Solution", max_points=10)]
USERS = {
    "anna": User(username="anna", display_name="Anna", role="operator", extensions=["101"]),
    "clara": User(username="clara", display_name="Clara", role="operator", extensions=["103"]),
    "tina": User(username="tina", display_name="Tina", role="trainer", extensions=[]),
    "sam": User(username="sam", display_name="Sam", role="supervisor", extensions=[]),
}


@web.middleware
async def stand_in_auth(request: web.Request, handler):  # noqa: ANN001, ANN201
    """Tests only: the user named in X-Test-User (web.auth's middleware in the bridge)."""
    request[USER_KEY] = USERS.get(request.headers.get("X-Test-User", ""))
    return await handler(request)


@dataclass
class Site:
    client: TestClient
    api: RecordingsApi
    audio: bytes  # recording 1's file (Anna's leg)
    ids: list[int]

    async def get(self, path: str, user: str = "tina", **headers: str) -> aiohttp.ClientResponse:
        resp = await self.client.get(path, headers={"X-Test-User": user, **headers})
        await resp.read()
        return resp

    async def post(self, path: str, body: object, user: str = "tina") -> aiohttp.ClientResponse:
        resp = await self.client.post(path, data=json.dumps(body), headers={
            "X-Test-User": user, "Content-Type": "application/json"})
        await resp.read()
        return resp

    async def audit(self, action: str = "") -> list[AuditEntry]:
        return list(reversed(await self.api.audit.entries(action=action or None)))


def blind_transfer_call() -> CallRecord:
    """The blind_transfer capture's call: Anna (101) answers, hands over to Clara (103)."""
    return CallRecord(
        call_id="1795508320.44", caller_number="+74951112233", caller_name="Пётр Сидоров", queue="support",
        answered_by="101", rung=["101", "103"], outcome="answered", entered_at=T0,
        answered_at=T0 + 2.0, ended_at=T0 + 13.4,
        rings=[RingRecord(operator="101", queue="support", started_at=T0 + 0.1, ended_at=T0 + 2.0,
                          answered_at=T0 + 2.0, result="ANSWER"),
               RingRecord(operator="103", started_at=T0 + 4.1, ended_at=T0 + 6.0, answered_at=T0 + 6.0,
                          result="ANSWER")],
        transfers=[TransferRecord(kind="blind", from_operator="101", to_operator="103", at=T0 + 4.0)])


def recording(seq: int, operator: str, start: float, stop: float, **fields: object) -> RecordingInfo:
    values: dict[str, object] = {
        "call_id": "1795508320.44", "seq": seq, "source": "bridge", "operator": operator,
        "channel": f"Local/{operator}@agents-0000001{seq};1", "file": None,
        "path": f"2026/11/24/1795508320.44-{operator}-{seq}.wav", "format": "wav", "started_at": T0 + start,
        "stopped_at": T0 + stop, "offset_seconds": start, "duration_seconds": stop - start, "status": "ok"}
    return RecordingInfo(**(values | fields))


async def build_site(store: CallLogStore,
                     root: Path) -> tuple[web.Application, RecordingsApi, bytes, list[int]]:
    await store.save([blind_transfer_call()])
    settings = RecordingSettings(policy="all", directory=root, review_criteria=CRITERIA)
    recordings = RecordingStore(store)
    audio = write_wav(root / "2026/11/24/1795508320.44-101-1.wav", 2.0)
    write_wav(root / "2026/11/24/1795508320.44-103-2.wav", 7.4)
    ids = [await recordings.save(recording(1, "101", 2.0, 4.0, size_bytes=len(audio),
                                           paused=[PausedSpan(start=0.5, end=1.0)])),
           await recordings.save(recording(2, "103", 6.0, 13.4)),
           await recordings.save(recording(3, "103", 6.0, 13.4, path="../../../../etc/passwd")),  # tampered
           await recordings.save(recording(4, "101", 2.0, 4.0, status="purged"))]
    api = RecordingsApi(settings, recordings, ReviewStore(store, CRITERIA), AuditLog(store), store)
    app = web.Application(middlewares=[stand_in_auth])
    setup_recordings(app, api)
    return app, api, audio, ids


@pytest.fixture(name="site")
async def site_fixture(tmp_path: Path) -> AsyncIterator[Site]:
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}")
    await store.open()
    app, api, audio, ids = await build_site(store, tmp_path / "rec")
    client = TestClient(TestServer(app))
    await client.start_server()
    yield Site(client, api, audio, ids)
    await client.close()
    await store.close()


async def test_range_requests_return_the_right_bytes(site: Site) -> None:
    whole = await site.get("/recordings/1/audio", user="anna")
    assert whole.status == 200 and await whole.read() == site.audio
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["Content-Type"] == "audio/wav"
    size = len(site.audio)
    for header, (first, last) in (("bytes=100-199", (100, 199)), ("bytes=-50", (size - 50, size - 1)),
                                  (f"bytes={size - 10}-", (size - 10, size - 1))):
        part = await site.get("/recordings/1/audio", user="anna", Range=header)
        assert part.status == 206, header
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{size}"
        assert await part.read() == site.audio[first:last + 1]
    beyond = await site.get("/recordings/1/audio", user="anna", Range=f"bytes={size + 5}-")
    assert beyond.status == 416
    download = await site.get("/recordings/1/audio?download=1", user="tina")
    assert download.headers["Content-Disposition"] == 'attachment; filename="call-1795508320.44-1.wav"'
    plays = await site.audit("recording.")
    assert [(e.username, e.action, e.result) for e in plays[:4]] == [("anna", "recording.play", "ok")] * 4
    assert plays[1].detail["range"] == "bytes=100-199" and plays[0].target == "1"
    assert (plays[-1].username, plays[-1].action) == ("tina", "recording.download")


async def test_an_operator_cannot_hear_another_operators_recording(site: Site) -> None:
    resp = await site.get("/recordings/2/audio", user="anna")  # Clara's leg
    assert resp.status == 403 and b"Anna" not in await resp.read()
    assert (await site.get("/api/recordings/2", user="anna")).status == 403
    assert (await site.get("/api/recordings?operator=103", user="anna")).status == 403
    denied = await site.audit("recording.")
    assert [(e.username, e.role, e.action, e.target, e.result) for e in denied] == [
        ("anna", "operator", "recording.play", "2", "denied"),
        ("anna", "operator", "recording.view", "2", "denied"),
        ("anna", "operator", "recording.list", None, "denied")]
    assert (await site.get("/recordings/2/audio", user="clara")).status == 200
    assert (await site.get("/recordings/2/audio", user="sam")).status == 200
    own = await (await site.get("/api/recordings", user="anna")).json()
    assert {r["operator"] for r in own["recordings"]} == {"101"}
    everything = await (await site.get("/api/recordings", user="tina")).json()
    assert {r["seq"] for r in everything["recordings"]} == {1, 2, 3, 4}
    assert (await site.client.get("/recordings/1/audio")).status == 401  # nobody signed in


@pytest.mark.parametrize("path", [
    "/recordings/..%2F..%2Fetc%2Fpasswd/audio",
    "/recordings/%2e%2e/audio",
    "/recordings/1/audio?download=../../etc/passwd",
    "/api/recordings/..%2F1",
    "/api/recordings?operator=../101",
    "/api/recordings?call_id=..%2F..%2Fx",
    "/api/recordings?since=2026-11-24&x=..%5Cwin",
    "/api/reviews/operators/..%2F101",
    "/api/recordings/1?x=%00",
])
async def test_path_trickery_in_any_parameter_is_refused(site: Site, path: str) -> None:
    resp = await site.get(path, user="tina")
    assert resp.status in (400, 404), path
    assert await resp.read() != site.audio and b"root:" not in await resp.read()
    if resp.status == 400:  # it reached a handler: the refusal is audited
        (entry,) = await site.audit()
        assert (entry.username, entry.result) == ("tina", "refused")


async def test_dot_segments_the_client_did_not_normalise_reach_nothing(site: Site) -> None:
    server = site.client.server
    for path in ("/recordings/1/../2/audio", "/recordings/..%2F2/audio", "/api/recordings/1/..%2f2"):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Test-User: anna\r\nConnection: close\r\n\r\n"
                     .encode())
        answer = await reader.read()
        writer.close()
        assert answer.split(b" ")[1] in (b"400", b"404"), path  # never Clara's recording 2
        assert b"RIFF" not in answer


async def test_tampered_purged_and_missing_files_are_not_served(site: Site, tmp_path: Path) -> None:
    assert (await site.get("/recordings/3/audio")).status == 404  # its stored path leaves the folder
    assert (await site.get("/recordings/4/audio")).status == 404  # purged
    (tmp_path / "rec/2026/11/24/1795508320.44-103-2.wav").unlink()
    assert (await site.get("/recordings/2/audio")).status == 404  # gone from disk
    (tmp_path / "rec/2026/11/24/1795508320.44-103-2.wav").symlink_to("/etc/passwd")
    resp = await site.get("/recordings/2/audio")
    assert resp.status == 404 and b"root:" not in await resp.read()  # a symlink out is refused
    assert [e.result for e in await site.audit()] == ["not_found"] * 4


async def test_comments_and_scores_are_stored(site: Site) -> None:
    resp = await site.post("/api/recordings/1/comments", {"at_seconds": 1.5, "text": "Good greeting"})
    assert resp.status == 201
    assert (await site.post("/api/recordings/1/comments", {"at_seconds": 99, "text": "x"})).status == 400
    assert (await site.post("/api/recordings/1/comments", {"at_seconds": 1, "text": " "})).status == 400
    assert (await site.post("/api/recordings/1/comments", {"at_seconds": 1, "text": "mine"},
                            user="anna")).status == 403  # operators do not review
    card = await site.post("/api/recordings/1/score", {"scores": {"Greeting": 4, "Solution": 9},
                                                       "comment": "solid"})
    assert card.status == 200
    assert (await card.json())["total"] == 13 and (await card.json())["percent"] == 86.7
    for bad in ({"Greeting": 6, "Solution": 1}, {"Greeting": 1}, {"Greeting": 1, "Solution": 1, "X": 1},
                {"Greeting": 1.5, "Solution": 1}):
        assert (await site.post("/api/recordings/1/score", {"scores": bad})).status == 400, bad
    rescored = await site.post("/api/recordings/1/score", {"scores": {"Greeting": 5, "Solution": 9}})
    assert (await rescored.json())["total"] == 14  # one card per reviewer: replaced
    detail = await (await site.get("/api/recordings/1")).json()
    assert [(c["at_seconds"], c["text"], c["author"]) for c in detail["comments"]] == [
        (1.5, "Good greeting", "tina")]
    assert [(s["reviewer"], s["scores"]) for s in detail["scores"]] == [
        ("tina", {"Greeting": 5, "Solution": 9})]
    events = [(e["event"], e["offset_seconds"]) for e in detail["timeline"]]
    assert events == [("entered", -2.0), ("rung", -1.9), ("answered", 0.0), ("recording_started", 0.0),
                      ("paused", 0.5), ("resumed", 1.0), ("transferred", 2.0), ("recording_stopped", 2.0),
                      ("rung", 2.1), ("answered", 4.0), ("hung_up", 11.4)]
    assert detail["recording"]["audio_url"] == "/recordings/1/audio" and "path" not in detail["recording"]
    actions = [(e.action, e.result) for e in await site.audit()]
    assert actions.count(("recording.comment", "ok")) == 1 and ("recording.comment", "denied") in actions
    assert actions.count(("recording.score", "ok")) == 2
    assert actions.count(("recording.score", "refused")) == 4


async def test_an_operator_sees_his_own_scores(site: Site) -> None:
    await site.post("/api/recordings/1/score", {"scores": {"Greeting": 3, "Solution": 8}})
    await site.post("/api/recordings/2/score", {"scores": {"Greeting": 5, "Solution": 10}}, user="sam")
    await site.post("/api/recordings/2/comments", {"at_seconds": 2, "text": "for Clara"})
    mine = await (await site.get("/api/reviews/mine", user="anna")).json()
    assert [(r["recording"]["id"], [s["total"] for s in r["scores"]]) for r in mine["reviews"]] == [(1, [11])]
    assert mine["summary"] == [{"operator": "101", "cards": 1, "total": 11, "max_total": 15, "percent": 73.3,
                                "by_criterion": {"Greeting": 3.0, "Solution": 8.0}}]
    clara = await (await site.get("/api/reviews/mine", user="clara")).json()
    assert [r["recording"]["id"] for r in clara["reviews"]] == [2]
    assert clara["reviews"][0]["comments"][0]["text"] == "for Clara"
    assert (await site.get("/api/reviews/operators/103", user="anna")).status == 403
    assert (await (await site.get("/api/reviews/operators/103", user="tina")).json())["cards"] == 1


async def test_through_the_real_login(tmp_path: Path) -> None:
    store = CallLogStore(f"sqlite+aiosqlite:///{tmp_path / 'calls.sqlite3'}")
    await store.open()
    users = UserStore(store, hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    await users.open()
    await users.add("anna", "correct horse battery", role="operator", extensions=["101"])
    await users.add("tina", "correct horse battery", role="trainer")
    app, _, audio, _ = await build_site(store, tmp_path / "rec")
    app.middlewares.clear()  # the real middleware instead of the stand-in
    setup_auth(app, users, secure_cookie=False)
    assert unguarded_routes(app) == []
    client = TestClient(TestServer(app), cookie_jar=aiohttp.DummyCookieJar())
    await client.start_server()
    try:
        anna = Browser(client)
        await anna.login("anna", "correct horse battery")
        part = await anna.request("GET", "/recordings/1/audio", headers={"Range": "bytes=0-43"})
        assert part.status == 206 and await part.read() == audio[:44]
        assert (await anna.request("GET", "/recordings/2/audio")).status == 403
        tina = Browser(client)
        await tina.login("tina", "correct horse battery")
        body = {"at_seconds": 1, "text": "ok"}
        no_csrf = await tina.request("POST", "/api/recordings/1/comments", json=body)
        assert no_csrf.status == 403  # the middleware wants X-CSRF-Token
        ok = await tina.request("POST", "/api/recordings/1/comments", json=body,
                                headers={"X-CSRF-Token": await tina.csrf()})
        assert ok.status == 201
    finally:
        await client.close()
        await users.close()
        await store.close()


async def test_pause_and_resume_over_http(site: Site) -> None:
    sent: list[dict[str, str]] = []

    async def send(action: dict[str, str], pbx: str | None = None) -> AmiMessage:
        sent.append(action)
        return AmiMessage([("Response", "Success")])

    recorder = Recorder(site.api.settings, send)
    live = blind_transfer_call().model_copy(update={"call_id": "1795508400.61", "ended_at": None})
    recorder.handle(CallAnswered(at=T0 + 2.0, call=live, operator="101",
                                 channel="Local/101@agents-0000002a;1"))
    await recorder.flush()
    site.api.recorder = recorder
    url = "/api/calls/1795508400.61/recording/"
    assert (await site.post(url + "pause", {}, user="clara")).status == 403  # not her call
    assert (await site.post(url + "pause", {}, user="tina")).status == 403  # trainers only listen
    resp = await site.post(url + "pause", {}, user="anna")
    assert resp.status == 200 and (await resp.json())["paused"] is True
    assert (await site.post(url + "resume", {}, user="sam")).status == 200
    assert (await site.post("/api/calls/1795508400.99/recording/pause", {}, user="sam")).status == 404
    assert (await site.post(url + "stop", {}, user="sam")).status == 400
    assert [(a["Action"], a.get("State")) for a in sent] == [
        ("MixMonitor", None), ("MixMonitorMute", "1"), ("MixMonitorMute", "0")]
    assert [(e.username, e.action, e.result) for e in await site.audit()] == [
        ("clara", "recording.pause", "denied"), ("tina", "recording.pause", "denied"),
        ("anna", "recording.pause", "ok"), ("sam", "recording.resume", "ok"),
        ("sam", "recording.pause", "not_found"), ("sam", "recording.control", "refused")]
