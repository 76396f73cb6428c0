"""calls: why a call was not answered (outcome_reason) and how its end is known (ended_by)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Calls logged before this revision keep NULL: how they ended was not recorded.
    op.add_column("calls", sa.Column("outcome_reason", sa.String, nullable=True))
    op.add_column("calls", sa.Column("ended_by", sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("ended_by")
        batch.drop_column("outcome_reason")
