"""The `callbridge` command line, run in-process as an admin would from a shell."""

from __future__ import annotations

import csv
import io
import json
import os
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


# -- issue 13: what a user types wrong is one line, never a traceback --------------------

MAIN = "import sys; from bridge.cli import main; sys.exit(main())"


def one_line(err: str) -> str:
    """The single `callbridge: ...` line of stderr (log lines at INFO may come before it)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("callbridge")]
    assert len(lines) == 1, err
    return lines[0]


def test_replay_of_a_file_that_is_not_an_ami_capture_says_so(tmp_path: Path, capsys) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    for name, data in (("notes.txt", b"hello world\n"), ("picture.png", png), ("empty.ami", b"")):
        path = tmp_path / name
        path.write_bytes(data)
        code, out, err = run(capsys, "replay", str(path))
        assert code == 2 and out == ""
        assert f"{path} is not an AMI capture" in one_line(err)
    # One bad file among good ones: nothing is replayed.
    code, out, err = run(capsys, "replay", str(FIXTURES / "queue_answered.ami"), str(tmp_path / "notes.txt"))
    assert code == 2 and out == "" and "not an AMI capture" in one_line(err)


@pytest.mark.parametrize("url, says", [
    ("nonsense://x", "is not a database URL we can use"),
    ("garbage", "is not a database URL we can use"),
    ("postgresql+asyncpg://callbridge:s3cret@127.0.0.1:1/callbridge", "cannot open the database"),
])
def test_a_bad_or_unreachable_database_is_one_line(tmp_path: Path, capsys, url: str, says: str) -> None:
    capture = str(FIXTURES / "queue_answered.ami")
    for argv in (["calls", "export", "--db", url], ["replay", capture, "--db", url],
                 ["demo", "--db", url, "--http-port", "0"]):
        code, out, err = run(capsys, *argv)
        assert code == 2 and out == "", (argv, out)
        line = one_line(err)
        assert says in line, (argv, line)
        assert "s3cret" not in err  # the password is never printed
    config = tmp_path / "callbridge.toml"
    config.write_text(f'database_url = "{url}"\n')
    code, _, err = run(capsys, "serve", "--config", str(config))  # README: `serve --config FILE`
    assert code == 2 and says in one_line(err)


def test_serve_reads_the_config_given_after_the_subcommand(tmp_path: Path, capsys) -> None:
    """`callbridge serve --config FILE` reads FILE: its database is the one serve opens."""
    config = tmp_path / "callbridge.toml"
    (tmp_path / "a-file").write_text("not a folder")
    config.write_text(f'database_url = "sqlite+aiosqlite:///{tmp_path}/a-file/calls.sqlite3"\n')
    code, _, err = run(capsys, "serve", "--config", str(config))
    assert code == 2 and f"cannot open the database sqlite+aiosqlite:///{tmp_path}/a-file/" in one_line(err)
    code, _, err = run(capsys, "serve", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "missing.toml" in one_line(err)


def test_log_level_rejects_unknown_levels(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["calls", "export", "--log-level", "LOUD"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "'LOUD' is not a log level: one of DEBUG, INFO, WARNING, ERROR, CRITICAL" in err
    config = tmp_path / "callbridge.toml"
    config.write_text('log_level = "verbose"\n')
    code, _, err = run(capsys, "--config", str(config), "replay", str(FIXTURES / "queue_answered.ami"))
    assert code == 2 and "'verbose' is not a log level" in one_line(err)
    code, out, _ = run(capsys, "replay", str(FIXTURES / "queue_answered.ami"), "--log-level", "warning")
    assert code == 0 and out


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`callbridge staffing ... | head`: the reader left; no BrokenPipeError traceback."""
    import subprocess
    import sys

    for argv in (["staffing", "--calls", "100", "--interval-minutes", "30", "--aht", "180",
                  "--target-percent", "80", "--target-seconds", "20"],
                 ["replay", str(FIXTURES / "burst_20_calls.ami")]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line is written
        proc = subprocess.run([sys.executable, "-c", MAIN, *argv], stdout=write, stderr=subprocess.PIPE,
                              timeout=60, check=False)
        os.close(write)
        err = proc.stderr.decode()
        assert "Traceback" not in err and "BrokenPipeError" not in err, err
        assert proc.returncode == 141, (proc.returncode, err)


def test_a_closed_pipe_in_process(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("sys.stdout", Closed())
    code = main(["staffing", "--calls", "100", "--interval-minutes", "30", "--aht", "180",
                 "--target-percent", "80", "--target-seconds", "20"])
    assert code == 141


def test_a_web_port_in_use_is_one_line_naming_the_option(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-c", MAIN, "demo",
             "--http-port", str(port), "--db", f"sqlite+aiosqlite:///{tmp_path / 'demo.sqlite3'}"],
            capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    line = one_line(proc.stderr)
    assert line == (f"callbridge: the web port 127.0.0.1:{port} is in use: choose another with --http-port N "
                    "(or [http] port in the configuration)")
    assert "Task was destroyed" not in proc.stderr and "Unclosed" not in proc.stderr, proc.stderr
