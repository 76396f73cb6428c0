"""One spy session per listening phone: a second click switches the session's mode (ChanSpy's
DTMF switch for a session we started with `d`, end-then-start for one we did not) instead of
calling the supervisor's phone again; a session whose phone still rings can be cancelled.

The PBX is a fake `send_action` that answers like Asterisk (Originate queued, PlayDTMF
queued, Hangup); its events (Newchannel, ChanSpyStart) are fed as the pipeline would.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from bridge.ami.message import AmiMessage
from supervision.wallboard_service import SupervisorError, WallboardService
from tests.test_wallboard_service import FakeAudit

SAM = SimpleNamespace(username="sam", display_name="Sam Supervisor", role="supervisor", extensions=["202"])
LISTENER = "Local/202@supervisor-0000000a;1"


class FakePbx:
    """`send_action(action, pbx=ID)` of the bridge; `to` keeps which PBX each action went to."""

    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []
        self.to: list[str | None] = []

    async def __call__(self, action: dict[str, str], pbx: str | None = None) -> AmiMessage:
        self.sent.append(action)
        self.to.append(pbx)
        message = {"Originate": "Originate successfully queued", "PlayDTMF": "DTMF successfully queued",
                   "Hangup": "Channel Hungup"}.get(action["Action"], "")
        return AmiMessage([("Response", "Success"), ("ActionID", f"a{len(self.sent)}"), ("Message", message)])

    def actions(self) -> list[str]:
        return [a["Action"] for a in self.sent]


def event(name: str, **fields: str) -> AmiMessage:
    return AmiMessage([("Event", name), ("Timestamp", "1000.0"), *fields.items()])


def chanspy_start(spyer: str = LISTENER, spyee: str = "Local/101@agents-00000003;1") -> AmiMessage:
    return event("ChanSpyStart", SpyerChannel=spyer, SpyeeChannel=spyee, SpyeeLinkedid="900.1",
                 SpyerLinkedid="1000.5")


def make() -> tuple[WallboardService, FakePbx, FakeAudit]:
    pbx, audit = FakePbx(), FakeAudit()
    return WallboardService(send_action=pbx, audit=audit, clock=lambda: 1000.0), pbx, audit


async def test_clicks_while_the_phone_rings_change_the_mode_not_the_number_of_calls() -> None:
    service, pbx, audit = make()
    await service.spy(SAM, "101", "listen")
    again = await service.spy(SAM, "101", "whisper")
    await service.spy(SAM, "101", "barge")
    assert pbx.actions() == ["Originate"]  # one call to Sam's phone, not three
    assert again.ok and "starts as whisper" in again.message
    pending = [(p.listener, p.mode, p.started_as) for p in service.pending.values()]
    assert pending == [("202", "barge", "listen")]
    assert [line["action"] for line in audit.lines] == ["spy.listen", "spy.whisper", "spy.barge"]
    # Sam answers: the session starts as listen and is switched to barge by DTMF at once.
    service.on_ami_event(chanspy_start())
    await asyncio.sleep(0.01)
    assert pbx.sent[-1] == {"Action": "PlayDTMF", "Channel": LISTENER, "Digit": "6", "Receive": "true"}
    (session,) = service.spies.sessions.values()
    assert (session.mode, session.switchable, service.pending) == ("barge", True, {})


async def test_a_live_session_we_started_switches_mode_by_dtmf() -> None:
    service, pbx, audit = make()
    await service.spy(SAM, "101", "listen")
    service.on_ami_event(chanspy_start())
    result = await service.spy(SAM, "101", "whisper")
    assert result.ok and pbx.actions() == ["Originate", "PlayDTMF"]
    assert pbx.sent[-1]["Digit"] == "5" and pbx.sent[-1]["Channel"] == LISTENER
    assert [s.mode for s in service.spies.sessions.values()] == ["whisper"]
    assert audit.lines[-1]["detail"]["switch_from"] == "listen"
    same = await service.spy(SAM, "101", "whisper")  # the mode it is in already: nothing sent
    assert same.ok and pbx.actions() == ["Originate", "PlayDTMF"]
    frame_spies = [s for s in service.spies.sessions.values() if s.supervisor == "202"]
    assert len(frame_spies) == 1


async def test_a_session_not_started_with_d_is_ended_then_started_again() -> None:
    service, pbx, _ = make()
    service.on_ami_event(chanspy_start())  # from the PBX (e.g. the dialplan): options unknown
    await service.spy(SAM, "101", "barge")
    assert pbx.actions() == ["Hangup", "Originate"]
    assert "d" in pbx.sent[-1]["Data"].split(",")[1]


async def test_a_ringing_session_is_cancelled_and_a_late_answer_hung_up() -> None:
    service, pbx, audit = make()
    await service.spy(SAM, "101", "listen")
    service.on_ami_event(event("Newchannel", Channel=LISTENER, Uniqueid="1000.5"))
    service.on_ami_event(event("Newchannel", Channel="Local/101@agents-00000009;1", Uniqueid="1000.7"))
    result = await service.cancel_spy(SAM)
    assert result.ok and service.pending == {}
    assert pbx.sent[-1] == {"Action": "Hangup", "Channel": LISTENER}
    assert audit.lines[-1]["action"] == "spy.cancel"
    with pytest.raises(SupervisorError) as refused:
        await service.cancel_spy(SAM)  # nothing rings any more
    assert refused.value.status == 404
    # The phone was answered in the same instant: the session that starts is ended at once.
    service.on_ami_event(chanspy_start())
    await asyncio.sleep(0.01)
    assert pbx.sent[-1] == {"Action": "Hangup", "Channel": LISTENER}


async def test_another_operator_while_ringing_cancels_and_calls_for_the_new_one() -> None:
    service, pbx, _ = make()
    await service.spy(SAM, "101", "listen")
    await service.spy(SAM, "103", "listen")
    assert pbx.actions() == ["Originate", "Originate"]
    assert [(p.operator, p.mode) for p in service.pending.values()] == [("103", "listen")]
