"""The audit log: who did what, to whom, when, and what came of it.

Every recording play/download, review comment and score, every supervisor action
(spy, queue changes) and every refused access is written here. Writes are awaited:
an action that cannot be audited is not silently done.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Index, Integer, String, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from bridge.call_log.store import CallLogStore
from bridge.call_log.tables import Base, UtcDateTime
from web.access import USER_KEY, require_role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger("callbridge.audit")


class AuditRow(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_username", "username"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    username: Mapped[str] = mapped_column(String, nullable=False)
    role: Mapped[str | None] = mapped_column(String)
    action: Mapped[str] = mapped_column(String, nullable=False)  # e.g. recording.play, spy.listen
    target: Mapped[str | None] = mapped_column(String)  # call id, recording id, extension
    result: Mapped[str] = mapped_column(String, nullable=False)  # ok, denied, or the PBX's answer
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    remote: Mapped[str | None] = mapped_column(String)  # client address


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int | None = None
    at: datetime
    username: str
    role: str | None
    action: str
    target: str | None
    result: str
    detail: dict[str, Any]
    remote: str | None = None


class AuditLog:
    def __init__(self, store: CallLogStore) -> None:
        self.store = store

    async def record(self, username: str, action: str, *, role: str | None = None,
                     target: str | None = None, result: str = "ok", detail: dict[str, Any] | None = None,
                     remote: str | None = None) -> AuditEntry:
        entry = AuditEntry(at=datetime.now(UTC), username=username, role=role, action=action,
                           target=target, result=result, detail=detail or {}, remote=remote)
        async with self.store.engine.begin() as conn:
            row = await conn.execute(insert(AuditRow).values(**entry.model_dump(exclude={"id"}))
                                     .returning(AuditRow.id))
            entry = entry.model_copy(update={"id": row.scalar_one()})
        log.info("audit: user=%s role=%s %s %s -> %s %s", username, role, action, target or "-", result,
                 json.dumps(detail, ensure_ascii=False) if detail else "")
        return entry

    async def entries(self, *, since: datetime | None = None, username: str | None = None,
                      action: str | None = None, limit: int = 500) -> list[AuditEntry]:
        query = select(AuditRow.__table__).order_by(AuditRow.id.desc()).limit(limit)
        if since is not None:
            query = query.where(AuditRow.at >= since)
        if username is not None:
            query = query.where(AuditRow.username == username)
        if action is not None:
            query = query.where(AuditRow.action.startswith(action))
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditEntry(id=r.id, at=r.at, username=r.username, role=r.role, action=r.action,
                           target=r.target, result=r.result, detail=r.detail, remote=r.remote)
                for r in rows]


def require_role_audited(*roles: str, action: str,
                         audit: Callable[[web.Request], Any]) -> Callable[[Handler], Handler]:
    """`require_role(*roles)`, and a refusal also becomes an audit-log row `action` (result
    "denied"); `audit(request)` gives the feature's AuditLog, or None."""

    def decorate(handler: Handler) -> Handler:
        guarded = require_role(*roles)(handler)

        @functools.wraps(guarded)  # keeps the role mark that unguarded_routes looks for
        async def audited(request: web.Request) -> web.StreamResponse:
            try:
                return await guarded(request)
            except web.HTTPForbidden:
                user, log = request.get(USER_KEY), audit(request)
                if user is not None and log is not None:
                    await log.record(user.username, action, role=str(user.role), target=request.path,
                                     result="denied", detail={"method": request.method},
                                     remote=request.remote)
                raise

        return audited

    return decorate
