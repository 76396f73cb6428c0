"""The console's aiohttp application: auth, the console routes and the screen-pop service.

    app = create_web_app(service.pipeline, lookup, user_store=users, auth_options={"secure_cookie": False})
    runner = web.AppRunner(app); await runner.setup(); await web.TCPSite(runner, host, port).start()

The app subscribes the screen-pop to the pipeline at once; its startup/cleanup start and
stop the after-call timer, the operator-name directory and the browser connections. The
lookup service (and the user store) are opened and closed by whoever made them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.call_log.store import CallLogStore
from bridge.calls.pipeline import CallPipeline
from crm_adapters.lookup import LookupService
from screenpop.caller_answers import TOPIC
from screenpop.console_actions import ConsoleActions, SendAction
from screenpop.console_http import SCREENPOP_KEY, add_console_routes
from screenpop.operator_state import PbxScope
from screenpop.screenpop_service import ScreenPopService
from screenpop.settings import ConsoleSettings, ScreenPopSettings
from web.audit_log import AuditLog
from web.features import BridgeParts
from web.pages import STATIC_DIR

log = logging.getLogger(__name__)

NAMES_REFRESH_SECONDS = 60.0


class OperatorDirectory:
    """(PBX, extension) -> the operator's display name, from the user store, refreshed now and
    then (the pop rules ask synchronously: "answered by Anna Operator (101)")."""

    def __init__(self, user_store: Any, pbxes: PbxScope | None = None) -> None:
        self.user_store = user_store
        self.pbxes = pbxes or PbxScope(lambda: 0.0)  # the screen-pop's, once it is made
        self.names: dict[tuple[str, str], str] = {}

    def __call__(self, extension: str, pbx: str | None = None) -> str | None:
        """The name of an extension of `pbx` (the main PBX unless named)."""
        return self.names.get((pbx or self.pbxes.main, extension))

    def on(self, pbx: str) -> Callable[[str], str | None]:
        """The names of one PBX's extensions (screenpop.card_views.names_on)."""
        return lambda extension: self.names.get((pbx, extension))

    async def refresh(self) -> None:
        try:
            users = await self.user_store.list(include_inactive=False)
        except Exception as exc:  # names are a nicety: the queue's member names still show
            log.warning("operator names not refreshed: %s", exc)
            return
        self.names = {(self.pbxes.of_user(u), ext): u.display_name for u in users for ext in u.extensions}

    async def run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(NAMES_REFRESH_SECONDS)


def create_web_app(pipeline: CallPipeline | None, lookup: LookupService | None = None, *,
                   user_store: Any | None = None, screenpop: ScreenPopService | None = None,
                   settings: ScreenPopSettings | None = None, auth_options: Mapping[str, Any] | None = None,
                   middlewares: Iterable[Any] = (), static_dir: Path = STATIC_DIR,
                   send_action: SendAction | None = None, store: CallLogStore | None = None,
                   console: ConsoleSettings | None = None) -> web.Application:
    """The console app. Give `lookup` (a ScreenPopService is made around it) or a ready
    `screenpop`; `pipeline` (if given) gets it as a subscriber. With `user_store`, the auth
    of web.auth_http is installed (`auth_options` go to `setup_auth`); without it,
    `middlewares` must set `request[USER_KEY]` (web.access), or every console request is a 401.
    `send_action` lets operators pause themselves and click-to-dial (audited in `store`);
    `console` is the `[console]` settings."""
    directory = OperatorDirectory(user_store) if user_store is not None else None
    if screenpop is None:
        if lookup is None:
            raise ValueError("create_web_app needs a lookup service or a screen-pop service")
        screenpop = ScreenPopService(lookup, settings=settings, operator_names=directory, console=console)
    elif directory is not None and screenpop.book.operator_names is None:
        screenpop.book.operator_names = directory
    if directory is not None:
        directory.pbxes = screenpop.pbxes  # "main" users are the first PBX's
    if pipeline is not None:
        screenpop.attach(pipeline)

    app = web.Application(middlewares=list(middlewares))
    if user_store is not None:
        from web.auth_http import setup_auth  # here: the console runs without it in tests

        setup_auth(app, user_store, **dict(auth_options or {}))
    actions = ConsoleActions(screenpop, send_action, AuditLog(store) if store is not None else None)
    add_console_routes(app, screenpop, static_dir=static_dir, actions=actions)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        service = app[SCREENPOP_KEY]
        await service.start()
        names = asyncio.create_task(directory.run()) if directory is not None else None
        try:
            yield
        finally:
            if names is not None:
                names.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await names
            await service.stop()

    async def close_browsers(app: web.Application) -> None:
        await app[SCREENPOP_KEY].hub.close_all()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_browsers)
    return app


def console_names(app: web.Application) -> tuple[Callable[[str], str | None],
                                                 Callable[[str], str | None] | None]:
    """What the console knows that other pages show: the CRM's name for a call's caller,
    and an extension's operator name (`names(ext)`: the main PBX's; `names(ext, pbx)` or
    `names.on(pbx)(ext)`: that PBX's, when it is the OperatorDirectory)."""
    screenpop = app[SCREENPOP_KEY]

    def caller_name(call_id: str) -> str | None:
        found = screenpop.book.caller(call_id)
        return found.contact.display_name if found is not None and found.contact is not None else None

    return caller_name, screenpop.book.operator_names


def console_cluster(app: web.Application, parts: BridgeParts) -> None:
    """Only a PBX's owner asks the CRM about its callers; its answers reach every node's
    cards (screenpop.caller_answers). One process owns every PBX: nothing changes there."""
    answers = app[SCREENPOP_KEY].answers
    answers.asks_crm = parts.owns
    answers.share = lambda pbx, data, urgent: parts.share(pbx, TOPIC, data, urgent)
    parts.on_shared(TOPIC, answers.told)
    parts.on_owned(answers.take_over)


def console_resync(app: web.Application) -> Callable[[list[Any], list[Any], float, str], None]:
    """The console's resync listener (web.features.ResyncListener): operators' own states,
    each PBX's from its QueueStatus (the items carry `.pbx`)."""
    return app[SCREENPOP_KEY].on_resync
