"""A follower's hot standby (cluster.standby, bridge.pbx_link's standby mode): what its own AMI
session heard is spliced after the dead owner's last publication, so the new owner's model
is the one a model fed every event would hold, and what died unpublished with the owner is
published by the new one. No Redis, no PBX: the seat's network parts are stubs
(tests/cluster/test_takeover.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.ami.message import AmiFramer, AmiMessage, RawEvent, encode_message, is_plain_event, parse_block
from bridge.calls.events import CallEnded
from bridge.calls.inert_rules import touch_of
from bridge.calls.pipeline import CallPipeline
from cluster.standby import EARLIER, MARKS, SWAP_REACH, HotStandby
from cluster.stream_entries import StreamEntry
from tests.capture_facts import capture_bytes, capture_events
from tests.cluster.test_takeover import Log, seat_of


def published_by_owner(events: list[AmiMessage]) -> list[tuple[str, Any]]:
    """What an owner's link publishes of `events`: each fed event, each inert one's trace."""
    owner = CallPipeline()
    return [("event", e) if owner.feed(e) else ("seen", list(touch_of(e))) for e in events]


def logging_ends(pipeline: CallPipeline) -> list[str]:
    """The call log lines of every call `pipeline` ends from now on (replay_dict as JSON)."""
    ended: list[str] = []
    pipeline.subscribe(lambda e: ended.append(json.dumps(e.call.replay_dict(), sort_keys=True, default=str))
                       if isinstance(e, CallEnded) else None)
    return ended


def session_events(name: str) -> list[AmiMessage]:
    """A capture's events as any session hears them (its FullyBooted was the recorder's own)."""
    return [e for e in capture_events(name) if e.event != "FullyBooted"]


def session_blocks(name: str) -> list[AmiMessage | RawEvent]:
    """The same events as a standby session keeps them (bridge.ami's raw_sink): undecoded,
    but those that carry an ActionID (an OriginateResponse), which the client parses."""
    blocks = [block for block in AmiFramer().blocks(capture_bytes(name))
              if block.startswith(b"Event: ") and not block.startswith(b"Event: FullyBooted")]
    return [(0.0, block) if is_plain_event(block) else parse_block(block, 0.0) for block in blocks]


def test_a_standby_keeps_what_it_hears_undecoded_and_parses_only_what_it_looks_at() -> None:
    events, blocks = session_events("burst_20_calls"), session_blocks("burst_20_calls")
    assert [b if isinstance(b, AmiMessage) else parse_block(b[1], b[0]) for b in blocks] == events
    assert sum(isinstance(b, tuple) for b in blocks) > len(blocks) * 9 // 10
    published = published_by_owner(events)
    for cut in (1, 40, len(events) // 2, len(events) - 1):
        standby = standby_of(blocks, published[:cut])
        missed = standby.missed()
        assert missed == events[cut:] and all(isinstance(e, AmiMessage) for e in missed)
        # The search parsed some of the events from the log's end back to the splice point
        # (the ones its marks could be) and those that came parsed, not the rest.
        parsed = sum(isinstance(item, AmiMessage) for item in standby._heard)
        came_parsed = sum(isinstance(b, AmiMessage) for b in blocks)
        assert MARKS <= parsed <= came_parsed + MARKS + len(events) - cut
        assert parsed < len(events) // 4 or cut < len(events) // 2
    assert standby_of(blocks, published).missed() == []


def test_trimming_an_undecoded_log_keeps_the_splice_right() -> None:
    events, blocks = session_events("burst_20_calls"), session_blocks("burst_20_calls")
    published = published_by_owner(events)
    standby = HotStandby(trim_every=50)
    for index, block in enumerate(blocks):  # the stream runs 3 events behind our session
        hear(standby, block)
        if index >= 3:
            standby.published(*published[index - 3])
    assert len(standby) <= 50 + MARKS + EARLIER + SWAP_REACH + 3
    assert standby.missed() == events[-3:]


def hear(standby: HotStandby, item: AmiMessage | RawEvent) -> None:
    """What our session heard, as the client hands it: parsed, or undecoded (a run of one)."""
    if isinstance(item, AmiMessage):
        standby.heard(item)
    else:
        standby.heard_raw(item[0], [item[1]])


def standby_of(heard: list[AmiMessage] | list[AmiMessage | RawEvent], published: list[tuple[str, Any]],
               **kw: Any) -> HotStandby:
    standby = HotStandby(**kw)
    for event in heard:
        hear(standby, event)
    for kind, payload in published:
        standby.published(kind, payload)
    return standby


def test_what_follows_the_owners_last_publication_is_missed() -> None:
    events = session_events("burst_20_calls")
    published = published_by_owner(events)
    for cut in (1, 40, len(events) // 2, len(events) - 1):
        standby = standby_of(events, published[:cut])
        assert standby.missed() == events[cut:]
    assert standby_of(events, published).missed() == []


def test_repeats_of_the_last_event_do_not_mislead_the_splice() -> None:
    events = session_events("queue_answered")
    repeated = events[10]
    heard = [*events[:11], repeated, repeated, *events[11:]]  # the PBX said it thrice
    published = published_by_owner(events[:11])  # the owner published it once, then died
    assert standby_of(heard, published).missed() == heard[11:]


def test_no_splice_without_the_owners_publications_in_the_log() -> None:
    events = session_events("burst_20_calls")
    published = published_by_owner(events)
    assert standby_of(events[200:], published[:100]).missed() is None  # heard from later on
    assert standby_of(events, []).missed() is None  # nothing published since we followed
    standby = standby_of(events, published[:100])
    standby.session_lost()  # our session dropped: what it heard does not run on
    assert standby.missed() is None
    standby.following_anew()
    assert standby.splice_point() is None


def test_an_undated_event_matches_on_its_channel_alone() -> None:
    stamped = [e for e in capture_events("queue_answered") if e.event == "Newexten"][:3]
    undated = [AmiMessage([(k, v) for k, v in e.pairs if k != "Timestamp"], e.received_at) for e in stamped]
    heard = [AmiMessage(e.pairs, e.received_at + 0.5) for e in undated]  # read later by our session
    published = [("seen", list(touch_of(e))) for e in undated[:2]]
    assert standby_of(heard, published).missed() == heard[2:]


def test_trimming_keeps_the_log_short_and_the_splice_right() -> None:
    events = session_events("burst_20_calls")
    published = published_by_owner(events)
    standby = HotStandby(trim_every=50)
    for index, event in enumerate(events):  # the stream runs 3 events behind our session
        standby.heard(event)
        if index >= 3:
            standby.published(*published[index - 3])
    assert len(standby) <= 50 + MARKS + EARLIER + SWAP_REACH + 3
    assert standby.missed() == events[-3:]


@pytest.mark.parametrize("name", ["burst_20_calls", "attended_transfer", "queue_abandoned"])
async def test_a_takeover_feeds_and_publishes_what_died_with_the_owner(
        monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    events = capture_events(name)
    published = published_by_owner(events)
    cut = len(events) * 2 // 3  # the owner read on, but died having published only this much
    seat, pipeline, _ = seat_of(monkeypatch, Log([]))
    link = seat.link
    link.standing_by = True
    ended = logging_ends(pipeline)
    for seq, (kind, payload) in enumerate(published[:cut], 1):
        seat._on_entry(StreamEntry(f"1-{seq}", kind, 1, seq, "n1", payload))
    for event in events[:cut + 2]:  # our own session heard everything, fed none of it: some
        link._on_event(AmiMessage(event.pairs, event.received_at + 0.001))  # parsed (queued)
    for event in events[cut + 2:]:  # and the rest undecoded, as a standby keeps them
        link._heard_raw(event.received_at + 0.001, [encode_message(event.pairs)[:-4]])
    assert pipeline.events_in == cut

    await seat._acquired(2)

    assert not link.standing_by and link.running
    new_owner = seat.publisher.published  # the stub publisher of the new owner
    assert [kind for kind, _ in new_owner] == [kind for kind, _ in published[cut:]]
    assert [p.pairs if k == "event" else list(p) for k, p in new_owner] == [
        p.pairs if k == "event" else p for k, p in published[cut:]]
    # The model holds what one fed every event holds: the same calls, ended the same way.
    offline = CallPipeline()
    offline_ended = logging_ends(offline)
    rang: set[tuple[tuple[str, str], ...]] = set()
    for event in events:
        offline.feed(event)
        if offline.last_rang:
            rang.add(tuple(event.pairs))
    # Only what rang a phone goes at once; the rest may wait for company.
    urgency = dict(zip(map(id, new_owner), seat.publisher.urgent, strict=True))
    assert [urgency[id(entry)] for entry in new_owner if entry[0] == "event"] == [
        tuple(payload.pairs) in rang for kind, payload in new_owner if kind == "event"]
    assert not any(urgency[id(entry)] for entry in new_owner if entry[0] == "seen")
    assert ended == offline_ended and len(ended) >= 1
    assert sorted(c.call_id for c in pipeline.live_calls()) == sorted(c.call_id for c in offline.live_calls())


def test_a_log_behind_the_owners_stream_is_not_searched_whole_at_every_trim(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A standby that reads its socket every 50 ms hears events after the owner published
    # them: the marks are not in the log yet, and a trim that searched the whole log for them
    # each time made the follower's loop stall (O(n^2) over the log).
    events, blocks = session_events("burst_20_calls"), session_blocks("burst_20_calls")
    published = published_by_owner(events)
    standby = HotStandby(trim_every=50)
    for kind, payload in published[-MARKS:]:  # the owner is far ahead
        standby.published(kind, payload)
    looked = 0
    plain = HotStandby._matches

    def counted(self: HotStandby, mark: Any, index: int) -> bool:
        nonlocal looked
        looked += 1
        return plain(self, mark, index)

    monkeypatch.setattr(HotStandby, "_matches", counted)
    for block in blocks[:-MARKS]:
        hear(standby, block)
    assert looked <= 3 * len(blocks)  # each trim looks at its last 2 x 50 events at most
    standby.heard_raw(0.0, [b for _, b in blocks[-MARKS:]])  # our session catches up
    assert standby.missed() == []


def swapped(events: list[AmiMessage], at: int) -> list[AmiMessage]:
    """`events` as a session that got events `at` and `at + 1` the other way round."""
    return [*events[:at], events[at + 1], events[at], *events[at + 2:]]


@pytest.mark.parametrize("back", range(1, MARKS - 1))
def test_a_swap_among_the_last_publications_still_splices(back: int) -> None:
    # The owner published up to `cut`; our session got two of its last publications swapped.
    events = session_events("burst_20_calls")
    published, cut = published_by_owner(events), 600
    heard = swapped(events, cut - 1 - back)
    standby = standby_of(heard, published[:cut])
    assert standby.splice_point() is None  # no exact run of the last 8
    assert standby.missed() == events[cut:] and standby.swapped_splices == 1


def test_an_unpublished_event_swapped_before_the_last_publication_is_fed() -> None:
    events = session_events("burst_20_calls")
    published, cut = published_by_owner(events), 600
    heard = swapped(events, cut - 1)  # the owner's next event (never published) came first here
    assert standby_of(heard, published[:cut]).missed() == events[cut:]


def test_a_published_event_swapped_after_the_first_of_the_last_publications_is_not_fed_again() -> None:
    events = session_events("burst_20_calls")
    published, cut = published_by_owner(events), 600
    heard = swapped(events, cut - MARKS - 1)  # published before the last 8, came among them here
    assert standby_of(heard, published[:cut]).missed() == events[cut:]


def test_a_reordering_beyond_a_swap_finds_no_splice() -> None:
    events = session_events("burst_20_calls")
    published, cut = published_by_owner(events), 600
    heard = [*events[:cut - 6], events[cut - 2], *events[cut - 6:cut - 2], events[cut - 1], *events[cut:]]
    standby = standby_of(heard, published[:cut])
    assert standby.missed() is None and standby.swapped_splices == 0
