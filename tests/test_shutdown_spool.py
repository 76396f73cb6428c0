"""`callbridge serve` as a real process with a stuck database.

Another process holds the SQLite file under an exclusive lock while calls finish: SIGTERM
still stops the bridge within seconds, and SIGTERM or SIGKILL alike lose no finished call:
they wait in the spool, and the next start (database free) logs every one exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge.calls.record import CallRecord
from tests.capture_facts import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
CALLS = ["queue_answered", "ringall_two_agents", "blind_transfer", "queue_abandoned", "direct_call"]
STOP_WITHIN = 5.0  # seconds from SIGTERM to exit, locked database included


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, predicate: Callable[[], object], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Bridge:
    """`python -m bridge.cli serve` in `tmp` against the AMI at `ami_port`, its log kept."""

    def __init__(self, tmp: Path, ami_port: int, run: str) -> None:
        self.db = tmp / "log.sqlite3"
        self.spool = tmp / "log.sqlite3.spool.jsonl"
        self.log = tmp / f"bridge-{run}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CALLBRIDGE_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}",
               "CALLBRIDGE_AMI__HOST": "127.0.0.1", "CALLBRIDGE_AMI__PORT": str(ami_port),
               "CALLBRIDGE_HTTP__PORT": "0", "CALLBRIDGE_LOG_LEVEL": "INFO"}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve"], cwd=tmp, env=env,
                                         stdout=out, stderr=subprocess.STDOUT)
        wait_for("the bridge to start",
                 lambda: "bridge started" in self.text() or self.proc.poll() is not None)
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def spooled(self) -> set[str]:
        if not self.spool.exists():
            return set()
        return {CallRecord.model_validate_json(line).call_id
                for line in self.spool.read_text().splitlines() if line.strip()}

    def stop(self, signum: int = signal.SIGTERM) -> float:
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return time.monotonic() - started


@contextmanager
def simulator(port: int, captures: list[str]) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-m", "bridge.simulator", "--port", str(port),
                             "--speed", "0", *(str(FIXTURES / f"{name}.ami") for name in captures)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None and b"listening" in proc.stdout.readline()
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process holds the database file under an exclusive lock."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def logged(db: Path) -> list[tuple[str, bool]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT call_id, ended_at IS NOT NULL FROM calls ORDER BY call_id").fetchall()


def expected_call_ids() -> list[str]:
    from bridge.calls.replay import replay_bytes
    from tests.capture_facts import capture_bytes

    return sorted(c.call_id for name in CALLS for c in replay_bytes(capture_bytes(name)))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_stuck_database_stop_is_quick_and_no_finished_call_is_lost(tmp_path: Path, signum: int) -> None:
    port = free_port()
    expected = expected_call_ids()
    bridge = Bridge(tmp_path, port, "first")  # the PBX is not up yet: the database is migrated, then locked
    with locked(bridge.db), simulator(port, CALLS):
        wait_for("every finished call in the spool", lambda: bridge.spooled() >= set(expected))
        took = bridge.stop(signum)
    if signum == signal.SIGTERM:
        print(f"SIGTERM to exit with the database locked: {took:.2f} s")
        assert bridge.proc.returncode == 0, bridge.text()
        assert took < STOP_WITHIN, f"SIGTERM took {took:.1f} s\n{bridge.text()}"
        assert "finished call(s) kept in" in bridge.text()
    assert all(not ended for _, ended in logged(bridge.db))  # none of them reached the database

    again = Bridge(tmp_path, free_port(), "second")  # database free; no PBX needed to write the spool
    wait_for("the spooled calls in the log", lambda: len(logged(again.db)) >= len(expected)
             and all(ended for _, ended in logged(again.db)))
    assert "from the spool" in again.text()
    assert again.stop() < STOP_WITHIN and again.proc.returncode == 0, again.text()
    assert logged(again.db) == [(call_id, True) for call_id in expected]  # each exactly once, finished
    assert again.spooled() == set()  # committed: nothing is written twice at the start after
