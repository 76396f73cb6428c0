"""call log: calls with their rings, transfers and recordings

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from the ORM: a migration must not change when the
# models do. Times are UTC `timestamptz` (kept as naive UTC text by SQLite).
TS = sa.DateTime(timezone=True)


def _child(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        *columns,
        sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
        sa.ForeignKeyConstraint(["call_id"], ["calls.call_id"], name=f"fk_{name}_call_id_calls",
                                ondelete="CASCADE"),
    )
    op.create_index(f"ix_{name}_call_id", name, ["call_id"])


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String, nullable=False),
        sa.Column("caller_number", sa.String),
        sa.Column("caller_name", sa.String),
        sa.Column("queue", sa.String),
        sa.Column("dialed", sa.String),
        sa.Column("answered_by", sa.String),
        sa.Column("rung", sa.JSON, nullable=False),
        sa.Column("outcome", sa.String),
        sa.Column("internal", sa.Boolean, nullable=False),
        sa.Column("entered_at", TS, nullable=False),
        sa.Column("answered_at", TS),
        sa.Column("ended_at", TS),
        sa.Column("wait_seconds", sa.Float, nullable=False),
        sa.Column("talk_seconds", sa.Float, nullable=False),
        sa.Column("recording", sa.String),
        sa.Column("attached_mid_call", sa.Boolean, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="pk_calls"),
    )
    op.create_index("ix_calls_entered_at", "calls", ["entered_at"])
    op.create_index("ix_calls_caller_number", "calls", ["caller_number"])
    _child(
        "call_rings",
        sa.Column("operator", sa.String, nullable=False),
        sa.Column("queue", sa.String),
        sa.Column("member_name", sa.String),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS),
        sa.Column("answered_at", TS),
        sa.Column("result", sa.String),
    )
    _child(
        "call_transfers",
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("from_operator", sa.String),
        sa.Column("to_operator", sa.String),
        sa.Column("at", TS, nullable=False),
    )
    _child(
        "call_recordings",
        sa.Column("file", sa.String),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("operator", sa.String),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("stopped_at", TS),
    )


def downgrade() -> None:
    for name in ("call_recordings", "call_transfers", "call_rings"):
        op.drop_table(name)
    op.drop_index("ix_calls_caller_number", table_name="calls")
    op.drop_index("ix_calls_entered_at", table_name="calls")
    op.drop_table("calls")
