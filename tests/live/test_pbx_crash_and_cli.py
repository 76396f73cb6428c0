"""The PBX crashes mid-call and comes back (same RUNDIR and port: fresh channel counters), and
the real `callbridge serve --config FILE` command against the lab PBX, checked by its export."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from tests.live.ami_driver import AmiDriver
from tests.live.checks import check_abandoned, check_answered_queue_call, near
from tests.live.lab import LabPbx, LiveBridge, until
from tests.live.scenarios import STATED_TOLERANCE, call_queue, phone

OUTAGE = 3.0  # seconds the PBX stays dead: part of the scenario, never counted as talk


async def test_pbx_crash_mid_call_logged_once_without_the_outage_then_a_new_call_on_same_names(
        ami: AmiDriver, pbx: LabPbx, bridge: LiveBridge) -> None:
    cut = await call_queue(ami, "support", "+390612345678", "Giulia Rossi", talk=120)
    connect = await cut.wait("AgentConnect")
    first_names = {m["Channel"] for m in cut.all("Newchannel")}
    await until(lambda: any(c.answered_by for c in bridge.service.pipeline.tracker.live_calls()), 10,
                "the bridge seeing the answer")
    await asyncio.sleep(1.0)  # a second of talk, then the PBX dies
    await ami.close()
    await pbx.stop(crash=True)
    assert pbx.killed_at is not None
    await asyncio.sleep(OUTAGE)
    await pbx.start()  # same RUNDIR, same port: channel counters start again at 00000000

    after = await AmiDriver(pbx.host, pbx.port).connect()
    try:
        logged = await bridge.logged(cut.linkedid, limit=30)
        assert (logged["answered_by"], logged["outcome"], logged["ended_by"]) == (
            "101", "answered", "pbx_lost")
        assert cut.linkedid not in [c.call_id for c in bridge.service.pipeline.tracker.live_calls()]
        assert cut.linkedid not in [c.call_id for c in await bridge.store.live_calls()]
        alive_for = pbx.killed_at - connect.timestamp  # the PBX was alive (and talking) this long
        assert logged["talk_seconds"] <= alive_for + 0.5, (logged, alive_for)
        assert logged["talk_seconds"] >= 0.5, logged  # the talk we saw before the crash is not lost
        record = await bridge.record(cut.linkedid)
        assert record.ended_at <= pbx.killed_at + 0.5 and record.ended_at >= record.answered_at

        # A new call after the restart: the very same channel names, a different caller.
        new = await call_queue(after, "support", "+390298765432", "Marco Bianchi", talk=2)
        await new.ended()
        assert {m["Channel"] for m in new.all("Newchannel")} & first_names, "the PBX did not reuse the names"
        new_log = await bridge.logged(new.linkedid)
        assert (new_log["caller_name"], new_log["rung"]) == ("Marco Bianchi", ["101"])
        check_answered_queue_call(new_log, new)
        exported = await bridge.export()
        assert sorted(r["call_id"] for r in exported) == sorted([cut.linkedid, new.linkedid])
    finally:
        await after.close()


async def _lines_until(stream: asyncio.StreamReader, needle: str, seen: list[str], limit: float) -> None:
    async with asyncio.timeout(limit):
        while True:
            line = (await stream.readline()).decode(errors="replace")
            if not line:
                raise AssertionError("callbridge serve exited:\n" + "".join(seen[-30:]))
            seen.append(line)
            if needle in line:
                return


async def test_callbridge_serve_with_a_config_file_logs_what_it_exports(ami: AmiDriver, pbx: LabPbx,
                                                                        tmp_path: Path) -> None:
    db = tmp_path / "serve.sqlite3"
    config = tmp_path / "callbridge.toml"
    config.write_text(f"""\
database_url = "sqlite+aiosqlite:///{db}"

[ami]
host = "{pbx.host}"
port = {pbx.port}
username = "callbridge"
secret = "lab-secret"
ping_interval = 1
ping_timeout = 2
backoff_max = 0.5

[http]
host = "127.0.0.1"
port = 0
secure_cookie = false
""")
    exe = Path(sys.executable).with_name("callbridge")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        str(exe), "serve", "--config", str(config),  # as the README says to run it
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path)
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        await _lines_until(proc.stderr, "PBX main: resynced", seen, 30)
        drain = asyncio.create_task(_lines_until(proc.stderr, "\x00never", seen, 600))

        await phone(ami, "102", dead=True)
        await phone(ami, "101", ring=1)
        answered = await call_queue(ami, "support", "+74951234567", "Иван Петров", talk=2)
        await answered.ended()
        await phone(ami, "101", dead=True)
        gave_up = await call_queue(ami, "support", "+74957654321", None, talk=1)
        await gave_up.ended()

        exported: dict[str, dict] = {}
        deadline = time.monotonic() + 30
        while set(exported) != {answered.linkedid, gave_up.linkedid}:
            assert time.monotonic() < deadline, f"export never showed both calls: {exported}"
            out = await _run(str(exe), "calls", "export", "--db", f"sqlite+aiosqlite:///{db}", env=env)
            exported = {line["call_id"]: line for line in map(json.loads, out.splitlines())}
            await asyncio.sleep(0.3)

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0, "".join(seen[-30:])
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    first = exported[answered.linkedid]
    assert {k: first[k] for k in ("caller_number", "caller_name", "queue", "answered_by", "rung", "outcome",
                                  "transfers")} == {
        "caller_number": "+74951234567", "caller_name": "Иван Петров", "queue": "support",
        "answered_by": "101", "rung": answered.rung(), "outcome": "answered", "transfers": []}
    check_answered_queue_call(first, answered)
    second = exported[gave_up.linkedid]
    assert (second["caller_number"], second["caller_name"], second["queue"]) == ("+74957654321", None,
                                                                                "support")
    check_abandoned(second, gave_up)
    near(second["wait_seconds"], float(gave_up.first("QueueCallerAbandon")["HoldTime"]), STATED_TOLERANCE,
         "wait vs HoldTime")
    assert any("call " in line and "ended" in line for line in seen), "no per-call log lines"


async def _run(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode()
