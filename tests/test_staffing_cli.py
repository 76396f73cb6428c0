"""`callbridge staffing`, run in-process as a manager would from a shell."""

from __future__ import annotations

import json

import pytest

from bridge.cli import main

WORKED = ["staffing", "--calls", "100", "--interval-minutes", "30", "--aht", "180",
          "--target-percent", "80", "--target-seconds", "20"]
HOURLY = ["staffing", "--calls", "1000", "--interval-minutes", "60", "--aht", "120",
          "--target-percent", "80", "--target-seconds", "20", "--max-occupancy", "0.85",
          "--shrinkage", "0.30"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_worked_example_as_a_table(capsys) -> None:
    code, out, err = run(capsys, *WORKED)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "100 calls in 30 min, AHT 180 s, 80 % within 20 s (Erlang C)"
    table = {line[2:26].strip(): line[26:].strip() for line in lines[1:]}
    assert table == {
        "agents on the phones": "14",
        "staff (30 % shrinkage)": "20",
        "service level": "88.8 % within 20 s (target 80 %)",
        "ASA": "7.84 s",
        "occupancy": "71.4 % (cap 85 %)",
        "probability of waiting": "17.4 %",
        "abandon rate": "- (give --patience for Erlang A)",
    }


def test_worked_examples_as_json(capsys) -> None:
    code, out, _ = run(capsys, *WORKED, "--format", "json")
    assert code == 0
    worked = json.loads(out)
    assert list(worked) == ["agents", "staff", "service_level", "asa_seconds", "occupancy",
                            "wait_probability", "abandon_rate"]
    assert (worked["agents"], worked["staff"]) == (14, 20)
    assert round(worked["service_level"], 4) == 0.8884
    assert round(worked["wait_probability"], 4) == 0.1741
    assert round(worked["asa_seconds"], 2) == 7.84
    assert round(worked["occupancy"], 3) == 0.714
    assert worked["abandon_rate"] is None

    code, out, _ = run(capsys, *HOURLY, "--format", "json")
    hourly = json.loads(out)
    assert (code, hourly["agents"], hourly["staff"]) == (0, 40, 58)
    assert round(hourly["occupancy"], 4) == 0.8333


def test_patience_gives_erlang_a_and_the_abandon_rate(capsys) -> None:
    code, out, _ = run(capsys, *HOURLY, "--patience", "60", "--format", "json")
    advice = json.loads(out)
    assert code == 0
    assert (advice["agents"], advice["staff"]) == (39, 56)
    assert round(advice["abandon_rate"], 4) == 0.0215
    assert 0 <= advice["service_level"] <= 1
    code, out, _ = run(capsys, *HOURLY, "--patience", "60")
    assert "(Erlang A)" in out.splitlines()[0]
    assert "2.2 % (patience 60 s)" in out


def test_no_calls_needs_nobody(capsys) -> None:
    argv = ["staffing", "--calls", "0", "--interval-minutes", "15", "--aht", "200",
            "--target-percent", "90", "--target-seconds", "30", "--format", "json"]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert json.loads(out) == {"agents": 0, "staff": 0, "service_level": 1.0, "asa_seconds": 0.0,
                               "occupancy": 0.0, "wait_probability": 0.0, "abandon_rate": None}


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--interval-minutes", "0", "--interval-minutes must be more than 0, not 0"),
    ("--target-percent", "120", "--target-percent must be from 0 to 100, not 120"),
    ("--max-occupancy", "0", "--max-occupancy must be a fraction above 0 and at most 1"),
    ("--calls", "-5", "--calls must be 0 or more, not -5"),
    ("--aht", "-1", "--aht must be more than 0 seconds, not -1"),
    ("--target-seconds", "-20", "--target-seconds must be 0 or more, not -20"),
    ("--shrinkage", "1", "--shrinkage must be a fraction from 0 up to (not including) 1"),
    ("--patience", "0", "--patience must be more than 0 seconds, not 0"),
    ("--calls", "nan", "--calls must be a number, not nan"),
    ("--calls", "50000000", "need more than 5000 agents"),
])
def test_bad_input_is_one_clear_error(capsys, option: str, value: str, message: str) -> None:
    argv = list(WORKED)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("callbridge staffing: ")
    assert message in err
    assert "Traceback" not in err


def test_a_value_that_is_not_a_number_is_argparse_s_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*WORKED, "--aht", "three minutes"])
    assert exit_.value.code == 2
    assert "argument --aht: invalid float value: 'three minutes'" in capsys.readouterr().err
