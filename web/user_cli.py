"""`callbridge user add|list|passwd|edit|disable|enable`: the console's users.

Wiring in `bridge.cli`: `add_user_commands(sub)` on the top-level subparsers, and
`run_user_command(args, settings)` when `args.command == "user"`.

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
from web.users import ROLES, UserError, UserInfo, UserStore

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
            shown = ("2-6 digits" if pattern == DEFAULT_OPERATOR_PATTERN
                     else f"matching operator_pattern {pattern}")
            return f"--extension {ext!r} is not an extension: {shown}, e.g. 101"
    return None


def _pattern(settings: Any) -> str:
    return getattr(settings, "operator_pattern", None) or DEFAULT_OPERATOR_PATTERN


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


def _table(users: list[UserInfo]) -> str:
    rows = [("USERNAME", "ROLE", "ACTIVE", "EXTENSIONS", "NAME")]
    rows += [(u.username, u.role, "yes" if u.active else "no", ",".join(u.extensions) or "-", u.display_name)
             for u in users]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
                     for r in rows)


async def run_user_command(args: argparse.Namespace, settings: Any) -> int:
    """Run `user ...`; returns the exit status. Problems go to stderr, never a traceback."""
    command = args.user_command
    password = None
    try:
        if command == "add" and args.role == "operator" and not args.extension:
            return _fail("an operator needs at least one --extension (the phone whose calls he gets)", 2)
        if command == "edit" and args.extension and args.no_extensions:
            return _fail("--extension and --no-extensions exclude each other", 2)
        if command in ("add", "edit") and (why := bad_extensions(args.extension, _pattern(settings))):
            return _fail(why, 2)
        if command in ("add", "passwd"):
            # Off the event loop: getpass blocks on the terminal.
            password = await asyncio.to_thread(read_password, args.password_stdin)
    except ValueError as exc:
        return _fail(str(exc), 2)
    store = UserStore(args.db or settings.database_url)
    try:
        await store.open()
        return await _run(store, args, password)
    except UserError as exc:
        return _fail(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        return _fail(f"database problem: {exc}")
    finally:
        await store.close()


async def _run(store: UserStore, args: argparse.Namespace, password: str | None) -> int:
    command = args.user_command
    if command == "add":
        assert password is not None
        info = await store.add(args.username, password, role=args.role, display_name=args.display_name,
                               extensions=args.extension)
        print(f"added {info.role} {info.username} ({info.display_name})"
              + (f", extensions {', '.join(info.extensions)}" if info.extensions else ""))
    elif command == "list":
        users = await store.list()
        if args.format == "json":
            print(json.dumps([u.model_dump(mode="json") for u in users], ensure_ascii=False, indent=2))
        else:
            print(_table(users))
    elif command == "passwd":
        assert password is not None
        await store.set_password(args.username, password)
        print(f"password changed for {args.username}; his sessions have ended")
    elif command == "edit":
        extensions = [] if args.no_extensions else args.extension
        info = await store.update(args.username, display_name=args.display_name, role=args.role,
                                  extensions=extensions)
        shown = ", ".join(info.extensions) or "-"
        print(f"{info.username}: {info.role}, {info.display_name}, extensions {shown}")
    elif command == "disable":
        await store.deactivate(args.username)
        print(f"disabled {args.username}; his sessions have ended")
    elif command == "enable":
        await store.activate(args.username)
        print(f"enabled {args.username}")
    else:
        return _fail(f"not a user command: {command}", 2)
    return 0
