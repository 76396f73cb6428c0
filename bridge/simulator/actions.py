"""The simulated PBX behind `AmiSimulator`: the live state (`bridge.simulator.state`) and
the answers to AMI actions computed from it, one module per concern — queues
(`queue_actions`), channels and recording (`channel_actions`), Originate (`originate`).

Shapes (header order, the wording of `Message`) and the seed queues are in
`bridge.simulator.shapes`.
"""

from __future__ import annotations

from bridge.ami.message import AmiMessage
from bridge.simulator.channel_actions import ChannelActions
from bridge.simulator.originate import OriginateActions
from bridge.simulator.queue_actions import QueueActions
from bridge.simulator.shapes import (
    ASTERISK_VERSION,
    Answer,
    Pairs,
    error_answer,
    new_member,
    reply,
    simple_answer,
)
from bridge.simulator.state import Channel, Clock, Queue

__all__ = ["Answer", "Channel", "Clock", "Pairs", "PbxState", "Queue", "new_member", "reply"]


class PbxState(QueueActions, ChannelActions, OriginateActions):
    """Channels, queues and variables as the replayed events left them, plus action answers."""

    def answer(self, action: AmiMessage) -> Answer:
        name = (action.get("Action") or "").strip().lower()
        handler = getattr(self, f"_act_{name}", None)
        if handler is None:
            return error_answer(action, "Invalid/unknown command")
        return handler(action)

    def _act_ping(self, action: AmiMessage) -> Answer:
        return simple_answer(action, "Success", None, [("Ping", "Pong"), ("Timestamp", self.stamp())])

    def _act_logoff(self, action: AmiMessage) -> Answer:
        return Answer([reply(action, "Goodbye", "Thanks for all the fish.")], close=True)

    def _act_events(self, action: AmiMessage) -> Answer:
        on = (action.get("EventMask") or "on").strip().lower() not in ("off", "0", "no", "false")
        return simple_answer(action, "Success", None, [("Events", "On" if on else "Off")])

    def _act_command(self, action: AmiMessage) -> Answer:
        command = " ".join((action.get("Command") or "").split())
        if command == "core show version":
            return simple_answer(action, "Success", "Command output follows",
                           [("Output", f"Asterisk {ASTERISK_VERSION} (callbridge AMI simulator)")])
        return simple_answer(action, "Error", "Command output follows", [("Output", (
            f"No such command '{command}' (type 'core show help {command}' for other possible commands)"))])
