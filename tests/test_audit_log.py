"""The audit log on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.call_log.store import CallLogStore
from tests.db_fixtures import database_fixture, store_fixture  # noqa: F401  # fixtures
from web.audit_log import AuditLog


async def test_entries_are_kept_and_filtered(store: CallLogStore) -> None:
    audit = AuditLog(store)
    before = datetime.now(UTC) - timedelta(seconds=1)
    await audit.record("vera", "spy.listen", role="supervisor", target="1795508364.58",
                       result="Success", detail={"operator": "101", "caller": "Алексей Смирнов"},
                       remote="127.0.0.1")
    await audit.record("anna", "recording.play", role="operator", target="rec-7", result="denied")
    newest_first = await audit.entries()
    assert [(e.username, e.action, e.result) for e in newest_first] == [
        ("anna", "recording.play", "denied"), ("vera", "spy.listen", "Success")]
    (spy,) = await audit.entries(username="vera", since=before)
    assert spy.detail == {"operator": "101", "caller": "Алексей Смирнов"}
    assert spy.role == "supervisor" and spy.remote == "127.0.0.1" and spy.at >= before
    assert [e.username for e in await audit.entries(action="recording.")] == ["anna"]
