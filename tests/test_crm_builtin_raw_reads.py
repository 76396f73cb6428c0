"""A caller's history by his number (no contact of ours) goes through the built-in CRM's kept
connection (crm_adapters/raw_reads.py): the same items, to the field, as through the pool."""

from __future__ import annotations

from datetime import timedelta

from bridge.call_log.store import CallLogStore
from crm_adapters.builtin import BuiltinCrm
from crm_adapters.contract import Contact, FinishedCall
from tests.db_fixtures import Database, database_fixture, store_fixture  # noqa: F401  # fixtures
from tests.test_crm_builtin import T0, call, crm_fixture  # noqa: F401  # fixture


async def test_history_of_an_unknown_number_is_the_same_through_the_kept_connection(
        store: CallLogStore, crm: BuiltinCrm) -> None:
    await crm.log_call(FinishedCall(call_id="c-logged", direction="inbound", number="+74951114455",
                                    operator="101", started_at=T0 + timedelta(hours=2), duration_seconds=42.5,
                                    outcome="answered", note="Wants the price list"))
    await store.save([
        call("c-logged", "84951114455", T0 + timedelta(hours=2)),
        call("c-national", "84951114455", T0 + timedelta(hours=1)),
        call("c-abandoned", "+74951114455", T0 + timedelta(hours=3), outcome="abandoned", answered_by=None,
             answered_at=None, rung=[], wait_seconds=12.0),
        call("c-other", "+74951114466", T0 + timedelta(hours=4)),
        call("c-internal", "+74951114455", T0 + timedelta(hours=5), internal=True),
        call("c-live", "+74951114455", T0 + timedelta(hours=6), outcome=None, ended_at=None),
    ])
    caller = Contact(id="", display_name="+74951114455", phones=["+74951114455"], source=crm.name)

    fast = await crm.history(caller, limit=10)
    assert crm._histories is not None and crm._histories.fast
    crm._histories.fast = False  # the same reads through the pool and SQLAlchemy's types
    slow = await crm.history(caller, limit=10)

    assert fast == slow
    assert [(i.call_id, i.source) for i in fast] == [
        ("c-abandoned", "call_log"), ("c-logged", "builtin"), ("c-national", "call_log")]
    assert fast[1].duration_seconds == 42.5 and fast[1].summary == "Wants the price list"
    assert all(i.at.tzinfo is not None and i.at.utcoffset() == timedelta(0) for i in fast)
    assert len(await crm.history(caller, limit=1)) == 1
