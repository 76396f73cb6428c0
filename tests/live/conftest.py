"""Fixtures of the live group: a lab Asterisk per test (its own RUNDIR and AMI port), the
scenario driver's AMI connection, and the bridge under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.live.ami_driver import AmiDriver
from tests.live.lab import LabPbx, LiveBridge, free_port, require_asterisk


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.live)


@pytest.fixture(name="pbx")
async def pbx_fixture(tmp_path: Path) -> AsyncIterator[LabPbx]:
    require_asterisk()
    pbx = LabPbx(tmp_path / "pbx", free_port())
    await pbx.start()
    try:
        yield pbx
    finally:
        await pbx.stop()


@pytest.fixture(name="ami")
async def ami_fixture(pbx: LabPbx) -> AsyncIterator[AmiDriver]:
    driver = AmiDriver(pbx.host, pbx.port)
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.close()


@pytest.fixture(name="start_bridge")
async def start_bridge_fixture(pbx: LabPbx, tmp_path: Path
                               ) -> AsyncIterator[Callable[..., Awaitable[LiveBridge]]]:
    started: list[LiveBridge] = []

    async def start(**overrides: Any) -> LiveBridge:
        bridge = LiveBridge(pbx, tmp_path, **overrides)
        started.append(bridge)
        return await bridge.start()

    try:
        yield start
    finally:
        for bridge in reversed(started):
            await bridge.stop()


@pytest.fixture(name="bridge")
async def bridge_fixture(ami: AmiDriver, start_bridge: Callable[..., Awaitable[LiveBridge]]) -> LiveBridge:
    """The bridge with default settings (no recordings), started after the driver connected."""
    return await start_bridge()
