"""The simulator's shape and time options: an AttendedTransfer without its TransferTarget*
fields (as Asterisk sends it when the transfer has no target snapshot), logged right by the
bridge's call model; and replayed times moved to the present (the demo, issue 13), from an
injected clock."""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import datetime, timedelta

import pytest

from bridge.ami.client import AmiClient
from bridge.ami.message import AmiMessage
from bridge.calls.events import CallEnded, DomainEvent
from bridge.calls.pipeline import CallPipeline
from bridge.simulator.server import AmiSimulator
from tests.capture_facts import FIXTURES, capture_events
from tests.test_ami_simulator import connect
from tests.test_ami_simulator import sim_factory as sim_factory  # noqa: F401  # the fixture


def unsolicited(capture: str) -> list[AmiMessage]:
    return [m for m in capture_events(capture) if "ActionID" not in m and m.event != "FullyBooted"]


def expected_log(capture: str) -> dict:
    return json.loads((FIXTURES / "expected" / f"{capture}.jsonl").read_text().splitlines()[0])


# ---- an AttendedTransfer without TransferTarget* -------------------------------------


@pytest.mark.parametrize("capture", ["attended_transfer", "blonde_transfer"])
async def test_attended_transfer_without_target_fields_is_still_logged_right(capture: str) -> None:
    async with AmiSimulator([FIXTURES / f"{capture}.ami"]) as sim:
        sim.strip_fields("AttendedTransfer", "TransferTarget")
        client = AmiClient(*sim.address, "callbridge", "callbridge", action_timeout=2.0,
                           backoff_initial=0.05, fully_booted_timeout=1.0)
        pipeline, seen = CallPipeline(), asyncio.Event()
        ended: list[CallEnded] = []

        def collect(event: DomainEvent) -> None:
            if isinstance(event, CallEnded):
                ended.append(event)
                seen.set()

        pipeline.subscribe(collect)
        client.on_event(pipeline.feed)
        await client.start()
        try:
            await asyncio.wait_for(seen.wait(), 10)
        finally:
            await client.stop()
    (transfer,) = [m for m in sim.sent_events if m.event == "AttendedTransfer"]
    assert not [k for k, _ in transfer.pairs if k.startswith("TransferTarget")]
    assert (transfer["Result"], transfer["DestType"]) == ("Success", "Bridge")
    assert transfer["DestBridgeUniqueid"]
    record = ended[0].call.replay_dict()
    want = expected_log(capture)
    assert {k: record[k] for k in ("call_id", "answered_by", "rung", "transfers")} == {
        k: want[k] for k in ("call_id", "answered_by", "rung", "transfers")}


async def test_strip_fields_leaves_other_events_and_can_be_undone(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "attended_transfer.ami"])
    sim.strip_fields("AttendedTransfer", "TransferTarget", "Transferee")
    sim.strip_fields("AttendedTransfer")  # none: as recorded again
    client = await connect(sim)
    got = (await client.until(lambda m: m.event == "AttendedTransfer"))[-1]
    recorded = next(m for m in unsolicited("attended_transfer") if m.event == "AttendedTransfer")
    assert got.pairs == recorded.pairs


# ---- the present ------------------------------------------------------------------------

ID_FIELD = ("uniqueid", "linkedid")


def shifted_as_expected(orig: AmiMessage, got: AmiMessage, seconds: int) -> None:
    """Every time field of `got` is `orig`'s moved `seconds`; everything else as recorded."""
    assert [k for k, _ in got.pairs] == [k for k, _ in orig.pairs]
    for (key, before), (_, after) in zip(orig.pairs, got.pairs, strict=True):
        if key == "Timestamp":
            assert float(after) == pytest.approx(float(before) + seconds, abs=1e-6)
        elif key.lower().endswith(ID_FIELD) and re.fullmatch(r"\d+\.\d+", before):
            epoch, counter = before.split(".")
            assert after == f"{int(epoch) + seconds}.{counter}", key
        elif key in ("StartTime", "AnswerTime", "EndTime") and before:
            when = datetime.strptime(before, "%Y-%m-%d %H:%M:%S") + timedelta(seconds=seconds)
            assert after == when.strftime("%Y-%m-%d %H:%M:%S"), key
        elif key.endswith("TV"):
            when = datetime.strptime(before[:19], "%Y-%m-%dT%H:%M:%S") + timedelta(seconds=seconds)
            assert after == when.strftime("%Y-%m-%dT%H:%M:%S") + before[19:], key
        elif key in ("LoginTime", "LastCall", "LastPause") and before != "0":
            assert after == str(int(before) + seconds), key
        else:
            assert after == before, key


