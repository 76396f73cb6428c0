"""Where the live group found the simulator and the real Asterisk disagreeing (issue 10):
Originate's answer when the far side never answers, Uniqueids on the PBX run's own counter,
and the events actions cause (Hangup, MixMonitor, StopMixMonitor, MixMonitorMute, QueuePause),
each in the shape the captures (or Asterisk's source) show."""

from __future__ import annotations

import re

from bridge.ami.message import AmiMessage
from tests.capture_facts import FIXTURES, capture_events
from tests.test_ami_simulator import LIVE_CHANNEL, Client, connect, synthetic
from tests.test_ami_simulator import sim_factory as sim_factory  # noqa: F401  # the fixture

ORIGINATE_KEYS = ["Event", "Privilege", "Timestamp", "ActionID", "Response", "Channel", "Context",
                  "Exten", "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"]


def unsolicited(capture: str) -> list[AmiMessage]:
    return [m for m in capture_events(capture) if "ActionID" not in m and m.event != "FullyBooted"]


def keys(message: AmiMessage) -> list[str]:
    return [k for k, _ in message.pairs]


def recorded(capture: str, event: str, **fields: str) -> AmiMessage:
    return next(m for m in capture_events(capture) if m.event == event
                and all(m.get(k) == v for k, v in fields.items()))


async def pbx_time(client: Client) -> float:
    """The simulated PBX's clock now (a Ping reply's Timestamp)."""
    action_id = client.send("Ping")
    return float((await client.answer(action_id))[0]["Timestamp"])


async def originate(client: Client, channel: str, **extra: str) -> tuple[float, AmiMessage]:
    """(PBX time when asked, the OriginateResponse)."""
    asked = await pbx_time(client)
    action_id = client.send("Originate", Channel=channel, Context="caller", Exten="talk",
                            CallerID='"Иван Петров" <+74951234567>', Async="true", **extra)
    got = await client.until(lambda m: m.event == "OriginateResponse" and m.get("ActionID") == action_id)
    reply = next(m for m in got if m.get("ActionID") == action_id)  # replayed events in between
    assert reply["Message"] == "Originate successfully queued"
    return asked, got[-1]


async def setvar(client: Client, variable: str, value: str) -> None:
    client.send("Setvar", Variable=variable, Value=value)
    assert (await client.next())["Message"] == "Variable Set"


# ---- 1. Originate whose far side never answers --------------------------------------


async def test_originate_to_a_busy_phone_fails_when_the_dial_ends(sim_factory) -> None:
    sim = await sim_factory([], speed=100.0)  # the PBX's seconds pass 100 times faster
    client = await connect(sim)
    await setvar(client, "AGENT_DEAD_102", "1")
    _, busy = await originate(client, "Local/102@direct")
    assert keys(busy) == ORIGINATE_KEYS
    # manager.c fast_originate: no channel kept, so the channel as requested and no Uniqueid.
    assert (busy["Response"], busy["Channel"], busy["Reason"], busy["Uniqueid"]) == (
        "Failure", "Local/102@direct", "0", "<unknown>")
    assert (busy["CallerIDNum"], busy["CallerIDName"]) == ("+74951234567", "Иван Петров")
    _, agents = await originate(client, "Local/102@agents/n")  # Busy() indicates BUSY itself
    assert (agents["Response"], agents["Reason"], agents["Uniqueid"]) == ("Failure", "5", "<unknown>")

    await setvar(client, "AGENT_DEAD_102", "0")
    await setvar(client, "AGENT_RING_102", "45")  # nobody answers: Dial(...,20) gives up
    asked, nobody = await originate(client, "Local/102@direct")
    assert (nobody["Response"], nobody["Reason"], nobody["Uniqueid"]) == ("Failure", "0", "<unknown>")
    assert float(nobody["Timestamp"]) - asked >= 20.0  # only when the Dial ended
    asked, timeout = await originate(client, "Local/102@agents/n", Timeout="5000")
    assert (timeout["Response"], timeout["Reason"]) == ("Failure", "3")  # NO_ANSWER
    assert float(timeout["Timestamp"]) - asked >= 5.0

    await setvar(client, "AGENT_RING_102", "3")
    asked, answered = await originate(client, "Local/102@direct")
    assert (answered["Response"], answered["Reason"]) == ("Success", "4")
    assert re.fullmatch(r"Local/102@direct-[0-9a-f]{8};1", answered["Channel"])
    assert float(answered["Timestamp"]) - asked >= 3.0  # when the phone answered


