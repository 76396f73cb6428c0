"""`callbridge demo`: the bridge on the embedded default (SQLite) against the built-in
AMI simulator replaying the recorded Asterisk captures in a loop."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from bridge.demo_data import login_help, seed_demo
from bridge.service import BridgeService, run_until_stopped
from bridge.settings import CallbridgeSettings, ConfigError
from bridge.simulator.mixmonitor_files import DemoMixMonitor
from bridge.simulator.server import AmiSimulator

log = logging.getLogger("callbridge.demo")

CAPTURES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
# Calls first, so something visible happens within seconds of starting.
_FIRST = ("queue_answered", "ringall_two_agents", "blind_transfer", "attended_transfer")
# A PBX restart is two connections (tests/test_pbx_restart.py replays it per connection);
# one looping session of them would be a PBX that never restarted yet reuses channel names.
_NOT_IN_DEMO = ("pbx_restart_",)


def demo_captures(directory: Path = CAPTURES_DIR) -> list[Path]:
    found = [p for p in directory.glob("*.ami") if not p.stem.startswith(_NOT_IN_DEMO)]
    captures = sorted(found, key=lambda p: (p.stem not in _FIRST, _FIRST.index(p.stem)
                                                             if p.stem in _FIRST else 0, p.stem))
    if not captures:
        raise ConfigError(f"no AMI captures (*.ami) found in {directory}")
    return captures


async def run_demo(settings: CallbridgeSettings, *, speed: float = 1.0, db_url: str | None = None,
                   ami_port: int = 0, http_port: int | None = None,
                   captures_dir: Path = CAPTURES_DIR) -> None:
    captures = demo_captures(captures_dir)
    secret = settings.ami.secret.get_secret_value()
    simulator = AmiSimulator(captures, username=settings.ami.username, secret=secret,
                             speed=speed if speed > 0 else None, loop=True, port=ami_port,
                             now=time.time)  # the demo's PBX speaks in the present (issue 13)
    # Recordings as long as the call's talk: the file closes when the channel hangs up.
    recorder = DemoMixMonitor(lambda: [session.state for session in simulator.sessions])
    simulator.action_hooks.append(recorder)
    host, port = await simulator.start()
    ami = settings.ami.model_copy(update={"host": host, "port": port})
    # The demo serves plain http on localhost: a Secure cookie would never come back.
    http = settings.http.model_copy(update={"secure_cookie": False,
                                            **({"port": http_port} if http_port is not None else {})})
    # Record every call, so the trainer's review room has calls to replay.
    recordings = settings.recordings.model_copy(update={"policy": "all"})
    settings = settings.model_copy(update={"ami": ami, "http": http, "recordings": recordings,
                                           "database_url": db_url or settings.database_url})
    log.info("AMI simulator listening on %s:%s (user %s, secret %s), replaying %d captures in a loop "
             "at speed %s", host, port, settings.ami.username, secret, len(captures), speed)
    log.info("call log: %s — see it with `callbridge calls export`; Ctrl-C stops", settings.database_url)
    service = DemoService(settings)
    try:
        await run_until_stopped(settings, service)
    finally:
        await simulator.stop()
        await recorder.close()


class DemoService(BridgeService):
    """The bridge plus demo users and contacts, created before the first call rings."""

    async def _start_web(self) -> None:
        await super()._start_web()
        await seed_demo(self.users, self.lookup)
        host, port = self.web_address or (self.settings.http.host, self.settings.http.port)
        for line in login_help(f"http://{host}:{port}").splitlines():
            log.info("%s", line)
