"""Wiring: recording on answer and the review room attached to the running bridge
(web.features)."""

from __future__ import annotations

from recordings.http import RecordingsApi, setup_recordings
from recordings.pages import add_review_pages
from recordings.recorder import RAW_EVENTS, Recorder
from recordings.review_store import ReviewStore
from recordings.settings import RecordingSettings
from recordings.store import RecordingStore
from web.audit_log import AuditLog
from web.features import BridgeParts, run_with_app


def attach_recordings(parts: BridgeParts, settings: RecordingSettings) -> Recorder:
    """The recorder (MixMonitor by policy on every answer, sent to the call's PBX, pause/resume,
    the after-call file check) subscribed to the model, and the review room's pages and API on the app; the
    recorder starts and stops with the app."""
    store = RecordingStore(parts.store)
    # Date folders in each call's PBX's zone (when [recordings] timezone is not set).
    zones = {pbx: parts.timezone_of(pbx) for pbx in parts.pbxes}
    recorder = Recorder(settings, parts.send_action, store, zones=zones)
    main = parts.pbxes[0]
    # Only the PBX's owner records (one node in a cluster): every node would start a MixMonitor.
    parts.pipeline.subscribe(lambda event: recorder.handle(event) if parts.owns(event.call.pbx) else None)
    parts.pipeline.subscribe_raw(
        lambda event: recorder.on_ami_event(event) if parts.owns(event.pbx or main) else None, RAW_EVENTS)
    parts.on_owned(recorder.adopt)  # a cluster's takeover: the last owner's unfinished rows
    reviews = ReviewStore(parts.store, settings.review_criteria)
    setup_recordings(parts.app, RecordingsApi(settings, store, reviews, AuditLog(parts.store), parts.store,
                                              recorder, pbxes=parts.pbxes))
    add_review_pages(parts.app)
    run_with_app(parts.app, recorder.start, recorder.stop)
    return recorder
