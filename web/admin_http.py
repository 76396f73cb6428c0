"""The admins' user administration: `/admin/users` (web/static/admin.*) and its JSON API.

- `GET /admin/users`: the page.
- `GET /api/admin/users`: `{"users": [UserInfo...], "roles": [...], "pbxes": [...]}` (the
  configured PBXes, the first is the main one: the page asks for a PBX only when several).
- `POST /api/admin/users` {username, password, role, display_name?, extensions[], pbx?}: add
  (his extensions are on `pbx`, the first PBX by default).
- `POST /api/admin/users/{username}` {display_name?, role?, extensions?, pbx?, active?}: edit
  (`pbx` moves his extensions), disable (`active: false`: his sessions end and his pages
  close) or enable.
- `POST /api/admin/users/{username}/password` {password}: reset (his sessions end).

The rules are `callbridge user ...`'s (web.user_cli, web.users.UserStore): an operator needs
an extension, extensions match their PBX's `operator_pattern` (its `[[pbx]]` one, else the
top-level one; moving a user to another PBX checks his extensions against that PBX's) and
belong to one user of a PBX, the PBX is a configured one, passwords pass
`check_password`. An admin may not disable himself or take away his own admin role (nobody
would be left to undo it). Admin role only: a refusal is a 403; CSRF is the auth
middleware's. Every change and every refusal is an audit-log row (`user.*`, `admin.denied`).
Answers: 200 with the user, 400 for a bad body or a broken rule, 404 for an unknown user,
409 for a name or extension taken.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from bridge.calls.record import DEFAULT_PBX
from web.access import USER_KEY
from web.audit_log import AuditLog, require_role_audited
from web.features import BridgeParts
from web.pages import PAGE_HEADERS, STATIC_DIR
from web.user_cli import bad_extensions
from web.users import (
    ROLES,
    ExtensionTaken,
    Role,
    UnknownUser,
    UserError,
    UserExists,
    UserInfo,
    UserStore,
    resolve_pbx,
)

NO_STORE = {"Cache-Control": "no-store"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Extension = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]
PbxId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewUser(_Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Role
    display_name: str | None = Field(None, max_length=128)
    extensions: list[Extension] = Field(default_factory=list, max_length=16)
    pbx: PbxId | None = None


class UserChange(_Body):
    display_name: str | None = Field(None, max_length=128)
    role: Role | None = None
    extensions: list[Extension] | None = Field(None, max_length=16)
    pbx: PbxId | None = None
    active: bool | None = None


class NewPassword(_Body):
    password: str = Field(min_length=1, max_length=1024)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class AdminApi:
    def __init__(self, users: UserStore, audit: AuditLog, operator_pattern: str,
                 pbxes: Sequence[str] = (DEFAULT_PBX,), patterns: Mapping[str, str] | None = None) -> None:
        self.users, self.audit, self.pattern = users, audit, operator_pattern
        self.patterns = dict(patterns or {})  # PBX id -> its operator_pattern (else `operator_pattern`)
        self.pbxes = tuple(pbxes) or (DEFAULT_PBX,)  # the configured ones, the main one first
        users.pbxes = self.pbxes  # so "main" rows count as the first PBX's when a 201 is taken

    def pbx(self, asked: str | None) -> str | None:
        """A configured PBX's id (None when not asked); "main" names the first PBX."""
        if asked is None:
            return None
        pbx = resolve_pbx(asked, self.pbxes)
        if pbx not in self.pbxes:
            raise Refused(400, f"Unknown PBX {asked!r}: one of {', '.join(self.pbxes)}.")
        return pbx

    def user_json(self, info: UserInfo) -> dict[str, Any]:
        """The user as the page shows him: his PBX by its configured id."""
        shown = info.model_copy(update={"pbx": resolve_pbx(info.pbx, self.pbxes)})
        return shown.model_dump(mode="json", exclude={"password_hash"})

    async def log(self, request: web.Request, action: str, target: str | None, result: str,
                  detail: dict[str, Any] | None = None) -> None:
        user = request.get(USER_KEY)
        await self.audit.record(user.username if user else "-", action, role=str(user.role) if user else None,
                                target=target, result=result, detail=detail or {}, remote=request.remote)

    def check_extensions(self, role: str | None, extensions: list[str] | None, adding: bool,
                         pbx: str) -> None:
        """Extensions on `pbx` must look like its phones: two PBXes may number them apart."""
        if adding and role == "operator" and not extensions:
            raise Refused(400, "An operator needs at least one extension (the phone whose calls he gets).")
        if why := bad_extensions(extensions, self.patterns.get(pbx, self.pattern)):
            where = f" on PBX {pbx}" if len(self.pbxes) > 1 else ""
            raise Refused(400, why.replace("--extension ", "Extension ") + where)

    async def add(self, request: web.Request, body: NewUser) -> UserInfo:
        pbx = self.pbx(body.pbx) or self.pbxes[0]
        self.check_extensions(body.role, body.extensions, adding=True, pbx=pbx)
        return await self.users.add(body.username, body.password, role=body.role,
                                    display_name=body.display_name or None, extensions=body.extensions,
                                    pbx=pbx)

    async def change(self, request: web.Request, name: str, body: UserChange) -> UserInfo:
        current = await self.users.get(name)
        if current is None:
            raise UnknownUser(f"no such user: {name!r}")
        me = request[USER_KEY].username
        if current.username == me and (body.active is False or (body.role not in (None, "admin"))):
            raise Refused(400, "You cannot disable yourself or take away your own admin role.")
        role = body.role or current.role
        pbx = self.pbx(body.pbx)
        if pbx == resolve_pbx(current.pbx, self.pbxes):
            pbx = None  # not moved: his rows stay as they are
        extensions = body.extensions if body.extensions is not None else None
        if role == "operator" and not (extensions if extensions is not None else current.extensions):
            raise Refused(400, "An operator needs at least one extension (the phone whose calls he gets).")
        # Moved without new extensions: his own must be phones of the PBX he moves to.
        checked = extensions if extensions is not None or not pbx else current.extensions
        self.check_extensions(role, checked, adding=False, pbx=pbx or resolve_pbx(current.pbx, self.pbxes))
        if body.display_name is not None or body.role is not None or extensions is not None or pbx:
            await self.users.update(name, display_name=body.display_name or None, role=body.role,
                                    extensions=extensions, pbx=pbx)
        if body.active is False:
            await self.users.deactivate(name)
        elif body.active is True:
            await self.users.activate(name)
        info = await self.users.get(name)
        assert info is not None
        return info


