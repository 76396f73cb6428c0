"""How the simulated PBX's events reach `AmiSimulator`'s connections: a connection's own
replay session (sent to it alone, waiting for it to drain), the shared PBX's replay (to
whoever listens, through `bridge.simulator.broadcast`), and the events the PBX makes after
an action or a replayed event (now, or after a delay).

A mixin of the server (`bridge.simulator.server`), which holds the settings it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bridge.ami.message import AmiMessage, encode_message
from bridge.simulator.broadcast import Broadcast
from bridge.simulator.connection import Connection
from bridge.simulator.hooks import SimulatorHooks
from bridge.simulator.player import Played, Player
from bridge.simulator.replay import ReplaySession
from bridge.simulator.runs import ReplayRuns
from bridge.simulator.shapes import Later, Pairs, is_manager_event
from bridge.simulator.state import PbxCore


class EventDelivery(SimulatorHooks):
    # The server's settings (see AmiSimulator), read at every event.
    speed: float | None
    chunk_size: int | None
    drop_after_events: int | None
    record: bool
    broadcast: Broadcast | None  # shared mode
    runs: ReplayRuns

    def __init__(self) -> None:
        super().__init__()
        self._background: set[asyncio.Task[None]] = set()  # tasks of no connection

    def _pbx_died(self, session: ReplaySession) -> None:
        raise NotImplementedError  # the server's: a per-connection capture's end

    def _background_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _spawn(self, conn: Connection, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)

    async def _write(self, conn: Connection | None, messages: list[Pairs]) -> None:
        """Messages for `conn` (None: no asker, the PBX's own); in shared mode its manager
        events go to every listener instead, its replies and list items still to it alone."""
        events = [m for m in messages if is_manager_event(m)]
        if self.record:
            self.generated_events += map(AmiMessage, events)
        if self.broadcast is None:
            if conn is not None:
                await conn.send(b"".join(encode_message(m) for m in messages), self.chunk_size)
            return
        for private, group in itertools.groupby(messages, lambda m: not is_manager_event(m)):
            data = b"".join(encode_message(m) for m in group)
            if not private:
                self.broadcast.events(data)
            elif conn is not None:
                await conn.send(data, self.chunk_size)

    async def _follow_ups(self, conn: Connection | None, state: PbxCore,
                          later: Sequence[Later] = ()) -> None:
        """Events due after an action or a replayed event: now, or each after its delay (the
        shared PBX's go on when the asker has left)."""
        for delay, build in [*later, *state.take_later()]:
            if delay <= 0:
                if messages := build():
                    await self._write(conn, messages)
            elif self.broadcast is None and conn is not None:
                self._spawn(conn, self._later(conn, state, delay, build))
            else:
                self._background_task(self._later(None, state, delay, build))

    async def _later(self, conn: Connection | None, state: PbxCore, delay: float,
                     build: Callable[[], list[Pairs]]) -> None:
        await asyncio.sleep(delay)
        await self.made_events_gate()
        with contextlib.suppress(ConnectionError):
            if messages := build():
                await self._write(conn, messages)
            await self._follow_ups(conn, state)

    def _sent(self, played: Played) -> None:
        if self.record:
            self.sent_events.append(played.item.message)
            self.sent_event_bytes.append(played.item.raw)

    def _room(self, count: int) -> int:
        """How many more events a replay that has sent `count` may send before it stops."""
        room = 1 << 30
        if self.held_at is not None:
            room = self.held_at - count
        if self.drop_after_events is not None and self.broadcast is None:
            room = min(room, self.drop_after_events - count)
        return max(1, room)

    async def _replay(self, conn: Connection, player: Player) -> None:
        """A connection's own replay session, sent to it alone, waiting for it to drain."""
        session = player.session
        while not session.finished and not conn.closing:
            if self.drop_after_events is not None and conn.replayed >= self.drop_after_events:
                conn.close()
                return
            await self.replay_gate(conn.replayed)
            await player.wait()
            if conn.closing:
                return

            def batch() -> bytes:  # committed as it is written: same step, nothing between
                raws = []
                for played in player.batch(self._room(conn.replayed), conn.events_on):
                    if conn.events_on and not played.hidden:
                        conn.replayed += 1
                        self._sent(played)
                        raws.append(played.item.raw)
                self._notify()
                return b"".join(raws)

            try:
                if self.chunk_size:  # one event a write, taken once its last chunk is out
                    played = player.prepare()
                    if conn.events_on and not played.hidden:
                        await conn.send(played.item.raw, self.chunk_size,
                                        lambda p=played: self._one_written(conn, player, p, True))
                    else:
                        self._one_written(conn, player, played, False)
                else:
                    await conn.send(batch, None)
                await self._follow_ups(conn, session.state)  # what the PBX did about it (ChanSpy)
            except ConnectionError:
                return
            if self.drop_after_events is not None and conn.replayed >= self.drop_after_events:
                conn.close()  # right after the N-th event, even if it was the last
                return
        if not conn.closing and self.runs.ends_run(session):
            self._pbx_died(session)

    def _one_written(self, conn: Connection, player: Player, played: Played, sent: bool) -> None:
        player.commit(played)
        if sent:
            conn.replayed += 1
            self._sent(played)
        self._notify()

    async def _replay_shared(self, player: Player) -> None:
        """The shared PBX's replay: on its own, to whoever listens (nobody: lost)."""
        assert self.broadcast is not None
        session = player.session
        while not session.finished:
            await self.replay_gate(self.broadcast.replayed)
            await player.wait()
            said = [p for p in player.batch(self._room(self.broadcast.replayed), True) if not p.hidden]
            for played in said:
                self._sent(played)
            self.broadcast.replayed_events([p.item.raw for p in said])
            self._notify()
            await self._follow_ups(None, session.state)
            if not self.speed:
                await self.broadcast.fastest_drained()
