"""Ingest throughput: events/s through the whole pipeline vs panoramisk alone.

Both sides get the same bytes (a capture repeated N times, with call ids and channel
names made unique per repetition so every repetition is a fresh set of calls) in 64 KiB
chunks. Pipeline = framing + parsing -> call-state model -> call-log write queue.
Panoramisk = its AMIProtocol.data_received with one no-op callback on `*`.

    python bench/ingest.py [--capture burst_20_calls] [--repeat 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager

from bridge.ami.message import AmiFramer
from bridge.call_log.store import CallLogStore
from bridge.call_log.writer import CallLogWriter
from bridge.calls.pipeline import CallPipeline
from bridge.simulator.relabel import relabel

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CHUNK = 64 * 1024


def build_stream(capture: str, repeat: int) -> bytes:
    data = (FIXTURES / f"{capture}.ami").read_bytes()
    banner_end = data.index(b"\r\n") + 2
    body = data[banner_end:]
    parts = [data[:banner_end]]
    parts += [relabel(body, i) for i in range(repeat)]
    return b"".join(parts)


async def run_pipeline(stream: bytes) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = CallLogStore(f"sqlite+aiosqlite:///{tmp}/bench.sqlite3")
        writer = CallLogWriter(store)  # not started: we measure the hand-over, not SQLite
        pipeline = CallPipeline()
        pipeline.subscribe(writer.handle)
        framer = AmiFramer()
        events = 0
        start = time.perf_counter()
        for offset in range(0, len(stream), CHUNK):
            for message in framer.feed(stream[offset : offset + CHUNK]):
                if message.is_event:
                    pipeline.feed(message)
                    events += 1
        elapsed = time.perf_counter() - start
        return elapsed, events, writer.pending


class _NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


async def run_panoramisk(stream: bytes) -> tuple[float, int]:
    manager = Manager(loop=asyncio.get_running_loop())
    count = 0

    def on_event(_manager, _event) -> None:
        nonlocal count
        count += 1

    manager.register_event("*", on_event)
    protocol = AMIProtocol()
    protocol.connection_made(_NullTransport())
    protocol.factory = manager
    protocol.encoding = "utf8"
    start = time.perf_counter()
    for offset in range(0, len(stream), CHUNK):
        protocol.data_received(stream[offset : offset + CHUNK])
    return time.perf_counter() - start, count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", default="burst_20_calls")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="best of N rounds for each side")
    args = parser.parse_args()
    stream = build_stream(args.capture, args.repeat)
    print(f"capture {args.capture} x{args.repeat}: {len(stream):,} bytes")

    best_pipe = best_pano = 0.0
    for _ in range(args.rounds):
        elapsed, events, pending = await run_pipeline(stream)
        best_pipe = max(best_pipe, events / elapsed)
        p_elapsed, p_events = await run_panoramisk(stream)
        best_pano = max(best_pano, p_events / p_elapsed)
    print(f"pipeline:   {best_pipe:12,.0f} events/s  ({events:,} events, {pending:,} calls queued)")
    print(f"panoramisk: {best_pano:12,.0f} events/s  ({p_events:,} events)")
    print(f"ratio: {best_pipe / best_pano:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
