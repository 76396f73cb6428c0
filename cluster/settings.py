"""How this node takes part in the cluster: its name, the Redis it shares with the others, and
the timing of its PBX leases (see `cluster.lease`)."""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, Field


def default_node_id() -> str:
    """Host and process: unique among live nodes, and says where to look when it shows up in a log."""
    return f"{socket.gethostname()}-{os.getpid()}"


class ClusterSettings(BaseModel):
    node_id: str = Field(default_factory=default_node_id, min_length=1)
    redis_url: str | None = None
    # An owner checks its lease connection every lease_check_interval seconds and fences itself
    # when a check takes longer than lease_check_timeout: it stops acting within their sum.
    lease_check_interval: float = Field(default=0.5, gt=0)
    lease_check_timeout: float = Field(default=1.0, gt=0)
    # How soon a node reconnects its lease session after an error (a standby waits in a
    # blocking lock request, granted the moment the owner's session ends).
    lease_retry_interval: float = Field(default=1.0, gt=0)
    # Followers keep their own AMI session to each PBX (cluster.standby): a takeover then
    # loses none of what the PBX said. Costs a manager session per node and PBX.
    hot_standby: bool = True
    # A standby reads its AMI socket that often (seconds; 0: at every event), not at every
    # event: the kernel's socket buffers hold what the PBX says meanwhile (keep Asterisk's
    # manager.conf writetimeout at its default 100 ms or above). A takeover reads at once.
    standby_read_interval: float = Field(default=0.05, ge=0, le=1)
