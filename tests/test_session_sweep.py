"""The open pages' sweep read (web/session_sweep.py through Auth.live_sessions), on both
databases: live sessions with their fresh users, ended and expired ones left out, and the
previous sweep's User reused while its rows did not change."""

from __future__ import annotations

import time

from argon2 import PasswordHasher

from tests.db_fixtures import Database, database_fixture  # noqa: F401  # fixture
from web.auth import Auth
from web.users import UserStore

FAST = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


async def test_the_sweep_sees_live_ended_expired_and_changed_sessions(database: Database) -> None:
    async with UserStore(database.url, hasher=PasswordHasher(**FAST), **database.engine_options) as users:
        now = [time.time()]
        auth = Auth(users, idle_timeout=600, session_max_age=3600, clock=lambda: now[0])
        await users.add("anna", "pw-anna-123456", role="operator", extensions=["101", "102"], pbx="lyon")
        await users.add("boris", "pw-boris-123456", role="operator", extensions=["103"])
        await users.add("clara", "pw-clara-123456", role="supervisor")
        sessions = {name: (await auth.create_session(name, None))[1].token_hash
                    for name in ("anna", "boris", "clara")}
        hashes = set(sessions.values()) | {"0" * 64}  # and one that never existed

        first = await auth.live_sessions(hashes)
        assert {u.username: (u.role, u.pbx, u.extensions) for u in first.values()} == {
            "anna": ("operator", "lyon", ["101", "102"]), "boris": ("operator", "main", ["103"]),
            "clara": ("supervisor", "main", [])}
        again = await auth.live_sessions(hashes)
        assert all(again[h] is first[h] for h in first)  # unchanged rows: the same users

        await users.update("boris", extensions=["104"])
        await auth.end_session(sessions["clara"])
        changed = await auth.live_sessions(hashes)
        assert set(changed) == {sessions["anna"], sessions["boris"]}
        assert changed[sessions["boris"]].extensions == ["104"]
        assert changed[sessions["anna"]] is first[sessions["anna"]]

        now[0] += 601  # nobody active for longer than the idle timeout
        assert await auth.live_sessions(hashes) == {}
