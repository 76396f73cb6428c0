"""The supervisor's live control from the wallboard: spy (listen, whisper, barge) and end
a spy session (one per listening phone: switched, not stacked; a ringing one cancelled),
add/remove queue members, pause/unpause. Each builds its AMI action
(supervision.pbx_actions), sends it through the injected `send_action` to the PBX of its
target (`pbx`: the first PBX unless named; queues, extensions and spy sessions are a PBX's
own), audits who did what to whom on which PBX with the PBX's answer, notes it for the pages
and returns that answer.

`SupervisorActions` is a part of `supervision.wallboard_service.WallboardService` (it uses the
service's settings, PBX sites (their spy books), clock, activity notes and audit log).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from bridge.ami.actions import AmiActionTimeout, AmiError
from bridge.ami.message import AmiMessage
from supervision.pbx_actions import (
    SpyMode,
    SpySession,
    queue_add_action,
    queue_pause_action,
    queue_remove_action,
    spy_action,
    spy_switch_action,
)
from supervision.pbx_site import PbxSite, PendingSpy
from supervision.settings import WallboardSettings
from web.users import SignedInUser

# send_action(action, pbx=ID) -> the reply of that PBX
SendAction = Callable[..., Awaitable[AmiMessage]]

__all__ = ["ActionResult", "PendingSpy", "SendAction", "SupervisorActions", "SupervisorError"]


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
    pbx: str | None = None  # the PBX it was sent to
    detail: dict[str, Any] = Field(default_factory=dict)


class SupervisorError(Exception):
    """A refused action (never sent to the PBX); `status` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class SupervisorActions:
    """One spy session per listening phone: a click on another mode switches the session
    (DTMF, or end-then-start for a session we did not start), a click while the phone rings
    changes the mode it will start in, and a ringing phone can be cancelled."""

    settings: WallboardSettings
    send_action: SendAction
    audit: Any | None  # web.audit_log.AuditLog
    _dirty: asyncio.Event

    if TYPE_CHECKING:  # the WallboardService's
        def now(self, pbx: str | None = None) -> float: ...

        def site(self, pbx: str | None = None) -> PbxSite: ...

        def _note(self, kind: str, text: str, site: PbxSite | None = None, **extra: Any) -> None: ...

    def pending_of(self, listener: str, pbx: str | None = None) -> tuple[str, PendingSpy] | None:
        return self.site(pbx).pending_of(listener)

    async def spy(self, user: SignedInUser, operator: str, mode: SpyMode, listener: str | None = None,
                  remote: str | None = None, *, pbx: str | None = None) -> ActionResult:
        """Ring `listener` (default: the user's own first extension; a trainee's for shadowing),
        ChanSpy on `operator` of PBX `pbx` in `mode`. One session per listener: a live one on that
        operator switches mode, a ringing one changes the mode it starts in; any other ends first."""
        site = self.site(pbx)
        listener = listener or (user.extensions[0] if user.extensions else None)
        if not listener:
            raise SupervisorError("You have no extension of your own: say which phone should listen.")
        if listener == operator:
            raise SupervisorError("An operator cannot listen to his own calls.")
        action = _build(spy_action, self.settings.supervision, listener, operator, mode, user.display_name)
        detail: dict[str, Any] = {"listener": listener, "shadowing": listener not in user.extensions}
        if (found := site.pending_of(listener)) is not None:
            pending = found[1]
            if pending.operator == operator:  # his phone rings already: no second call
                was, pending.mode = pending.mode, mode
                return await self.record(user, f"spy.{mode}", operator, "None", "Success",
                                         f"Your phone is being called; the session starts as {mode}.",
                                         remote, {**detail, "switch_from": was, "pending": True}, pbx=site.id)
            await self.cancel_spy(user, listener, remote, why="switch", pbx=site.id)
        live = site.spies.of_supervisor(listener)
        if len(live) == 1 and live[0].operator == operator and (live[0].switchable or live[0].mode == mode):
            return await self.switch_spy(user, live[0], mode, remote, detail, pbx=site.id)
        ended = [await self._end(user, site, s, remote, "switch") for s in live]
        site.spies.requested_mode(listener, mode)
        detail["ended"] = [r.model_dump() for r in ended]
        result = await self.run_action(user, f"spy.{mode}", operator, action, remote, detail, pbx=site.id)
        if result.ok and result.action_id:
            site.pending[result.action_id] = PendingSpy(listener, operator, mode, user.username,
                                                        self.now(site.id), started_as=mode, user=user)
            site.requested_by[listener] = user.username
            site.cancelled.pop(listener, None)
        return result

    async def switch_spy(self, user: SignedInUser, session: SpySession, mode: SpyMode,
                         remote: str | None = None, detail: dict[str, Any] | None = None, *,
                         pbx: str | None = None) -> ActionResult:
        """A running session (started with ChanSpy's `d`) to `mode`, by DTMF: one session."""
        site = self.site(pbx)
        detail = {**(detail or {}), "spyer_channel": session.spyer_channel, "switch_from": session.mode}
        if session.mode == mode:
            return await self.record(user, f"spy.{mode}", session.operator, "None", "Success",
                                     f"Already in {mode} mode.", remote, detail, pbx=site.id)
        result = await self.run_action(user, f"spy.{mode}", session.operator,
                                       spy_switch_action(session.spyer_channel, mode), remote, detail,
                                       pbx=site.id)
        if result.ok and session.spyer_channel in site.spies.sessions:
            site.spies.sessions[session.spyer_channel] = session.model_copy(update={"mode": mode})
            if session.supervisor:
                site.spies.requested_mode(session.supervisor, mode)
        return result

    async def cancel_spy(self, user: SignedInUser, listener: str | None = None, remote: str | None = None,
                         why: str = "cancel", *, pbx: str | None = None) -> ActionResult:
        """Stop ringing the listener's phone for a session not yet started."""
        site = self.site(pbx)
        listener = listener or (user.extensions[0] if user.extensions else None)
        found = site.pending_of(listener) if listener else None
        if listener is None or found is None:
            raise SupervisorError("No call to that phone is waiting (it may have been answered).", 404)
        key, pending = found
        del site.pending[key]
        site.cancelled[listener] = self.now(site.id)  # a session that starts all the same is ended
        detail = {"listener": listener, "mode": pending.mode, "reason": why, "action_id": key}
        if pending.channel is None:  # the PBX has not rung it yet
            return await self.record(user, "spy.cancel", pending.operator, "None", "Success",
                                     "Cancelled before the phone rang.", remote, detail, pbx=site.id)
        return await self.run_action(user, "spy.cancel", pending.operator,
                                     {"Action": "Hangup", "Channel": pending.channel}, remote, detail,
                                     pbx=site.id)

    async def end_spy(self, user: SignedInUser, spyer_channel: str,
                      remote: str | None = None, *, pbx: str | None = None) -> ActionResult:
        site = self.site(pbx)
        session = site.spies.sessions.get(spyer_channel)
        if session is None:  # only a known session's channel: this is no general Hangup
            raise SupervisorError("No such spy session (it may have ended already).", 404)
        return await self._end(user, site, session, remote, "end")

    async def _end(self, user: SignedInUser, site: PbxSite, spy: SpySession, remote: str | None,
                   why: str) -> ActionResult:
        hangup, detail = site.spies.hangup_action(spy), {"spyer_channel": spy.spyer_channel,
                                                         "listener": spy.supervisor, "reason": why}
        return await self.run_action(user, "spy.end", spy.operator, hangup, remote, detail, pbx=site.id)

    async def queue_add(self, user: SignedInUser, queue: str, extension: str, name: str, penalty: int = 0,
                        remote: str | None = None, *, pbx: str | None = None) -> ActionResult:
        action = _build(queue_add_action, self.settings.supervision, queue, extension, name, penalty)
        detail = {"queue": queue, "extension": extension, "name": name, "penalty": penalty}
        return await self.run_action(user, "queue.add", f"{queue}:{extension}", action, remote, detail,
                                     pbx=pbx)

    async def queue_remove(self, user: SignedInUser, queue: str, extension: str,
                           remote: str | None = None, *, pbx: str | None = None) -> ActionResult:
        action = _build(queue_remove_action, self.settings.supervision, queue, extension)
        detail = {"queue": queue, "extension": extension}
        return await self.run_action(user, "queue.remove", f"{queue}:{extension}", action, remote, detail,
                                     pbx=pbx)

    async def pause(self, user: SignedInUser, extension: str, paused: bool, reason: str = "",
                    queue: str | None = None, remote: str | None = None, *,
                    pbx: str | None = None) -> ActionResult:
        action = _build(queue_pause_action, self.settings.supervision, extension, paused, reason, queue)
        what = "queue.pause" if paused else "queue.unpause"
        detail = {"extension": extension, "reason": reason, "queue": queue}
        return await self.run_action(user, what, extension, action, remote, detail, pbx=pbx)

    async def run_action(self, user: SignedInUser, what: str, target: str | None, action: Mapping[str, str],
                         remote: str | None, detail: dict[str, Any] | None = None, *,
                         pbx: str | None = None) -> ActionResult:
        """Send one AMI action to the PBX `pbx` (the first unless named), audit it with the PBX's
        answer, note it for the pages."""
        site = self.site(pbx)  # an unknown PBX is refused before anything is sent
        reply: AmiMessage | None = None
        try:
            reply = await self.send_action(dict(action), pbx=site.id)
        except AmiActionTimeout as exc:
            response, message = "Timeout", str(exc)
        except AmiError as exc:
            response, message = "Unavailable", str(exc)
        else:
            response, message = reply.response or "?", reply.get("Message") or ""
        return await self.record(user, what, target, action["Action"], response, message, remote,
                                 {**(detail or {}), "ami": dict(action)},
                                 ok=reply is not None and reply.success,
                                 action_id=reply.action_id if reply is not None else None, pbx=site.id)

    async def record(self, user: SignedInUser, what: str, target: str | None, ami_action: str,
                     response: str, message: str, remote: str | None, detail: dict[str, Any] | None = None,
                     *, ok: bool = True, action_id: str | None = None,
                     pbx: str | None = None) -> ActionResult:
        """Audit and note one action on PBX `pbx` (`ami_action` "None": settled without asking it)."""
        site = self.site(pbx)
        detail = {**(detail or {}), "pbx": site.id}  # the audit line names the PBX
        result = ActionResult(ok=ok, action=what, target=target, ami_action=ami_action, response=response,
                              message=message, action_id=action_id, pbx=site.id,
                              detail={k: v for k, v in detail.items() if k != "ami"})
        answer = f"{response}: {message}" if message else response
        self._note(what, f"{user.display_name or user.username}: {what} {target or ''} -> {answer}",
                   site, user=user.username)
        self._dirty.set()
        if self.audit is not None:  # awaited: an action that cannot be audited fails loudly
            await self.audit.record(user.username, what, role=str(user.role), target=target, result=answer,
                                    detail=detail, remote=remote)
        return result


def _build(make: Callable[..., dict[str, str]], *args: Any) -> dict[str, str]:
    try:
        return make(*args)
    except ValueError as exc:  # not an extension: never reaches the PBX
        raise SupervisorError(str(exc)) from None
