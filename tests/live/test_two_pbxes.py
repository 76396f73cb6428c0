"""Two real Asterisks behind one bridge ([[pbx]]): one queue call on each, at the same time,
with the same queue, extension and (often) the same Uniqueids. Each is logged once, with
its PBX, the second PBX's id prefixed; each operator's card is his own PBX's; a PBX that
goes down leaves the other's calls and health alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge.settings import load_settings
from tests.live.ami_driver import AmiDriver
from tests.live.checks import check_answered_queue_call
from tests.live.lab import PASSWORD, LabPbx, LiveBridge, free_port, require_asterisk, until
from tests.live.scenarios import call_queue
from web.users import UserStore


def pbx_entry(pbx_id: str, pbx: LabPbx) -> dict[str, object]:
    return {"id": pbx_id, "host": pbx.host, "port": pbx.port, "username": "callbridge",
            "secret": "lab-secret", "ping_interval": 1.0, "ping_timeout": 2.0, "backoff_max": 0.5}


async def test_two_asterisks_one_bridge(tmp_path: Path, pbx: LabPbx, ami: AmiDriver) -> None:
    require_asterisk()
    east = LabPbx(tmp_path / "east", free_port())
    await east.start()
    east_ami = AmiDriver(east.host, east.port)
    bridge = LiveBridge(pbx, tmp_path)
    try:
        await east_ami.connect()
        values = dict(bridge.values)
        values.pop("ami")
        values["pbx"] = [pbx_entry("main", pbx), pbx_entry("east", east)]
        bridge.values = values
        bridge.settings = load_settings(**values)
        await bridge.start()
        service = bridge.service
        assert service is not None
        await until(lambda: service.pbx_ready(), 30, "both PBXes connected")
        users = UserStore(service.store)
        await users.add("erik", PASSWORD, role="operator", extensions=["101"], pbx="east")
        anna, erik = await bridge.console("anna"), await bridge.console("erik")  # both 101

        main_call, east_call = await asyncio.gather(
            call_queue(ami, "support", "+74951234567", "Main Caller", talk=3),
            call_queue(east_ami, "support", "+74957654321", "East Caller", talk=3))
        await asyncio.gather(main_call.ended(), east_call.ended())

        on_main = await bridge.logged(main_call.linkedid)
        on_east = await bridge.logged(f"east:{east_call.linkedid}")
        def facts(call: dict) -> tuple:
            return call["pbx"], call["caller_name"], call["answered_by"]

        assert facts(on_main) == ("main", "Main Caller", "101")
        assert facts(on_east) == ("east", "East Caller", "101")
        check_answered_queue_call(on_main, main_call)
        check_answered_queue_call(on_east, east_call)
        assert len(await bridge.export()) == 2

        # Same extension on two PBXes: each operator saw his own PBX's call only.
        await anna.wait_state(main_call.linkedid, "after_call")
        await erik.wait_state(f"east:{east_call.linkedid}", "after_call")
        assert {c.call_id for c in anna.cards()} == {main_call.linkedid}
        assert {c.call_id for c in erik.cards()} == {f"east:{east_call.linkedid}"}
        assert {c.pbx for c in erik.cards()} == {"east"}

        # One PBX down: the other stays connected and keeps logging.
        await east.stop(crash=True)
        await until(lambda: not service.pbx_ready("east"), 15, "the east PBX seen down")
        assert service.pbx_ready("main")
        again = await call_queue(ami, "support", "+74951112233", "Still Main", talk=1)
        await again.ended()
        assert (await bridge.logged(again.linkedid))["pbx"] == "main"
    finally:
        await bridge.stop()
        await east_ami.close()
        if east.running:
            await east.stop()
