"""What a channel name says: which operator's device it is, and which leg it belongs to.

Asterisk names channels `TECH/RESOURCE-SEQUENCE` (`PJSIP/101-00000001`, `SIP/101-0000a1b2`)
and Local channels `Local/EXTEN@CONTEXT-SEQUENCE;1|;2`. A queue member interface has no
sequence (`Local/101@agents/n`, `PJSIP/101`).
"""

from __future__ import annotations

import re

_LOCAL = re.compile(r"^Local/(?P<exten>[^@;/]+)@(?P<context>[^;/]*?)(?:-[0-9a-fA-F]+)?(?:;[12])?(?:/\w+)?$")
_DEVICE = re.compile(r"^(?P<tech>[A-Za-z0-9_]+)/(?P<resource>[^/;]+?)(?:-[0-9a-fA-F]+)?$")

DEFAULT_OPERATOR_PATTERN = r"^\d{2,6}$"
UNKNOWN_CALLER_IDS = frozenset({"", "<unknown>", "unknown", "anonymous", "<anonymous>"})


def leg_key(channel: str) -> str:
    """The two halves of a Local channel (`;1` and `;2`) are one leg."""
    if channel.startswith("Local/") and channel[-2:] in (";1", ";2"):
        return channel[:-2]
    return channel


def is_local(channel: str) -> bool:
    return channel.startswith("Local/")


def channel_extension(channel: str) -> str | None:
    """The extension (device or Local exten) a channel or interface name points at."""
    if channel.startswith("Local/"):
        match = _LOCAL.match(channel)
        return match["exten"] if match else None
    match = _DEVICE.match(channel)
    return match["resource"] if match else None


class OperatorDirectory:
    """Decides which extensions are operators' phones (a configurable pattern)."""

    def __init__(self, pattern: str = DEFAULT_OPERATOR_PATTERN) -> None:
        self._pattern = re.compile(pattern)

    def is_operator(self, extension: str | None) -> bool:
        return bool(extension) and self._pattern.match(extension) is not None

    def operator_of(self, channel: str | None) -> str | None:
        """`101` for `Local/101@agents-00000001;1`, `PJSIP/101-00000001` or `Local/101@agents/n`."""
        if not channel:
            return None
        ext = channel_extension(channel)
        return ext if self.is_operator(ext) else None


def clean_caller_id(value: str | None) -> str | None:
    """None for the empty or placeholder values Asterisk uses when there is no caller id."""
    if value is None or value.strip().lower() in UNKNOWN_CALLER_IDS:
        return None
    return value


# ast_escape_c's sequences (main/utils.c): what AMI writes for caller-id names, connected
# line names and variable values. Other backslashes are kept: older Asterisk versions
# send names raw, and `Back\Slash` must not lose its backslash there.
_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
              "\\": "\\", "'": "'", '"': '"', "?": "?"}
_C_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def unescape_ami(value: str | None) -> str | None:
    """`D\\'Artagnan` -> `D'Artagnan`, `Back\\\\Slash` -> `Back\\Slash` (ast_escape_c undone)."""
    if not value or "\\" not in value:
        return value
    return _C_ESCAPE.sub(lambda m: _C_ESCAPES.get(m[1], m[0]), value)
