"""Reviews of recordings: timestamped comments and QA score cards (migration 0005).

A score card is scored against the criteria configured at the time (names and maximum
points); the row keeps that card with the points, so a later change of the criteria does
not rewrite old scores. One card per reviewer and recording (scoring again replaces it).
The operator is copied onto the score row: per-operator figures need no join.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from bridge.call_log.store import CallLogStore
from bridge.call_log.tables import Base, UtcDateTime
from recordings.settings import Criterion
from recordings.store import FILES, RecordingInfo

MAX_COMMENT = 2000


class RecordingCommentRow(Base):
    __tablename__ = "recording_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("recording_files.id", ondelete="CASCADE"), nullable=False)
    at_seconds: Mapped[float] = mapped_column(Float, nullable=False)  # position in the recording
    text: Mapped[str] = mapped_column(String, nullable=False)
    author: Mapped[str] = mapped_column(String, nullable=False)
    author_role: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (Index("ix_recording_comments_recording_id", "recording_id"),)


class RecordingScoreRow(Base):
    __tablename__ = "recording_scores"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    recording_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("recording_files.id", ondelete="CASCADE"), nullable=False)
    operator: Mapped[str | None] = mapped_column(String)
    reviewer: Mapped[str] = mapped_column(String, nullable=False)
    criteria: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)  # the card used
    scores: Mapped[dict[str, int]] = mapped_column(JSON, nullable=False)
    total: Mapped[int] = mapped_column(Integer, nullable=False)
    max_total: Mapped[int] = mapped_column(Integer, nullable=False)
    comment: Mapped[str | None] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)

    __table_args__ = (
        UniqueConstraint("recording_id", "reviewer", name="uq_recording_scores_recording_id_reviewer"),
        Index("ix_recording_scores_operator", "operator"),
    )


COMMENTS, SCORES = RecordingCommentRow.__table__, RecordingScoreRow.__table__


class ReviewError(ValueError):
    """A comment or score card that does not fit (worded for the reviewer)."""


class Comment(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    recording_id: int
    at_seconds: float
    text: str
    author: str
    author_role: str | None
    created_at: datetime


class ScoreCard(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    recording_id: int
    operator: str | None
    reviewer: str
    criteria: list[Criterion]
    scores: dict[str, int]
    total: int
    max_total: int
    comment: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def percent(self) -> float:
        return round(100.0 * self.total / self.max_total, 1) if self.max_total else 0.0


class ReviewedRecording(BaseModel):
    """An operator's own reviewed call: the recording, its cards and comments."""

    recording: RecordingInfo
    scores: list[ScoreCard]
    comments: list[Comment]


class OperatorSummary(BaseModel):
    operator: str
    cards: int
    total: int
    max_total: int
    percent: float
    by_criterion: dict[str, float]  # average points per criterion


def validate_scores(criteria: Sequence[Criterion], scores: Mapping[str, Any]) -> dict[str, int]:
    """Every configured criterion scored, none unknown, each 0..max points (whole numbers)."""
    names = {c.name: c for c in criteria}
    unknown = sorted(set(scores) - set(names))
    if unknown:
        raise ReviewError(f"unknown criteria: {', '.join(unknown)}")
    missing = [c.name for c in criteria if c.name not in scores]
    if missing:
        raise ReviewError(f"not scored: {', '.join(missing)}")
    clean = {}
    for name, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ReviewError(f"{name}: points must be a whole number")
        if not 0 <= value <= names[name].max_points:
            raise ReviewError(f"{name}: points must be 0..{names[name].max_points}")
        clean[name] = value
    return clean


def clean_text(text: Any, limit: int = MAX_COMMENT) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ReviewError("the text is empty")
    text = text.strip()
    if len(text) > limit:
        raise ReviewError(f"the text is longer than {limit} characters")
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
        raise ReviewError("the text has control characters")
    return text


def _card(row: Any) -> ScoreCard:
    return ScoreCard(id=row.id, recording_id=row.recording_id, operator=row.operator, reviewer=row.reviewer,
                     criteria=[Criterion(**c) for c in row.criteria], scores=dict(row.scores),
                     total=row.total, max_total=row.max_total, comment=row.comment,
                     created_at=row.created_at, updated_at=row.updated_at)


def _comment(row: Any) -> Comment:
    return Comment(id=row.id, recording_id=row.recording_id, at_seconds=row.at_seconds, text=row.text,
                   author=row.author, author_role=row.author_role, created_at=row.created_at)


