"""The built-in CRM's tables, in the call log's database and metadata.

They are declared on the call log's `Base`, so one MetaData describes the whole schema
(Alembic's comparison sees them once this module is imported); the schema itself comes
from migration 0002 in `bridge/migrations`, which these classes must match.

Numbers live in `crm_phones`, several per contact, normalised to E.164; the index on
(e164, contact_id) answers a caller lookup from the index alone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bridge.call_log.tables import Base, UtcDateTime


class CompanyRow(Base):
    __tablename__ = "crm_companies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_crm_companies_name", "name"),)


class ContactRow(Base):
    __tablename__ = "crm_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    display_name: Mapped[str] = mapped_column(String)
    company_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("crm_companies.id", ondelete="SET NULL"), index=True)
    email: Mapped[str | None] = mapped_column(String)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Several contacts sharing a number: the most recently updated one wins a lookup.
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PhoneRow(Base):
    __tablename__ = "crm_phones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    contact_id: Mapped[int] = mapped_column(Integer, ForeignKey("crm_contacts.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(String)
    label: Mapped[str | None] = mapped_column(String)  # "mobile", "work", as imported

    __table_args__ = (
        Index("ix_crm_phones_e164", "e164", "contact_id"),
        # Also serves "all numbers of this contact" (its leading column).
        UniqueConstraint("contact_id", "e164", name="uq_crm_phones_contact_id_e164"),
    )


class InteractionRow(Base):
    """Notes and calls logged back by the operators (the call log's own calls stay in `calls`)."""

    __tablename__ = "crm_interactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # NULL for a call logged from a number no contact has (yet): found again by `number`.
    contact_id: Mapped[int | None] = mapped_column(
        Integer, ForeignKey("crm_contacts.id", ondelete="CASCADE"))
    number: Mapped[str | None] = mapped_column(String)  # E.164
    kind: Mapped[str] = mapped_column(String)  # call, note, ...
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    summary: Mapped[str] = mapped_column(Text, default="")
    direction: Mapped[str | None] = mapped_column(String)
    operator: Mapped[str | None] = mapped_column(String)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str | None] = mapped_column(String)
    url: Mapped[str | None] = mapped_column(String)
    call_id: Mapped[str | None] = mapped_column(String)  # a call is logged once (unique)

    __table_args__ = (
        Index("ix_crm_interactions_contact_id", "contact_id", "at"),
        Index("ix_crm_interactions_number", "number", "at"),
        Index("ix_crm_interactions_call_id", "call_id", unique=True),
    )


COMPANIES = CompanyRow.__table__
CONTACTS = ContactRow.__table__
PHONES = PhoneRow.__table__
INTERACTIONS = InteractionRow.__table__
CRM_TABLES = ("crm_companies", "crm_contacts", "crm_phones", "crm_interactions")
