"""The `callbridge` command line, run in-process as an admin would from a shell."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bridge.cli import main
from tests.capture_facts import FIXTURES


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_prints_one_json_line_per_call_in_start_order(capsys) -> None:
    code, out, _ = run(capsys, "replay", str(FIXTURES / "supervisor_whisper_barge.ami"))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [c["call_id"] for c in lines] == ["1795509013.0", "1795509016.4", "1795509020.6"]
    assert lines[0]["caller_name"] == "Вера Шепотова"  # UTF-8 printed as text, not escapes
    assert "Вера Шепотова" in out


def test_replay_into_db_then_export_gives_the_same_lines(tmp_path: Path, capsys) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/log.sqlite3"
    outs = []
    for name in ("burst_20_calls", "blind_transfer"):
        code, out, _ = run(capsys, "replay", str(FIXTURES / f"{name}.ami"), "--db", db)
        assert code == 0
        outs += out.splitlines()
    code, exported, _ = run(capsys, "calls", "export", "--db", db)
    assert code == 0
    assert sorted(exported.splitlines()) == sorted(outs)
    assert len(exported.splitlines()) == 21

    # --since keeps the calls that started at or after the moment given.
    # blind_transfer.ami ran 08:18:40-08:18:54 UTC, the burst from 08:20:16.
    code, later, _ = run(capsys, "calls", "export", "--db", db, "--since", "2026-11-24T08:19")
    later_ids = [json.loads(line)["call_id"] for line in later.splitlines()]
    assert len(later_ids) == 20 and all(i.startswith("1795508416.") for i in later_ids)
    # A time without a zone is the call centre's (here Moscow, UTC+3); with one, as given.
    config = tmp_path / "moscow.toml"
    config.write_text('timezone = "Europe/Moscow"\n')
    code, moscow, _ = run(capsys, "calls", "export", "--db", db, "--since", "2026-11-24T11:19",
                          "--config", str(config))
    assert moscow == later
    code, zoned, _ = run(capsys, "calls", "export", "--db", db, "--since", "2026-11-24T11:19+03:00")
    assert zoned == later


def test_export_csv_has_the_replay_columns(tmp_path: Path, capsys) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path}/log.sqlite3"
    run(capsys, "replay", str(FIXTURES / "attended_transfer.ami"), "--db", db)
    code, out, _ = run(capsys, "calls", "export", "--db", db, "--format", "csv")
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["caller_name"] == "Мария Иванова"
    assert row["rung"] == "102 103"
    assert json.loads(row["transfers"]) == [{"kind": "attended", "from": "102", "to": "103"}]


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "replay", str(tmp_path / "missing.ami"))
    assert code == 2 and "no such capture file" in err and "Traceback" not in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[ami]\nport = 'many'\n")
    code, _, err = run(capsys, "--config", str(bad), "calls", "export")
    assert code == 2 and "ami.port" in err and "Traceback" not in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_is_accepted_before_or_after_the_subcommand(tmp_path: Path, capsys, where: str) -> None:
    """README: `callbridge serve --config FILE`; `callbridge --config FILE serve` works too."""
    config = tmp_path / "callbridge.toml"
    config.write_text(f'database_url = "sqlite+aiosqlite:///{tmp_path / "log.sqlite3"}"\n')
    replay = ["replay", str(FIXTURES / "queue_answered.ami"), "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db"]
    argv = ["--config", str(config), *replay] if where == "before" else [*replay, "--config", str(config)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads(out)["caller_name"] == "Иван Петров"
    export = ["calls", "export", "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db"]
    argv = ["--log-level", "WARNING", *export] if where == "before" else [*export, "--log-level", "WARNING"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out)["call_id"] == "1795508277.0"
