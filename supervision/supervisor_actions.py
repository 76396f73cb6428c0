"""The supervisor's live control from the wallboard: spy (listen, whisper, barge) and end
a spy session, add/remove queue members, pause/unpause. Each builds its AMI action
(supervision.pbx_actions), sends it through the injected `send_action`, audits who did what to
whom with the PBX's answer, notes it for the pages and returns that answer.

`SupervisorActions` is a part of `supervision.wallboard_service.WallboardService` (it uses the
service's settings, spy book, clock, activity notes and audit log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bridge.ami.actions import AmiActionTimeout, AmiError
from bridge.ami.message import AmiMessage
from supervision.pbx_actions import (
    SpyBook,
    SpyMode,
    SpySession,
    queue_add_action,
    queue_pause_action,
    queue_remove_action,
    spy_action,
)
from supervision.settings import WallboardSettings
from web.users import SignedInUser

SendAction = Callable[[dict[str, str]], Awaitable[AmiMessage]]


class ActionResult(BaseModel):
    """The PBX's answer to one supervisor action, as the page shows it."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    action: str  # spy.listen|whisper|barge, spy.end, queue.add, queue.remove, queue.pause, queue.unpause
    target: str | None
    ami_action: str
    response: str  # the PBX's Response (Success, Error), or Timeout / Unavailable
    message: str  # the PBX's Message, or why there was no answer
    action_id: str | None = None  # the AMI ActionID (a spy's OriginateResponse carries it)
    detail: dict[str, Any] = Field(default_factory=dict)


class SupervisorError(Exception):
    """A refused action (never sent to the PBX); `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(slots=True)
class PendingSpy:
    """A spy we originated: the listener's phone rings until ChanSpyStart."""

    listener: str
    operator: str
    mode: SpyMode
    requested_by: str
    at: float


class SupervisorActions:
    settings: WallboardSettings
    send_action: SendAction
    audit: Any | None  # web.audit_log.AuditLog
    spies: SpyBook
    pending: dict[str, PendingSpy]  # by the Originate's ActionID
    requested_by: dict[str, str]  # listener extension -> who set his session up
    _dirty: asyncio.Event

    if TYPE_CHECKING:  # the WallboardService's
        def now(self) -> float: ...

        def _note(self, kind: str, text: str, **extra: Any) -> None: ...

    async def spy(self, user: SignedInUser, operator: str, mode: SpyMode, listener: str | None = None,
                  remote: str | None = None) -> ActionResult:
        """Ring `listener` (default: the user's own first extension; a trainee's for shadowing),
        ChanSpy on `operator` in `mode`. A session live on that phone ends first (a switch)."""
        listener = listener or (user.extensions[0] if user.extensions else None)
        if not listener:
            raise SupervisorError("You have no extension of your own: say which phone should listen.")
        if listener == operator:
            raise SupervisorError("An operator cannot listen to his own calls.")
        action = _build(spy_action, self.settings.supervision, listener, operator, mode, user.display_name)
        ended = [await self._end(user, s, remote, "switch") for s in self.spies.of_supervisor(listener)]
        self.spies.requested_mode(listener, mode)
        detail = {"listener": listener, "shadowing": listener not in user.extensions,
                  "ended": [r.model_dump() for r in ended]}
        result = await self.run_action(user, f"spy.{mode}", operator, action, remote, detail)
        if result.ok and result.action_id:
            self.pending[result.action_id] = PendingSpy(listener, operator, mode, user.username, self.now())
            self.requested_by[listener] = user.username
        return result

    async def end_spy(self, user: SignedInUser, spyer_channel: str,
                      remote: str | None = None) -> ActionResult:
        session = self.spies.sessions.get(spyer_channel)
        if session is None:  # only a known session's channel: this is no general Hangup
            raise SupervisorError("No such spy session (it may have ended already).", 404)
        return await self._end(user, session, remote, "end")

    async def _end(self, user: SignedInUser, spy: SpySession, remote: str | None, why: str) -> ActionResult:
        hangup, detail = self.spies.hangup_action(spy), {"spyer_channel": spy.spyer_channel,
                                                         "listener": spy.supervisor, "reason": why}
        return await self.run_action(user, "spy.end", spy.operator, hangup, remote, detail)

    async def queue_add(self, user: SignedInUser, queue: str, extension: str, name: str, penalty: int = 0,
                        remote: str | None = None) -> ActionResult:
        action = _build(queue_add_action, self.settings.supervision, queue, extension, name, penalty)
        detail = {"queue": queue, "extension": extension, "name": name, "penalty": penalty}
        return await self.run_action(user, "queue.add", f"{queue}:{extension}", action, remote, detail)

    async def queue_remove(self, user: SignedInUser, queue: str, extension: str,
                           remote: str | None = None) -> ActionResult:
        action = _build(queue_remove_action, self.settings.supervision, queue, extension)
        detail = {"queue": queue, "extension": extension}
        return await self.run_action(user, "queue.remove", f"{queue}:{extension}", action, remote, detail)

    async def pause(self, user: SignedInUser, extension: str, paused: bool, reason: str = "",
                    queue: str | None = None, remote: str | None = None) -> ActionResult:
        action = _build(queue_pause_action, self.settings.supervision, extension, paused, reason, queue)
        what = "queue.pause" if paused else "queue.unpause"
        detail = {"extension": extension, "reason": reason, "queue": queue}
        return await self.run_action(user, what, extension, action, remote, detail)

    async def run_action(self, user: SignedInUser, what: str, target: str | None, action: Mapping[str, str],
                         remote: str | None, detail: dict[str, Any] | None = None) -> ActionResult:
        """Send one AMI action, audit it with the PBX's answer, note it for the pages."""
        reply: AmiMessage | None = None
        try:
            reply = await self.send_action(dict(action))
        except AmiActionTimeout as exc:
            response, message = "Timeout", str(exc)
        except AmiError as exc:
            response, message = "Unavailable", str(exc)
        else:
            response, message = reply.response or "?", reply.get("Message") or ""
        result = ActionResult(ok=reply is not None and reply.success, action=what, target=target,
                              ami_action=action["Action"], response=response, message=message,
                              action_id=reply.action_id if reply is not None else None, detail=detail or {})
        answer = f"{response}: {message}" if message else response
        self._note(what, f"{user.display_name or user.username}: {what} {target or ''} -> {answer}",
                   user=user.username)
        self._dirty.set()
        if self.audit is not None:  # awaited: an action that cannot be audited fails loudly
            await self.audit.record(user.username, what, role=str(user.role), target=target, result=answer,
                                    detail={**(detail or {}), "ami": dict(action)}, remote=remote)
        return result


def _build(make: Callable[..., dict[str, str]], *args: Any) -> dict[str, str]:
    try:
        return make(*args)
    except ValueError as exc:  # not an extension: never reaches the PBX
        raise SupervisorError(str(exc)) from None
