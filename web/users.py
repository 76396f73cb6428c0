"""Console users: operators, supervisors, trainers, admins, and the extensions they answer.

An extension is scoped to a PBX (two sites may both have a 201): a user's extensions are
all on one PBX, his `pbx` ("main", the first PBX, unless set; a user without extensions is
on it too: the PBX is stored with the extensions). Rows from before PBX ids say "main": once
the store knows the configured PBXes (`UserStore.pbxes`), those are the first PBX's, for
reading and for "is this extension taken".

The tables live on the call log's `Base` (one schema, one Alembic chain; migration 0003
creates them). Passwords are argon2id hashes (argon2-cffi); hashing runs in a thread, at
most a few at a time, so a burst of logins neither stalls the event loop nor takes
`memory_cost` x N of RAM. An unknown or disabled user costs one verification against a
dummy hash, so the answer time does not tell which usernames exist.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint, delete, select
from sqlalchemy import insert as sa_insert
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from bridge.call_log.store import CallLogStore
from bridge.call_log.tables import Base, UtcDateTime
from bridge.calls.record import DEFAULT_PBX
from web.user_rules import (  # noqa: F401  # re-exported: the rules are part of this module's API
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    ROLES,
    USERNAME_PATTERN,
    ExtensionTaken,
    InvalidUserData,
    Role,
    UnknownUser,
    UserError,
    UserExists,
    check_password,
    normalize_username,
    pbx_of,
    resolve_pbx,
    valid_display_name,
    valid_extensions,
    valid_pbx,
    valid_role,
    valid_username,
)

_HASH_SLOTS = 4  # argon2 runs at once (each takes memory_cost KiB)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String)  # lower case, see normalize_username
    display_name: Mapped[str] = mapped_column(String)
    role: Mapped[str] = mapped_column(String)
    password_hash: Mapped[str] = mapped_column(String)  # argon2 PHC string, never the password
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("username", name="uq_users_username"),
        CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="ck_users_role"),
    )


class UserExtensionRow(Base):
    """(PBX, extension) -> user: the primary key makes an extension of a PBX belong to one
    user at most (two sites may both have a 201)."""

    __tablename__ = "user_extensions"

    pbx: Mapped[str] = mapped_column(String, primary_key=True, server_default=DEFAULT_PBX)
    extension: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True)


class SessionRow(Base):
    """Server-side login sessions (see web.auth): the cookie holds a random token,
    the table only its SHA-256, so a copy of the database opens no session."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    remote: Mapped[str | None] = mapped_column(String)  # client address at login, for audits


USERS, EXTENSIONS, SESSIONS = UserRow.__table__, UserExtensionRow.__table__, SessionRow.__table__


class SignedInUser(Protocol):
    """What a page needs of a logged-in user (User has it; tests may pass their own)."""

    username: str
    display_name: str
    role: Any
    extensions: list[str]  # on his PBX
    # pbx: str  -- the PBX of his extensions; read with `pbx_of` (stand-ins may lack it)


class User(BaseModel):
    """Who is logged in: what `request[USER_KEY]` holds (web.access)."""

    model_config = ConfigDict(frozen=True)

    username: str
    display_name: str
    role: Role
    extensions: list[str]
    pbx: str = DEFAULT_PBX  # the PBX his extensions are on


class UserInfo(User):
    """A user as `user list` shows him, disabled ones included."""

    active: bool
    created_at: datetime
    updated_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