async def test_now_moves_every_replayed_time_to_the_present(sim_factory) -> None:
    present = 2_000_000_000.25  # the injected clock: no wall-clock in the test
    sim = await sim_factory([FIXTURES / "recording.ami"], now=lambda: present)
    client = await connect(sim)
    orig = unsolicited("recording")
    got = [await client.next() for _ in range(len(orig))]
    seconds = math.floor(present - float(orig[0]["Timestamp"]))
    for before, after in zip(orig, got, strict=True):
        shifted_as_expected(before, after, seconds)
    assert present - 1 < float(got[0]["Timestamp"]) <= present  # the capture starts now
    kinds = {k for m in got for k, _ in m.pairs}
    assert {"EventTV", "StartTime", "DestLinkedid", "LastCall", "LoginTime"} <= kinds  # all exercised
    client.send("Ping")
    pong = await client.until(lambda m: m.get("Ping") == "Pong")
    assert float(pong[-1]["Timestamp"]) == pytest.approx(float(got[-1]["Timestamp"]), abs=5)


async def test_now_starts_each_capture_of_each_pass_in_the_present(sim_factory) -> None:
    # Two captures recorded 12 days apart, looping: each starts at the clock's "now" when
    # its first event goes out, and pass 2's ids are new calls.
    asked: list[float] = []

    def clock() -> float:
        asked.append(2_000_000_000.0 + 1000 * len(asked))
        return asked[-1]

    names = ["queue_answered", "blonde_transfer"]
    sim = await sim_factory([FIXTURES / f"{n}.ami" for n in names], loop=True, now=clock)
    client = await connect(sim)
    segments = [unsolicited(n) for n in names] * 2
    got = [[await client.next() for _ in range(len(s))] for s in segments]
    starts = asked[:4]  # taken once per capture and pass, in order (the replay runs on ahead)
    for index, (orig, sent) in enumerate(zip(segments, got, strict=True)):
        seconds = math.floor(starts[index] - float(orig[0]["Timestamp"]))
        assert starts[index] - 1 < float(sent[0]["Timestamp"]) <= starts[index]
        if index < 2:
            for before, after in zip(orig, sent, strict=True):
                shifted_as_expected(before, after, seconds)
    first_pass = {m["Linkedid"] for m in got[0] if "Linkedid" in m}
    second_pass = {m["Linkedid"] for m in got[2] if "Linkedid" in m}
    assert first_pass and not first_pass & second_pass


async def test_now_moves_fully_booted_and_per_connection_runs(sim_factory) -> None:
    present = 2_000_000_000.0
    restart = [FIXTURES / "pbx_restart_part1.ami", FIXTURES / "pbx_restart_part2.ami"]
    sim = await sim_factory(restart, per_connection=True, now=lambda: present)
    first = await connect(sim)
    part1 = await first.read_to_eof()
    assert present - 1 < float(part1[0]["Timestamp"]) <= present
    client = await connect(sim, login=False)
    _, booted = await client.login()
    assert booted["Uptime"] == "0"  # the restarted PBX, as recorded
    assert present - 1 < float((await client.next())["Timestamp"]) <= present


async def test_times_are_as_recorded_without_now(sim_factory) -> None:
    sim = await sim_factory([FIXTURES / "recording.ami"])
    client = await connect(sim)
    orig = unsolicited("recording")
    got = [await client.next() for _ in range(len(orig))]
    assert [m.pairs for m in got] == [m.pairs for m in orig]


async def test_the_demo_speaks_in_the_present(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from bridge import demo
    from bridge.settings import load_settings

    made: dict = {}

    class Stop(Exception):
        pass

    def fake(*args: object, **kwargs: object) -> None:
        made.update(kwargs)
        raise Stop

    monkeypatch.setattr(demo, "AmiSimulator", fake)
    with pytest.raises(Stop):
        await demo.run_demo(load_settings())
    assert made["now"] is time.time and made["loop"] is True
