"""A private redis-server for tests: its own free port and directory, no persistence, so that
`restart()` loses everything, as a crashed Redis without AOF does.

Skipped when `redis-server` is not installed (apt-get install redis-server), unless
CALLBRIDGE_REQUIRE_REDIS=1 says the tests must run, then they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cluster.redis_link import connect


def redis_required() -> bool:
    return os.environ.get("CALLBRIDGE_REQUIRE_REDIS") == "1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, directory: Path, executable: str = "redis-server") -> None:
        self.directory = directory
        self.executable = executable
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start on `port` (the same one after a stop) and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        self._process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--logfile", str(log), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop_at = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited ({self._process.returncode}): "
                                   f"{log.read_text(errors='replace')[-2000:] if log.exists() else ''}")
            if time.monotonic() > stop_at:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer within {timeout} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Killed, as in a crash: no chance to save anything."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def restart(self, *, keep_data: bool = False) -> None:
        """Same port; without `keep_data` every key is gone, as after a crash without AOF."""
        if keep_data and self.running:
            self._command(b"SAVE\r\n")
        self.stop()
        if not keep_data:
            (self.directory / "dump.rdb").unlink(missing_ok=True)
        self.start()

    def _command(self, line: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(line)
            return sock.recv(1024)

    def _answers(self) -> bool:
        try:
            return self._command(b"PING\r\n").startswith(b"+PONG")
        except OSError:
            return False


async def until(condition: Callable[[], object], limit: float = 5.0) -> None:
    """Wait for `condition`; `limit` only turns a hang into a failure, nothing is timed."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 (polls state the tasks under test change)
            await asyncio.sleep(0.005)


# Fixture functions named *_fixture: a test module imports them without its test arguments
# shadowing the imported names.


@pytest.fixture(name="redis_server")
def redis_server_fixture(tmp_path: Path) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "no redis-server on PATH (apt-get install redis-server)"
        if redis_required():
            pytest.fail(reason + " [required: CALLBRIDGE_REQUIRE_REDIS=1]", pytrace=False)
        pytest.skip(reason)
    server = RedisServer(tmp_path / "redis", executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="redis")
async def redis_fixture(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = connect(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