class UserStore:
    """Users in the call log's database. `UserStore(url)` or `UserStore(call_log_store)`;
    `hasher` lowers the argon2 cost in tests (production keeps argon2-cffi's defaults)."""

    def __init__(self, database: str | CallLogStore, *, hasher: PasswordHasher | None = None,
                 **engine_options: Any) -> None:
        self._owns_store = isinstance(database, str)
        self._store = CallLogStore(database, **engine_options) if isinstance(database, str) else database
        self.hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(_HASH_SLOTS)
        self._dummy_hash: str | None = None
        # The configured PBXes, the first the main one, where known (the admin pages, the CLI).
        self.pbxes: tuple[str, ...] = ()
        # Told (with the username) when a user's sessions end here: disabled, new password;
        # the web app closes his open pages at once.
        self.session_listeners: list[Callable[[str], Awaitable[None]]] = []

    @property
    def engine(self) -> AsyncEngine:
        return self._store.engine

    async def open(self) -> None:
        await self._store.open()  # migrates to head: the user tables come with 0003

    async def close(self) -> None:
        if self._owns_store:
            await self._store.close()

    async def __aenter__(self) -> UserStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- hashing (CPU-bound: off the event loop) ----------------------------------------

    async def _hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            try:
                return await asyncio.to_thread(self.hasher.verify, password_hash, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    async def _verify_dummy(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(secrets.token_urlsafe(24))
        await self._verify(self._dummy_hash, password)

    # -- reading -------------------------------------------------------------------------

    def _same_pbx(self, pbx: str) -> list[str]:
        """The stored ids that mean this PBX: the first PBX's extensions may still say "main"."""
        pbx = resolve_pbx(pbx, self.pbxes)
        return [pbx, DEFAULT_PBX] if self.pbxes and pbx == resolve_pbx(DEFAULT_PBX, self.pbxes) else [pbx]

    async def _extensions_of(self, conn: AsyncConnection,
                             user_ids: Sequence[int]) -> dict[int, tuple[str, list[str]]]:
        """User id -> (his PBX, his extensions on it)."""
        found: dict[int, tuple[str, list[str]]] = {uid: (DEFAULT_PBX, []) for uid in user_ids}
        if user_ids:
            rows = await conn.execute(select(EXTENSIONS.c.user_id, EXTENSIONS.c.pbx, EXTENSIONS.c.extension)
                                      .where(EXTENSIONS.c.user_id.in_(user_ids))
                                      .order_by(EXTENSIONS.c.pbx, EXTENSIONS.c.extension))
            for uid, stored, ext in rows:
                pbx = resolve_pbx(stored, self.pbxes)
                if not found[uid][1]:
                    found[uid] = (pbx, [])
                if pbx == found[uid][0]:  # one PBX a user (the store never binds two)
                    found[uid][1].append(ext)
        return found

    async def _infos(self, conn: AsyncConnection, *where: Any) -> list[UserInfo]:
        rows = (await conn.execute(select(USERS).where(*where).order_by(USERS.c.username))).all()
        exts = await self._extensions_of(conn, [r.id for r in rows])
        return [UserInfo(username=r.username, display_name=r.display_name, role=r.role, pbx=exts[r.id][0],
                         extensions=exts[r.id][1], active=r.active, created_at=r.created_at,
                         updated_at=r.updated_at) for r in rows]

    async def get(self, username: str) -> UserInfo | None:
        async with self.engine.connect() as conn:
            found = await self._infos(conn, USERS.c.username == normalize_username(username))
        return found[0] if found else None

    async def list(self, *, include_inactive: bool = True) -> list[UserInfo]:
        async with self.engine.connect() as conn:
            return await self._infos(conn, *(() if include_inactive else (USERS.c.active.is_(True),)))

    async def user_for_extension(self, extension: str, pbx: str = DEFAULT_PBX) -> User | None:
        """The active user an extension of a PBX is bound to (whose console pops the card)."""
        async with self.engine.connect() as conn:
            found = await self._infos(conn, USERS.c.active.is_(True), USERS.c.id.in_(
                select(EXTENSIONS.c.user_id).where(EXTENSIONS.c.extension == extension.strip(),
                                                   EXTENSIONS.c.pbx.in_(self._same_pbx(pbx)))))
        return User(**found[0].model_dump(include=set(User.model_fields))) if found else None

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password is right and he is active, else None (same work either way)."""
        name = normalize_username(username)
        row = None
        if USERNAME_PATTERN.fullmatch(name) and len(password) <= MAX_PASSWORD_LENGTH:
            async with self.engine.connect() as conn:
                row = (await conn.execute(select(USERS).where(USERS.c.username == name))).first()
        if row is None or not row.active:
            await self._verify_dummy(password[:MAX_PASSWORD_LENGTH])
            return None
        if not await self._verify(row.password_hash, password):
            return None
        if self.hasher.check_needs_rehash(row.password_hash):
            # Parameters raised since this hash was made: upgrade it while we know the password.
            new_hash = await self._hash(password)
            async with self.engine.begin() as conn:
                await conn.execute(sa_update(USERS).where(USERS.c.id == row.id,
                                                          USERS.c.password_hash == row.password_hash)
                                   .values(password_hash=new_hash))
        async with self.engine.connect() as conn:
            pbx, exts = (await self._extensions_of(conn, [row.id]))[row.id]
        return User(username=row.username, display_name=row.display_name, role=row.role, extensions=exts,
                    pbx=pbx)

    # -- changing ------------------------------------------------------------------------

    async def add(self, username: str, password: str, *, role: str, display_name: str | None = None,
                  extensions: Iterable[str] = (), pbx: str = DEFAULT_PBX) -> UserInfo:
        """A new user; `extensions` are on `pbx` (its existence is the caller's to check: the
        store does not know the configuration)."""
        name = valid_username(username)
        values = {"username": name, "display_name": valid_display_name(display_name or name),
                  "role": valid_role(role)}
        exts, pbx = valid_extensions(extensions), resolve_pbx(valid_pbx(pbx), self.pbxes)
        check_password(password, name)
        password_hash = await self._hash(password)
        now = _now()
        try:
            async with self.engine.begin() as conn:
                if await self._id(conn, name) is not None:
                    raise UserExists(f"user {name!r} exists already")
                await self._check_free(conn, pbx, exts, None)
                result = await conn.execute(sa_insert(USERS).values(
                    **values, password_hash=password_hash, active=True, created_at=now, updated_at=now)
                    .returning(USERS.c.id))
                await self._bind(conn, result.scalar_one(), pbx, exts)
        except IntegrityError as exc:  # lost a race with a concurrent add
            raise UserError(f"cannot add {name!r}: the username or an extension was just taken") from exc
        info = await self.get(name)
        assert info is not None
        return info

    async def update(self, username: str, *, display_name: str | None = None, role: str | None = None,
                     extensions: Iterable[str] | None = None, pbx: str | None = None) -> UserInfo:
        """Change what is given; `extensions` replaces the whole list; `pbx` moves them (or the
        new ones) to that PBX. Takes effect on the next request of his open sessions (they read
        the user each time)."""
        name = normalize_username(username)
        values: dict[str, Any] = {"updated_at": _now()}
        if display_name is not None:
            values["display_name"] = valid_display_name(display_name)
        if role is not None:
            values["role"] = valid_role(role)
        exts = None if extensions is None else valid_extensions(extensions)
        new_pbx = None if pbx is None else resolve_pbx(valid_pbx(pbx), self.pbxes)
        try:
            async with self.engine.begin() as conn:
                uid = await self._existing_id(conn, name)
                await conn.execute(sa_update(USERS).where(USERS.c.id == uid).values(**values))
                if exts is not None or new_pbx is not None:
                    now_pbx, now_exts = (await self._extensions_of(conn, [uid]))[uid]
                    exts, new_pbx = (now_exts if exts is None else exts), new_pbx or now_pbx
                    await self._check_free(conn, new_pbx, exts, uid)
                    await conn.execute(delete(EXTENSIONS).where(EXTENSIONS.c.user_id == uid))
                    await self._bind(conn, uid, new_pbx, exts)
        except IntegrityError as exc:
            raise UserError(f"cannot update {name!r}: an extension was just taken") from exc
        info = await self.get(name)
        assert info is not None
        return info

    async def set_password(self, username: str, password: str) -> None:
        """New password; every session of the user ends (a stolen one included)."""
        name = normalize_username(username)
        check_password(password, name)
        password_hash = await self._hash(password)
        async with self.engine.begin() as conn:
            uid = await self._existing_id(conn, name)
            await conn.execute(sa_update(USERS).where(USERS.c.id == uid)
                               .values(password_hash=password_hash, updated_at=_now()))
            await conn.execute(delete(SESSIONS).where(SESSIONS.c.user_id == uid))
        await self._sessions_ended(name)

    async def deactivate(self, username: str) -> None:
        """Disable the login and end his sessions; the row stays (audits, call history)."""
        await self._set_active(username, False)

    async def activate(self, username: str) -> None:
        await self._set_active(username, True)

    async def _set_active(self, username: str, active: bool) -> None:
        async with self.engine.begin() as conn:
            uid = await self._existing_id(conn, normalize_username(username))
            await conn.execute(sa_update(USERS).where(USERS.c.id == uid)
                               .values(active=active, updated_at=_now()))
            if not active:
                await conn.execute(delete(SESSIONS).where(SESSIONS.c.user_id == uid))
        if not active:
            await self._sessions_ended(normalize_username(username))

    async def _sessions_ended(self, name: str) -> None:
        for listener in list(self.session_listeners):
            await listener(name)

    async def _id(self, conn: AsyncConnection, name: str) -> int | None:
        return (await conn.execute(select(USERS.c.id).where(USERS.c.username == name))).scalar_one_or_none()

    async def _existing_id(self, conn: AsyncConnection, name: str) -> int:
        uid = await self._id(conn, name)
        if uid is None:
            raise UnknownUser(f"no such user: {name!r}")
        return uid

    async def _check_free(self, conn: AsyncConnection, pbx: str, exts: list[str], owner: int | None) -> None:
        if not exts:
            return
        taken = (await conn.execute(
            select(EXTENSIONS.c.extension, USERS.c.username)
            .join(USERS, USERS.c.id == EXTENSIONS.c.user_id)
            .where(EXTENSIONS.c.pbx.in_(self._same_pbx(pbx)), EXTENSIONS.c.extension.in_(exts),
                   *(() if owner is None else (EXTENSIONS.c.user_id != owner,)))
        )).all()
        if taken:
            shown = ", ".join(f"{ext} (bound to {user})" for ext, user in taken)
            where = "" if pbx == DEFAULT_PBX else f" on PBX {pbx}"
            raise ExtensionTaken(f"extension already bound to another user{where}: {shown}")

    async def _bind(self, conn: AsyncConnection, uid: int, pbx: str, exts: list[str]) -> None:
        if exts:
            await conn.execute(sa_insert(EXTENSIONS),
                               [{"pbx": pbx, "extension": e, "user_id": uid} for e in exts])
