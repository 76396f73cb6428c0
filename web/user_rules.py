"""The rules of console users' fields (web.users.UserStore checks every change with them):
usernames, display names, roles, extensions, PBX ids, passwords; and the refusals, worded
for the admin who asked."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Literal, get_args

from bridge.calls.record import DEFAULT_PBX

Role = Literal["operator", "supervisor", "trainer", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # hashing a megabyte "password" is a cheap DoS
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_EXTENSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}")
_PBX = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # a `[[pbx]]` id (bridge.settings.PbxSettings)



class UserError(Exception):
    """A refused change, worded for the admin who asked for it."""


class UserExists(UserError):
    pass


class UnknownUser(UserError):
    pass


class ExtensionTaken(UserError):
    pass


class InvalidUserData(UserError, ValueError):
    pass


def normalize_username(username: str) -> str:
    return unicodedata.normalize("NFKC", username).strip().lower()


def valid_username(username: str) -> str:
    name = normalize_username(username)
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidUserData(f"invalid username {username!r}: 1-64 of a-z 0-9 . _ @ -, "
                              "starting with a letter or digit")
    return name


def valid_display_name(name: str) -> str:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 200 or any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidUserData("the display name must be 1-200 printable characters")
    return name


def valid_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidUserData(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]  # checked just above


def valid_extensions(extensions: Iterable[str]) -> list[str]:
    out: list[str] = []
    for ext in extensions:
        ext = ext.strip()
        if not _EXTENSION.fullmatch(ext):
            raise InvalidUserData(f"invalid extension {ext!r}: 1-32 of A-Z a-z 0-9 _ . + -")
        if ext not in out:
            out.append(ext)
    return out


def valid_pbx(pbx: str) -> str:
    pbx = pbx.strip()
    if not _PBX.fullmatch(pbx):
        raise InvalidUserData(f"invalid PBX id {pbx!r}: 1-32 of a-z 0-9 _ -, starting with a letter or digit")
    return pbx


def pbx_of(user: Any) -> str:
    """The PBX a user's extensions are on ("main" for a stand-in without one)."""
    return getattr(user, "pbx", None) or DEFAULT_PBX


def resolve_pbx(pbx: str | None, pbxes: Sequence[str]) -> str:
    """A stored PBX id among the configured ones: "main" (the default, and every row from
    before PBX ids) is the first PBX when no PBX has that id, so a one-PBX install keeps
    working whatever its PBX is called."""
    pbx = pbx or DEFAULT_PBX
    if pbxes and pbx == DEFAULT_PBX and pbx not in pbxes:
        return pbxes[0]
    return pbx


def check_password(password: str, username: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidUserData(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidUserData(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    if normalize_username(password) == username:
        raise InvalidUserData("the password must not be the username")
