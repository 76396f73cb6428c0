"""The simulated PBX's channel actions: the listings (CoreShowChannels, Status), variables
(Setvar, Getvar), and actions on one channel with the events a real PBX sends for them —
Hangup (manager.c), MixMonitor / StopMixMonitor / MixMonitorMute (app_mixmonitor.c,
manager_channels.c), in the shapes of recording.ami and recording_mute.ami."""

from __future__ import annotations

from bridge.ami.message import AmiMessage
from bridge.simulator.shapes import (
    CAUSE_TEXT,
    CHANNEL_ACTIONS,
    CHANNEL_FIELDS,
    Answer,
    error_answer,
    reply,
    simple_answer,
)
from bridge.simulator.state import PbxCore

MONITOR_DIR = "/var/spool/asterisk/monitor"  # ast_config_AST_MONITOR_DIR: where a relative File goes
DIRECTIONS = ("read", "write", "both")


def _true(value: str | None) -> bool:
    """Asterisk's ast_true."""
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


class ChannelActions(PbxCore):
    def _act_coreshowchannels(self, action: AmiMessage) -> Answer:
        now, tail, items = self.clock.now(), self._tail(action), []
        for chan in self.channels.values():
            secs = max(0, int(now - chan.created))
            items.append([("Event", "CoreShowChannel"), *tail,
                          *((k, chan.fields.get(k, "")) for k in CHANNEL_FIELDS),
                          ("Application", chan.application), ("ApplicationData", chan.app_data),
                          ("Duration", f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}"),
                          ("BridgeId", chan.bridge_id)])
        return self._list(action, "Channels will follow", items, "CoreShowChannelsComplete")

    def _act_status(self, action: AmiMessage) -> Answer:
        wanted = action.get("Channel")
        if wanted and wanted not in self.channels:
            return error_answer(action, "No such channel")
        now, tail = self.clock.now(), self._tail(action)
        items = []
        for name, chan in self.channels.items():
            if wanted and name != wanted:
                continue
            f = chan.fields
            items.append([("Event", "Status"), ("Privilege", "Call"),
                          *((k, f.get(k, "")) for k in CHANNEL_FIELDS),
                          ("Type", name.split("/", 1)[0]), ("DNID", ""),
                          ("EffectiveConnectedLineNum", f.get("ConnectedLineNum", "")),
                          ("EffectiveConnectedLineName", f.get("ConnectedLineName", "")),
                          ("TimeToHangup", "0"), ("BridgeID", chan.bridge_id),
                          ("Application", chan.application), ("Data", chan.app_data),
                          ("Nativeformats", "(slin)"), ("Readformat", "slin"), ("Readtrans", ""),
                          ("Writeformat", "slin"), ("Writetrans", ""), ("Callgroup", "0"),
                          ("Pickupgroup", "0"), ("Seconds", str(max(0, int(now - chan.created)))),
                          *tail])
        return self._list(action, "Channel status will follow", items, "StatusComplete",
                          [("Items", str(len(items)))])

    def _one_channel(self, action: AmiMessage) -> str | Answer:
        """The live channel an action names, or its error as Asterisk words it."""
        name = action.get("Action", "").strip().lower()
        channel = action.get("Channel")
        if not channel:
            return error_answer(action, "Channel not specified" if name == "redirect"
                                else "No channel specified")
        if channel not in self.channels:
            return error_answer(action, CHANNEL_ACTIONS[name][1].format(channel))
        return channel

    def _channel_action(self, action: AmiMessage) -> Answer:
        if isinstance(channel := self._one_channel(action), Answer):
            return channel
        name = action.get("Action", "").strip().lower()
        if name in ("blindtransfer", "atxfer") and not action.get("Exten"):
            return error_answer(action, "No extension specified")
        return simple_answer(action, "Success", CHANNEL_ACTIONS[name][0])

    _act_redirect = _act_blindtransfer = _act_atxfer = _channel_action

    def _act_hangup(self, action: AmiMessage) -> Answer:
        if isinstance(channel := self._one_channel(action), Answer):
            return channel
        # manager.c: a Cause outside 1..127 leaves the channel's own cause (Normal Clearing;
        # a ChanSpy's channel has none: 0).
        cause = int(raw) if (raw := (action.get("Cause") or "").strip()).isdigit() else 0
        if (spyer := self.hangup_spy(channel, cause if 0 < cause <= 127 else 0)) is not None:
            return Answer([reply(action, message=CHANNEL_ACTIONS["hangup"][0]), *spyer])
        cause = cause if 0 < cause <= 127 else 16
        hangup = self.event("Hangup", "call,all", [*self.snapshot(channel), ("Cause", str(cause)),
                                                   ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))])
        del self.channels[channel]
        self.hung_up.add(channel)
        return Answer([reply(action, message=CHANNEL_ACTIONS["hangup"][0]), hangup])

    def _act_mixmonitor(self, action: AmiMessage) -> Answer:
        if isinstance(channel := self._one_channel(action), Answer):
            return channel
        file = (action.get("File") or "").strip()
        if not file:  # mixmonitor_exec wants a file name
            return error_answer(action, "Could not start monitoring channel")
        path = file if file.startswith("/") else f"{MONITOR_DIR}/{file}"
        chan = self.channels[channel]
        chan.variables["MIXMONITOR_FILENAME"] = path
        chan.mixmonitors += 1
        snapshot = self.snapshot(channel)
        # recording.ami: the reply, then VarSet MIXMONITOR_FILENAME, then MixMonitorStart.
        return Answer([reply(action),
                       self.event("VarSet", "dialplan,all",
                                  [*snapshot, ("Variable", "MIXMONITOR_FILENAME"), ("Value", path)]),
                       self.event("MixMonitorStart", "call,all", snapshot)])

    def _act_stopmixmonitor(self, action: AmiMessage) -> Answer:
        if isinstance(channel := self._one_channel(action), Answer):
            return channel
        chan = self.channels[channel]
        if not chan.mixmonitors:
            return error_answer(action, "Could not stop monitoring channel")
        chan.mixmonitors -= 1
        return Answer([reply(action), self.event("MixMonitorStop", "call,all", self.snapshot(channel))])

    def _act_mixmonitormute(self, action: AmiMessage) -> Answer:
        # manager_mute_mixmonitor's order of checks: direction, channel, state, the channel.
        direction = action.get("Direction") or ""
        if not direction:
            return error_answer(action, "No direction specified. Must be read, write or both")
        if direction.lower() not in DIRECTIONS:
            return error_answer(action, "Invalid direction specified. Must be read, write or both")
        if not action.get("Channel"):
            return error_answer(action, "No channel specified")
        if not action.get("State"):
            return error_answer(action, "No state specified")
        if isinstance(channel := self._one_channel(action), Answer):
            return channel
        state = "1" if _true(action.get("State")) else "0"
        return Answer([reply(action), self.event("MixMonitorMute", "call,all", [
            *self.snapshot(channel), ("Direction", direction), ("State", state)])])

    def _variables(self, action: AmiMessage) -> dict[str, str] | Answer:
        channel = action.get("Channel")
        if not channel:
            return self.globals
        chan = self.channels.get(channel)
        return error_answer(action, "No such channel") if chan is None else chan.variables

    def _act_setvar(self, action: AmiMessage) -> Answer:
        if not (variable := action.get("Variable")):
            return error_answer(action, "Variable not specified")
        store = self._variables(action)
        if isinstance(store, Answer):
            return store
        store[variable] = action.get("Value", "")
        return simple_answer(action, "Success", "Variable Set")

    def _act_getvar(self, action: AmiMessage) -> Answer:
        if not (variable := action.get("Variable")):
            return error_answer(action, "No variable specified")
        store = self._variables(action)
        if isinstance(store, Answer):
            return store
        return simple_answer(action, "Success", None,
                             [("Variable", variable), ("Value", store.get(variable, ""))])
