"""What the call log adds to a caller's history on the card: each call's transfers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from bridge.call_log.tables import TransferRow
from crm_adapters.errors import CrmUnavailable

log = logging.getLogger(__name__)

TRANSFERS = TransferRow.__table__


async def call_transfers(crm: Any | None, call_ids: Sequence[str]
                         ) -> dict[str, list[tuple[str, str | None, str | None]]]:
    """call id -> [(kind, from, to)] in order, from the call log in the built-in CRM's database
    (`crm` is a crm_adapters.builtin.BuiltinCrm, or None: no call log to ask)."""
    if crm is None or not call_ids:
        return {}
    query = (select(TRANSFERS.c.call_id, TRANSFERS.c.kind, TRANSFERS.c.from_operator, TRANSFERS.c.to_operator)
             .where(TRANSFERS.c.call_id.in_(sorted(set(call_ids))))
             .order_by(TRANSFERS.c.call_id, TRANSFERS.c.seq))
    try:
        async with crm.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    except (OSError, SQLAlchemyError, CrmUnavailable) as exc:  # the history shows without them
        log.warning("transfers of the caller's calls not read: %s", exc)
        return {}
    out: dict[str, list[tuple[str, str | None, str | None]]] = {}
    for row in rows:
        out.setdefault(row.call_id, []).append((row.kind, row.from_operator, row.to_operator))
    return out
