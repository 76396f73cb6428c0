"""Wiring: the queue member log and the reports' page and API attached to the running bridge
(web.features)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bridge.ami.message import AmiMessage
from bridge.calls.channel_names import OperatorDirectory
from reports.http import ReportsApi, add_report_routes
from reports.member_log import MEMBER_EVENTS, MemberLog
from reports.service import ReportService
from reports.settings import ReportSettings
from web.audit_log import AuditLog
from web.features import BridgeParts, run_with_app


@dataclass(frozen=True)
class AttachedReports:
    service: ReportService
    member_log: MemberLog


REPORTS_KEY = web.AppKey("reports", AttachedReports)


def attach_reports(parts: BridgeParts, settings: ReportSettings | None = None) -> AttachedReports:
    """Queue member events (live, and the QueueStatus list after every connect) into the member
    log, written in the background from the app's start to its stop; `/reports` and its API on
    the app, reporting in the call centre's zone (one PBX's report: in that PBX's zone) by the
    bridge's clock; each PBX's members are its operators by its own `operator_pattern`."""
    if (attached := parts.app.get(REPORTS_KEY)) is not None:  # once per app
        return attached
    settings = settings or ReportSettings()
    member_log = MemberLog(parts.store, OperatorDirectory(parts.operator_pattern), pbx_operators={
        pbx: OperatorDirectory(parts.operator_pattern_of(pbx)) for pbx in parts.pbxes})
    main = parts.pbxes[0]

    def owned(items: list[AmiMessage]) -> bool:  # in a cluster only the PBX's owner writes its rows
        return bool(items) and parts.owns(items[0].pbx or main)

    parts.pipeline.subscribe_raw(lambda event: member_log.on_ami_event(event) if owned([event]) else None,
                                 MEMBER_EVENTS)
    parts.on_resync(lambda channels, queue_status, at, pbx:
                    member_log.on_resync(channels, queue_status, at) if parts.owns(pbx) else None)
    service = ReportService(parts.store, settings, timezone=parts.timezone, clock=parts.clock,
                            pbxes=parts.pbxes, timezones={p: parts.timezone_of(p) for p in parts.pbxes})
    add_report_routes(parts.app, ReportsApi(service, AuditLog(parts.store)))
    run_with_app(parts.app, member_log.start, member_log.stop)
    parts.app[REPORTS_KEY] = attached = AttachedReports(service, member_log)
    return attached


__all__ = ["REPORTS_KEY", "AttachedReports", "attach_reports"]