class ReviewStore:
    def __init__(self, store: CallLogStore, criteria: Sequence[Criterion]) -> None:
        self.store = store
        self.criteria = list(criteria)

    async def add_comment(self, recording: RecordingInfo, at_seconds: Any, text: Any, *, author: str,
                          author_role: str | None = None) -> Comment:
        if isinstance(at_seconds, bool) or not isinstance(at_seconds, int | float):
            raise ReviewError("at_seconds must be a number")
        length = recording.duration_seconds
        beyond = length is not None and at_seconds > length + 1
        if not math.isfinite(at_seconds) or at_seconds < 0 or beyond:
            raise ReviewError(f"at_seconds must be within the recording (0..{length or 0:g} s)")
        values = {"recording_id": recording.id, "at_seconds": float(at_seconds), "text": clean_text(text),
                  "author": author, "author_role": author_role, "created_at": datetime.now(UTC)}
        async with self.store.engine.begin() as conn:
            result = await conn.execute(insert(COMMENTS).values(**values).returning(COMMENTS.c.id))
            new_id = result.scalar_one()
        return Comment(id=new_id, **values)

    async def comments(self, recording_ids: Sequence[int]) -> list[Comment]:
        if not recording_ids:
            return []
        query = (select(COMMENTS).where(COMMENTS.c.recording_id.in_(list(recording_ids)))
                 .order_by(COMMENTS.c.recording_id, COMMENTS.c.at_seconds, COMMENTS.c.id))
        async with self.store.engine.connect() as conn:
            return [_comment(r) for r in (await conn.execute(query)).all()]

    async def score(self, recording: RecordingInfo, scores: Mapping[str, Any], *, reviewer: str,
                    comment: Any = None) -> ScoreCard:
        """Score `recording` on the configured card (replacing this reviewer's earlier card)."""
        clean = validate_scores(self.criteria, scores)
        note = None if comment in (None, "") else clean_text(comment)
        now = datetime.now(UTC)
        values = {"recording_id": recording.id, "operator": recording.operator, "reviewer": reviewer,
                  "criteria": [c.model_dump() for c in self.criteria], "scores": clean,
                  "total": sum(clean.values()), "max_total": sum(c.max_points for c in self.criteria),
                  "comment": note, "updated_at": now}
        async with self.store.engine.begin() as conn:
            found = (await conn.execute(select(SCORES.c.id).where(
                SCORES.c.recording_id == recording.id, SCORES.c.reviewer == reviewer))).scalar_one_or_none()
            if found is None:
                await conn.execute(insert(SCORES).values(**values, created_at=now))
            else:
                await conn.execute(update(SCORES).where(SCORES.c.id == found).values(**values))
            row = (await conn.execute(select(SCORES).where(
                SCORES.c.recording_id == recording.id, SCORES.c.reviewer == reviewer))).one()
        return _card(row)

    async def scores(self, *, recording_ids: Sequence[int] | None = None,
                     operators: Sequence[str] | None = None, pbx: str | None = None) -> list[ScoreCard]:
        """Score cards (of these recordings, of these operators' extensions on PBX `pbx`)."""
        query = select(SCORES).order_by(SCORES.c.recording_id, SCORES.c.id)
        if recording_ids is not None:
            query = query.where(SCORES.c.recording_id.in_(list(recording_ids)))
        if operators is not None:
            query = query.where(SCORES.c.operator.in_(list(operators)))
        if pbx is not None:  # an extension is a PBX's: another PBX's 101 is another person
            query = query.where(SCORES.c.recording_id.in_(select(FILES.c.id).where(FILES.c.pbx == pbx)))
        async with self.store.engine.connect() as conn:
            return [_card(r) for r in (await conn.execute(query)).all()]

    async def reviewed_ids(self, operators: Sequence[str], pbx: str | None = None) -> list[int]:
        """Recordings of these operators (extensions of PBX `pbx`) that have a score card or a comment."""
        if not operators:
            return []
        on_pbx = [FILES.c.pbx == pbx] if pbx is not None else []
        scored = select(SCORES.c.recording_id).where(SCORES.c.operator.in_(list(operators)))
        if pbx is not None:
            scored = scored.where(SCORES.c.recording_id.in_(select(FILES.c.id).where(*on_pbx)))
        commented = (select(COMMENTS.c.recording_id).join(FILES, FILES.c.id == COMMENTS.c.recording_id)
                     .where(FILES.c.operator.in_(list(operators)), *on_pbx))
        async with self.store.engine.connect() as conn:
            ids = {r[0] for r in (await conn.execute(scored.union(commented))).all()}
        return sorted(ids)

    async def operator_summary(self, operator: str, pbx: str | None = None) -> OperatorSummary:
        """An operator's scores (his extension on PBX `pbx`; every PBX's when None)."""
        cards = await self.scores(operators=[operator], pbx=pbx)
        total, max_total = sum(c.total for c in cards), sum(c.max_total for c in cards)
        points: dict[str, list[int]] = {}
        for card in cards:
            for name, value in card.scores.items():
                points.setdefault(name, []).append(value)
        return OperatorSummary(
            operator=operator, cards=len(cards), total=total, max_total=max_total,
            percent=round(100.0 * total / max_total, 1) if max_total else 0.0,
            by_criterion={name: round(sum(v) / len(v), 2) for name, v in points.items()})

    async def count(self) -> tuple[int, int]:
        """(comments, score cards): for tests and the status page."""
        async with self.store.engine.connect() as conn:
            comments = (await conn.execute(select(func.count()).select_from(COMMENTS))).scalar_one()
            cards = (await conn.execute(select(func.count()).select_from(SCORES))).scalar_one()
        return int(comments), int(cards)
