"""Supervisor actions as AMI actions, and who is listening to which call. Pure: no I/O.

Listen / whisper / barge: the PBX calls the supervisor's own phone and, when he answers,
runs ChanSpy on the operator's channel (the `supervisor_spy` and
`supervisor_whisper_barge` captures show the Originate and the ChanSpyStart/Stop it
gives). ChanSpy options: `q` quiet (no beep, no name announced), `w` whisper (only the
operator hears the supervisor), `B` barge (both sides hear him), `E` exit when the spied
channel hangs up (without it ChanSpy would jump to the operator's next call), `d` numeric
DTMF switches the mode of a running session (app_chanspy.c `change_spy_mode`: 4 listen,
5 whisper, 6 barge; with `d` both audiohooks are attached from the start). A session we
started is switched with `PlayDTMF` `Receive: true` on the spying channel (app_senddtmf.c
queues the digit as if the supervisor's phone had sent it): no second call to his phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import OperatorDirectory

SpyMode = Literal["listen", "whisper", "barge"]
SPY_OPTIONS: dict[str, str] = {"listen": "qdE", "whisper": "qwdE", "barge": "qBdE"}
SWITCH_DIGITS: dict[str, str] = {"listen": "4", "whisper": "5", "barge": "6"}


class SupervisionSettings(BaseModel):
    """How this PBX names things (defaults: the dialplan of the recorded captures)."""

    model_config = ConfigDict(extra="forbid")

    # The supervisor's own phone, which the PBX calls to start a spy session.
    supervisor_channel: str = "Local/{ext}@supervisor"
    # ChanSpy's channel prefix for an operator's phone ("PJSIP/{ext}" on a SIP PBX).
    operator_spy_prefix: str = "Local/{ext}@agents"
    # The queue member interface of an extension ("PJSIP/{ext}" on a SIP PBX).
    member_interface: str = "Local/{ext}@agents/n"
    originate_timeout_ms: int = Field(30_000, gt=0)


def _extension(value: str) -> str:
    value = value.strip()
    if not value.isdigit() or not 2 <= len(value) <= 8:
        raise ValueError(f"not an extension: {value!r}")
    return value


def spy_action(settings: SupervisionSettings, supervisor_ext: str, operator_ext: str, mode: SpyMode,
               supervisor_name: str = "Supervisor") -> dict[str, str]:
    """The Originate that rings the supervisor and spies on the operator in `mode`."""
    supervisor_ext, operator_ext = _extension(supervisor_ext), _extension(operator_ext)
    name = supervisor_name.replace('"', "").replace("<", "").replace(">", "").strip() or "Supervisor"
    return {
        "Action": "Originate",
        "Channel": settings.supervisor_channel.format(ext=supervisor_ext),
        "Application": "ChanSpy",
        "Data": f"{settings.operator_spy_prefix.format(ext=operator_ext)},{SPY_OPTIONS[mode]}",
        "CallerID": f'"{name}" <{supervisor_ext}>',
        "Timeout": str(settings.originate_timeout_ms),
        "Async": "true",
    }


def spy_switch_action(spyer_channel: str, mode: SpyMode) -> dict[str, str]:
    """The DTMF digit that switches a running ChanSpy (started with `d`) to `mode`."""
    return {"Action": "PlayDTMF", "Channel": spyer_channel, "Digit": SWITCH_DIGITS[mode], "Receive": "true"}


def spy_mode_of(options: str) -> tuple[SpyMode, bool]:
    """(mode, switchable by DTMF) of a ChanSpy's options string."""
    mode: SpyMode = "barge" if "B" in options else "whisper" if "w" in options else "listen"
    return mode, "d" in options


def queue_add_action(settings: SupervisionSettings, queue: str, ext: str, name: str,
                     penalty: int = 0) -> dict[str, str]:
    return {"Action": "QueueAdd", "Queue": queue,
            "Interface": settings.member_interface.format(ext=_extension(ext)),
            "MemberName": name, "Penalty": str(penalty), "Paused": "false"}


def queue_remove_action(settings: SupervisionSettings, queue: str, ext: str) -> dict[str, str]:
    return {"Action": "QueueRemove", "Queue": queue,
            "Interface": settings.member_interface.format(ext=_extension(ext))}


def queue_pause_action(settings: SupervisionSettings, ext: str, paused: bool, reason: str = "",
                       queue: str | None = None) -> dict[str, str]:
    action = {"Action": "QueuePause", "Interface": settings.member_interface.format(ext=_extension(ext)),
              "Paused": "true" if paused else "false"}
    if queue:
        action["Queue"] = queue  # without Queue, the member is paused in every queue
    if paused and reason:
        action["Reason"] = reason
    return action


class SpySession(BaseModel):
    model_config = ConfigDict(frozen=True)

    spyer_channel: str
    supervisor: str | None
    operator: str | None
    call_id: str | None  # the spied call's id (its Linkedid, with the PBX's prefix)
    mode: SpyMode | None
    started_at: float
    switchable: bool = False  # started with ChanSpy's `d`: PlayDTMF switches its mode


@dataclass(slots=True)
class SpyBook:
    """Live spy sessions from ChanSpyStart/ChanSpyStop, with the mode we asked for."""

    operators: OperatorDirectory
    sessions: dict[str, SpySession]
    requested: dict[str, SpyMode]  # supervisor extension -> mode of his last request
    id_prefix: str = ""  # the PBX's prefix of call ids (a session's call_id is the call record's)

    @classmethod
    def create(cls, operators: OperatorDirectory | None = None, id_prefix: str = "") -> SpyBook:
        return cls(operators or OperatorDirectory(), {}, {}, id_prefix)

    def requested_mode(self, supervisor_ext: str, mode: SpyMode) -> None:
        self.requested[supervisor_ext] = mode

    def handle(self, ev: AmiMessage) -> SpySession | None:
        """Returns the session that started or stopped, if any."""
        spyer = ev.get("SpyerChannel")
        if not spyer:
            return None
        if ev.event == "ChanSpyStart":
            supervisor = self.operators.operator_of(spyer)
            session = SpySession(
                spyer_channel=spyer, supervisor=supervisor,
                operator=self.operators.operator_of(ev.get("SpyeeChannel")),
                call_id=self.id_prefix + ev["SpyeeLinkedid"] if ev.get("SpyeeLinkedid") else None,
                mode=self.requested.get(supervisor or ""),
                started_at=ev.timestamp,
            )
            self.sessions[spyer] = session
            return session
        if ev.event == "ChanSpyStop":
            return self.sessions.pop(spyer, None)
        return None

    def of_supervisor(self, supervisor_ext: str) -> list[SpySession]:
        return [s for s in self.sessions.values() if s.supervisor == supervisor_ext]

    def hangup_action(self, session: SpySession) -> dict[str, str]:
        """Ends a spy session: hang up the supervisor's spying channel."""
        return {"Action": "Hangup", "Channel": session.spyer_channel}
