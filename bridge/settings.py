"""Configuration: a TOML file and/or `CALLBRIDGE_*` environment variables.

Environment variables win over the file, so a secret can stay out of the file:
`CALLBRIDGE_AMI__SECRET=...` (nested keys use a double underscore).
"""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from pydantic import BaseModel, Field, IPvAnyNetwork, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.calls.channel_names import DEFAULT_OPERATOR_PATTERN
from bridge.calls.record import DEFAULT_PBX
from cluster.settings import ClusterSettings
from crm_adapters.settings import CrmSettings
from recordings.settings import RecordingSettings
from reports.settings import ReportSettings
from screenpop.settings import ConsoleSettings
from supervision.settings import TimeZoneName, WallboardSettings

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/callbridge.sqlite3"


class AmiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "callbridge"
    secret: SecretStr = SecretStr("callbridge")
    ping_interval: float = Field(10.0, gt=0, description="seconds between keep-alive pings")
    ping_timeout: float = Field(5.0, gt=0, description="a ping unanswered this long means a dead link")
    action_timeout: float = Field(10.0, gt=0)
    backoff_max: float = Field(30.0, gt=0, description="cap of the reconnect back-off")
    probe_interval: float = Field(0.5, gt=0, description="seconds between connect attempts while unreachable")
    max_message_bytes: int = Field(1024 * 1024, ge=4096, description="a longer message is dropped, warned")


class PbxSettings(AmiSettings):
    """One PBX of `[[pbx]]`: its AMI login, and what differs from the top-level defaults."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
                    description="short name: in every call, card, wallboard figure and report")
    operator_pattern: str | None = None  # None: the top-level operator_pattern
    timezone: TimeZoneName | None = None  # None: the top-level timezone


class HttpSettings(BaseModel):
    """The web server for the operator console, wallboard and review pages."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Secure cookies need HTTPS (put a TLS proxy in front); the localhost demo turns it off.
    secure_cookie: bool = True
    session_max_age: int = Field(12 * 3600, gt=0, description="seconds a login lasts at most")
    idle_timeout: int = Field(30 * 60, gt=0, description="seconds without activity that end a login")
    # Proxies (addresses or networks) whose X-Forwarded-For names the client; nobody's by default.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
    # The pages' public origin(s) when a proxy terminates TLS (e.g. "https://calls.example.com"):
    # the browser's Origin is that, not the http:// address the bridge sees.
    public_origins: list[str] = Field(default_factory=list)
    # Signs login forms and device cookies. Unset: a random key per process (one node). A
    # cluster's nodes must share one (>= 16 bytes), or a form served by one fails on another.
    secret_key: SecretStr | None = None
    # Who may read /healthz, /readyz and /metrics (load balancers, Prometheus): they log in as
    # nobody, so the address is the check. Loopback only by default.
    ops_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")])


class CallbridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLBRIDGE_", env_nested_delimiter="__", extra="forbid"
    )

    ami: AmiSettings = Field(default_factory=AmiSettings)
    # Several PBXes: `[[pbx]]` tables (id, host, port, username, secret, ...). Without any,
    # `[ami]` is the one PBX, whose id is "main".
    pbx: list[PbxSettings] = Field(default_factory=list)
    database_url: str = DEFAULT_DATABASE_URL
    # Finished calls not yet in the database (JSON lines, fsync'd), written at the next start.
    # Default: beside a SQLite file (`<file>.spool.jsonl`), else `var/call-log-spool.jsonl`.
    call_log_spool: Path | None = None
    # Which extensions are operators' phones (the rest are trunks, queues, IVRs).
    operator_pattern: str = DEFAULT_OPERATOR_PATTERN
    log_level: str = "INFO"
    # The call centre's IANA time zone: where "today" starts for the wallboard's figures.
    timezone: TimeZoneName = "UTC"
    crm: CrmSettings = Field(default_factory=CrmSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    recordings: RecordingSettings = Field(default_factory=RecordingSettings)
    wallboard: WallboardSettings = Field(default_factory=WallboardSettings)
    reports: ReportSettings = Field(default_factory=ReportSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    # Several bridge nodes (PostgreSQL and Redis shared): on when [cluster] redis_url is set.
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    def pbxes(self) -> list[PbxSettings]:
        """Every PBX, its defaults filled in from the top level; the first is the main one."""
        listed = self.pbx or [PbxSettings(id=DEFAULT_PBX, **self.ami.model_dump())]
        return [p.model_copy(update={"operator_pattern": p.operator_pattern or self.operator_pattern,
                                     "timezone": p.timezone or self.timezone}) for p in listed]

    @model_validator(mode="after")
    def _pbx_list(self) -> CallbridgeSettings:
        ids = [p.id for p in self.pbx]
        if len(ids) != len(set(ids)):
            raise ValueError(f"pbx: every [[pbx]] needs its own id (got {', '.join(ids)})")
        if self.pbx and "ami" in self.model_fields_set:
            raise ValueError("pbx: with [[pbx]] tables, put each PBX's AMI login there, not in [ami]")
        if self.cluster.redis_url and not self.database_url.startswith("postgresql"):
            raise ValueError("cluster: several nodes share PostgreSQL (its locks elect each PBX's owner):"
                             " set database_url to a postgresql+asyncpg:// URL")
        if self.cluster.redis_url and self.http.secret_key is None:
            raise ValueError("cluster: set [http] secret_key (the same on every node, 16 characters or more)"
                             " so a login started on one node finishes on another")
        if self.http.secret_key is not None and len(self.http.secret_key.get_secret_value()) < 16:
            raise ValueError("http.secret_key: 16 characters or more")
        return self

    @model_validator(mode="after")
    def _one_time_zone(self) -> CallbridgeSettings:
        # The recordings' date folders follow the call centre's zone unless set apart: each
        # call's PBX's (recordings.recorder), the first PBX's being the one named here.
        if not self.recordings.timezone_set:
            self.recordings.timezone = (self.pbx[0].timezone if self.pbx else None) or self.timezone
        # One "answered within T": the wallboard counts as the reports define it; T is
        # [reports] target_seconds, else [wallboard] target_seconds.
        if "target_seconds" not in self.reports.model_fields_set:
            self.reports.target_seconds = self.wallboard.target_seconds
        self.wallboard.service_level = self.reports.policy()
        # The console pauses an operator on the interface the supervisors' actions use.
        if "member_interface" not in self.console.model_fields_set:
            self.console.member_interface = self.wallboard.supervision.member_interface
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


class ConfigError(Exception):
    """A configuration problem, worded for the admin who has to fix it."""


def load_settings(config_file: Path | None = None, **overrides: object) -> CallbridgeSettings:
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")

    class _FromFile(CallbridgeSettings):
        model_config = SettingsConfigDict(**{**CallbridgeSettings.model_config, "toml_file": config_file})

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in exc.errors()
        )
        source = config_file or "environment"
        raise ConfigError(f"invalid configuration ({source}): {problems}") from None
    except ValueError as exc:  # malformed TOML
        raise ConfigError(f"cannot read {config_file}: {exc}") from None
