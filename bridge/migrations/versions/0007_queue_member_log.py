"""reports: queue members' state over time (queue_member_log); indexes for the reports

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from reports.member_log (see 0001).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "queue_member_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("queue", sa.String),  # NULL: the operator's state over all his queues
        sa.Column("interface", sa.String, nullable=False),
        sa.Column("operator", sa.String),
        sa.Column("name", sa.String),
        sa.Column("logged_in", sa.Boolean, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("source", sa.String, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_queue_member_log"),
    )
    op.create_index("ix_queue_member_log_at", "queue_member_log", ["at"])
    op.create_index("ix_queue_member_log_operator_at", "queue_member_log", ["operator", "at"])
    # Covering indexes: a report reads a period's calls and their rings from the index alone
    # (on SQLite a month's report took twice as long through table lookups).
    op.create_index("ix_calls_report", "calls", ["entered_at", "queue", "outcome", "internal", "wait_seconds",
                                                 "talk_seconds", "answered_by", "call_id"])
    op.create_index("ix_call_rings_report", "call_rings",
                    ["call_id", "operator", "answered_at", "member_name"])


def downgrade() -> None:
    op.drop_index("ix_call_rings_report", table_name="call_rings")
    op.drop_index("ix_calls_report", table_name="calls")
    op.drop_table("queue_member_log")
