"""One AMI TCP connection on panoramisk's AMIProtocol, with whole-message framing.

panoramisk decoded every TCP chunk on its own (a UTF-8 caller name split across two
reads was mangled) and re-queued unanswered actions on close; this protocol frames
bytes with AmiFramer, decodes only complete messages, and leaves correlation and
reconnects to AmiClient.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from panoramisk.ami_protocol import AMIProtocol

from bridge.ami_message import AmiFramer, AmiMessage, encode_message

if TYPE_CHECKING:
    from bridge.ami_client import AmiClient


class AmiProtocol(AMIProtocol):
    """One TCP connection: frames bytes into whole messages, hands them to the client."""

    def __init__(self, client: AmiClient) -> None:
        self.client = client
        self.framer = AmiFramer()
        self._lost_reported = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # transport, closed, version...
        self.factory = self.client
        self.client._protocol_made(self)

    def data_received(self, data: bytes) -> None:
        # Bytes are buffered until a message is complete, and only then decoded.
        for message in self.framer.feed(data):
            self.handle_message(message)
        if self.version is None and self.framer.banner is not None:
            self.version = self.framer.banner

    def handle_message(self, message: AmiMessage) -> None:  # type: ignore[override]
        self.client._message_received(self, message)

    def send(self, data: Mapping[str, Any], as_list: bool | None = None) -> None:  # type: ignore[override]
        self.transport.write(encode_message(data))

    def close(self) -> None:
        # No re-queueing of unanswered actions (panoramisk's awaiting_actions).
        if not self.closed:
            self.closed = True
            self.transport.abort()  # abort: a half-open peer would never drain a close()

    def connection_lost(self, exc: Exception | None) -> None:
        # Always report, even after our own close() (panoramisk stays silent then).
        self.closed = True
        if not self._lost_reported:
            self._lost_reported = True
            self.client.connection_lost(exc)
