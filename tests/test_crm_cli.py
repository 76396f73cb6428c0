"""`callbridge crm import` and `callbridge lookup` end to end on a temporary SQLite database."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bridge.call_log.store import CallLogStore
from bridge.calls.record import CallRecord
from bridge.settings import load_settings
from crm_adapters.cli import CRM_COMMANDS, add_crm_commands, run_crm_command
from crm_adapters.contract import Contact, CrmAdapter, FinishedCall, Interaction, NewContact
from crm_adapters.errors import CrmUnavailable
from crm_adapters.settings import AdapterConfig, CrmSettings


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="callbridge")
    add_crm_commands(top.add_subparsers(dest="command", required=True))
    return top


def wired() -> bool:
    """Whether the lead has put the CRM commands into `bridge.cli` yet."""
    from bridge.cli import build_parser

    try:
        build_parser().parse_args(["lookup", "101"])
    except SystemExit:
        return False
    return True


def run(argv: list[str], settings: Any = None) -> int:
    """`callbridge ARGV` through bridge.cli.main when wired (and no custom settings), else ours."""
    if settings is None and wired():
        from bridge.cli import main

        return main(argv)
    args = parser().parse_args(argv)
    return asyncio.run(run_crm_command(args, settings or load_settings()))


def test_the_parser_has_crm_import_and_lookup(tmp_path: Path) -> None:
    args = parser().parse_args(["crm", "import", "people.csv", "--db", "sqlite+aiosqlite:///x.db",
                                "--region", "UA", "--rejects", "bad.csv"])
    assert (args.command, args.crm_command, args.file, args.db, args.region, args.rejects) == (
        "crm", "import", Path("people.csv"), "sqlite+aiosqlite:///x.db", "UA", Path("bad.csv"))
    args = parser().parse_args(["lookup", "8 (495) 111-44-55", "--history", "5"])
    assert (args.command, args.number, args.history, args.db, args.region) == (
        "lookup", "8 (495) 111-44-55", 5, None, None)
    assert CRM_COMMANDS == ("crm", "lookup")
    with pytest.raises(SystemExit):
        parser().parse_args(["crm"])  # a crm subcommand is required


def test_import_then_lookup_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'callbridge.sqlite3'}"
    source = tmp_path / "contacts.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([
            ["name", "company", "phone", "email", "tags", "note"],
            ["Мария Иванова 🌸", "ООО «Ромашка»", "8 (495) 111-44-55", "m@example.ru", "VIP", "Likes email"],
            ["Bad", "", "not a number", "", "", ""],
            ["Иван", "", "+7 916 123-45-67", "", "", ""],
        ])
    rejects = tmp_path / "rejects.csv"
    assert run(["crm", "import", str(source), "--db", db, "--rejects", str(rejects)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["imported 2 contacts, rejected 1 rows", "line 3: bad number 'not a number'",
                   f"rejected rows written to {rejects}"]
    assert rejects.read_text(encoding="utf-8").splitlines()[1].startswith("3,bad number")

    async def log_a_call() -> None:
        async with CallLogStore(db) as store:
            start = datetime(2026, 11, 20, 9, tzinfo=UTC).timestamp()
            await store.save([CallRecord(call_id="c-1", caller_number="84951114455", outcome="answered",
                                         answered_by="102", entered_at=start, answered_at=start + 2,
                                         ended_at=start + 32)])

    asyncio.run(log_a_call())
    assert run(["lookup", "84951114455", "--db", db]) == 0
    card = json.loads(capsys.readouterr().out)
    assert (card["status"], card["number"], card["e164"], card["source"]) == (
        "found", "84951114455", "+74951114455", "builtin")
    contact = card["contact"]
    assert (contact["display_name"], contact["company"], contact["tags"]) == (
        "Мария Иванова 🌸", "ООО «Ромашка»", ["VIP"])
    # The note came with the import (now), the call before it: newest first.
    assert [(h["kind"], h["source"]) for h in card["history"]] == [("note", "builtin"), ("call", "call_log")]
    assert card["history"][1]["call_id"] == "c-1" and card["history"][0]["summary"] == "Likes email"
    assert isinstance(card["elapsed_ms"], float) and card["stale"] is False and card["errors"] == []

    assert run(["lookup", "+7 495 000-00-00", "--db", db]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "not_found"
    assert run(["lookup", "102", "--db", db]) == 0
    colleague = json.loads(capsys.readouterr().out)
    assert (colleague["status"], colleague["extension"], colleague["contact"]) == ("colleague", "102", None)
    assert run(["lookup", "<unknown>", "--db", db, "--history", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "anonymous"


def test_region_option_and_import_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'crm.sqlite3'}"
    source = tmp_path / "ua.csv"
    source.write_text("name;phone\nОксана;044 123 4567\n", encoding="utf-8")
    assert run(["crm", "import", str(source), "--db", db, "--region", "UA"]) == 0
    assert capsys.readouterr().out == "imported 1 contacts, rejected 0 rows\n"
    assert run(["lookup", "0441234567", "--db", db, "--region", "UA"]) == 0
    assert json.loads(capsys.readouterr().out)["contact"]["display_name"] == "Оксана"

    assert run(["crm", "import", str(tmp_path / "missing.csv"), "--db", db]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("who,where\nA,B\n", encoding="utf-8")
    assert run(["crm", "import", str(tmp_path / "bad.csv"), "--db", db]) == 2
    assert "needs a name column and a phone column" in capsys.readouterr().err
    assert run(["lookup", "101", "--db", db, "--region", "XX"]) == 2
    assert "unknown region 'XX'" in capsys.readouterr().err


class DownCrm(CrmAdapter):
    """An external CRM that is down."""

    async def find_contact(self, number: str) -> Contact | None:
        raise CrmUnavailable("connection refused")

    async def history(self, contact: Contact, limit: int = 20) -> list[Interaction]:
        return []

    async def create_contact(self, new: NewContact) -> Contact:
        raise CrmUnavailable("connection refused")

    async def log_call(self, call: FinishedCall) -> str | None:
        raise CrmUnavailable("connection refused")


def test_lookup_with_a_crm_down_prints_why_and_fails(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    crm = CrmSettings(adapters=[AdapterConfig(type="tests.test_crm_cli:DownCrm", name="sales")])
    settings = SimpleNamespace(crm=crm, database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite3'}")
    assert run(["lookup", "84951114455"], settings) == 1
    card = json.loads(capsys.readouterr().out)
    assert (card["status"], card["errors"]) == ("unavailable", ["[sales] unavailable: connection refused"])
    bad = SimpleNamespace(crm=CrmSettings(adapters=[AdapterConfig(type="nope")]),
                          database_url="sqlite+aiosqlite://")
    assert run(["lookup", "84951114455"], bad) == 2
    assert "unknown CRM adapter type 'nope'" in capsys.readouterr().err
