"""bench/cluster.py's run: its constants, the traffic per PBX, the takeover as timed, and
what one run gathers."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import _screenpop_traffic as traffic_mod
from bench._cluster_browsers import Login
from bridge.calls.channel_names import DEFAULT_OPERATOR_PATTERN
from bridge.calls.pipeline import CallPipeline
from bridge.calls.replay import capture_events, replay_connections
from bridge.calls.tracker import CallTracker
from bridge.simulator.relabel import shift_times

PBXES = ("main", "east")  # main first: its call ids carry no prefix
NODES = 3  # each logs in to each PBX: its owner, and the others' hot standbys
OPERATORS_PER_PBX = 1000
TARGET_P99_MS = 15.0
TARGET_TAKEOVER_S = 5.0
TIMES = ("started_at", "answered_at", "ended_at", "wait_seconds", "talk_seconds")


@dataclass
class PbxTraffic:
    pbx: str
    traffic: traffic_mod.Traffic
    path: Path
    index: int  # its place in the configuration (all but the first prefix their call ids)
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)  # call id -> offline replay_dict()

    def replay_offline(self, shift: int) -> None:
        """The calls of the traffic as `callbridge replay` gives them, its times moved by
        `shift` s as the simulator moved them (to the present)."""
        tracker = CallTracker(DEFAULT_OPERATOR_PATTERN, pbx=self.pbx,
                              id_prefix="" if self.index == 0 else f"{self.pbx}:")
        records = replay_connections([capture_events(shift_times(self.traffic.stream, shift))],
                                     pipeline=CallPipeline(tracker))
        self.expected = {r.call_id: r.replay_dict() for r in records}


@dataclass
class Takeover:
    killed_at: float  # time.time() of the SIGKILL
    lease: dict[str, float] = field(default_factory=dict)  # pbx -> s until a survivor's /readyz said owner*
    owner: dict[str, float] = field(default_factory=dict)  # pbx -> s until it said "owner" (logged in)
    by: dict[str, str] = field(default_factory=dict)  # pbx -> the new owner
    logged: dict[str, dict[str, float]] = field(default_factory=dict)  # pbx -> its log lines' times

    @property
    def seconds(self) -> float:
        return max(self.owner.values()) if len(self.owner) == len(PBXES) else math.nan


@dataclass
class Run:
    args: argparse.Namespace
    traffic: dict[str, PbxTraffic]
    browser_nodes: list[str] = field(default_factory=list)  # per browser process: its node
    browser_logins: list[list[Login]] = field(default_factory=list)
    browser_results: list[dict[str, Any]] = field(default_factory=list)
    connected: list[tuple[Any, ...]] = field(default_factory=list)  # ("connected", n, wrong pbx, wrong user)
    tap_rows: list[Any] = field(default_factory=list)
    pbx_done: dict[str, dict[str, Any]] = field(default_factory=dict)
    takeover: Takeover | None = None
    go_at: float = 0.0  # the PBXes told to listen
    started_at: float = 0.0  # the first event of a PBX went out
    traffic_seconds: float = 0.0
    logged: list[dict[str, Any]] = field(default_factory=list)  # replay_dict() of every logged call
    cpu: dict[str, Any] = field(default_factory=dict)  # CpuLedger.finish() over the traffic
    node_logs: dict[str, str] = field(default_factory=dict)
    healthz: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> (at, round trip)
    priority: str = ""  # what --priority did, as the report says it
    pace_ms: float = 0.0  # bench._sampling.machine_pace() before the run
