"""AMI wire format: framing bytes into whole messages, and the message type.

Framing and decoding are separate steps on purpose: panoramisk decodes every TCP
chunk on its own, so a UTF-8 caller name split across two reads is mangled. Here
bytes are buffered until a message is complete (blank line), and only then decoded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping

log = logging.getLogger(__name__)

BANNER_PREFIX = b"Asterisk Call Manager/"
_END = b"\r\n\r\n"


class AmiMessage(Mapping[str, str]):
    """One AMI event or action reply: ordered `Key: Value` headers.

    Lookups are exact first (Asterisk is consistent in its casing) and fall back to a
    case-insensitive match. Repeated keys (`ChanVariable`, `Output`) keep their first
    value in the mapping; `getall` returns every value.
    """

    __slots__ = ("_headers", "_pairs", "received_at", "pbx")

    def __init__(
        self, pairs: list[tuple[str, str]], received_at: float | None = None
    ) -> None:
        self._pairs = pairs
        headers: dict[str, str] = {}
        for key, value in pairs:
            headers.setdefault(key, value)
        self._headers = headers
        self.received_at = time.time() if received_at is None else received_at
        self.pbx = ""  # the PBX it came from (set by that PBX's link; "" when only one)

    @classmethod
    def from_dict(cls, headers: Mapping[str, str], received_at: float | None = None) -> AmiMessage:
        return cls(list(headers.items()), received_at)

    # Mapping protocol
    def __getitem__(self, key: str) -> str:
        try:
            return self._headers[key]
        except KeyError:
            lowered = key.lower()
            for k, v in self._headers.items():
                if k.lower() == lowered:
                    return v
            raise

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)

    def __contains__(self, key: object) -> bool:
        if key in self._headers:
            return True
        if isinstance(key, str):
            lowered = key.lower()
            return any(k.lower() == lowered for k in self._headers)
        return False

    def __repr__(self) -> str:
        kind = self.event or f"Response:{self.response}"
        return f"<AmiMessage {kind} {dict(self._pairs[:6])}>"

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def getall(self, key: str) -> list[str]:
        lowered = key.lower()
        return [v for k, v in self._pairs if k.lower() == lowered]

    @property
    def event(self) -> str | None:
        return self._headers.get("Event")

    @property
    def response(self) -> str | None:
        return self._headers.get("Response")

    @property
    def action_id(self) -> str | None:
        return self._headers.get("ActionID")

    @property
    def is_event(self) -> bool:
        return "Event" in self._headers

    @property
    def success(self) -> bool:
        return self._headers.get("Response") in ("Success", "Follows", "Goodbye")

    @property
    def timestamp(self) -> float:
        """When it happened on the PBX: the `Timestamp` header when sent, else arrival."""
        raw = self._headers.get("Timestamp")
        if raw:
            try:
                return float(raw)
            except ValueError:
                pass
        return self.received_at


def parse_message(text: str, received_at: float | None = None) -> AmiMessage:
    """Parse one decoded message block (without its terminating blank line)."""
    pairs: list[tuple[str, str]] = []
    for line in text.split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            pairs.append((key, value))
        elif line.endswith(":"):
            # `Key:` with nothing after it: an empty value.
            pairs.append((line[:-1], ""))
        elif line:
            # Body lines of old `Response: Follows` command output.
            pairs.append(("Output", line))
    return AmiMessage(pairs, received_at)


# An event kept undecoded as it came (a hot standby's): (arrival time, AmiFramer block).
RawEvent = tuple[float, bytes]


def parse_block(block: bytes, received_at: float | None = None) -> AmiMessage:
    """Parse one framed message (AmiFramer.blocks); invalid UTF-8 is replaced (U+FFFD)."""
    return parse_message(block.decode("utf-8", "replace"), received_at)


def is_plain_event(block: bytes) -> bool:
    """A framed message that is an event and answers no action (no list item): what a hot
    standby may keep undecoded. Asterisk writes `Event:` first in every event."""
    return block.startswith(b"Event: ") and b"\r\nActionID: " not in block


def encode_message(headers: Mapping[str, str] | list[tuple[str, str]]) -> bytes:
    """Serialise headers to the wire: `Key: Value` CRLF lines and a blank line."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    lines = []
    for key, value in items:
        if isinstance(value, (list, tuple)):
            lines.extend(f"{key}: {v}" for v in value)
        else:
            lines.append(f"{key}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
_BANNER_MAX = 4096  # a banner line longer than this is no banner


class AmiFramer:
    """Incremental byte framer: feed TCP chunks, get whole decoded messages.

    The banner (`Asterisk Call Manager/x.y.z` on one line) is reported through
    `banner` rather than as a message. Invalid UTF-8 inside a complete message is
    replaced (U+FFFD), never silently dropped.

    Linear and bounded, whatever the peer sends: each byte is searched for the blank
    line once (a search resumes where the last one stopped, minus the 3 bytes a
    terminator may straddle), and a message longer than `max_message_bytes` is dropped
    with one warning — the bytes already buffered at once, the rest as it arrives, up to
    its blank line — so the buffer never holds more than the cap plus one read.
    `bytes_scanned` counts the bytes searched (a test's measure of the work).
    """

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 64:
            raise ValueError(f"max_message_bytes must be at least 64, got {max_message_bytes}")
        self.max_message_bytes = max_message_bytes
        self._buffer = bytearray()
        self._scanned = 0  # the buffer holds no terminator starting before this offset
        self._discarding = False  # inside an oversized message: drop up to its blank line
        self.banner: str | None = None
        self.bytes_scanned = 0
        self.dropped_messages = 0

    def _find(self, needle: bytes) -> int:
        """The first `needle` at or after `_scanned`; remembers how far it looked."""
        buffer = self._buffer
        start = max(0, self._scanned)
        found = buffer.find(needle, start)
        stop = found + len(needle) if found >= 0 else len(buffer)
        self.bytes_scanned += max(0, stop - start)
        self._scanned = found if found >= 0 else max(0, len(buffer) - len(needle) + 1)
        return found

    def _consume(self, count: int) -> None:
        del self._buffer[:count]
        self._scanned = 0

    def _too_long(self, size: int) -> None:
        self.dropped_messages += 1
        log.warning("AMI message longer than %d bytes (%s) dropped: raise [ami] max_message_bytes "
                    "if the PBX really sends such messages", self.max_message_bytes,
                    f"{size} bytes" if not self._discarding else "at least that")

    def _read_banner(self) -> bool:
        """False while the banner line is incomplete."""
        buffer = self._buffer
        if len(buffer) < len(BANNER_PREFIX) and BANNER_PREFIX.startswith(bytes(buffer)):
            return False
        if not buffer.startswith(BANNER_PREFIX):
            self.banner = ""
            return True
        end = self._find(b"\r\n")
        if end < 0:
            if len(buffer) <= _BANNER_MAX:
                return False
            self.banner = ""  # no banner after all: frame it as messages
            self._scanned = 0
            return True
        self.banner = buffer[:end].decode("utf-8", "replace")
        self._consume(end + 2)
        return True

    def blocks(self, data: bytes) -> list[bytes]:
        """The complete messages `data` ends, undecoded (without their blank line)."""
        buffer = self._buffer
        buffer += data
        if self.banner is None and not self._read_banner():
            return []
        blocks: list[bytes] = []
        while True:
            end = self._find(_END)
            if end < 0:
                break
            if self._discarding:  # the blank line that ends the oversized message
                self._discarding = False
            elif end > self.max_message_bytes:
                self._too_long(end)
            else:
                block = bytes(buffer[:end])
                if block.strip():
                    blocks.append(block)
            self._consume(end + 4)
        if len(buffer) > self.max_message_bytes:
            # Unterminated and already too long: drop what we have, keep only the last 3
            # bytes (the start of a terminator split across reads), skip the rest later.
            if not self._discarding:
                self._too_long(len(buffer))
                self._discarding = True
            self._consume(len(buffer) - (len(_END) - 1))
            self._scanned = 0
        return blocks

    def feed(self, data: bytes, received_at: float | None = None) -> list[AmiMessage]:
        blocks = self.blocks(data)
        if not blocks:
            return []
        arrived = time.time() if received_at is None else received_at
        return [parse_block(block, arrived) for block in blocks]

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)


def iter_capture(data: bytes) -> Iterator[AmiMessage]:
    """All messages of a raw capture (banner skipped), in order."""
    framer = AmiFramer()
    yield from framer.feed(data, received_at=0.0)
