"""The simulated PBX's ChanSpy (apps/app_chanspy.c) and PlayDTMF (apps/app_senddtmf.c), in
the shapes of supervisor_spy.ami and supervisor_whisper_barge.ami.

An Originate of the supervisor's phone into `ChanSpy` with Data `<prefix>[,<options>]`:

- when his phone answers: the OriginateResponse, then the spyer's channels (a Local pair:
  `;1` runs ChanSpy, `;2` is the [supervisor] dialplan: Answer, Wait(60), Hangup), named as
  the Originate named them, with the Originate's caller id (NewCallerid/NewConnectedLine);
- ChanSpy scans the live channels every 100 ms (common_exec's `waitms`) for one whose name
  starts with the prefix (case-insensitive, not a spyer itself) and spies on it:
  `ChanSpyStart` with the Spyer* (`;1`) and Spyee* snapshots. Of an operator's Local pair it
  attaches to the phone side (`;2`), as both captures show. Nobody there: it keeps waiting;
- the spied channel hanging up: `ChanSpyStop`; with option `E` the spyer then hangs up
  (HangupRequest ;2, Hangup ;1, SoftHangupRequest ;2, Hangup ;2, causes as captured),
  without it ChanSpy goes back to scanning;
- a `Hangup` of either spyer channel: ChanSpyStop (if spying), then the same hang-up;
- the [supervisor] dialplan's Wait(60) ends the session 60 s after the answer.

`PlayDTMF` (manager_play_dtmf) answers `DTMF successfully queued` for a live channel; on a
ChanSpy started with `d` the digits 4/5/6 switch it to listen/whisper/barge (no event says so).
Not generated: Cdr, DTMFBegin/DTMFEnd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.ami.message import AmiMessage
from bridge.simulator.shapes import CAUSE_TEXT, Answer, Pairs, error_answer, reply
from bridge.simulator.state import Channel, PbxCore

SCAN = 0.1  # recorded seconds between ChanSpy's scans (common_exec waitms = 100)
PHONE_WAIT = 60.0  # [supervisor] exten => _2XX,1,Answer() / n,Wait(60) / n,Hangup()
MODES = {"4": "listen", "5": "whisper", "6": "barge"}  # change_spy_mode
_ARGS = re.compile(r"\([^)]*\)")  # an option's argument: g(grp), v(-1), ...


@dataclass
class Spy:
    spyer: str  # the channel running ChanSpy (`;1` of the supervisor's Local pair)
    phone: str | None  # the Local pair's other half (`;2`), None for a plain channel
    prefix: str
    options: str
    mode: str
    spyee: str | None = None
    spyee_snapshot: Pairs | None = None
    leaving: str | None = None  # the spied channel asked to hang up: its Hangup is awaited
    scanning: bool = False  # a scan is scheduled
    ended: bool = False  # ChanSpy is over (its channel going or gone)


def _mode(options: str) -> str:
    return "barge" if "B" in options else "whisper" if "w" in options else "listen"


class ChanSpyActions(PbxCore):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.spies: dict[str, Spy] = {}  # by spyer channel

    # ---- the Originate's answer -----------------------------------------------------

    def start_chanspy(self, channel: str, data: str, ids: tuple[str, str],
                      caller: tuple[str, str]) -> list[Pairs]:
        """The spyer's channels are up (his phone answered): their events, ChanSpy starts."""
        prefix, _, options = data.partition(",")
        options = _ARGS.sub("", options)
        tech, _, resource = channel.partition("/")
        exten, _, context = resource.rsplit("-", 1)[0].partition("@")
        phone = channel[:-1] + "2" if tech == "Local" and channel.endswith(";1") else None
        base = {"ConnectedLineNum": "<unknown>", "ConnectedLineName": "<unknown>", "CallerIDNum": "<unknown>",
                "CallerIDName": "<unknown>", "Language": "en", "AccountCode": "",
                "Context": context or "default", "Exten": exten, "Priority": "1", "Linkedid": ids[0]}
        halves = [(channel, ids[0], ("0", "Down"), "ChanSpy", data)]
        if phone:
            halves.append((phone, ids[1], ("4", "Ring"), "Answer", ""))
        events = []
        for name, uniqueid, (state, desc), app, app_data in halves:
            fields = {**base, "Channel": name, "ChannelState": state, "ChannelStateDesc": desc,
                      "Uniqueid": uniqueid}
            self.channels[name] = Channel(fields, self.clock.now(), application=app, app_data=app_data)
            events.append(self.event("Newchannel", "call,all", self.snapshot(name)))
        num, name = caller
        for half, *_ in halves:
            fields = self.channels[half].fields
            fields.update(CallerIDNum=num, CallerIDName=name)
            events.append(self.event("NewCallerid", "call,all", [
                *self.snapshot(half), ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")]))
            fields.update(ConnectedLineNum=num, ConnectedLineName=name)
            events.append(self.event("NewConnectedLine", "call,all", self.snapshot(half)))
        for half, *_ in reversed(halves):  # the phone answers, then the originated side is up
            self.channels[half].fields.update(ChannelState="6", ChannelStateDesc="Up")
            events.append(self.event("Newstate", "call,all", self.snapshot(half)))
        spy = self.spies[channel] = Spy(channel, phone, prefix, options, _mode(options))
        self._schedule_scan(spy, first=True)
        if phone:
            self.later.append((PHONE_WAIT / (self.clock.rate or 1.0), lambda: self._phone_done(spy)))
        return events

    # ---- scanning, starting, stopping -------------------------------------------------

    def _schedule_scan(self, spy: Spy, first: bool = False) -> None:
        if not spy.scanning and not spy.ended:
            spy.scanning = True
            self.later.append((SCAN / (self.clock.rate or 1.0), lambda: self._scan(spy, first)))

    def _target(self, spy: Spy) -> str | None:
        own = {s.spyer for s in self.spies.values()} | {s.phone for s in self.spies.values()}
        found = [name for name in self.channels
                 if name.lower().startswith(spy.prefix.lower()) and name not in own]
        return next((n for n in found if n.endswith(";2")), found[0] if found else None)

    def _scan(self, spy: Spy, first: bool) -> list[Pairs]:
        spy.scanning = False
        if spy.ended or spy.spyer not in self.channels:
            return []
        events = []
        if (target := self._target(spy)) is not None:
            spy.spyee = target
            events.append(self.event("ChanSpyStart", "call,all", self._pair(spy, target)))
        if first and spy.phone in self.channels:  # the [supervisor] dialplan: Wait(60)
            phone = self.channels[spy.phone]
            phone.fields["Priority"] = "2"
            phone.application, phone.app_data = "Wait", str(int(PHONE_WAIT))
            events.append(self.event("Newexten", "dialplan,all", [
                *self.snapshot(spy.phone), ("Extension", phone.fields["Exten"]),
                ("Application", "Wait"), ("AppData", phone.app_data)]))
        return events

    def _pair(self, spy: Spy, spyee: str) -> Pairs:
        """Spyer* and Spyee* snapshots (the spyee's as last seen, once it is gone)."""
        if spyee in self.channels:
            spy.spyee_snapshot = self.snapshot(spyee)
        return [*(("Spyer" + k, v) for k, v in self.snapshot(spy.spyer)),
                *(("Spyee" + k, v) for k, v in spy.spyee_snapshot or [])]

    def _stop(self, spy: Spy) -> list[Pairs]:
        if spy.spyee is None:
            return []
        stop = self.event("ChanSpyStop", "call,all", self._pair(spy, spy.spyee))
        spy.spyee = None
        return [stop]

    def _hang_up_spyer(self, spy: Spy, cause: int = 0) -> list[Pairs]:
        """The spyer's pair goes (the captures' order and causes), ChanSpy with it."""
        spy.ended = True
        events = self._stop(spy)
        if spy.phone in self.channels:
            events.append(self.event("HangupRequest", "call,all",
                                     [*self.snapshot(spy.phone), ("Cause", "0")]))
        events += self._gone(spy.spyer, cause)
        if spy.phone in self.channels:
            events.append(self.event("SoftHangupRequest", "call,all",
                                     [*self.snapshot(spy.phone), ("Cause", "16")]))
            events += self._gone(spy.phone, 0)
        self.spies.pop(spy.spyer, None)
        return events

    def _gone(self, channel: str, cause: int) -> list[Pairs]:
        if channel not in self.channels:
            return []
        hangup = self.event("Hangup", "call,all", [*self.snapshot(channel), ("Cause", str(cause)),
                                                   ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))])
        del self.channels[channel]
        return [hangup]

    def _phone_done(self, spy: Spy) -> list[Pairs]:
        """Wait(60) is over: the phone side hangs up (Normal Clearing), the spyer with it."""
        if spy.ended or spy.phone not in self.channels:
            return []
        spy.ended = True
        phone = self.channels[spy.phone]
        events = [self.event("Newexten", "dialplan,all", [
            *self.snapshot(spy.phone), ("Extension", phone.fields["Exten"]), ("Application", "Hangup"),
            ("AppData", "")]),
            self.event("SoftHangupRequest", "call,all", [*self.snapshot(spy.phone), ("Cause", "16")]),
            self.event("HangupRequest", "call,all", [*self.snapshot(spy.spyer), ("Cause", "16")])]
        events += self._stop(spy) + self._gone(spy.spyer, 16) + self._gone(spy.phone, 16)
        self.spies.pop(spy.spyer, None)
        return events

    # ---- hooks: replayed events, the Hangup action -----------------------------------

    def watch(self, msg: AmiMessage) -> None:
        """A replayed event, before it changes the state: spied channels going, new ones."""
        if not self.spies:
            return
        name, channel = msg.event or "", msg.get("Channel", "")
        for spy in list(self.spies.values()):
            if spy.ended:
                continue
            if name == "Newchannel" and spy.spyee is None and channel.lower().startswith(spy.prefix.lower()):
                self._schedule_scan(spy)
            elif channel == spy.spyee and name in ("HangupRequest", "SoftHangupRequest", "Hangup"):
                self._spyee_going(spy, channel)
            if name == "Hangup" and channel == spy.leaving:
                spy.leaving = None
                if "E" in spy.options:  # ChanSpy exits and the spyer's channel hangs up
                    spy.ended = True
                    self.later.append((0.0, lambda spy=spy: self._hang_up_spyer(spy)))
                else:  # back to scanning for the next channel
                    self._schedule_scan(spy)

    def _spyee_going(self, spy: Spy, channel: str) -> None:
        """ChanSpy sees the spied channel's hang-up request at once: ChanSpyStop, which comes
        before that channel's own Hangup (supervisor_spy.ami)."""
        spy.spyee_snapshot, spy.leaving = self.snapshot(channel), channel
        spy.spyee = None
        self.later.append((0.0, lambda: [self.event("ChanSpyStop", "call,all", self._pair(spy, channel))]))

    def hangup_spy(self, channel: str, cause: int) -> list[Pairs] | None:
        """A Hangup action: the spyer's hang-up if `channel` is a spyer's (None if not); a
        spied channel's ChanSpyStop (and with `E` the spyer's hang-up) follow its Hangup."""
        spy = next((s for s in self.spies.values() if channel in (s.spyer, s.phone)), None)
        if spy is not None:
            return self._hang_up_spyer(spy, cause)
        for other in list(self.spies.values()):
            if other.spyee == channel and not other.ended:
                self._spyee_going(other, channel)
                other.leaving = None
                if "E" in other.options:
                    other.ended = True
                    self.later.append((0.0, lambda spy=other: self._hang_up_spyer(spy)))
                else:
                    self._schedule_scan(other)
        return None

    # ---- PlayDTMF --------------------------------------------------------------------

    def _act_playdtmf(self, action: AmiMessage) -> Answer:
        channel = action.get("Channel") or ""
        if channel not in self.channels:
            return error_answer(action, "Channel not found")
        digit = action.get("Digit") or ""
        if not digit:
            return error_answer(action, "No digit specified")
        duration = (action.get("Duration") or "").strip()
        if duration and not duration.isdigit():
            return error_answer(action, "Could not convert Duration parameter")
        spy = self.spies.get(channel)
        if spy is not None and "d" in spy.options and digit[0] in MODES \
                and (action.get("Receive") or "").strip().lower() in ("yes", "true", "y", "t", "1", "on"):
            spy.mode = MODES[digit[0]]
        return Answer([reply(action, message="DTMF successfully queued")])
