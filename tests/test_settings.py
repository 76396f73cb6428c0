"""Configuration from a TOML file and CALLBRIDGE_* variables, and the README's example."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def readme_example(tmp_path: Path) -> Path:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("/etc/callbridge.toml`:", 1)[1].split("```toml", 1)[1].split("```", 1)[0]
    path = tmp_path / "callbridge.toml"
    path.write_text("\n".join(line.removeprefix("   ") for line in block.splitlines()), encoding="utf-8")
    return path


def test_readme_example_loads(tmp_path: Path) -> None:
    settings = load_settings(readme_example(tmp_path))
    assert (settings.ami.host, settings.ami.port, settings.ami.username) == ("10.0.0.5", 5038, "callbridge")
    assert settings.ami.secret.get_secret_value() == "change-me"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert (settings.http.port, settings.recordings.policy, settings.recordings.retention_days) == (
        8080, "all", 90)


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_AMI__SECRET", "from-env")
    monkeypatch.setenv("CALLBRIDGE_AMI__PORT", "6038")
    settings = load_settings(readme_example(tmp_path))
    assert settings.ami.secret.get_secret_value() == "from-env"
    assert settings.ami.port == 6038
    assert "from-env" not in repr(settings)  # secrets are not printed


def test_bad_configuration_is_one_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[ami\nport = 1\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(broken)
    monkeypatch.setenv("CALLBRIDGE_AMI__PORT", "seventy")
    with pytest.raises(ConfigError, match="ami.port"):
        load_settings()
    monkeypatch.delenv("CALLBRIDGE_AMI__PORT")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("databse_url = 'sqlite+aiosqlite:///x'\n")
    with pytest.raises(ConfigError, match="databse_url"):
        load_settings(unknown)


def test_recordings_follow_the_call_centre_time_zone_unless_set_apart(tmp_path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('timezone = "Europe/Moscow"\n')
    assert load_settings(config).recordings.timezone == "Europe/Moscow"
    config.write_text('timezone = "Europe/Moscow"\n[recordings]\ntimezone = "UTC"\n')
    assert load_settings(config).recordings.timezone == "UTC"
