"""recordings: recording files, review comments, QA score cards

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from recordings.store / review_store (see 0001).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recording_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("operator", sa.String),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("file", sa.String),
        sa.Column("path", sa.String),
        sa.Column("format", sa.String, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("stopped_at", TS),
        sa.Column("offset_seconds", sa.Float, nullable=False),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("paused", sa.JSON, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("error", sa.String),
        sa.Column("checked_at", TS),
        sa.Column("purged_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recording_files"),
        sa.UniqueConstraint("call_id", "seq", name="uq_recording_files_call_id_seq"),
    )
    op.create_index("ix_recording_files_call_id", "recording_files", ["call_id"])
    op.create_index("ix_recording_files_operator", "recording_files", ["operator"])
    op.create_index("ix_recording_files_started_at", "recording_files", ["started_at"])

    op.create_table(
        "recording_comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recording_id", sa.Integer, nullable=False),
        sa.Column("at_seconds", sa.Float, nullable=False),
        sa.Column("text", sa.String, nullable=False),
        sa.Column("author", sa.String, nullable=False),
        sa.Column("author_role", sa.String),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recording_comments"),
        sa.ForeignKeyConstraint(["recording_id"], ["recording_files.id"], ondelete="CASCADE",
                                name="fk_recording_comments_recording_id_recording_files"),
    )
    op.create_index("ix_recording_comments_recording_id", "recording_comments", ["recording_id"])

    op.create_table(
        "recording_scores",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recording_id", sa.Integer, nullable=False),
        sa.Column("operator", sa.String),
        sa.Column("reviewer", sa.String, nullable=False),
        sa.Column("criteria", sa.JSON, nullable=False),
        sa.Column("scores", sa.JSON, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("max_total", sa.Integer, nullable=False),
        sa.Column("comment", sa.String),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recording_scores"),
        sa.ForeignKeyConstraint(["recording_id"], ["recording_files.id"], ondelete="CASCADE",
                                name="fk_recording_scores_recording_id_recording_files"),
        sa.UniqueConstraint("recording_id", "reviewer", name="uq_recording_scores_recording_id_reviewer"),
    )
    op.create_index("ix_recording_scores_operator", "recording_scores", ["operator"])


def downgrade() -> None:
    op.drop_index("ix_recording_scores_operator", table_name="recording_scores")
    op.drop_table("recording_scores")
    op.drop_index("ix_recording_comments_recording_id", table_name="recording_comments")
    op.drop_table("recording_comments")
    for name in ("started_at", "operator", "call_id"):
        op.drop_index(f"ix_recording_files_{name}", table_name="recording_files")
    op.drop_table("recording_files")