async def test_an_application_originate_names_application_and_data(sim_factory) -> None:
    spy = recorded("supervisor_spy", "OriginateResponse", Application="ChanSpy")
    sim = await sim_factory([])
    client = await connect(sim)
    action_id = client.send("Originate", Channel="Local/201@supervisor", Application="ChanSpy",
                            Data="Local/101@agents,qE", CallerID='"Supervisor" <201>', Async="true")
    await client.next()
    got = await client.next()
    assert keys(got) == keys(spy)
    assert [(k, got[k]) for k in ("ActionID", "Response", "Application", "Data", "Reason")] == [
        ("ActionID", action_id), ("Response", "Success"), ("Application", "ChanSpy"),
        ("Data", "Local/101@agents,qE"), ("Reason", "4")]
    assert (got["CallerIDNum"], got["CallerIDName"]) == (spy["CallerIDNum"], spy["CallerIDName"])


# ---- 2. Uniqueids on the PBX run's one counter ----------------------------------------


async def test_originated_ids_continue_the_capture_pbx_counters(sim_factory) -> None:
    made = [m for m in capture_events("queue_answered") if m.event == "Newchannel"]
    counter = max(int(m["Uniqueid"].split(".")[1]) for m in made)
    local_seq = max(int(m["Channel"].split("-")[-1].split(";")[0], 16) for m in made)
    sim = await sim_factory([FIXTURES / "queue_answered.ami"], speed=1.0)
    client = await connect(sim)  # asked before the capture's channels are replayed: still after them
    _, first = await originate(client, "Local/support@inbound")
    epoch, seq = first["Uniqueid"].split(".")
    assert int(seq) == counter + 1
    assert abs(int(epoch) - float(first["Timestamp"])) <= 1  # `<time(NULL)>.<counter>`
    assert first["Channel"] == f"Local/support@inbound-{local_seq + 1:08x};1"
    _, second = await originate(client, "Local/101@agents/n")
    assert second["Uniqueid"].split(".")[1] == str(counter + 3)  # the pair before took two
    assert second["Channel"] == f"Local/101@agents-{local_seq + 2:08x};1"  # no /n in the name
    _, pjsip = await originate(client, "PJSIP/101")
    assert pjsip["Channel"] == "PJSIP/101-00000000"  # each technology numbers its own names
    assert pjsip["Uniqueid"].split(".")[1] == str(counter + 5)


# ---- 3. Events caused by actions -------------------------------------------------------


async def test_mixmonitor_actions_send_the_recording_events(sim_factory) -> None:
    var = recorded("recording", "VarSet", Variable="MIXMONITOR_FILENAME")
    start, stop = recorded("recording", "MixMonitorStart"), recorded("recording", "MixMonitorStop")
    mute = recorded("recording_mute", "MixMonitorMute", State="1")
    sim = await sim_factory([synthetic(LIVE_CHANNEL)])
    client = await connect(sim)
    await client.next()
    live = LIVE_CHANNEL["Channel"]
    action_id = client.send("MixMonitor", Channel=live, File="/var/spool/asterisk/monitor/x.wav",
                            Options="b")
    reply, got_var, got_start = [await client.next() for _ in range(3)]
    assert reply.pairs == [("Response", "Success"), ("ActionID", action_id)]  # recording.ami: no Message
    assert (keys(got_var), keys(got_start)) == (keys(var), keys(start))
    assert (got_var["Value"], got_start["Channel"], got_start["CallerIDName"]) == (
        "/var/spool/asterisk/monitor/x.wav", live, LIVE_CHANNEL["CallerIDName"])

    for state in ("1", "0"):
        client.send("MixMonitorMute", Channel=live, Direction="both", State=state)
        reply, got_mute = await client.next(), await client.next()
        assert reply["Response"] == "Success" and keys(got_mute) == keys(mute)
        assert (got_mute["Direction"], got_mute["State"]) == ("both", state)

    client.send("StopMixMonitor", Channel=live)
    reply, got_stop = await client.next(), await client.next()
    assert reply["Response"] == "Success" and keys(got_stop) == keys(stop)
    client.send("StopMixMonitor", Channel=live)  # nothing left to stop
    assert (await client.next())["Message"] == "Could not stop monitoring channel"
    client.send("MixMonitor", Channel=live, File="relative.wav")
    _, got_var, _ = [await client.next() for _ in range(3)]
    assert got_var["Value"] == "/var/spool/asterisk/monitor/relative.wav"  # the monitor dir
    assert [e.event for e in sim.generated_events] == [
        "VarSet", "MixMonitorStart", "MixMonitorMute", "MixMonitorMute", "MixMonitorStop",
        "VarSet", "MixMonitorStart"]


