"""Recordings over HTTP: the list, one recording with its call's timeline, the audio (with
Range), review comments and QA scores, an operator's own reviews, pause/resume.

    api = RecordingsApi(settings.recordings, RecordingStore(store), ReviewStore(store, criteria),
                        AuditLog(store), store, recorder)
    setup_recordings(app, api)      # after setup_auth (its middleware sets request[USER_KEY])

Who sees what (recordings.access): trainers, supervisors and admins every recording; an
operator only those made on his own extensions of his own PBX. Every recording
names its `pbx`; the list takes `?pbx=ID` (one of the configured PBXes, else 400) and says
which PBXes there are (`pbxes`).
Every play/download, comment, score, pause/resume and every refusal (other's recording, a
path-like parameter, a role) is written to the audit log. Every parameter is checked for
path trickery (`..`, slashes, encoded ones, NUL) and the file served is re-resolved under
the recordings folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bridge.call_log.store import CallLogStore
from bridge.calls.record import DEFAULT_PBX
from recordings.access import CONTROLLERS, REVIEWERS, SEE_ALL, is_mine, may_see, own_pbx, stored_ids
from recordings.http_shapes import SERVABLE, card_json, dump_recording, timeline
from recordings.naming import UnsafePath, check_parameter, resolve_under, valid_call_id, valid_operator
from recordings.ranges import unsatisfiable_range
from recordings.recorder import NoActiveRecording, Recorder, RecordingControlError
from recordings.review_store import ReviewError, ReviewStore
from recordings.settings import RecordingSettings
from recordings.store import RecordingInfo, RecordingStore
from web.access import USER_KEY, error_response, require_role
from web.audit_log import AuditLog
from web.users import ROLES, User, resolve_pbx

_STATUSES = ("starting", "recording", "stopped", "ok", "missing", "empty", "failed", "external", "purged")
_LIST_PARAMS = {"operator", "call_id", "since", "until", "status", "pbx", "limit", "offset"}
NO_STORE = {"Cache-Control": "no-store"}


@dataclass
class RecordingsApi:
    settings: RecordingSettings
    store: RecordingStore
    reviews: ReviewStore
    audit: AuditLog
    call_log: CallLogStore
    recorder: Recorder | None = None
    pbxes: tuple[str, ...] = field(default=(DEFAULT_PBX,))  # the PBXes' ids, the first (main) one first


RECORDINGS_KEY = web.AppKey("callbridge_recordings", RecordingsApi)


class _Refused(Exception):
    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def setup_recordings(app: web.Application, api: RecordingsApi) -> None:
    app[RECORDINGS_KEY] = api
    prefix = api.settings.url_prefix
    app.router.add_get("/api/recordings", list_recordings)
    app.router.add_get("/api/recordings/{id}", get_recording)
    app.router.add_get(prefix + "/{id}/audio", audio)
    app.router.add_post("/api/recordings/{id}/comments", add_comment)
    app.router.add_post("/api/recordings/{id}/score", score)
    app.router.add_get("/api/reviews/mine", my_reviews)
    app.router.add_get("/api/reviews/criteria", criteria)
    app.router.add_get("/api/reviews/operators/{operator}", operator_summary)
    app.router.add_post("/api/calls/{call_id}/recording/{verb}", control)


# -- helpers ------------------------------------------------------------------------------

def _api(request: web.Request) -> RecordingsApi:
    return request.app[RECORDINGS_KEY]


def _user(request: web.Request) -> User:
    return request[USER_KEY]


async def _audit(request: web.Request, action: str, target: str | None, result: str = "ok",
                 **detail: Any) -> None:
    user = _user(request)
    await _api(request).audit.record(user.username, action, role=user.role, target=target, result=result,
                                     detail={k: v for k, v in detail.items() if v is not None},
                                     remote=request.remote)


async def _refuse(request: web.Request, action: str, target: str | None, refused: _Refused) -> web.Response:
    result = {403: "denied", 400: "refused", 416: "refused"}.get(refused.status, "not_found")
    await _audit(request, action, target, result, reason=refused.message,
                 path=request.rel_url.raw_path[:300])
    return error_response(request, refused.status, refused.error, refused.message)


def _check_all_parameters(request: web.Request) -> None:
    """No parameter anywhere (path or query, keys and values) may look like a path."""
    try:
        for name, value in request.match_info.items():
            check_parameter(name, value)
        for name, value in request.query.items():
            check_parameter("query", name)
            check_parameter(name, value)
    except UnsafePath as exc:
        raise _Refused(400, "bad_parameter", str(exc)) from None
    if ".." in request.rel_url.raw_path or "%2e%2e" in request.rel_url.raw_path.lower():
        raise _Refused(400, "bad_parameter", "path characters are not allowed")


def _recording_id(request: web.Request) -> int:
    raw = request.match_info.get("id", "")
    if not raw.isdigit() or len(raw) > 15:
        raise _Refused(400, "bad_parameter", "a recording id is a number")
    return int(raw)


async def _visible(request: web.Request) -> RecordingInfo:
    _check_all_parameters(request)
    rec = await _api(request).store.get(_recording_id(request))
    if rec is None:
        raise _Refused(404, "not_found", "No such recording.")
    if not may_see(_api(request).pbxes, _user(request), rec):
        raise _Refused(403, "forbidden", "This recording is another operator's.")
    return rec


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        raise _Refused(400, "bad_request", "The body must be JSON.") from None
    if not isinstance(body, dict):
        raise _Refused(400, "bad_request", "The body must be a JSON object.")
    return body


def _datetime(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _Refused(400, "bad_parameter", f"{name}: an ISO date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int(name: str, value: str | None, default: int, top: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) > top:
        raise _Refused(400, "bad_parameter", f"{name}: a whole number up to {top}")
    return int(value)


# -- handlers -----------------------------------------------------------------------------

@require_role(*ROLES)
async def list_recordings(request: web.Request) -> web.StreamResponse:
    user, api = _user(request), _api(request)
    try:
        _check_all_parameters(request)
        q = request.query
        unknown = set(q) - _LIST_PARAMS
        if unknown:
            raise _Refused(400, "bad_parameter", f"unknown parameters: {', '.join(sorted(unknown))}")
        operator, call_id, status, pbx = q.get("operator"), q.get("call_id"), q.get("status"), q.get("pbx")
        if operator is not None and not valid_operator(operator):
            raise _Refused(400, "bad_parameter", "operator: an extension (digits)")
        if call_id is not None and not valid_call_id(call_id):
            raise _Refused(400, "bad_parameter", "call_id: digits and a dot, after a PBX's id and a colon")
        if status is not None and status not in _STATUSES:
            raise _Refused(400, "bad_parameter", f"status: one of {', '.join(_STATUSES)}")
        if pbx is not None and pbx not in api.pbxes:
            raise _Refused(400, "bad_parameter", f"pbx: one of {', '.join(api.pbxes)}")
        operators: list[str] | None = [operator] if operator else None
        if user.role not in SEE_ALL:
            own = own_pbx(api.pbxes, user)
            if (operator is not None and operator not in user.extensions) or pbx not in (None, own):
                raise _Refused(403, "forbidden", "Operators see only their own recordings.")
            operators, pbx = [operator] if operator else list(user.extensions), own
        found = await api.store.search(
            operators=operators, call_id=call_id, since=_datetime("since", q.get("since")),
            until=_datetime("until", q.get("until")), statuses=[status] if status else None,
            pbx=None if pbx is None else stored_ids(api.pbxes, pbx),
            limit=_int("limit", q.get("limit"), 100, 1000), offset=_int("offset", q.get("offset"), 0, 10**9))
    except _Refused as refused:
        return await _refuse(request, "recording.list", None, refused)
    return web.json_response({"recordings": [_dump(api, r) for r in found], "pbxes": list(api.pbxes)},
                             headers=NO_STORE)


@require_role(*ROLES)
async def get_recording(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    try:
        rec = await _visible(request)
    except _Refused as refused:
        return await _refuse(request, "recording.view", request.match_info.get("id"), refused)
    assert rec.id is not None
    call = await api.call_log.get(rec.call_id)
    comments = await api.reviews.comments([rec.id])
    cards = await api.reviews.scores(recording_ids=[rec.id])
    return web.json_response({
        "recording": _dump(api, rec),
        "call": call.replay_dict() if call is not None else None,
        "timeline": timeline(call, rec),
        "comments": [c.model_dump(mode="json") for c in comments],
        "scores": [card_json(c) for c in cards],
    }, headers=NO_STORE)


@require_role(*ROLES)
async def audio(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    download = request.query.get("download") in ("1", "true")
    action = "recording.download" if download else "recording.play"
    target = request.match_info.get("id")
    try:
        rec = await _visible(request)
        if rec.status not in SERVABLE or rec.path is None:
            raise _Refused(404, "not_found", f"The recording is {rec.status}: there is no audio to play.")
        try:
            path = resolve_under(api.settings.directory, rec.path)
        except UnsafePath as exc:
            raise _Refused(404, "not_found", f"refused stored path ({exc})") from None
        if not path.is_file():
            raise _Refused(404, "not_found", "The recording's file is gone.")
        size = path.stat().st_size
        unsatisfiable = unsatisfiable_range(request, path, size)
        if unsatisfiable:  # FileResponse would answer 416 itself, after we audited "ok"
            raise _Refused(416, "range_not_satisfiable", unsatisfiable)
    except _Refused as refused:
        response = await _refuse(request, action, target, refused)
        if refused.status == 416:
            response.headers["Content-Range"] = f"bytes */{size}"
        return response
    await _audit(request, action, str(rec.id), call_id=rec.call_id, operator=rec.operator,
                 range=request.headers.get("Range"))
    headers = {"Content-Type": "audio/wav", "Cache-Control": "private, no-store",
               "X-Content-Type-Options": "nosniff"}
    if download:
        name = rec.call_id.replace(":", "-")  # "b:1795..." : no colon in a saved file's name
        headers["Content-Disposition"] = f'attachment; filename="call-{name}-{rec.seq}.wav"'
    return web.FileResponse(path, headers=headers)


@require_role(*ROLES)
async def add_comment(request: web.Request) -> web.StreamResponse:
    api, user = _api(request), _user(request)
    target = request.match_info.get("id")
    try:
        rec = await _visible(request)
        if user.role not in REVIEWERS:
            raise _Refused(403, "forbidden", "Only trainers and supervisors comment on recordings.")
        body = await _json_body(request)
        try:
            comment = await api.reviews.add_comment(rec, body.get("at_seconds"), body.get("text"),
                                                    author=user.username, author_role=user.role)
        except ReviewError as exc:
            raise _Refused(400, "bad_request", str(exc)) from None
    except _Refused as refused:
        return await _refuse(request, "recording.comment", target, refused)
    await _audit(request, "recording.comment", str(rec.id), at_seconds=comment.at_seconds,
                 comment_id=comment.id, operator=rec.operator)
    return web.json_response(comment.model_dump(mode="json"), status=201)


@require_role(*ROLES)
async def score(request: web.Request) -> web.StreamResponse:
    api, user = _api(request), _user(request)
    target = request.match_info.get("id")
    try:
        rec = await _visible(request)
        if user.role not in REVIEWERS:
            raise _Refused(403, "forbidden", "Only trainers and supervisors score recordings.")
        body = await _json_body(request)
        scores = body.get("scores")
        if not isinstance(scores, dict):
            raise _Refused(400, "bad_request", "`scores` must be an object of criterion: points.")
        try:
            card = await api.reviews.score(rec, scores, reviewer=user.username, comment=body.get("comment"))
        except ReviewError as exc:
            raise _Refused(400, "bad_request", str(exc)) from None
    except _Refused as refused:
        return await _refuse(request, "recording.score", target, refused)
    await _audit(request, "recording.score", str(rec.id), operator=rec.operator, total=card.total,
                 max_total=card.max_total)
    return web.json_response(card_json(card))


@require_role(*ROLES)
async def my_reviews(request: web.Request) -> web.StreamResponse:
    """The operator's own reviewed calls, with their score cards and comments."""
    api, user = _api(request), _user(request)
    try:
        _check_all_parameters(request)
    except _Refused as refused:
        return await _refuse(request, "review.mine", None, refused)
    own = own_pbx(api.pbxes, user)  # his extensions are his PBX's
    ids = await api.reviews.reviewed_ids(user.extensions, own)
    recs = await api.store.search(ids=ids, limit=1000) if ids else []
    cards = await api.reviews.scores(recording_ids=ids) if ids else []
    comments = await api.reviews.comments(ids)
    summaries = [await api.reviews.operator_summary(ext, own) for ext in user.extensions]
    return web.json_response({
        "reviews": [{
            "recording": _dump(api, rec),
            "scores": [card_json(c) for c in cards if c.recording_id == rec.id],
            "comments": [c.model_dump(mode="json") for c in comments if c.recording_id == rec.id],
        } for rec in recs],
        "summary": [s.model_dump() for s in summaries],
    }, headers=NO_STORE)


