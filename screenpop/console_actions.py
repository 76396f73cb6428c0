"""What an operator does from his console beyond his cards, each through the PBX or the CRM:

- `POST /api/console/pause` {paused, reason}: QueuePause on his member interfaces (every queue;
  `[console] member_interface`), the reason one of `[console] pause_reasons`;
- `POST /api/console/dial` {number}: click-to-dial. AMI Originate rings his own phone first
  (`[console] originate_channel`, e.g. `Local/101@from-internal`), then dials the number in
  `[console] originate_context`;
- `GET /api/console/search?q=`: contacts by name or number in every CRM that can search
  ("search not supported" from those that cannot).

Pause and dial go to the operator's own PBX (`send_action(..., pbx=...)`: his extensions
are that PBX's), and are written to the audit log (who, what, the PBX's answer), refusals too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.ami.message import AmiMessage
from crm_adapters.errors import CrmError, CrmNotSupported
from screenpop.card_actions import ScreenPopError
from screenpop.card_views import format_number
from screenpop.screenpop_service import ScreenPopService
from web.users import SignedInUser

log = logging.getLogger(__name__)

SendAction = Callable[..., Awaitable[AmiMessage]]
SEARCH_LIMIT = 20
_DIALABLE = re.compile(r"^\+?[0-9*#]{2,32}$")


def dialable(number: str) -> str:
    """The number as the PBX dials it: digits (a leading "+", "*" and "#" kept), or a 400."""
    cleaned = re.sub(r"[\s()\-.]", "", number)
    if not _DIALABLE.match(cleaned):
        raise ScreenPopError(f"not a number to dial: {number!r}")
    return cleaned


class ConsoleActions:
    def __init__(self, service: ScreenPopService, send_action: SendAction | None, audit: Any | None) -> None:
        self.service = service
        self.send_action = send_action
        self.audit = audit  # web.audit_log.AuditLog, or None (tests without a database)
        service.can_act = send_action is not None

    def _extensions(self, user: SignedInUser) -> tuple[str, list[str]]:
        """His PBX and his extensions on it; refused when there is nothing to act on."""
        if self.send_action is None:
            raise ScreenPopError("the console cannot reach the PBX", 503)
        if not user.extensions:
            raise ScreenPopError("no extension is bound to your user", 403)
        pbx = self.service.pbxes.of_user(user)
        if pbx not in self.service.pbxes.ids:  # never another PBX's phone with his number
            raise ScreenPopError(f"your extensions are on PBX {pbx!r}, which is not configured", 409)
        return pbx, sorted(user.extensions)

    async def _send(self, action: dict[str, str], pbx: str) -> tuple[bool, str]:
        assert self.send_action is not None
        try:
            reply = await self.send_action(action, pbx=pbx)
        except Exception as exc:  # AmiError, timeouts, a lost link: the PBX did not take it
            return False, f"the PBX did not answer: {exc}"
        ok = (reply.get("Response") or "").casefold() == "success"
        return ok, reply.get("Message") or ("done" if ok else "refused")

    async def _audit(self, user: SignedInUser, action: str, target: str, ok: bool, detail: dict[str, Any],
                     remote: str | None) -> None:
        if self.audit is None:
            return
        try:
            await self.audit.record(user.username, action, role=user.role, target=target,
                                    result="ok" if ok else "error", detail=detail, remote=remote)
        except Exception as exc:  # the action happened; its audit row failing is logged loudly
            log.error("audit of %s by %s not written: %s", action, user.username, exc)

    async def pause(self, user: SignedInUser, paused: bool, reason: str | None,
                    remote: str | None = None) -> dict[str, Any]:
        pbx, exts = self._extensions(user)
        settings = self.service.console
        reason = (reason or "").strip() or None
        if paused and settings.pause_reasons and reason not in settings.pause_reasons:
            raise ScreenPopError(f"choose a reason: {', '.join(settings.pause_reasons)}")
        answers: list[dict[str, Any]] = []
        for ext in exts:
            action = {"Action": "QueuePause", "Interface": settings.member_interface.format(ext=ext),
                      "Paused": "true" if paused else "false"}
            if paused and reason:
                action["Reason"] = reason
            ok, message = await self._send(action, pbx)
            answers.append({"extension": ext, "ok": ok, "message": message})
            await self._audit(user, "console.pause" if paused else "console.unpause", ext, ok,
                              {"reason": reason, "pbx": message, **self._on(pbx)}, remote)
        if not any(a["ok"] for a in answers):
            raise ScreenPopError("; ".join(f"{a['extension']}: {a['message']}" for a in answers), 502)
        return {"paused": paused, "reason": reason, "pbx": answers}

    async def dial(self, user: SignedInUser, number: str, remote: str | None = None) -> dict[str, Any]:
        pbx, exts = self._extensions(user)
        ext = exts[0]
        target = dialable(number)
        settings = self.service.console
        name = re.sub(r'["<>]', "", user.display_name).strip() or user.username
        action = {"Action": "Originate", "Channel": settings.originate_channel.format(ext=ext),
                  "Exten": target, "Context": settings.originate_context, "Priority": "1",
                  "CallerID": f'"{name}" <{ext}>', "Timeout": str(settings.originate_timeout_ms),
                  "Async": "true"}
        ok, message = await self._send(action, pbx)
        await self._audit(user, "console.dial", target, ok,
                          {"extension": ext, "pbx": message, **self._on(pbx)}, remote)
        if not ok:
            raise ScreenPopError(f"the PBX refused the call: {message}", 502)
        return {"number": target, "extension": ext, "pbx": message}

    def _on(self, pbx: str) -> dict[str, str]:
        """Which PBX, in the audit row, where there are several (its "pbx" is the PBX's answer)."""
        return {"pbx_id": pbx} if self.service.pbxes.several else {}

    async def search(self, query: str) -> dict[str, Any]:
        query = " ".join(query.split())
        if len(query) < 2:
            raise ScreenPopError("type at least 2 characters of a name or a number")
        if len(query) > 100:
            raise ScreenPopError("the search is too long (100 characters at most)")
        contacts: list[dict[str, Any]] = []
        unsupported: list[str] = []
        failed: list[str] = []
        region = self.service.region
        for adapter in self.service.lookup.adapters:
            try:
                found = await adapter.search(query, SEARCH_LIMIT)
            except CrmNotSupported:
                unsupported.append(adapter.name)
                continue
            except CrmError as exc:
                failed.append(f"{adapter.name}: {exc}")
                continue
            for c in found:
                phones = [{"number": p, "display": format_number(p, region)} for p in c.phones]
                contacts.append({"id": c.id, "source": c.source or adapter.name, "name": c.display_name,
                                 "company": c.company, "url": c.url, "vip": c.vip, "phones": phones})
        if not contacts and not failed and len(unsupported) == len(self.service.lookup.adapters):
            raise ScreenPopError("search not supported by the configured CRM", 501)
        return {"contacts": contacts[:SEARCH_LIMIT], "unsupported": unsupported, "failed": failed}


ACTIONS_KEY = web.AppKey("console_actions", ConsoleActions)
