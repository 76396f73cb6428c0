"""built-in CRM: companies, contacts, their phone numbers (E.164), interactions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from crm_adapters.builtin_tables (see 0001).
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "crm_companies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crm_companies"),
    )
    op.create_index("ix_crm_companies_name", "crm_companies", ["name"])

    op.create_table(
        "crm_contacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("display_name", sa.String, nullable=False),
        sa.Column("company_id", sa.Integer),
        sa.Column("email", sa.String),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_crm_contacts"),
        sa.ForeignKeyConstraint(["company_id"], ["crm_companies.id"],
                                name="fk_crm_contacts_company_id_crm_companies", ondelete="SET NULL"),
    )
    op.create_index("ix_crm_contacts_company_id", "crm_contacts", ["company_id"])

    op.create_table(
        "crm_phones",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer, nullable=False),
        sa.Column("e164", sa.String, nullable=False),
        sa.Column("label", sa.String),
        sa.PrimaryKeyConstraint("id", name="pk_crm_phones"),
        sa.ForeignKeyConstraint(["contact_id"], ["crm_contacts.id"],
                                name="fk_crm_phones_contact_id_crm_contacts", ondelete="CASCADE"),
        sa.UniqueConstraint("contact_id", "e164", name="uq_crm_phones_contact_id_e164"),
    )
    op.create_index("ix_crm_phones_e164", "crm_phones", ["e164", "contact_id"])

    op.create_table(
        "crm_interactions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.Integer),
        sa.Column("number", sa.String),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("direction", sa.String),
        sa.Column("operator", sa.String),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("outcome", sa.String),
        sa.Column("url", sa.String),
        sa.Column("call_id", sa.String),
        sa.PrimaryKeyConstraint("id", name="pk_crm_interactions"),
        sa.ForeignKeyConstraint(["contact_id"], ["crm_contacts.id"],
                                name="fk_crm_interactions_contact_id_crm_contacts", ondelete="CASCADE"),
    )
    op.create_index("ix_crm_interactions_contact_id", "crm_interactions", ["contact_id", "at"])
    op.create_index("ix_crm_interactions_number", "crm_interactions", ["number", "at"])
    op.create_index("ix_crm_interactions_call_id", "crm_interactions", ["call_id"], unique=True)


def downgrade() -> None:
    op.drop_table("crm_interactions")
    op.drop_table("crm_phones")
    op.drop_table("crm_contacts")
    op.drop_table("crm_companies")
