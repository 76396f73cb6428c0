"""Who listens to which call, from the PBX's events: ChanSpyStart/Stop, the OriginateResponse
and the Newchannel of a spy we originated, and the channel list after a (re)connect.

`SpyTracking` is a part of `supervision.wallboard_service.WallboardService`; every method
works on one PBX's site (supervision.pbx_site): its channels, sessions and spies ringing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from bridge.ami.message import AmiMessage
from supervision.pbx_actions import SpySession, spy_mode_of
from supervision.pbx_site import PbxSite
from supervision.settings import WallboardSettings
from supervision.supervisor_actions import ActionResult, SendAction

log = logging.getLogger("callbridge.wallboard")


class SpyTracking:
    settings: WallboardSettings
    send_action: SendAction
    _audits: list[tuple[str, dict[str, Any]]]
    _tasks: set[asyncio.Task[Any]]

    if TYPE_CHECKING:  # the WallboardService's
        def _note(self, kind: str, text: str, site: PbxSite | None = None, **extra: Any) -> None: ...

        def label(self, ext: str | None, pbx: str | None = None) -> str: ...

        async def switch_spy(self, user: Any, session: SpySession, mode: Any, remote: str | None = None,
                             detail: dict[str, Any] | None = None, *,
                             pbx: str | None = None) -> ActionResult: ...

    def _listener_prefix(self, listener: str) -> str:
        """How the PBX names the listener's channels: `Local/202@supervisor-…;1`, `PJSIP/202-…`."""
        dialled = self.settings.supervision.supervisor_channel.format(ext=listener)
        tech, _, resource = dialled.partition("/")
        return f"{tech}/{resource.split('/', 1)[0] if tech == 'Local' else resource}-"

    def _on_listener_channel(self, site: PbxSite, ev: AmiMessage) -> None:
        """The phone a spy Originate rings: kept to cancel it; rung after a cancel: hung up."""
        channel = ev.get("Channel") or ""
        for pending in site.pending.values():
            if pending.channel is None and channel.startswith(self._listener_prefix(pending.listener)):
                pending.channel = channel
                return
        for listener in site.cancelled:
            if channel.startswith(self._listener_prefix(listener)):
                self._in_background(self.send_action({"Action": "Hangup", "Channel": channel}, pbx=site.id))
                return

    def _in_background(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception as exc:  # the PBX's answer is in the audit when it matters
                log.warning("wallboard action failed: %s", exc)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_spy_event(self, site: PbxSite, ev: AmiMessage) -> None:
        session = site.spies.handle(ev)
        if session is None:
            return
        who, whom = self.label(session.supervisor, site.id), self.label(session.operator, site.id)
        if ev.event == "ChanSpyStart":
            if ev.get("SpyerLinkedid"):
                site.spy_calls.add(site.call_id(ev["SpyerLinkedid"]))
            found = site.pending_of(session.supervisor or "")
            site.pending = {k: p for k, p in site.pending.items() if p.listener != session.supervisor}
            if found is not None:  # ours: started with `d`, in the mode of the Originate
                pending = found[1]
                session = session.model_copy(update={"switchable": True, "mode": pending.started_as})
                site.spies.sessions[session.spyer_channel] = session
                if pending.mode != pending.started_as and pending.user is not None:
                    self._in_background(self.switch_spy(pending.user, session, pending.mode, pbx=site.id))
            elif (session.supervisor or "") in site.cancelled:  # cancelled, answered all the same
                self._in_background(self.send_action(site.spies.hangup_action(session), pbx=site.id))
            verb = {"listen": "listening to", "whisper": "whispering to", "barge": "barging in on"}
            self._note("spy.started", f"{who} is {verb.get(session.mode or '', 'spying on')} {whom}", site)
        else:
            self._note("spy.stopped", f"{who} stopped listening to {whom}", site)

    def _on_originate_response(self, site: PbxSite, ev: AmiMessage) -> None:
        if ev.get("Uniqueid"):
            site.spy_calls.add(site.call_id(ev["Uniqueid"]))
        if ev.response == "Success":
            return  # ChanSpyStart follows
        pending = site.pending.pop(ev.action_id or "")
        answer = f"{ev.response}: Reason {ev.get('Reason', '?')}"
        who = self.label(pending.listener, site.id)
        self._note("spy.failed", f"{who} did not answer the {pending.mode} call", site)
        self._audits.append(("spy.originate_response", {
            "username": pending.requested_by, "target": pending.operator, "result": answer,
            "detail": {"listener": pending.listener, "mode": pending.mode, "pbx": site.id}}))

    def _resync_spies(self, site: PbxSite, channels: list[AmiMessage], at: float) -> None:
        """A live ChanSpy channel is a session (its options tell the mode); the rest ended."""
        live = {ch["Channel"]: ch for ch in channels if ch.get("Channel")}
        for spyer in [s for s in site.spies.sessions if s not in live]:
            del site.spies.sessions[spyer]
        for name, ch in live.items():
            if ch.get("Application") != "ChanSpy" or name in site.spies.sessions:
                continue
            target, _, options = (ch.get("ApplicationData") or "").partition(",")
            operator = site.operators.operator_of(target)
            call_id = next((c.get("Linkedid") for c in live.values() if operator is not None
                            and c.get("Application") != "ChanSpy" and c.get("Linkedid") != ch.get("Linkedid")
                            and site.operators.operator_of(c["Channel"]) == operator), None)
            mode, switchable = spy_mode_of(options)
            site.spies.sessions[name] = SpySession(
                spyer_channel=name, supervisor=site.operators.operator_of(name), operator=operator,
                call_id=site.call_id(call_id) if call_id else None, mode=mode,
                started_at=at - _seconds(ch.get("Duration")), switchable=switchable)
            if ch.get("Linkedid"):
                site.spy_calls.add(site.call_id(ch["Linkedid"]))


def _seconds(value: str | None) -> float:
    """CoreShowChannel's `Duration: HH:MM:SS`."""
    try:
        hours, minutes, seconds = (int(p) for p in (value or "").split(":"))
    except ValueError:
        return 0.0
    return float(hours * 3600 + minutes * 60 + seconds)
