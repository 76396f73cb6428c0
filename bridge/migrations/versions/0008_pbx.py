"""several PBXes: every call, member-log row and recording names its PBX; an operator's
extension is scoped to a PBX

Rows written before this revision belong to the one PBX of the time, whose id is "main"
(the id of the `[ami]` one-PBX configuration).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_PBX = "main"


def _pbx_column() -> sa.Column:
    return sa.Column("pbx", sa.String, nullable=False, server_default=DEFAULT_PBX)


def upgrade() -> None:
    for table in ("calls", "queue_member_log", "recording_files"):
        op.add_column(table, _pbx_column())
    op.create_index("ix_calls_pbx_entered_at", "calls", ["pbx", "entered_at"])
    # One extension, one user: per PBX now (two sites may both have a 201).
    with op.batch_alter_table("user_extensions", recreate="always") as batch:
        batch.add_column(_pbx_column())
        batch.drop_constraint("pk_user_extensions", type_="primary")
        batch.create_primary_key("pk_user_extensions", ["pbx", "extension"])


def downgrade() -> None:
    with op.batch_alter_table("user_extensions", recreate="always") as batch:
        batch.drop_constraint("pk_user_extensions", type_="primary")
        batch.drop_column("pbx")
        batch.create_primary_key("pk_user_extensions", ["extension"])
    op.drop_index("ix_calls_pbx_entered_at", table_name="calls")
    for table in ("recording_files", "queue_member_log", "calls"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("pbx")
