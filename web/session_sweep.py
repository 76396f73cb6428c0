"""The open pages' sweep's read of their sessions: which are still live, and their users.

Every `sweep_interval` (2 s) a node reads the session of every open page (1,000 on a busy
node of bench/cluster.py): that read stalled the node's event loop 3-4 ms per 200
sessions, CPU a card popping meanwhile waited for. Almost nothing changes between two
sweeps, so this reads only what decides (no CSRF token), on PostgreSQL with the hashes as
one array parameter (not 200 bind parameters rendered into the statement each time), and
gives back the previous sweep's `User` for a session whose rows did not change.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from bridge.calls.record import DEFAULT_PBX
from web.users import EXTENSIONS, SESSIONS, USERS, User, UserStore

_COLUMNS = (SESSIONS.c.token_hash, SESSIONS.c.created_at, SESSIONS.c.last_seen_at, USERS.c.username,
            USERS.c.display_name, USERS.c.role, EXTENSIONS.c.pbx, EXTENSIONS.c.extension)
_JOINED = SESSIONS.join(USERS, USERS.c.id == SESSIONS.c.user_id).outerjoin(
    EXTENSIONS, EXTENSIONS.c.user_id == USERS.c.id)
_ORDER = (SESSIONS.c.token_hash, EXTENSIONS.c.pbx, EXTENSIONS.c.extension)
_BY_ARRAY = (select(*_COLUMNS).select_from(_JOINED)
             .where(SESSIONS.c.token_hash == any_(bindparam("hashes", type_=ARRAY(String))),
                    USERS.c.active.is_(True))
             .order_by(*_ORDER))


class _Policy(Protocol):  # web.auth.Auth: read at each sweep (tests change its clock)
    session_max_age: int
    idle_timeout: int
    clock: Callable[[], float]
    users: UserStore


class SessionSweep:
    """`live(hashes)`: token hash -> user, for the sessions still live (user active, neither
    idle nor too old), as `Auth.live_sessions` promises; no writes."""

    def __init__(self, policy: _Policy) -> None:
        self._policy = policy
        # token hash -> (its rows as last read, the User made of them): reused while equal
        self._known: dict[str, tuple[tuple[Any, ...], User]] = {}

    async def live(self, token_hashes: Sequence[str]) -> dict[str, User]:
        policy = self._policy
        engine = policy.users.engine
        if engine.dialect.name == "postgresql":
            query, params = _BY_ARRAY, {"hashes": list(token_hashes)}
        else:
            query = (select(*_COLUMNS).select_from(_JOINED)
                     .where(SESSIONS.c.token_hash.in_(list(token_hashes)), USERS.c.active.is_(True))
                     .order_by(*_ORDER))
            params = {}
        async with engine.connect() as conn:
            rows = (await conn.execute(query, params)).all()
        now, max_age, idle = policy.clock(), policy.session_max_age, policy.idle_timeout
        found: dict[str, User] = {}
        for token_hash, group in itertools.groupby(rows, key=lambda r: r[0]):
            mine = [tuple(r) for r in group]
            _, created_at, last_seen_at = mine[0][:3]
            if now >= min(created_at.timestamp() + max_age, last_seen_at.timestamp() + idle):
                continue
            key = tuple(r[3:] for r in mine)  # the user, his PBX and extensions
            known = self._known.get(token_hash)
            if known is not None and known[0] == key:
                found[token_hash] = known[1]
            else:
                found[token_hash] = user = _user(mine)
                self._known[token_hash] = (key, user)
        return found

    def keep_only(self, token_hashes: set[str]) -> None:
        """Forget the users of sessions no page holds any longer (after a whole sweep)."""
        for gone in self._known.keys() - token_hashes:
            del self._known[gone]


def _user(rows: list[tuple[Any, ...]]) -> User:
    _, _, _, username, display_name, role, _, _ = rows[0]
    pbx = next((r[6] for r in rows if r[6] is not None), DEFAULT_PBX)  # his extensions' PBX
    # Rows of our own tables, checked when written: no validation again.
    return User.model_construct(username=username, display_name=display_name, role=role, pbx=pbx,
                                extensions=[r[7] for r in rows if r[7] is not None and r[6] == pbx])
