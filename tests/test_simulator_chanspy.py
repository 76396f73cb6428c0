"""The simulator's ChanSpy and PlayDTMF as the lab Asterisk does them (supervisor_spy.ami,
supervisor_whisper_barge.ami, app_chanspy.c, app_senddtmf.c): over its TCP port, then end
to end through the bridge's wallboard. The replay is held (`hold_replay`) while a call is
up, so nothing races the capture."""

from __future__ import annotations

from pathlib import Path

from bridge.ami.message import AmiMessage
from supervision.pbx_actions import SupervisionSettings, spy_action
from tests.capture_facts import FIXTURES, capture_events
from tests.test_ami_simulator import Client, connect
from tests.test_ami_simulator import sim_factory as sim_factory  # noqa: F401  # the fixture
from tests.test_wallboard_http import Site
from tests.test_wallboard_service import until

CAPTURE = "queue_answered"  # Anna (101) answers a support call, the caller hangs up


def unsolicited(capture: str) -> list[AmiMessage]:
    return [m for m in capture_events(capture) if "ActionID" not in m and m.event != "FullyBooted"]


def keys(message: AmiMessage) -> list[str]:
    return [k for k, _ in message.pairs]


def recorded(capture: str, event: str) -> AmiMessage:
    return next(m for m in capture_events(capture) if m.event == event)


CALL = unsolicited(CAPTURE)
TALKING = next(i for i, m in enumerate(CALL) if m.event == "BridgeEnter") + 2  # events until both are in
ANNA_PHONE = next(m["Channel"] for m in CALL if m.event == "Newchannel" and m["Channel"].endswith(";2")
                  and m["Channel"].startswith("Local/101@agents"))
LINKEDID = next(m["Linkedid"] for m in CALL if m.event == "Newchannel")


def spy(supervisor: str, operator: str, mode: str = "listen") -> dict[str, str]:
    return spy_action(SupervisionSettings(), supervisor, operator, mode, "Sam Supervisor")  # type: ignore[arg-type]


async def originate(client: Client, action: dict[str, str]) -> tuple[str, list[AmiMessage]]:
    """Send the Originate; (its ActionID, everything up to the spyer's Newexten Wait)."""
    action = dict(action)
    action_id = client.send(action.pop("Action"), **action)
    got = await client.until(lambda m: m.event == "Newexten" and m.get("Application") == "Wait")
    return action_id, got


def spyer_events(got: list[AmiMessage], prefix: str) -> list[tuple[str, str]]:
    return [(m.event or "", m.get("Channel") or m.get("SpyerChannel", "")) for m in got
            if (m.get("Channel") or m.get("SpyerChannel", "")).startswith(prefix)]


async def test_spy_on_a_live_call_then_switch_and_hang_up(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / f"{CAPTURE}.ami"])
    sim.hold_replay(TALKING)
    client = await connect(sim)
    await client.until(lambda m: m.event == "BridgeEnter" and m["Channel"].startswith("Local/101"))
    action_id, got = await originate(client, spy("202", "101"))
    reply = next(m for m in got if not m.is_event)
    assert (reply["ActionID"], reply["Message"]) == (action_id, "Originate successfully queued")
    made = [m for m in got if m.is_event and m.get("Channel", m.get("SpyerChannel", "")).startswith(
        "Local/202@supervisor")]
    response = made[0]  # the capture's order: the OriginateResponse, then the spyer's channels
    assert (response.event, response["Response"], response["Reason"]) == ("OriginateResponse", "Success", "4")
    spyer = response["Channel"]
    assert spyer.startswith("Local/202@supervisor-") and spyer.endswith(";1")
    phone = spyer[:-1] + "2"
    assert [(m.event, m["Channel"]) for m in made[1:3]] == [("Newchannel", spyer), ("Newchannel", phone)]
    assert keys(made[1]) == keys(recorded("supervisor_spy", "Newchannel"))
    assert made[1]["Uniqueid"] == response["Uniqueid"] == made[2]["Linkedid"]
    caller_ids = [m for m in made if m.event == "NewCallerid"]
    assert [(m["Channel"], m["CallerIDNum"], m["CallerIDName"]) for m in caller_ids] == [
        (spyer, "202", "Sam Supervisor"), (phone, "202", "Sam Supervisor")]
    (start,) = [m for m in made if m.event == "ChanSpyStart"]
    assert keys(start) == keys(recorded("supervisor_spy", "ChanSpyStart"))
    # The spyer is the originated `;1`; the spyee the operator's phone side `;2`, in the call.
    assert (start["SpyerChannel"], start["SpyeeChannel"], start["SpyeeLinkedid"]) == (
        spyer, ANNA_PHONE, LINKEDID)
    assert (start["SpyerCallerIDNum"], start["SpyerChannelStateDesc"]) == ("202", "Up")

    listed = await client.answer(client.send("CoreShowChannels"), done="CoreShowChannelsComplete")
    chanspy = next(m for m in listed if m.get("Channel") == spyer)
    assert (chanspy["Application"], chanspy["ApplicationData"]) == ("ChanSpy", "Local/101@agents,qdE")

    action_id = client.send("PlayDTMF", Channel=spyer, Digit="5", Receive="true")
    assert (await client.answer(action_id))[0].pairs == [
        ("Response", "Success"), ("ActionID", action_id), ("Message", "DTMF successfully queued")]
    action_id = client.send("PlayDTMF", Channel="Local/202@supervisor-0badf00d;1", Digit="5", Receive="true")
    assert (await client.answer(action_id))[0].pairs == [  # app_senddtmf.c manager_play_dtmf
        ("Response", "Error"), ("ActionID", action_id), ("Message", "Channel not found")]

    action_id = client.send("Hangup", Channel=spyer)
    got = await client.until(lambda m: m.event == "Hangup" and m["Channel"] == phone)
    assert got[0].pairs[:3] == [("Response", "Success"), ("ActionID", action_id),
                                ("Message", "Channel Hungup")]
    # supervisor_whisper_barge.ami, the Hangup of 202's spyer: ChanSpyStop, then the pair goes.
    assert spyer_events(got, "Local/202@supervisor") == [
        ("ChanSpyStop", spyer), ("HangupRequest", phone), ("Hangup", spyer), ("SoftHangupRequest", phone),
        ("Hangup", phone)]
    assert [m["Cause"] for m in got if m.event == "Hangup"] == ["0", "0"]  # as captured: no cause set
    assert got[1]["SpyeeChannel"] == ANNA_PHONE
    listed = await client.answer(client.send("CoreShowChannels"), done="CoreShowChannelsComplete")
    assert not [m for m in listed if m.get("Channel", "").startswith("Local/202")]
    assert ANNA_PHONE in {m.get("Channel") for m in listed}  # the spied call goes on


