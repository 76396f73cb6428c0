"""Console users: the store on SQLite and PostgreSQL, and `callbridge user ...` on a temp SQLite."""

from __future__ import annotations

import argparse
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from sqlalchemy import insert, inspect, select
from sqlalchemy.exc import IntegrityError

from bridge.call_log.store import head_revision
from bridge.call_log.tables import Base
from tests.db_fixtures import Database, database_fixture  # noqa: F401  # fixture
from web.user_cli import add_user_commands, run_user_command
from web.users import (
    EXTENSIONS,
    USERS,
    ExtensionTaken,
    InvalidUserData,
    UnknownUser,
    User,
    UserExists,
    UserStore,
)

# Test-only cost: production keeps argon2-cffi's defaults (64 MiB, t=3).
FAST = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}
USER_TABLES = {"users", "user_extensions", "auth_sessions"}
PW = "correct horse battery"


class CountingHasher(PasswordHasher):
    def __init__(self, **params: int) -> None:
        super().__init__(**{**FAST, **params})
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002  # argon2's name
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture(name="users")
async def users_fixture(database: Database) -> Any:
    store = UserStore(database.url, hasher=CountingHasher(), **database.engine_options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_migration_0003_builds_the_orm_tables(users: UserStore) -> None:
    async with users.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        diff = await conn.run_sync(lambda c: compare_metadata(
            MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata))
    assert tables >= USER_TABLES
    assert head_revision() >= "0003"
    mine = [d for d in diff if any(t in repr(d) for t in USER_TABLES)]
    assert mine == []


async def test_password_is_stored_as_argon2id_only(users: UserStore) -> None:
    info = await users.add("Anna", PW, role="operator", display_name="Anna Operator", extensions=["101"])
    assert (info.username, info.display_name, info.role, info.extensions, info.active) == (
        "anna", "Anna Operator", "operator", ["101"], True)
    async with users.engine.connect() as conn:
        stored = (await conn.execute(select(USERS.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$") and PW not in stored
    assert await users.authenticate("ANNA", PW) == User(username="anna", display_name="Anna Operator",
                                                        role="operator", extensions=["101"])
    assert await users.authenticate("anna", "wrong horse battery") is None
    assert await users.authenticate("anna", "") is None


async def test_unknown_and_disabled_users_cost_the_same_verification(users: UserStore) -> None:
    await users.add("anna", PW, role="operator", extensions=["101"])
    await users.add("bob", PW, role="supervisor")
    await users.deactivate("bob")
    hasher = users.hasher
    assert isinstance(hasher, CountingHasher)
    for name, password in (("anna", "wrong password!"), ("nobody", PW), ("bob", PW), ("bad name!", PW)):
        before = hasher.verified
        assert await users.authenticate(name, password) is None
        assert hasher.verified == before + 1, name  # one argon2 verification whatever the reason


async def test_roles_are_checked_by_the_store_and_the_database(users: UserStore) -> None:
    for role in ("operator", "supervisor", "trainer", "admin"):
        assert (await users.add(f"u-{role}", PW, role=role)).role == role
    with pytest.raises(InvalidUserData, match="unknown role"):
        await users.add("eve", PW, role="root")
    now = datetime.now(UTC)
    with pytest.raises(IntegrityError):
        async with users.engine.begin() as conn:
            await conn.execute(insert(USERS).values(username="eve", display_name="Eve", role="root",
                                                    password_hash="x", active=True, created_at=now,
                                                    updated_at=now))
    assert (await users.update("u-trainer", role="supervisor")).role == "supervisor"


async def test_an_extension_belongs_to_one_user_at_most(users: UserStore) -> None:
    await users.add("anna", PW, role="operator", extensions=["101", "102", "101"])
    with pytest.raises(ExtensionTaken, match=r"102 \(bound to anna\)"):
        await users.add("bob", PW, role="operator", extensions=["102", "103"])
    assert await users.get("bob") is None  # nothing half-made
    with pytest.raises(IntegrityError):  # the database refuses it too (primary key)
        async with users.engine.begin() as conn:
            uid = (await conn.execute(select(USERS.c.id))).scalar_one()
            await conn.execute(insert(EXTENSIONS).values(extension="101", user_id=uid + 1))
    assert (await users.update("anna", extensions=["101"])).extensions == ["101"]
    assert (await users.add("bob", PW, role="operator", extensions=["102"])).extensions == ["102"]
    anna = await users.user_for_extension("101")
    assert anna is not None and anna.username == "anna"
    with pytest.raises(ExtensionTaken):
        await users.update("anna", extensions=["101", "102"])
    with pytest.raises(InvalidUserData, match="invalid extension"):
        await users.add("carl", PW, role="operator", extensions=["10 1"])


async def test_an_extension_belongs_to_one_user_of_each_pbx(users: UserStore) -> None:
    """Issue 15: two sites may both have a 201; one site's 201 is still one user's."""
    assert (await users.add("anna", PW, role="operator", extensions=["201"])).pbx == "main"
    bob = await users.add("bob", PW, role="operator", extensions=["201", "202"], pbx="spb")
    assert (bob.pbx, bob.extensions) == ("spb", ["201", "202"])
    with pytest.raises(ExtensionTaken, match=r"on PBX spb: 202 \(bound to bob\)"):
        await users.add("carl", PW, role="operator", extensions=["202"], pbx="spb")
    with pytest.raises(IntegrityError):  # the database refuses it too: (pbx, extension) is the key
        async with users.engine.begin() as conn:
            anna_id = (await conn.execute(select(USERS.c.id).where(USERS.c.username == "anna"))).scalar_one()
            await conn.execute(insert(EXTENSIONS).values(pbx="spb", extension="201", user_id=anna_id))
    assert (await users.user_for_extension("201")).username == "anna"  # type: ignore[union-attr]
    assert (await users.user_for_extension("201", "spb")).username == "bob"  # type: ignore[union-attr]
    signed_in = await users.authenticate("bob", PW)
    assert signed_in is not None and (signed_in.pbx, signed_in.extensions) == ("spb", ["201", "202"])
    with pytest.raises(ExtensionTaken):  # moving his extensions to anna's PBX: her 201 is taken
        await users.update("bob", pbx="main")
    moved = await users.update("bob", pbx="msk")  # his extensions go with him
    assert (moved.pbx, moved.extensions) == ("msk", ["201", "202"])
    assert (await users.update("bob", extensions=["203"])).pbx == "msk"  # new ones on his PBX
    with pytest.raises(InvalidUserData, match="invalid PBX id"):
        await users.add("dora", PW, role="operator", extensions=["204"], pbx="Not A PBX")
    # Configured as [[pbx]] msk and spb: anna's row from before ("main") is msk's 201.
    users.pbxes = ("msk", "spb")
    assert (await users.get("anna")).pbx == "msk"  # type: ignore[union-attr]
    assert (await users.user_for_extension("201", "msk")).username == "anna"  # type: ignore[union-attr]
    with pytest.raises(ExtensionTaken, match=r"201 \(bound to anna\)"):
        await users.add("erik", PW, role="operator", extensions=["201"], pbx="msk")


async def test_usernames_are_unique_regardless_of_case(users: UserStore) -> None:
    await users.add("Anna", PW, role="operator")
    with pytest.raises(UserExists):
        await users.add("anna", PW, role="admin")
    with pytest.raises(InvalidUserData, match="invalid username"):
        await users.add("anna smith", PW, role="admin")


async def test_password_rules_and_changes(users: UserStore) -> None:
    with pytest.raises(InvalidUserData, match="at least"):
        await users.add("anna", "short", role="operator")
    with pytest.raises(InvalidUserData, match="not be the username"):
        await users.add("annabelle1", "AnnaBelle1", role="operator")
    await users.add("anna", PW, role="operator")
    await users.set_password("anna", "a new long password")
    assert await users.authenticate("anna", PW) is None
    assert await users.authenticate("anna", "a new long password") is not None
    with pytest.raises(UnknownUser):
        await users.set_password("nobody", "a new long password")


async def test_disable_and_enable(users: UserStore) -> None:
    await users.add("anna", PW, role="operator", extensions=["101"])
    await users.deactivate("anna")
    assert await users.authenticate("anna", PW) is None
    assert await users.user_for_extension("101") is None
    assert [(u.username, u.active) for u in await users.list()] == [("anna", False)]
    assert await users.list(include_inactive=False) == []
    await users.activate("anna")
    assert await users.authenticate("anna", PW) is not None


async def test_login_rehashes_when_the_parameters_change(database: Database) -> None:
    async with UserStore(database.url, hasher=PasswordHasher(**FAST), **database.engine_options) as old:
        await old.add("anna", PW, role="operator")
    stronger = PasswordHasher(**{**FAST, "time_cost": 2})
    async with UserStore(database.url, hasher=stronger, **database.engine_options) as new:
        async with new.engine.connect() as conn:
            before = (await conn.execute(select(USERS.c.password_hash))).scalar_one()
        assert stronger.check_needs_rehash(before)
        assert await new.authenticate("anna", "wrong password!") is None
        async with new.engine.connect() as conn:  # a wrong password changes nothing
            assert (await conn.execute(select(USERS.c.password_hash))).scalar_one() == before
        assert await new.authenticate("anna", PW) is not None
        async with new.engine.connect() as conn:
            after = (await conn.execute(select(USERS.c.password_hash))).scalar_one()
        assert after != before and ",t=2," in after and not stronger.check_needs_rehash(after)
        assert await new.authenticate("anna", PW) is not None


# -- the command line (temp SQLite) -----------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="callbridge")
    add_user_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


async def _cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return await run_user_command(_parse(argv), SimpleNamespace(database_url="unused://"))


async def test_cli_add_list_passwd_disable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", f"sqlite+aiosqlite:///{tmp_path / 'users.sqlite3'}"]
    add = ["user", "add", "anna", "--role", "operator", "--name", "Anna Operator",
           "--extension", "101", "--extension", "102", "--password-stdin", *db]
    assert await _cli(add, monkeypatch, PW + "\n") == 0
    assert capsys.readouterr().out == "added operator anna (Anna Operator), extensions 101, 102\n"
    assert await _cli(add, monkeypatch, PW + "\n") == 1
    assert "exists already" in capsys.readouterr().err
    taken = ["user", "add", "bob", "--role", "supervisor", "--extension", "102", "--password-stdin", *db]
    assert await _cli(taken, monkeypatch, PW + "\n") == 1
    assert "102 (bound to anna)" in capsys.readouterr().err
    assert await _cli(["user", "add", "carl", "--role", "operator", "--password-stdin", *db],
                      monkeypatch, PW + "\n") == 2
    assert "needs at least one --extension" in capsys.readouterr().err
    no_tty = ["user", "add", "dora", "--role", "admin", *db]
    assert await _cli(no_tty, monkeypatch, PW + "\n") == 2  # stdin is no terminal: never a silent read
    assert "--password-stdin" in capsys.readouterr().err

    assert await _cli(["user", "list", *db], monkeypatch) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["USERNAME", "ROLE", "ACTIVE", "EXTENSIONS", "NAME"]
    assert lines[1].split() == ["anna", "operator", "yes", "101,102", "Anna", "Operator"]

    assert await _cli(["user", "passwd", "anna", "--password-stdin", *db], monkeypatch, "short\n") == 1
    assert "at least" in capsys.readouterr().err
    assert await _cli(["user", "passwd", "anna", "--password-stdin", *db], monkeypatch,
                      "another long password\r\n") == 0
    out, err = capsys.readouterr()
    assert "password changed for anna" in out and "another long password" not in out + err
    assert await _cli(["user", "passwd", "nobody", "--password-stdin", *db], monkeypatch, PW + "\n") == 1

    assert await _cli(["user", "edit", "anna", "--extension", "105", "--role", "supervisor", *db],
                      monkeypatch) == 0
    assert await _cli(["user", "disable", "anna", *db], monkeypatch) == 0
    capsys.readouterr()
    assert await _cli(["user", "list", "--format", "json", *db], monkeypatch) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["username"], u["role"], u["active"], u["extensions"]) for u in listed] == [
        ("anna", "supervisor", False, ["105"])]

    async with UserStore(db[1]) as store:  # the production hasher: what the CLI wrote
        assert await store.authenticate("anna", "another long password") is None  # disabled
        await store.activate("anna")
        assert await store.authenticate("anna", PW) is None
        assert await store.authenticate("anna", "another long password") is not None


@pytest.mark.parametrize("bad", ["abc", "1", "1234567", "10a", "+101", "101 "])
async def test_cli_add_and_edit_refuse_what_is_not_an_extension(
        bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", f"sqlite+aiosqlite:///{tmp_path / 'users.sqlite3'}"]
    add = ["user", "add", "anna", "--role", "operator", "--extension", bad, "--password-stdin", *db]
    assert await _cli(add, monkeypatch, PW + "\n") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--extension {bad!r} is not an extension: 2-6 digits" in err
    assert not (tmp_path / "users.sqlite3").exists()  # refused before the database is touched
    good = ["user", "add", "anna", "--role", "operator", "--extension", "101", "--password-stdin", *db]
    assert await _cli(good, monkeypatch, PW + "\n") == 0
    assert await _cli(["user", "edit", "anna", "--extension", bad, *db], monkeypatch) == 2
    # A PBX whose operators dial 4 digits: its own operator_pattern decides.
    settings = SimpleNamespace(database_url="unused://", operator_pattern=r"^\d{4}$")
    monkeypatch.setattr("sys.stdin", io.StringIO(PW + "\n"))
    code = await run_user_command(_parse(["user", "add", "boris", "--role", "operator", "--extension", "102",
                                          "--password-stdin", *db]), settings)
    assert code == 2 and "matching operator_pattern ^\\d{4}$" in capsys.readouterr().err


async def test_cli_puts_extensions_on_a_configured_pbx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--db", f"sqlite+aiosqlite:///{tmp_path / 'users.sqlite3'}"]
    pbxes = [SimpleNamespace(id="msk", operator_pattern=r"^\d{3}$"),
             SimpleNamespace(id="spb", operator_pattern=r"^\d{4}$")]  # each PBX its own dial plan
    settings = SimpleNamespace(database_url="unused://", operator_pattern=r"^\d{3}$", pbxes=lambda: pbxes)

    async def cli(argv: list[str], stdin: str = PW + "\n") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return await run_user_command(_parse([*argv, *db]), settings)

    add = ["user", "add", "anna", "--role", "operator", "--password-stdin"]
    assert await cli([*add, "--extension", "201", "--pbx", "kzn"]) == 2
    assert "--pbx 'kzn' is not a configured PBX: one of msk, spb" in capsys.readouterr().err
    assert await cli([*add, "--extension", "201", "--pbx", "spb"]) == 2  # spb's extensions have 4 digits
    assert "matching operator_pattern ^\\d{4}$" in capsys.readouterr().err
    assert await cli([*add, "--extension", "2001", "--pbx", "spb"]) == 0
    assert capsys.readouterr().out == "added operator anna (anna), extensions 2001 on PBX spb\n"
    assert await cli(["user", "add", "bob", "--role", "operator", "--extension", "201",
                      "--password-stdin"]) == 0
    assert await cli(["user", "edit", "anna", "--extension", "202"]) == 2  # anna is on spb
    assert await cli(["user", "edit", "bob", "--extension", "202"]) == 0  # bob on msk, the first
    assert capsys.readouterr().out.splitlines()[-1] == "bob: operator, bob, extensions 202 on PBX msk"
    assert await cli(["user", "list"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == ["USERNAME", "ROLE", "ACTIVE", "PBX", "EXTENSIONS", "NAME"]
    assert [line[:5] for line in lines[1:]] == [["anna", "operator", "yes", "spb", "2001"],
                                                ["bob", "operator", "yes", "msk", "202"]]
    assert await cli(["user", "edit", "bob", "--pbx", "spb"]) == 2  # his 202 is no phone of spb
    assert "'202' is not an extension: matching operator_pattern ^\\d{4}$" in capsys.readouterr().err
    assert await cli(["user", "edit", "anna", "--pbx", "msk"]) == 2  # nor anna's 2001 of msk
    assert await cli(["user", "edit", "bob", "--pbx", "spb", "--extension", "2002"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "bob: operator, bob, extensions 2002 on PBX spb"


def test_cli_prompts_twice_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from web import user_cli

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["first password", "other password"])
    monkeypatch.setattr(user_cli.getpass, "getpass", lambda prompt: next(answers))
    with pytest.raises(ValueError, match="differ"):
        user_cli.read_password(False, stdin=Tty())
    answers = iter([PW, PW])
    assert user_cli.read_password(False, stdin=Tty()) == PW
