"""AMI action bookkeeping: errors, ActionID correlation, event-list collection.

Kept apart from the connection (ami_client) so the matching rules can be read and
tested on their own. Nothing here does I/O.

Matching rules (ActionID is the only key; panoramisk also guesses "is this a list?"
from the reply's wording, we let the caller say so):

- a plain action finishes with the first *response* (a block without `Event:`)
  carrying its ActionID. Events carrying that ActionID (`OriginateResponse`) are not
  replies: they go to the event handler like any other event.
- a list action (`CoreShowChannels`, `QueueStatus`, `Status`, `QueueSummary`, ...)
  keeps its response, then collects every event with its ActionID until the one that
  ends the list (`EventList: Complete` or a name ending in `Complete`). A `Response:
  Error` ends it at once.
- a list action that timed out is remembered until its `...Complete` arrives, so its
  late items are dropped instead of leaking into the event stream.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bridge.ami.message import AmiMessage


class AmiError(Exception):
    """Base class of the AMI client's errors."""


class AmiActionError(AmiError):
    """The PBX answered `Response: Error` (or anything but success)."""

    def __init__(self, action: str, action_id: str, message: str, response: AmiMessage | None = None):
        self.action = action
        self.action_id = action_id
        self.message = message
        self.response = response
        super().__init__(f"AMI action {action} ({action_id}) failed: {message}")


class AmiActionTimeout(AmiError, TimeoutError):
    """No (complete) reply within the action's timeout."""

    def __init__(self, action: str, action_id: str, seconds: float):
        self.action = action
        self.action_id = action_id
        self.seconds = seconds
        super().__init__(f"no reply to AMI action {action} ({action_id}) within {seconds:g} s")


class AmiConnectionLost(AmiError, ConnectionError):
    """The connection dropped while the action was pending. It is never re-sent."""

    def __init__(self, action: str, action_id: str | None, reason: str):
        self.action = action
        self.action_id = action_id
        self.reason = reason
        ident = f" ({action_id})" if action_id else ""
        super().__init__(f"AMI action {action}{ident} not answered: {reason}")


class AmiNotConnected(AmiConnectionLost):
    """The action was not sent: no logged-in AMI session right now."""


class AmiEventList(list[AmiMessage]):
    """The items of a list action, plus its `response` and closing `complete` event."""

    def __init__(self, items: list[AmiMessage], response: AmiMessage | None,
                 complete: AmiMessage | None, stream_position: int = 0) -> None:
        super().__init__(items)
        self.response = response
        self.complete = complete
        # How many events the client had dispatched when the list completed: the list
        # describes the PBX right after those events (used to order a resync exactly).
        self.stream_position = stream_position


def is_list_end(message: AmiMessage) -> bool:
    return (message.get("EventList", "").lower() == "complete"
            or (message.event or "").endswith("Complete"))


class PendingAction:
    """One sent action waiting for its reply; `future` resolves to the action itself."""

    __slots__ = ("action", "action_id", "is_list", "future", "response", "events", "complete",
                 "stream_position")

    def __init__(self, action: str, action_id: str, is_list: bool, future: asyncio.Future[PendingAction]):
        self.action = action
        self.action_id = action_id
        self.is_list = is_list
        self.future = future
        self.response: AmiMessage | None = None
        self.events: list[AmiMessage] = []
        self.complete: AmiMessage | None = None
        self.stream_position = 0

    def _finish(self, stream_position: int = 0) -> None:
        if not self.future.done():
            self.stream_position = stream_position
            self.future.set_result(self)

    def checked_response(self, check: bool) -> AmiMessage:
        response = self.response
        assert response is not None  # a plain action finishes on its response
        if check and not response.success:
            raise AmiActionError(self.action, self.action_id,
                                 response.get("Message") or f"Response: {response.response}", response)
        return response

    def event_list(self) -> AmiEventList:
        response = self.response
        if response is None or not response.success:
            message = (response.get("Message") if response else None) or "no success response"
            raise AmiActionError(self.action, self.action_id, message, response)
        return AmiEventList(self.events, response, self.complete, self.stream_position)


def action_name(action: Mapping[str, Any]) -> str:
    for key, value in action.items():
        if key.lower() == "action":
            return str(value)
    return "?"


class ActionTracker:
    """Pending actions of one client, by ActionID."""

    def __init__(self, prefix: str | None = None) -> None:
        # A per-client prefix keeps our IDs distinct from other AMI clients' replies
        # should the PBX ever cross them, and from IDs the caller chooses.
        self._prefix = prefix or f"cb-{uuid.uuid4().hex[:8]}"
        self._counter = itertools.count(1)
        self.stream_position = 0  # events dispatched so far; the client keeps it current
        self._pending: dict[str, PendingAction] = {}
        self._abandoned_lists: set[str] = set()

    def __len__(self) -> int:
        return len(self._pending)

    def next_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def add(self, action: str, action_id: str, is_list: bool) -> PendingAction:
        if action_id in self._pending:
            raise ValueError(f"ActionID {action_id!r} is already pending")
        pending = PendingAction(action, action_id, is_list, asyncio.get_running_loop().create_future())
        self._pending[action_id] = pending
        return pending

    async def request(self, action: Mapping[str, Any], send: Callable[[dict[str, Any]], None],
                      seconds: float, is_list: bool) -> PendingAction:
        """Send `action` (an ActionID is added unless given) and await its whole reply."""
        headers = dict(action)
        name = action_name(headers)
        given = [value for key, value in headers.items() if key.lower() == "actionid"]
        action_id = str(given[0]) if given else self.next_id()
        if not given:
            headers["ActionID"] = action_id
        pending = self.add(name, action_id, is_list)
        try:
            send(headers)
            await asyncio.wait_for(pending.future, seconds)
        except TimeoutError:
            raise AmiActionTimeout(name, action_id, seconds) from None
        finally:
            self.discard(pending)
        return pending

    def discard(self, pending: PendingAction) -> None:
        """Stop waiting (timeout, cancellation). Late list items will be dropped."""
        if self._pending.get(pending.action_id) is pending:
            del self._pending[pending.action_id]
            if pending.is_list and pending.complete is None:
                self._abandoned_lists.add(pending.action_id)

    def route(self, message: AmiMessage) -> bool:
        """Give a message to the action it answers. False: not a reply to a pending action."""
        action_id = message.action_id
        if action_id is None:
            return False
        pending = self._pending.get(action_id)
        if pending is None:
            if action_id in self._abandoned_lists:
                if message.is_event and is_list_end(message):
                    self._abandoned_lists.discard(action_id)
                return True
            return False
        if not message.is_event:
            if pending.response is not None:
                return False  # a second response with the same ID is not ours to guess about
            pending.response = message
            if not pending.is_list or not message.success:
                self._done(pending)
            return True
        if not pending.is_list:
            return False
        if is_list_end(message):
            pending.complete = message
            self._done(pending)
        else:
            pending.events.append(message)
        return True

    def fail_all(self, make_error: Callable[[PendingAction], BaseException]) -> None:
        """The connection is gone: every pending action fails; nothing is kept to re-send."""
        pending, self._pending = self._pending, {}
        self._abandoned_lists.clear()
        for action in pending.values():
            if not action.future.done():
                action.future.set_exception(make_error(action))

    def _done(self, pending: PendingAction) -> None:
        del self._pending[pending.action_id]
        pending._finish(self.stream_position)