async def test_chanspy_waits_for_the_operator_and_exits_with_his_call(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / f"{CAPTURE}.ami"])
    sim.hold_replay(0)  # nobody is up yet
    client = await connect(sim)
    _, got = await originate(client, spy("203", "101", "barge"))
    assert "ChanSpyStart" not in [m.event for m in got]  # the scan found nobody: ChanSpy waits
    assert next(m for m in got if m.event == "OriginateResponse")["Response"] == "Success"
    spyer = next(m for m in got if m.event == "OriginateResponse")["Channel"]

    sim.hold_replay(TALKING)  # Anna's phone rings, she answers: the waiting ChanSpy finds her
    got = await client.until(lambda m: m.event == "ChanSpyStart")
    assert (got[-1]["SpyerChannel"], got[-1]["SpyeeChannel"]) == (spyer, ANNA_PHONE)

    sim.hold_replay(None)  # the caller hangs up: option E ends the session with the call
    got = await client.until(lambda m: m.event == "Hangup" and m["Channel"] == spyer[:-1] + "2")
    names = [(m.event, m.get("Channel") or m.get("SpyerChannel")) for m in got]
    stop, spyee_gone = names.index(("ChanSpyStop", spyer)), names.index(("Hangup", ANNA_PHONE))
    assert stop < spyee_gone < names.index(("Hangup", spyer))  # supervisor_spy.ami's order
    recorded_order = [m.event for m in unsolicited("supervisor_spy")
                      if m.event != "Cdr" and (m.get("Channel") or m.get("SpyerChannel", "")).startswith(
                          "Local/201@supervisor") and float(m["Timestamp"]) > 1795508378]
    assert [e for e, ch in names if (ch or "").startswith("Local/203@supervisor")] == recorded_order
    assert sim.generated_events[-1]["Channel"] == spyer[:-1] + "2"


async def test_without_e_chanspy_stays_after_the_call(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / f"{CAPTURE}.ami"])
    sim.hold_replay(TALKING)
    client = await connect(sim)
    await client.until(lambda m: m.event == "BridgeEnter" and m["Channel"].startswith("Local/101"))
    action = {**spy("204", "101"), "Data": "Local/101@agents,q"}
    _, got = await originate(client, action)
    spyer = next(m for m in got if m.event == "ChanSpyStart")["SpyerChannel"]
    sim.hold_replay(None)
    await client.until(lambda m: m.event == "ChanSpyStop")
    await client.until(lambda m: m.event == "Hangup" and m["Channel"] == ANNA_PHONE)
    await sim.wait_for_events(len(CALL))  # the whole capture is out
    listed = await client.answer(client.send("CoreShowChannels"), done="CoreShowChannelsComplete")
    assert {m.get("Channel") for m in listed if m.event == "CoreShowChannel"} == {spyer, spyer[:-1] + "2"}


async def test_the_wallboard_session_goes_from_calling_to_live_and_ends(tmp_path: Path) -> None:
    site = Site(tmp_path, [CAPTURE])
    await site.start(pbx=False)
    try:
        site.tabs = []
        sim = await site.start_pbx()
        sim.hold_replay(TALKING)  # set before the bridge's login: Anna stays on the call
        sam = await site.tab("sam")
        await sam.open_socket()
        await until(lambda: any(c["call_id"] == LINKEDID for c in sam.frames[-1]["live_calls"]))

        def spies() -> list[tuple[str, str, str]]:
            return [(s["state"], s["listener"], s["operator"]) for s in sam.frames[-1]["spies"]]

        sim.hold_made_events()  # his phone has not answered yet
        status, answer = await sam.post("/api/supervisor/spy", {"operator": "101", "mode": "listen"})
        assert status == 200 and answer["ok"]
        await until(lambda: spies() == [("calling", "202", "101")])
        sim.hold_made_events(False)  # answered: ChanSpyStart
        await until(lambda: spies() == [("live", "202", "101")])
        (session,) = sam.frames[-1]["spies"]
        assert session["spyer_channel"].startswith("Local/202@supervisor-")
        # The listener's own call is no caller's.
        assert [c["call_id"] for c in sam.frames[-1]["live_calls"]] == [LINKEDID]

        sim.hold_replay(None)  # the caller hangs up: with E the session ends
        await until(lambda: not sam.frames[-1]["spies"] and not sam.frames[-1]["live_calls"])
        assert [a for a in sim.actions if a.get("Action") == "Hangup"] == []  # the PBX ended it
        activity = [a["text"] for a in sam.frames[-1]["activity"]]
        assert any("stopped listening" in text for text in activity)
    finally:
        for tab in site.tabs:
            await tab.close()
        await site.stop()
