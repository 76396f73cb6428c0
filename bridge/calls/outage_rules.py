"""Outage rules of the call-state model: a PBX that restarts, crashes or drops the link.

Nothing lost, nothing invented. A call whose end we could not see ends at the last moment
the PBX proved it alive (an event about it, any later event, a Ping reply), marked
`ended_by="pbx_lost"`: the outage is never counted as talk. A restarted PBX reuses channel
names (`-00000000` again) and Uniqueid sequences (`.0` again), so a new boot starts from a
clean model. Proven on pbx_restart_part1/part2. Mixed into CallTracker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.ami.message import AmiMessage
from bridge.calls.record import CallRecord
from bridge.calls.working import Call

if TYPE_CHECKING:
    from bridge.calls.tracker import CallTracker

log = logging.getLogger(__name__)

# How long after a resync's snapshot a Hangup it missed may still come: Asterisk drops a
# channel from its cache before the stasis thread queues its Hangup event (dated then), and
# writes an action's answer before the events queued while it ran. Milliseconds, normally.
LATE_EVENT_MARGIN = 2.0

# FullyBooted's Uptime is whole seconds and its time is the next event's: boots closer
# than this are the same boot.
BOOT_TOLERANCE = 2.0


class OutageRules:
    def restore(self: CallTracker, records: list[CallRecord]) -> None:
        """Calls the log says were live when the bridge last stopped (or, in a cluster, when
        the last owner died). The next resync re-attaches their channels, or closes them if
        they ended meanwhile."""
        for record in records:
            if record.ended_at is None and record.pbx == self.pbx:
                call = Call.from_record(record, self.id_prefix)
                if call.call_id not in self._ended:  # never revive a call we saw end
                    self.calls.setdefault(call.call_id, call)

    def outage_handlers(self: CallTracker) -> dict[str, Callable[[AmiMessage, float], None]]:
        return {"FullyBooted": self._on_fully_booted}

    def link_lost(self: CallTracker) -> None:
        """The connection to the PBX is gone: what we know of it ends at its last proof of life."""
        if self._gap_from is None:
            self._gap_from = self.last_alive_at

    def link_resynced(self: CallTracker) -> None:
        """The PBX's live picture is applied: the gap is closed."""
        self._gap_from = None

    def hold_lost(self: CallTracker, call: Call, snapshot_at: float) -> None:
        """Resync: nothing of `call` is live, but its last events may still be on the wire.
        Asterisk writes an action's answer as it runs and the events raised meanwhile after
        it (`process_message`, main/manager.c), so the Hangup of a channel gone just before
        the CoreShowChannels list can follow the list, dated a little after it. The call
        keeps its channels until the first event or proof of life dated LATE_EVENT_MARGIN
        after the snapshot (`settle_lost`): a late Hangup ends it as a hang-up, at its time;
        else it ends lost, where `end_lost` would have ended it at the resync."""
        self._held_lost.setdefault(call.call_id, (snapshot_at, self._gap_from))

    def settle_lost(self: CallTracker, at: float) -> None:
        """The PBX spoke at `at` (its clock): held calls whose snapshot is older by the margin
        have had every late event they could get; those still live ended out of our sight."""
        for call_id, (snapshot_at, gap_from) in list(self._held_lost.items()):
            if at <= snapshot_at + LATE_EVENT_MARGIN:
                continue
            del self._held_lost[call_id]
            call = self.calls.get(call_id)
            if call is not None and call.ended_at is None:
                self._end_unseen(call, gap_from)  # the gap open when the resync held it

    def end_lost(self: CallTracker, call: Call) -> None:
        """A call that ended out of our sight: at its last proof of life, never later."""
        self._end_unseen(call, self._gap_from)

    def _end_unseen(self: CallTracker, call: Call, gap_from: float | None) -> None:
        at = max(call.last_seen_at, gap_from) if gap_from else call.last_seen_at
        self.end_call(call, max(at, call.entered_at), incomplete=True, lost=True)

    def _on_fully_booted(self: CallTracker, ev: AmiMessage, at: float) -> None:
        # FullyBooted has no Timestamp: the boot's time is fixed by the next event that has one.
        try:
            self._boot_uptime = float(ev.get("Uptime") or "")
        except ValueError:
            self._boot_uptime = None

    def _check_boot(self: CallTracker, pbx_time: float) -> None:
        uptime, self._boot_uptime = self._boot_uptime, None
        if uptime is None:
            return
        booted_at = pbx_time - uptime
        previous, self.booted_at = self.booted_at, booted_at
        restarted = previous is not None and booted_at - previous > BOOT_TOLERANCE
        # No call that started before this boot survived it (calls restored from the log too).
        stale = [c for c in self.live_calls() if c.entered_at < booted_at - BOOT_TOLERANCE]
        if not restarted and not stale:
            return
        log.warning("the PBX restarted (up since %.0f s): %d call(s) it had are closed at its last "
                    "proof of life", uptime, len(stale))
        had_gap = self._gap_from is not None  # the service saw the link go: keep its gap open
        self.link_lost()
        for call in stale:
            self.end_lost(call)
        if restarted:
            # Channel names and Uniqueid sequences start over: nothing of the old boot may
            # capture the new boot's channels.
            self._channel_call.clear()
            self._dead.clear()
            self._ended.clear()
            self._pending_recording_file.clear()
        if not had_gap:
            self.link_resynced()