API_KEY = web.AppKey("admin_api", AdminApi)


def admins_only(handler: Handler) -> Handler:
    """`require_role("admin")`; a refusal also goes to the audit log table."""
    return require_role_audited("admin", action="admin.denied",
                                audit=lambda request: request.app[API_KEY].audit)(handler)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": "refused" if status != 400 else "bad_request", "message": message},
                             status=status, headers=NO_STORE)


def _action(model: type[BaseModel], what: str,
            run: Callable[[AdminApi, web.Request, Any], Awaitable[UserInfo | None]]) -> Handler:
    """Validate the body, run, audit the change or the refusal (never the password)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        api = request.app[API_KEY]
        target = request.match_info.get("username")
        try:
            raw = await request.json()
            body = model.model_validate(raw)
            target = target or getattr(body, "username", None)
            action = what if what != "user.update" else _update_action(body)
            info = await run(api, request, body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            await api.log(request, what, target, "refused: not JSON")
            return _error(400, "The body must be a JSON object.")
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                                 for e in exc.errors(include_input=False))
            await api.log(request, what, target, "refused: invalid request")
            return _error(400, f"Invalid request: {problems}")
        except (Refused, UserError, ValueError) as exc:
            status, message = _refusal(exc)
            await api.log(request, what, target, f"refused: {message}")
            return _error(status, message)
        detail = {k: v for k, v in body.model_dump(exclude_none=True).items() if k != "password"}
        await api.log(request, action, target, "ok", detail)
        return web.json_response({"user": api.user_json(info) if info else None}, headers=NO_STORE)

    return admins_only(handler)


def _update_action(body: Any) -> str:
    if getattr(body, "active", None) is False:
        return "user.disable"
    if getattr(body, "active", None) is True:
        return "user.enable"
    return "user.update"


def _refusal(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, Refused):
        return exc.status, exc.message
    if isinstance(exc, UnknownUser):
        return 404, str(exc)
    if isinstance(exc, (UserExists, ExtensionTaken)):
        return 409, str(exc)
    return 400, str(exc)


async def _password(api: AdminApi, request: web.Request, body: NewPassword) -> UserInfo | None:
    name = request.match_info["username"]
    await api.users.set_password(name, body.password)
    return await api.users.get(name)


post_add = _action(NewUser, "user.add", lambda api, request, body: api.add(request, body))
post_change = _action(UserChange, "user.update",
                      lambda api, request, body: api.change(request, request.match_info["username"], body))
post_password = _action(NewPassword, "user.password", _password)


@admins_only
async def list_users(request: web.Request) -> web.StreamResponse:
    api = request.app[API_KEY]
    users = await api.users.list()
    return web.json_response({"users": [api.user_json(u) for u in users], "roles": list(ROLES),
                              "pbxes": list(api.pbxes)}, headers=NO_STORE)


def _page(static_dir: Path) -> Handler:
    @admins_only
    async def page_admin_users(request: web.Request) -> web.StreamResponse:
        path = static_dir / "admin.html"
        if not path.is_file():
            raise web.HTTPNotFound(text="admin.html is not installed")
        return web.FileResponse(path, headers=PAGE_HEADERS)

    return page_admin_users


def add_admin_routes(app: web.Application, users: UserStore, audit: AuditLog, *, operator_pattern: str,
                     static_dir: Path = STATIC_DIR, pbxes: Sequence[str] = (DEFAULT_PBX,),
                     patterns: Mapping[str, str] | None = None) -> AdminApi:
    """The user administration page and API on `app` (assets: the console's `/static/`);
    `patterns`: each PBX's operator_pattern (a PBX not in it: `operator_pattern`)."""
    api = app[API_KEY] = AdminApi(users, audit, operator_pattern, pbxes, patterns)
    app.router.add_get("/admin/users", _page(static_dir))
    app.router.add_get("/api/admin/users", list_users)
    app.router.add_post("/api/admin/users", post_add)
    app.router.add_post("/api/admin/users/{username}", post_change)
    app.router.add_post("/api/admin/users/{username}/password", post_password)
    return api


def attach_admin(parts: BridgeParts, users: UserStore) -> AdminApi:
    """Wiring (web.features): the admin pages on the running bridge's app, its audit log."""
    patterns = {p: parts.operator_pattern_of(p) for p in parts.pbxes}
    return add_admin_routes(parts.app, users, AuditLog(parts.store), operator_pattern=parts.operator_pattern,
                            pbxes=parts.pbxes, patterns=patterns)
