"""Wiring: the wallboard and live control attached to the running bridge (web.features)."""

from __future__ import annotations

from collections.abc import Callable

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import OperatorDirectory
from supervision.http import SERVICE_KEY, add_wallboard_routes
from supervision.settings import WallboardSettings
from supervision.wallboard_service import WallboardService
from web.audit_log import AuditLog
from web.features import BridgeParts

Names = Callable[[str], str | None]


def attach_wallboard(parts: BridgeParts, settings: WallboardSettings | None = None, *,
                     caller_names: Names | None = None,
                     operator_names: Names | None = None) -> WallboardService:
    """Subscribe the wallboard to the model, put its pages, socket and actions on the app
    (it starts and stops with it) and have it told each PBX's picture after its every connect.
    Its PBXes are the pipeline's (one model, one board per PBX), each with its own operator
    pattern and zone (`parts.pbx_settings`).
    `caller_names`: the CRM's name for a call id; `operator_names`: an extension's user."""
    if (attached := parts.app.get(SERVICE_KEY)) is not None:  # once per app
        return attached
    settings = settings or WallboardSettings()

    async def send(action: dict[str, str], pbx: str | None = None) -> AmiMessage:
        # To the PBX of the action's target: its owner's link in a cluster (BridgeParts).
        return await parts.send_action(action, timeout=settings.action_timeout, pbx=pbx)

    wallboard = WallboardService(
        settings, send_action=send, audit=AuditLog(parts.store),
        operators=OperatorDirectory(parts.operator_pattern), caller_names=caller_names,
        operator_names=operator_names, pbx_connected=parts.pbx_ready, history=parts.store.export,
        clock=parts.clock, timezone=parts.timezone, pbx_settings=parts.pbx_settings)
    wallboard.owns = parts.owns  # alerts are audited by the PBX's owner only (one line per alert)
    wallboard.attach(parts.pipeline)
    parts.on_resync(wallboard.on_resync)
    add_wallboard_routes(parts.app, wallboard)
    return wallboard


__all__ = ["attach_wallboard"]
