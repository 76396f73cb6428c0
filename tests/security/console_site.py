"""The operator console with the real login, for the socket attacks; also runnable as the
server of the memory test (`python -m tests.security.console_site DB`).

Anna's console starts with `AFTER_CALL` after-call cards, each with a long history, as after a
busy shift: the first frame the issue measured at 215 KB."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from crm_adapters.lookup import LookupService
from screenpop.app import create_web_app
from screenpop.messages import CallerView, Card, Hello, HistoryItem
from screenpop.screenpop_service import ScreenPopService
from tests.test_auth_http import FAST, PW
from web.users import UserStore

AFTER_CALL = 100


def busy_shift_cards(extension: str, count: int = AFTER_CALL) -> list[Card]:
    history = [HistoryItem(at="2026-11-24T08:00:00Z", kind="note", operator=extension,
                           summary="Called about the invoice; promised a call back. " * 4) for _ in range(8)]
    return [Card(card_id=f"call{i}:{extension}", version=1, call_id=f"call{i}", operator=extension,
                 state="after_call", caller=CallerView(number=f"+7495123{i:04d}", number_display=f"#{i}",
                                                        name=f"Caller {i}", lookup="found"),
                 entered_at=1_800_000_000.0 + i, ended_at=1_800_000_060.0 + i, history=history)
            for i in range(count)]


class BusyShift(ScreenPopService):
    """The console's service after a busy shift (the cards come from a stand-in book)."""

    def hello(self, user: Any) -> Hello:
        cards = [c for ext in user.extensions for c in busy_shift_cards(ext)]
        return Hello(user=user.username, display_name=user.display_name, role=user.role,
                     extensions=list(user.extensions), cards=cards, server_time=1_800_000_100.0)


async def console_app(database: Path, **auth_options: Any) -> tuple[web.Application, UserStore]:
    users = UserStore(f"sqlite+aiosqlite:///{database}", hasher=FAST)
    await users.open()
    for name, ext in (("anna", "101"), ("boris", "102")):
        await users.add(name, PW, role="operator", display_name=name.title(), extensions=[ext])
    service = BusyShift(LookupService([]))
    app = create_web_app(None, screenpop=service, user_store=users,
                         auth_options={"secure_cookie": False, **auth_options})
    return app, users


async def serve(database: Path) -> None:
    """Serve on a free port, printed as the first line of stdout."""
    app, _users = await console_app(database)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1])))
