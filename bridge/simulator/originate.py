"""The simulated PBX's Originate: the reply at once, and the OriginateResponse when the
originated channel is answered or the attempt fails, as main/manager.c fast_originate and
main/pbx.c pbx_dial_reason write it.

Whether the far side answers follows the lab PBX the captures were recorded on
(tests/fixtures/README.md "PBX layout", ../shared/asterisk/etc/extensions.conf):

- `Local/<ext>@agents[/n]` is the operator's phone: busy at once when the global
  `AGENT_DEAD_<ext>` is 1 (`Busy()`: BUSY indicated, Reason 5), else it rings
  `AGENT_RING_<ext>` seconds (default 2) and answers;
- `Local/<ext>@direct[/n]` dials that phone for at most 20 s: a busy phone or one that rings
  longer ends the Dial, the `;2` half hangs up without indicating anything, and Asterisk
  answers `Failure`, `Reason: 0`, `Uniqueid: <unknown>` when the Dial ends (the live group saw it);
- the Originate's own `Timeout` (ms, default 30000) gives up on a phone still ringing
  (NO_ANSWER: Reason 3);
- anything else (a caller's phone `Local/<queue>@inbound`, a supervisor's phone) answers at once.

An answered Originate into `ChanSpy` brings up the spyer's channels and ChanSpy
(`bridge.simulator.chanspy`); other Originates make no channels here.

Times are in the PBX's (recorded) seconds; the answer waits them out at replay speed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

from bridge.ami.message import AmiMessage
from bridge.simulator.chanspy import ChanSpyActions
from bridge.simulator.shapes import Answer, Pairs, error_answer, parse_caller_id, reply

# enum ast_control_frame_type values an OriginateResponse's Reason carries.
REASON_FAILED, REASON_NO_ANSWER, REASON_ANSWERED, REASON_BUSY = 0, 3, 4, 5
DIRECT_DIAL_TIMEOUT = 20.0  # [direct] Dial(Local/${EXTEN}@agents/n,20)
DEFAULT_RING = 2.0  # [agents] Wait(AGENT_RING_<ext> or 2)
ANSWER_AT_ONCE = 0.05  # recorded seconds before an application's phone is up
_LAB_LOCAL = re.compile(r"^Local/(?P<ext>\d+)@(?P<context>agents|direct)(?:/\w*)?$")


def _seconds(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


class OriginateActions(ChanSpyActions):
    def far_side(self, target: str, timeout: float) -> tuple[bool, int, float]:
        """(answered, Reason, after how many recorded seconds) for an Originate of `target`."""
        lab = _LAB_LOCAL.match(target)
        if lab is None:
            return True, REASON_ANSWERED, ANSWER_AT_ONCE
        ext, direct = lab["ext"], lab["context"] == "direct"
        busy = self.globals.get(f"AGENT_DEAD_{ext}", "").strip() == "1"
        ring = _seconds(self.globals.get(f"AGENT_RING_{ext}"), DEFAULT_RING)
        if busy:
            return False, REASON_FAILED if direct else REASON_BUSY, ANSWER_AT_ONCE
        if direct and ring >= DIRECT_DIAL_TIMEOUT and timeout > DIRECT_DIAL_TIMEOUT:
            return False, REASON_FAILED, DIRECT_DIAL_TIMEOUT
        if ring >= timeout:
            return False, REASON_NO_ANSWER, timeout
        return True, REASON_ANSWERED, ring

    def _act_originate(self, action: AmiMessage) -> Answer:
        target = action.get("Channel") or ""
        if not target:
            return error_answer(action, "Channel not specified")
        tech, _, resource = target.partition("/")
        local = tech == "Local"
        # A Local pair is two channels (;1 and ;2) on the run's one Uniqueid counter.
        first_id = self.counters.next_uniqueids(2 if local else 1)[0]
        seq = self.counters.next_sequence(tech)
        # Local channel names drop the dial string's options (Local/101@agents/n -> ...agents-N;1).
        base = f"{tech}/{resource.split('/', 1)[0]}" if local else target
        channel = f"{base}-{seq:08x}" + (";1" if local else "")
        timeout = _seconds(action.get("Timeout"), 30000.0) / 1000.0
        answered, reason, after = self.far_side(target, timeout)
        created = int(self.clock.now())
        assigned = action.get("ChannelId") or ""
        uniqueid = (assigned or f"{created}.{first_id}") if answered else (assigned or "<unknown>")
        num, name = parse_caller_id(action.get("CallerID", ""))
        # fast_originate: an application's attempt names Application/Data, a dialplan one
        # Context/Exten; a failed one names the channel as requested (none was kept).
        where = ([("Application", action.get("Application", "")), ("Data", action.get("Data", ""))]
                 if action.get("Application") else
                 [("Context", action.get("Context", "")), ("Exten", action.get("Exten", ""))])
        fields = [*self._tail(action), ("Response", "Success" if answered else "Failure"),
                  ("Channel", channel if answered else target), *where, ("Reason", str(reason)),
                  ("Uniqueid", uniqueid), ("CallerIDNum", num), ("CallerIDName", name)]
        # Stamped when sent: the event comes when the phone answered or the attempt ended.
        event = partial(self.event, "OriginateResponse", "call,all", fields)
        build = partial(self._answered, event)
        if answered and (action.get("Application") or "").lower() == "chanspy":
            other = action.get("OtherChannelId") or f"{created}.{first_id + 1}"
            build = partial(self._answered, event, partial(
                self.start_chanspy, channel, action.get("Data") or "", (uniqueid, other), (num, name)))
        wait = after / (self.clock.rate or 1.0)
        return Answer([reply(action, message="Originate successfully queued")], later=[(wait, build)])

    @staticmethod
    def _answered(response: Callable[[], Pairs],
                  then: Callable[[], list[Pairs]] | None = None) -> list[Pairs]:
        """The OriginateResponse first (supervisor_spy.ami), then what the channel does."""
        return [response(), *(then() if then else [])]
