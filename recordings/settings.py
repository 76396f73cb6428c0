"""Recording configuration (`[recordings]` in the TOML file, `CALLBRIDGE_RECORDINGS__...`).

    [recordings]
    policy = "queues"              # "all" | "queues" | "none"
    queues = ["support"]
    directory = "/srv/callbridge/recordings"        # where the bridge reads the files
    pbx_directory = "/var/spool/asterisk/callbridge"  # the same directory as Asterisk sees it
    retention_days = 90
    [[recordings.review_criteria]]
    name = "Greeting"
    max_points = 5
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Criterion(BaseModel):
    """One line of the QA score card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=80)
    max_points: int = Field(ge=1, le=100)

    @field_validator("name")
    @classmethod
    def _plain(cls, value: str) -> str:
        value = value.strip()
        if not value or _CONTROL.search(value):
            raise ValueError("a criterion name must be plain text")
        return value


DEFAULT_CRITERIA = (
    Criterion(name="Greeting", max_points=5),
    Criterion(name="Identified the caller's need", max_points=10),
    Criterion(name="Solution", max_points=10),
    Criterion(name="Politeness", max_points=5),
    Criterion(name="Closing", max_points=5),
)


class RecordingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: Literal["all", "queues", "none"] = "none"
    queues: list[str] = Field(default_factory=list, description="recorded queues when policy is 'queues'")
    directory: Path = Field(Path("var/recordings"), description="the recordings folder, as the bridge "
                            "reads it")
    pbx_directory: str | None = Field(None, description="the same folder as Asterisk writes it (an "
                                      "absolute path on the PBX); default: `directory`, made absolute")
    url_prefix: str = Field("/recordings", description="where the audio is served: <prefix>/<id>/audio")
    retention_days: int | None = Field(None, ge=1, description="purge recordings older than this; "
                                       "unset: keep forever")
    format: Literal["wav"] = "wav"
    check_delay_seconds: float = Field(5.0, ge=0, description="wait after the hang-up before checking "
                                       "that the file was written (Asterisk closes it asynchronously)")
    mixmonitor_options: str = Field("b", pattern=r"^[A-Za-z]*$",
                                    description="MixMonitor options; b: only while bridged")
    timezone: str = Field("UTC", description="the date folders (YYYY/MM/DD) follow this zone; unset: "
                          "each call's PBX's zone (its [[pbx]] timezone, else the top-level one)")
    review_criteria: list[Criterion] = Field(default_factory=lambda: list(DEFAULT_CRITERIA))
    # Whether `timezone` was set (file, environment), not filled in from the call centre's: a
    # field the settings later assign counts as set for pydantic, hence this flag of our own.
    _timezone_set: bool = PrivateAttr(False)

    @field_validator("pbx_directory")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if not path.is_absolute() or ".." in path.parts or _CONTROL.search(value):
            raise ValueError("pbx_directory must be an absolute path without '..'")
        return str(path)

    @field_validator("url_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.rstrip("/")
        if not re.fullmatch(r"(/[A-Za-z0-9_-]+)+", value):
            raise ValueError("url_prefix must look like /recordings")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RecordingSettings:
        if self.policy == "queues" and not self.queues:
            raise ValueError("policy 'queues' needs at least one queue in `queues`")
        names = [c.name for c in self.review_criteria]
        if len(set(names)) != len(names):
            raise ValueError("review criteria names must be unique")
        self._timezone_set = "timezone" in self.model_fields_set
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def timezone_set(self) -> bool:
        """`timezone` was configured for the recordings themselves: every PBX's folders follow it."""
        return self._timezone_set

    @property
    def pbx_root(self) -> PurePosixPath:
        """The folder Asterisk is told to write into."""
        if self.pbx_directory is not None:
            return PurePosixPath(self.pbx_directory)
        return PurePosixPath(self.directory.resolve().as_posix())

    def records_queue(self, queue: str | None) -> bool:
        if self.policy == "all":
            return True
        return self.policy == "queues" and queue is not None and queue in self.queues


def recording_settings(settings: object) -> RecordingSettings:
    """The `recordings` part of the main settings (defaults until the lead wires it in)."""
    found = getattr(settings, "recordings", None)
    return found if isinstance(found, RecordingSettings) else RecordingSettings()
