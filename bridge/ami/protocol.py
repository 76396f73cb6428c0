"""One AMI TCP connection on panoramisk's AMIProtocol, with whole-message framing.

panoramisk decoded every TCP chunk on its own (a UTF-8 caller name split across two
reads was mangled) and re-queued unanswered actions on close; this protocol frames
bytes with AmiFramer, decodes only complete messages, and leaves correlation and
reconnects to AmiClient.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from panoramisk.ami_protocol import AMIProtocol

from bridge.ami.message import (
    DEFAULT_MAX_MESSAGE_BYTES,
    AmiFramer,
    AmiMessage,
    encode_message,
    is_plain_event,
    parse_block,
)

if TYPE_CHECKING:
    from bridge.ami.client import AmiClient


class AmiProtocol(AMIProtocol):
    """One TCP connection: frames bytes into whole messages, hands them to the client."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        # The client may carry `max_message_bytes` ([ami] max_message_bytes, set by the service).
        self.framer = AmiFramer(getattr(client, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES))
        self._lost_reported = False
        self._resume: asyncio.TimerHandle | None = None  # a lazy reader's next read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # transport, closed, version...
        self.factory = self.client
        self.client._protocol_made(self)

    def data_received(self, data: bytes) -> None:
        # Bytes are buffered until a message is complete, and only then decoded: a hot
        # standby's events not even then (the client's `keep_raw`), only replies and the rest.
        if self.client.lazy_reads > 0:
            self._read_later(self.client.lazy_reads)
        blocks = self.framer.blocks(data)
        if not blocks:
            return
        arrived = time.time()
        client = self.client
        kept: list[bytes] = []  # undecoded events for the raw sink, handed over per run
        for block in blocks:
            if client.raw_sink is not None and is_plain_event(block) and client.may_keep_raw(self, block):
                kept.append(block)
                continue
            if kept:  # they go first: they came first
                client.keep_raw(arrived, kept)
                kept = []
            self.handle_message(parse_block(block, arrived))
        if kept:
            client.keep_raw(arrived, kept)
        if self.version is None and self.framer.banner is not None:
            self.version = self.framer.banner

    def _read_later(self, delay: float) -> None:
        """A hot standby reads its socket every `delay` s, not at every event: the kernel
        holds what the PBX wrote meanwhile, and the node is not woken ~2,000 times a second
        to keep what it does not use, beside the owner that needs the CPU then."""
        if self._resume is None and not self.closed:
            self.transport.pause_reading()
            self._resume = asyncio.get_running_loop().call_later(delay, self.read_now)

    def read_now(self) -> None:
        """Read again at once (the next lazy read, or the end of lazy reading)."""
        if self._resume is None:
            return
        self._forget_lazy_read()
        if not self.closed and self.client.read_gate_holds() is not self:
            self.transport.resume_reading()

    def _forget_lazy_read(self) -> None:
        resume, self._resume = self._resume, None
        if resume is not None:
            resume.cancel()

    def handle_message(self, message: AmiMessage) -> None:  # type: ignore[override]
        self.client._message_received(self, message)

    def send(self, data: Mapping[str, Any], as_list: bool | None = None) -> None:  # type: ignore[override]
        self.transport.write(encode_message(data))

    def close(self) -> None:
        self._forget_lazy_read()
        # No re-queueing of unanswered actions (panoramisk's awaiting_actions).
        if not self.closed:
            self.closed = True
            self.transport.abort()  # abort: a half-open peer would never drain a close()

    def connection_lost(self, exc: Exception | None) -> None:
        # Always report, even after our own close() (panoramisk stays silent then).
        self.closed = True
        self._forget_lazy_read()
        if not self._lost_reported:
            self._lost_reported = True
            self.client.connection_lost(exc)


class ReadGate:
    """Back-pressure: stop reading the AMI socket while too many events wait for the
    consumer, so a PBX faster than the bridge fills the kernel's buffers, not our memory.

    Never closed while an action waits for its reply (the reply comes through the same
    socket; the resync after a connect awaits its lists while events queue up behind it).
    """

    def __init__(self, high: int) -> None:
        self.high, self.low = high, max(1, high // 2)
        self.paused_on: AmiProtocol | None = None
        self.pauses = 0

    def after_put(self, protocol: AmiProtocol | None, queued: int, actions_pending: int) -> None:
        if self.paused_on is None and protocol is not None and queued >= self.high and not actions_pending:
            protocol.transport.pause_reading()
            self.paused_on = protocol
            self.pauses += 1

    def after_get(self, queued: int) -> None:
        if self.paused_on is not None and queued <= self.low:
            self.release()

    def release(self) -> None:
        protocol, self.paused_on = self.paused_on, None
        if protocol is not None and not protocol.closed:
            protocol.transport.resume_reading()
