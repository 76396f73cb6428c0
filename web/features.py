"""How the service wires a feature (the console's cards, the review room, the wallboard):
every feature package has one `attach(parts, settings, ...)` that subscribes it to the call
model, puts its routes on the web app and ties its start and stop to the app's lifecycle.
`BridgeParts` is all a feature may use of the running bridge, so no feature reaches into
the service, and the service reads as a list of attachments."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.ami.message import AmiMessage
from bridge.call_log.store import CallLogStore
from bridge.calls.pipeline import CallPipeline
from bridge.calls.record import DEFAULT_PBX

# (CoreShowChannels items, QueueStatus items, PBX time, PBX id), after every (re)connect of a
# PBX; every item carries `.pbx` too (the id says whose lists they are when both are empty).
ResyncListener = Callable[[list[AmiMessage], list[AmiMessage], float, str], None]
# send_action(action, timeout=None, pbx=None) -> the reply of that PBX (the first unless named)
SendAction = Callable[..., Awaitable[AmiMessage]]
# share(pbx, topic, data, urgent): JSON data for the other nodes following the PBX
Share = Callable[[str, str, Any, bool], None]
# handler(pbx, data): what a PBX's owner shared on a topic
SharedHandler = Callable[[str, Any], None]


@dataclass(frozen=True)
class PbxFacts:
    """What differs per PBX for the features (a `[[pbx]]` table, its defaults filled in). Here,
    not bridge.settings: features may not import the settings (the import-linter layers)."""

    operator_pattern: str  # which of its extensions are operators' phones
    timezone: str  # its IANA zone: its "today", its reports' days, its recordings' date folders


@dataclass(frozen=True)
class BridgeParts:
    pipeline: CallPipeline  # subscribe to domain events (and raw AMI events)
    store: CallLogStore  # the database
    app: web.Application  # routes, and cleanup_ctx for start/stop
    send_action: SendAction  # actions to the PBX
    pbx_ready: Callable[..., bool]  # pbx_ready(pbx=None): that PBX (or every PBX) logged in, resynced
    on_resync: Callable[[ResyncListener], Any]  # be told the PBX's live picture after a connect
    operator_pattern: str  # which extensions are operators' phones
    timezone: str  # the call centre's IANA zone ("today", date folders)
    clock: Callable[[], float] = time.time  # our clock (tests pass a recorded one)
    pbxes: tuple[str, ...] = (DEFAULT_PBX,)  # the PBXes' ids, the first (main) one first
    # Whether this node writes for a PBX (its side effects: rows, recordings, CRM notes). One
    # process: always; a cluster: only the PBX's owner, every other node follows its events.
    owns: Callable[[str], bool] = lambda pbx: True
    # Be told (await listener(pbx)) when this node has just become a PBX's owner in a cluster,
    # before it connects: take over what the last owner left unfinished.
    on_owned: Callable[[Callable[[str], Awaitable[Any]]], Any] = lambda listener: None
    # A PBX's owner tells the cluster's other nodes what it alone learnt (a CRM answer), in
    # order with the PBX's events; `on_shared(topic, handler)`: be told. One process: nobody.
    share: Share = lambda pbx, topic, data, urgent: None
    on_shared: Callable[[str, SharedHandler], Any] = lambda topic, handler: None
    # Each PBX's own pattern and zone; a PBX not in it (all of them when empty: one PBX, tests)
    # uses the top-level `operator_pattern` and `timezone`.
    pbx_settings: Mapping[str, PbxFacts] = field(default_factory=dict)

    def operator_pattern_of(self, pbx: str) -> str:
        facts = self.pbx_settings.get(pbx)
        return facts.operator_pattern if facts is not None else self.operator_pattern

    def timezone_of(self, pbx: str) -> str:
        facts = self.pbx_settings.get(pbx)
        return facts.timezone if facts is not None else self.timezone


def run_with_app(app: web.Application, start: Callable[[], Awaitable[Any]],
                 stop: Callable[[], Awaitable[Any]]) -> None:
    """A feature's start and stop, run when the web app starts and cleans up."""

    async def lifecycle(_: web.Application) -> Any:
        await start()
        try:
            yield
        finally:
            await stop()

    app.cleanup_ctx.append(lifecycle)
