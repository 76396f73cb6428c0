"""The simulated PBX's wire shapes and seed data: header orders of channel and member
snapshots, the queues of the PBX the captures were recorded on, the wording of action
replies, and the small parsers of action values (as Asterisk's manager.c / app_queue.c do).

Shapes are copied from the captures in tests/fixtures; where they have no example, from
Asterisk's manager.c and app_queue.c. The live state using them is `bridge.simulator.actions`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.ami.message import AmiMessage

Pairs = list[tuple[str, str]]
# Events due later: after `delay` (wall seconds), `build()` makes them (and may change the state).
Later = tuple[float, Callable[[], list[Pairs]]]

CHANNEL_FIELDS = (
    "Channel", "ChannelState", "ChannelStateDesc", "CallerIDNum", "CallerIDName",
    "ConnectedLineNum", "ConnectedLineName", "Language", "AccountCode", "Context",
    "Exten", "Priority", "Uniqueid", "Linkedid",
)
# Events carry channel snapshots under these prefixes (DialBegin: Dest*, LocalBridge: LocalOne*).
SNAPSHOT_PREFIXES = ("", "Dest", "LocalOne", "LocalTwo")
# A member as queue events print it (QueueMemberAdded/Status/Pause/Removed), minus Queue.
MEMBER_FIELDS = (
    "MemberName", "Interface", "StateInterface", "Membership", "Penalty", "CallsTaken",
    "LastCall", "LastPause", "LoginTime", "InCall", "Status", "Paused", "PausedReason",
    "Ringinuse", "Wrapuptime",
)
ASTERISK_VERSION = "GIT-master-f0c1c1a7b7"
# The PBX the captures were recorded on (tests/fixtures/README.md, "PBX layout").
SEED_QUEUES = {
    "support": ("rrmemory", [("Local/101@agents/n", "Anna Operator"),
                             ("Local/102@agents/n", "Boris Operator")]),
    "sales": ("ringall", [("Local/103@agents/n", "Clara Operator"),
                          ("Local/104@agents/n", "Denis Operator")]),
}
DEVICE_NOT_INUSE, DEVICE_UNKNOWN = "1", "0"
# Actions on one channel: (reply Message, error for an unknown channel). The MixMonitor
# replies in the captures carry no Message.
CHANNEL_ACTIONS: dict[str, tuple[str | None, str]] = {
    "hangup": ("Channel Hungup", "No such channel"),
    "redirect": ("Redirect successful", "Channel does not exist: {}"),
    "blindtransfer": ("Transfer succeeded", "Channel specified does not exist"),
    "atxfer": ("Atxfer successfully queued", "Channel specified does not exist"),
    "mixmonitor": (None, "No such channel"),
    "stopmixmonitor": (None, "No such channel"),
    "mixmonitormute": (None, "No such channel"),
}
# ast_cause2str (channel.c causes[]) for the causes a Hangup is likely to carry.
CAUSE_TEXT = {0: "Unknown", 16: "Normal Clearing", 17: "User busy", 18: "No user responding",
              19: "User alerting, no answer", 21: "Call Rejected", 34: "Circuit/channel congestion"}



@dataclass
class Answer:
    """What the connection writes for one action: `messages` now, `later` after a delay."""

    messages: list[Pairs] = field(default_factory=list)
    later: list[Later] = field(default_factory=list)
    close: bool = False


def is_manager_event(message: Pairs) -> bool:
    """An event-bus event (it carries a Timestamp), not an item of a list answer: Asterisk
    sends it to every session (manager_event), a list only to the one that asked."""
    return message[0][0] == "Event" and any(k == "Timestamp" for k, _ in message)


def new_member(interface: str, name: str, login_time: int, membership: str = "static",
               penalty: str = "0", paused: str = "0", reason: str = "") -> dict[str, str]:
    values = (name, interface, interface, membership, penalty, "0", "0", "0", str(login_time),
              "0", DEVICE_NOT_INUSE, paused, reason, "1", "0")
    return dict(zip(MEMBER_FIELDS, values, strict=True))


def reply(action: AmiMessage, response: str = "Success", message: str | None = None,
          extra: Pairs | None = None) -> Pairs:
    """`Response`, `ActionID` (only if the action had one), `Message`: Asterisk's order."""
    pairs = [("Response", response)]
    if (action_id := action.get("ActionID")) is not None:
        pairs.append(("ActionID", action_id))
    if message is not None:
        pairs.append(("Message", message))
    return pairs + (extra or [])


def simple_answer(action: AmiMessage, response: str, message: str | None = None,
            extra: Pairs | None = None) -> Answer:
    return Answer([reply(action, response, message, extra)])


def error_answer(action: AmiMessage, message: str) -> Answer:
    return simple_answer(action, "Error", message)


def to_int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def queue_average(old: int, new: int, first: bool) -> int:
    """app_queue's exponential average: the first value as is, then (3 * old + new) / 4."""
    return new if first else (old * 3 + new) >> 2


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _strip_quoted(text: str) -> tuple[str, bool]:
    """Asterisk's ast_strip_quoted: trimmed, and one pair of surrounding quotes removed."""
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1], True
    return text, False


def parse_caller_id(raw: str) -> tuple[str, str]:
    """`"Name" <num>` / `Name <num>` / `num` / `Name` -> (num, name), `<unknown>` when absent.

    As Asterisk's ast_callerid_parse (Originate's CallerID): the last `<` starts the number,
    a bare value is a number only if it looks like one, and one level of backslash escapes
    is removed from the name (`Back\\\\Slash Co` gives `Back\\Slash Co`, `Back\\Slash` `BackSlash`).
    """
    text, quoted = _strip_quoted(raw)
    number: str | None = None
    name: str | None
    if "<" in text:
        at = text.rindex("<")
        number = text[at + 1 :].rsplit(">", 1)[0] if ">" in text[at:] else text[at + 1 :]
        name = _strip_quoted(text[:at])[0]
    elif not quoted and re.fullmatch(r"[0-9*#+]+", shrunk := re.sub(r"[\s().-]", "", text)):
        number, name = shrunk, None
    else:
        name = _strip_quoted(text)[0]
    if number is not None:
        number = re.sub(r"[\s().-]", "", number)  # ast_shrink_phone_number
    if name is not None:
        name = re.sub(r"\\(.?)", r"\1", name)  # ast_unescape_quoted
    return number or "<unknown>", name or "<unknown>"