async def test_a_replayed_recording_can_be_stopped(sim_factory) -> None:
    upto = next(i for i, m in enumerate(unsolicited("recording"), 1) if m.event == "MixMonitorStart")
    sim = await sim_factory([FIXTURES / "recording.ami"], drop_after_events=upto)
    started = (await (await connect(sim)).read_to_eof())[-1]
    assert started.event == "MixMonitorStart"
    sim.drop_after_events, sim.speed = None, 1.0  # the capture's own stop is 3 s away
    client = await connect(sim)
    action_id = client.send("StopMixMonitor", Channel=started["Channel"])
    got = await client.until(lambda m: m.event == "MixMonitorStop")
    assert [m["Response"] for m in got if m.get("ActionID") == action_id] == ["Success"]
    assert "ActionID" not in got[-1] and got[-1]["Channel"] == started["Channel"]


async def test_hangup_sends_the_hangup_and_the_channel_says_no_more(sim_factory) -> None:
    hangup = recorded("attended_transfer", "Hangup")
    live = LIVE_CHANNEL["Channel"]
    later = {**LIVE_CHANNEL, "Event": "Newexten", "Timestamp": "1795508403.191466",
             "Application": "Wait", "AppData": "5"}
    other = {**LIVE_CHANNEL, "Event": "UserEvent", "Channel": "Local/other@x-00000001;1",
             "Timestamp": "1795508403.291466", "UserEvent": "after"}
    sim = await sim_factory([synthetic(LIVE_CHANNEL, later, other)], speed=4.0)
    client = await connect(sim)
    assert (await client.next())["Channel"] == live
    action_id = client.send("Hangup", Channel=live)  # within the 0.25 s before `later`
    reply, got = await client.next(), await client.next()
    assert (reply["ActionID"], reply["Message"]) == (action_id, "Channel Hungup")
    assert keys(got) == keys(hangup)
    assert (got["Channel"], got["Cause"], got["Cause-txt"]) == (live, "16", "Normal Clearing")
    nxt = await client.next()
    assert nxt["UserEvent"] == "after"  # the hung-up channel's later event was not replayed
    client.send("CoreShowChannels")
    listed = await client.until(lambda m: m.event == "CoreShowChannelsComplete")
    assert listed[-1]["ListItems"] == "0"


async def test_unpause_with_a_reason_shows_it_once(sim_factory) -> None:
    # app_queue set_queue_member_pause: an unpause's Reason is in its event, then cleared.
    sim = await sim_factory([])
    client = await connect(sim)
    for paused, reason in (("true", "lunch"), ("false", "back")):
        client.send("QueuePause", Interface="Local/102@agents/n", Paused=paused, Reason=reason)
        _, _, event = [await client.next() for _ in range(3)]
        assert (event["Paused"], event["PausedReason"]) == ("1" if paused == "true" else "0", reason)
    action_id = client.send("QueueStatus", Queue="support", Member="Local/102@agents/n")
    boris = [m for m in await client.answer(action_id, "QueueStatusComplete") if m.event == "QueueMember"]
    assert [(m["Paused"], m["PausedReason"]) for m in boris] == [("0", "")]
