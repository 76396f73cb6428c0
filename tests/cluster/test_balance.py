"""Who a just-granted PBX lock goes on to (cluster.balance.heir), from pg_locks rows."""

from __future__ import annotations

from typing import Any

from cluster.balance import application_name, heir, node_tag
from cluster.lease import lock_key


def row(pbx: str, node: str, granted: bool) -> dict[str, Any]:
    key = lock_key(pbx) & 0xFFFF_FFFF_FFFF_FFFF
    return {"session": application_name(pbx, node), "granted": granted, "high": key >> 32,
            "low": key & 0xFFFF_FFFF}


def test_a_grant_goes_on_to_a_waiting_node_owning_two_fewer() -> None:
    # B was granted both PBXes of a dead node; C waits for both, owning none.
    rows = [row("main", "b", True), row("east", "b", True), row("main", "c", False), row("east", "c", False)]
    assert heir(rows, lock_key("east"), node_tag("b")) == node_tag("c")
    # Once C has one, B keeps the other: one each.
    rows = [row("main", "c", True), row("east", "b", True), row("east", "c", False)]
    assert heir(rows, lock_key("east"), node_tag("b")) is None


def test_it_never_goes_back_and_forth() -> None:
    # 3 PBXes, 2 nodes: 2 and 1. The node with 2, granted a third, hands on only to one with 0.
    rows = [row("p1", "b", True), row("p2", "c", True), row("p3", "b", True), row("p3", "c", False)]
    assert heir(rows, lock_key("p3"), node_tag("b")) is None
    rows = [row("p1", "b", True), row("p2", "b", True), row("p3", "b", True), row("p3", "c", False),
            row("p3", "d", False), row("p1", "d", False)]
    assert heir(rows, lock_key("p3"), node_tag("b")) in {node_tag("c"), node_tag("d")}


def test_only_waiters_for_this_lock_count_and_foreign_sessions_are_ignored() -> None:
    rows = [row("main", "b", True), row("east", "b", True), row("main", "c", False),
            {"session": "psql", "granted": False, "high": 0, "low": 0}]
    assert heir(rows, lock_key("east"), node_tag("b")) is None  # C waits for main, not east
    assert heir(rows, lock_key("main"), node_tag("b")) == node_tag("c")
    assert heir([row("main", "b", True)], lock_key("main"), node_tag("b")) is None


def test_the_node_tag_survives_the_63_character_cut() -> None:
    long_pbx, long_node = "p" * 32, "a-very-long-host-name.example.com-123456"
    name = application_name(long_pbx, long_node)
    assert len(name) == 63 and name.split(" ")[3] == node_tag(long_node)
    rows = [row(long_pbx, long_node, True), row("x", long_node, True), row(long_pbx, "other", False)]
    assert heir(rows, lock_key(long_pbx), node_tag(long_node)) == node_tag("other")
