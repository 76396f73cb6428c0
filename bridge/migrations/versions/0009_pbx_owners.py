"""cluster: who owns each PBX (pbx_owners), with the fencing epoch every takeover bumps

The owner itself is a PostgreSQL advisory lock (cluster.lease); this table only numbers the
takeovers, so that a writer can tell whether its PBX has been taken over since it began.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from cluster.lease (see 0001).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pbx_owners",
        sa.Column("pbx", sa.String, nullable=False),
        sa.Column("node", sa.String, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("since", TS, nullable=False),
        sa.PrimaryKeyConstraint("pbx", name="pk_pbx_owners"),
    )


def downgrade() -> None:
    op.drop_table("pbx_owners")
