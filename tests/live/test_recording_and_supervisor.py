"""Recording on answer, and the supervisor's actions through the bridge (ChanSpy listen,
QueueAdd, QueuePause), each checked by its effect on the real Asterisk."""

from __future__ import annotations

import asyncio

from recordings.store import RecordingStore
from tests.live.ami_driver import AmiDriver, where
from tests.live.checks import check_answered_queue_call
from tests.live.lab import LabPbx, LiveBridge, until
from tests.live.scenarios import call_queue, phone, queue_members


async def test_recording_on_answer_writes_a_non_empty_file_where_the_log_says(
        ami: AmiDriver, pbx: LabPbx, start_bridge) -> None:
    bridge = await start_bridge(recordings={"policy": "all"})
    call = await call_queue(ami, "support", "+74951239999", "Ольга Кузнецова", talk=3)
    connect = await call.wait("AgentConnect")
    started = await ami.wait_for(where("MixMonitorStart", Linkedid=call.linkedid), what="MixMonitorStart")
    assert started.timestamp - connect.timestamp < 2.0  # on answer
    filename = await ami.wait_for(where("VarSet", Variable="MIXMONITOR_FILENAME", Linkedid=call.linkedid),
                                  what="MIXMONITOR_FILENAME")
    await call.ended()

    logged = await bridge.logged(call.linkedid)
    check_answered_queue_call(logged, call)
    assert logged["recording"] == filename["Value"]
    root = (pbx.rundir / "recordings").resolve()
    path = root / logged["recording"]  # an absolute file name stays itself
    assert root in path.resolve().parents, f"{path} is not under the configured directory {root}"
    assert call.linkedid in path.name and "-101-" in path.name

    store = RecordingStore(bridge.store)
    async with asyncio.timeout(30):  # the after-call check (check_delay_seconds) settles the row
        while True:
            rows = await store.for_call(call.linkedid)
            if rows and all(r.status not in ("starting", "recording", "stopped") for r in rows):
                break
            await asyncio.sleep(0.1)
    assert [(r.operator, r.status) for r in rows] == [("101", "ok")], rows
    assert path.is_file() and path.stat().st_size > 44, f"{path}: header-only or missing"
    assert rows[0].size_bytes == path.stat().st_size


async def test_chanspy_listen_through_the_bridge(ami: AmiDriver, bridge: LiveBridge) -> None:
    vera = await bridge.tab("vera")
    call = await call_queue(ami, "support", "+74951230000", "Алексей Смирнов", talk=6)
    connect = await call.wait("AgentConnect")
    assert connect["Interface"] == "Local/101@agents/n"

    status, result = await vera.post("/api/supervisor/spy", {"operator": "101", "mode": "listen"})
    assert status == 200 and result["ok"], result
    spy = await ami.wait_for(where("ChanSpyStart", SpyeeLinkedid=call.linkedid), what="ChanSpyStart")
    assert spy["SpyerChannel"].startswith("Local/201@supervisor-")  # Vera's own phone listens
    assert spy["SpyeeChannel"].startswith("Local/101@agents-")
    service = bridge.service.wallboard
    await until(lambda: spy["SpyerChannel"] in service.spies.sessions, 10, "the bridge's spy session")
    session = service.spies.sessions[spy["SpyerChannel"]]
    assert (session.supervisor, session.operator, session.mode) == ("201", "101", "listen")

    status, ended = await vera.post("/api/supervisor/spy/end", {"spyer_channel": spy["SpyerChannel"]})
    assert status == 200 and ended["ok"], ended
    await ami.wait_for(where("ChanSpyStop", SpyerChannel=spy["SpyerChannel"]), what="ChanSpyStop")
    await call.ended()
    logged = await bridge.logged(call.linkedid)  # the listened call is untouched by the listener
    check_answered_queue_call(logged, call)
    assert logged["rung"] == ["101"] and not logged["internal"]
    spy_call = await bridge.logged(spy["SpyerLinkedid"])
    assert (spy_call["internal"], spy_call["caller_number"], spy_call["queue"]) == (True, "201", None)


async def test_queue_add_and_pause_through_the_bridge_change_who_gets_calls(ami: AmiDriver,
                                                                           bridge: LiveBridge) -> None:
    vera = await bridge.tab("vera")
    status, added = await vera.post("/api/supervisor/queue/add", {"queue": "support", "extension": "105",
                                                                  "name": "Eve Reserve", "penalty": 0})
    assert status == 200 and added["ok"], added
    event = await ami.wait_for(where("QueueMemberAdded", Queue="support"), what="QueueMemberAdded")
    assert (event["Interface"], event["MemberName"]) == ("Local/105@agents/n", "Eve Reserve")
    for ext in ("101", "102"):
        status, paused = await vera.post("/api/supervisor/pause", {"extension": ext, "paused": True,
                                                                  "reason": "training", "queue": "support"})
        assert status == 200 and paused["ok"], paused
        pause = await ami.wait_for(where("QueueMemberPause", Interface=f"Local/{ext}@agents/n"),
                                   what=f"QueueMemberPause {ext}")
        assert (pause["Paused"], pause["PausedReason"]) == ("1", "training")
    members = await queue_members(ami, "support")
    assert {ext: m["Paused"] for ext, m in members.items()} == {"101": "1", "102": "1", "105": "0"}

    # The effect: the next caller is rung on Eve's phone only, and she answers.
    await phone(ami, "105", ring=1)
    call = await call_queue(ami, "support", "+74951230077", "Reserve Needed", talk=2)
    await call.ended()
    logged = await bridge.logged(call.linkedid)
    assert (logged["rung"], logged["answered_by"], logged["outcome"]) == (["105"], "105", "answered")
    check_answered_queue_call(logged, call)

    status, unpaused = await vera.post("/api/supervisor/pause", {"extension": "101", "paused": False,
                                                                "queue": "support"})
    assert status == 200 and unpaused["ok"], unpaused
    status, removed = await vera.post("/api/supervisor/queue/remove",
                                      {"queue": "support", "extension": "105"})
    assert status == 200 and removed["ok"], removed
    await ami.wait_for(where("QueueMemberRemoved", Interface="Local/105@agents/n"), what="QueueMemberRemoved")
    members = await queue_members(ami, "support")
    assert {ext: m["Paused"] for ext, m in members.items()} == {"101": "0", "102": "1"}
