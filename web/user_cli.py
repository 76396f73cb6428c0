"""`callbridge user add|list|passwd|edit|disable|enable`: the console's users.

Wiring in `bridge.cli`: `add_user_commands(sub)` on the top-level subparsers, and
`run_user_command(args, settings)` when `args.command == "user"`.

With several PBXes (`[[pbx]]`), `--pbx ID` says which PBX a user's extensions are on (the
first PBX by default); each PBX's `operator_pattern` decides what its extensions look like.

Passwords never travel on the command line (shell history, `ps`): they are prompted for,
twice, on a terminal, or read as one line from stdin with `--password-stdin`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from typing import Any, TextIO

from sqlalchemy.exc import SQLAlchemyError

from bridge.calls.channel_names import DEFAULT_OPERATOR_PATTERN
from bridge.calls.record import DEFAULT_PBX
from web.users import ROLES, UserError, UserInfo, UserStore, resolve_pbx

USER_COMMANDS = ("user",)


def add_user_commands(subparsers: Any) -> None:
    user = subparsers.add_parser("user", help="console users (operators, supervisors, trainers, admins)")
    sub = user.add_subparsers(dest="user_command", required=True)

    def with_db(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--db", help="database URL (default: from configuration)")
        return parser

    add = with_db(sub.add_parser("add", help="create a user (asks for the password)"))
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--name", dest="display_name", help="display name (default: the username)")
    add.add_argument("--extension", action="append", default=[], metavar="EXT",
                     help="an extension he answers (repeat for several); operators need one")
    add.add_argument("--pbx", metavar="ID", help="the PBX his extensions are on (default: the first)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    listing = with_db(sub.add_parser("list", help="list users"))
    listing.add_argument("--format", choices=("table", "json"), default="table")

    passwd = with_db(sub.add_parser("passwd", help="set a user's password (ends his sessions)"))
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    edit = with_db(sub.add_parser("edit", help="change a user's name, role or extensions"))
    edit.add_argument("username")
    edit.add_argument("--role", choices=ROLES)
    edit.add_argument("--name", dest="display_name")
    edit.add_argument("--extension", action="append", metavar="EXT",
                      help="replaces all his extensions (repeat for several)")
    edit.add_argument("--no-extensions", action="store_true", help="unbind all his extensions")
    edit.add_argument("--pbx", metavar="ID", help="move his extensions to this PBX")

    for name, text in (("disable", "disable a user's login (ends his sessions)"),
                       ("enable", "re-enable a user")):
        with_db(sub.add_parser(name, help=text)).add_argument("username")


def _fail(message: str, status: int = 1) -> int:
    print(f"callbridge: {message}", file=sys.stderr)
    return status


def bad_extensions(extensions: list[str] | None, pattern: str) -> str | None:
    """Why these `--extension` values are not phones of this PBX (`operator_pattern`), or None."""
    for ext in extensions or ():
        if not re.search(pattern, ext):
            shown = ("2-6 digits, e.g. 101" if pattern == DEFAULT_OPERATOR_PATTERN  # 101: not every PBX's
                     else f"matching operator_pattern {pattern}")
            return f"--extension {ext!r} is not an extension: {shown}"
    return None


def _pattern(settings: Any) -> str:
    return getattr(settings, "operator_pattern", None) or DEFAULT_OPERATOR_PATTERN


def pbx_patterns(settings: Any) -> dict[str, str]:
    """Configured PBX id -> its operator_pattern, the first PBX first; {} when the settings
    do not say (then any well-formed PBX id is taken)."""
    pbxes = getattr(settings, "pbxes", None)
    if not callable(pbxes):
        return {}
    return {p.id: p.operator_pattern or _pattern(settings) for p in pbxes()}


def _unknown_pbx(pbx: str | None, patterns: dict[str, str]) -> str | None:
    if pbx is None or not patterns or pbx in patterns:
        return None
    return f"--pbx {pbx!r} is not a configured PBX: one of {', '.join(patterns)}"


def read_password(from_stdin: bool, *, stdin: TextIO | None = None) -> str:
    """One line from stdin, or typed twice at a terminal prompt; ValueError otherwise."""
    stream = stdin or sys.stdin
    if from_stdin:
        line = stream.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise ValueError("no password on stdin")
        return password
    if not stream.isatty():
        raise ValueError("no terminal to ask for the password: use --password-stdin")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise ValueError("the passwords differ")
    return password


def _table(users: list[UserInfo], pbxes: list[str]) -> str:
    """One line a user; a PBX column only where there are several PBXes."""
    several = len(pbxes) > 1 or any(resolve_pbx(u.pbx, pbxes) != (pbxes or [DEFAULT_PBX])[0] for u in users)
    rows: list[tuple[str, ...]] = [("USERNAME", "ROLE", "ACTIVE", *(("PBX",) if several else ()),
                                    "EXTENSIONS", "NAME")]
    for u in users:
        pbx = (resolve_pbx(u.pbx, pbxes),) if several else ()
        rows.append((u.username, u.role, "yes" if u.active else "no", *pbx, ",".join(u.extensions) or "-",
                     u.display_name))
    n = len(rows[0]) - 1
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:n], widths, strict=True)) + "  " + r[n]
                     for r in rows)


async def run_user_command(args: argparse.Namespace, settings: Any) -> int:
    """Run `user ...`; returns the exit status. Problems go to stderr, never a traceback."""
    command = args.user_command
    password = None
    patterns = pbx_patterns(settings)
    try:
        if command == "add" and args.role == "operator" and not args.extension:
            return _fail("an operator needs at least one --extension (the phone whose calls he gets)", 2)
        if command == "edit" and args.extension and args.no_extensions:
            return _fail("--extension and --no-extensions exclude each other", 2)
        if command in ("add", "edit") and (why := _unknown_pbx(args.pbx, patterns)):
            return _fail(why, 2)
        if command == "add":
            args.pbx = args.pbx or next(iter(patterns), DEFAULT_PBX)
        # Checked here, before the database, unless it depends on the user's PBX (an edit
        # without --pbx with several PBXes: checked once his PBX is read).
        if command in ("add", "edit") and (args.pbx or len(patterns) < 2) and (why := bad_extensions(
                args.extension, patterns.get(args.pbx or next(iter(patterns), ""), _pattern(settings)))):
            return _fail(why, 2)
        if command in ("add", "passwd"):
            # Off the event loop: getpass blocks on the terminal.
            password = await asyncio.to_thread(read_password, args.password_stdin)
    except ValueError as exc:
        return _fail(str(exc), 2)
    store = UserStore(args.db or settings.database_url)
    store.pbxes = tuple(patterns)  # "main" rows are the first PBX's
    try:
        await store.open()
        return await _run(store, args, password, patterns)
    except UserError as exc:
        return _fail(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        return _fail(f"database problem: {exc}")
    finally:
        await store.close()


async def _run(store: UserStore, args: argparse.Namespace, password: str | None,
               patterns: dict[str, str]) -> int:
    command = args.user_command
    pbxes = list(patterns)

    def on_pbx(info: UserInfo) -> str:
        return f" on PBX {resolve_pbx(info.pbx, pbxes)}" if len(pbxes) > 1 and info.extensions else ""

    if command == "add":
        assert password is not None
        info = await store.add(args.username, password, role=args.role, display_name=args.display_name,
                               extensions=args.extension, pbx=args.pbx)
        print(f"added {info.role} {info.username} ({info.display_name})"
              + (f", extensions {', '.join(info.extensions)}" if info.extensions else "") + on_pbx(info))
    elif command == "list":
        users = await store.list()
        if args.format == "json":
            users = [u.model_copy(update={"pbx": resolve_pbx(u.pbx, pbxes)}) for u in users]
            print(json.dumps([u.model_dump(mode="json") for u in users], ensure_ascii=False, indent=2))
        else:
            print(_table(users, pbxes))
    elif command == "passwd":
        assert password is not None
        await store.set_password(args.username, password)
        print(f"password changed for {args.username}; his sessions have ended")
    elif command == "edit":
        extensions = [] if args.no_extensions else args.extension
        # His PBX's operator_pattern decides: new extensions on his PBX, or his own extensions
        # on the PBX he moves to (--pbx with --extension was checked before the database).
        if len(pbxes) > 1 and ((extensions and not args.pbx) or (args.pbx and extensions is None)):
            current = await store.get(args.username)
            pbx = args.pbx or (resolve_pbx(current.pbx, pbxes) if current else pbxes[0])
            checked = extensions if extensions is not None else (current.extensions if current else [])
            if why := bad_extensions(checked, patterns.get(pbx, patterns[pbxes[0]])):
                return _fail(why, 2)
        info = await store.update(args.username, display_name=args.display_name, role=args.role,
                                  extensions=extensions, pbx=args.pbx)
        shown = ", ".join(info.extensions) or "-"
        print(f"{info.username}: {info.role}, {info.display_name}, extensions {shown}{on_pbx(info)}")
    elif command == "disable":
        await store.deactivate(args.username)
        print(f"disabled {args.username}; his sessions have ended")
    elif command == "enable":
        await store.activate(args.username)
        print(f"enabled {args.username}")
    else:
        return _fail(f"not a user command: {command}", 2)
    return 0