@require_role(*ROLES)
async def criteria(request: web.Request) -> web.StreamResponse:
    return web.json_response({"criteria": [c.model_dump() for c in _api(request).reviews.criteria]})


@require_role(*ROLES)
async def operator_summary(request: web.Request) -> web.StreamResponse:
    user, api = _user(request), _api(request)
    operator = request.match_info.get("operator", "")
    try:
        _check_all_parameters(request)
        if not valid_operator(operator):
            raise _Refused(400, "bad_parameter", "operator: an extension (digits)")
        pbx = request.query.get("pbx") or None  # whose extension (every PBX's when not named)
        if pbx is not None and pbx not in api.pbxes:
            raise _Refused(400, "bad_parameter", f"pbx: one of {', '.join(api.pbxes)}")
        if user.role not in SEE_ALL:
            if operator not in user.extensions or pbx not in (None, own_pbx(api.pbxes, user)):
                raise _Refused(403, "forbidden", "Operators see only their own scores.")
            pbx = own_pbx(api.pbxes, user)
    except _Refused as refused:
        return await _refuse(request, "review.summary", operator[:40], refused)
    summary = await api.reviews.operator_summary(operator, pbx)
    return web.json_response(summary.model_dump(), headers=NO_STORE)


@require_role(*ROLES)
async def control(request: web.Request) -> web.StreamResponse:
    """POST /api/calls/{call_id}/recording/pause|resume (e.g. while the caller reads a card number)."""
    api, user = _api(request), _user(request)
    call_id, verb = request.match_info.get("call_id", ""), request.match_info.get("verb", "")
    action = f"recording.{verb}" if verb in ("pause", "resume") else "recording.control"
    try:
        _check_all_parameters(request)
        if verb not in ("pause", "resume") or not valid_call_id(call_id):
            raise _Refused(400, "bad_parameter", "POST /api/calls/<call id>/recording/pause or resume")
        recorder = api.recorder
        active = recorder.active(call_id) if recorder is not None else []
        if recorder is None or not active:
            raise _Refused(404, "not_found", "This call has no running recording.")
        mine = any(is_mine(api.pbxes, user, r) for r in active)
        if user.role not in CONTROLLERS and not (user.role == "operator" and mine):
            raise _Refused(403, "forbidden", "Only the call's operator or a supervisor may do this.")
        try:
            done = await (recorder.pause(call_id) if verb == "pause" else recorder.resume(call_id))
        except NoActiveRecording:
            raise _Refused(404, "not_found", "This call has no running recording.") from None
        except RecordingControlError as exc:
            await _audit(request, action, call_id, "failed", reason=str(exc))
            return error_response(request, 502, "pbx_refused", str(exc))
    except _Refused as refused:
        return await _refuse(request, action, call_id[:40], refused)
    await _audit(request, action, call_id, recordings=[r.seq for r in done])
    return web.json_response({"call_id": call_id, "paused": verb == "pause",
                              "recordings": [_dump(api, r) for r in done]})


def _dump(api: RecordingsApi, rec: RecordingInfo) -> dict[str, Any]:
    """The recording as the pages see it, its PBX as configured now ("main" rows: the first)."""
    shown = rec.model_copy(update={"pbx": resolve_pbx(rec.pbx, api.pbxes)})
    return dump_recording(shown, api.settings.url_prefix)
