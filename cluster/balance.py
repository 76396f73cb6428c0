"""Spreading the PBXes over the nodes at each grant of a PBX's lock.

PostgreSQL grants a free advisory lock to the first request in line, so when an owner dies,
the node first in line for each of its PBXes takes them all: one survivor owns every PBX and
the others only follow. Instead, a node granted a lock while it already owns other PBXes
hands it on (unlocks, and waits in line again) when another node waiting for it owns at
least two fewer: the dead node's PBXes split among the survivors. Each handover strictly
evens the counts out, so it never goes back and forth; and it is decided only at a grant,
before the node acts as owner: a node never gives up a PBX it serves (a handover costs a
takeover).

Who holds and who waits is read from the server itself (`pg_locks`, and the nodes' lease
sessions named in `pg_stat_activity`), so the nodes need agree on nothing else. A node's
leases decide one at a time (`LeaseGroup.deciding`): two PBXes granted to it at once would
otherwise each see the other held and both be handed on.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

APP_PREFIX = "callbridge lease"
_MAX_APP_NAME = 63  # PostgreSQL's NAMEDATALEN - 1

# Every advisory lock on a one-bigint key (objsubid 1) held or wanted by a callbridge lease
# session in this database (pg_locks shows the whole server's); the key's two halves are
# unsigned 32-bit ints.
HOLDERS = f"""
SELECT a.application_name AS session, l.granted, l.classid::bigint AS high, l.objid::bigint AS low
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND a.application_name LIKE '{APP_PREFIX} %'
"""


def node_tag(node: str) -> str:
    """A short, fixed-width name for a node in its sessions' application_name (the node id
    itself may be too long to survive the 63-character limit whole)."""
    return hashlib.sha256(node.encode()).hexdigest()[:8]


def application_name(pbx: str, node: str) -> str:
    """`callbridge lease <pbx> <tag> <node>`: a PBX id has at most 32 characters and no space,
    so the tag always survives the cut; the node id is there for people reading pg_stat_activity."""
    return f"{APP_PREFIX} {pbx} {node_tag(node)} {node}"[:_MAX_APP_NAME]


def _tag_of(session: str) -> str | None:
    parts = session[len(APP_PREFIX):].split(" ", 3)
    return parts[2] if len(parts) >= 3 and len(parts[2]) == 8 else None


def _unsigned(key: int) -> int:
    return key & 0xFFFF_FFFF_FFFF_FFFF


def heir(rows: Iterable[Mapping[str, Any]], key: int, tag: str) -> str | None:
    """The node (tag) to hand the lock `key`, just granted to node `tag`, on to: of the nodes
    waiting for it, the one owning fewest PBXes, if it owns at least two fewer than `tag`
    (this one counted); else None (keep it)."""
    owned: Counter[str] = Counter()
    waiting: set[str] = set()
    for row in rows:
        holder = _tag_of(row["session"])
        if holder is None:
            continue
        if row["granted"]:
            owned[holder] += 1
        elif (int(row["high"]) << 32) | int(row["low"]) == _unsigned(key) and holder != tag:
            waiting.add(holder)
    if not waiting:
        return None
    fewest = min(sorted(waiting), key=lambda t: owned[t])
    return fewest if owned[fewest] < owned[tag] - 1 else None


class LeaseGroup:
    """A node's leases, one per PBX: they decide about handing a grant on one at a time."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.tag = node_tag(node)
        self.deciding = asyncio.Lock()
