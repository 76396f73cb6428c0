"""Who may see which recording, with several PBXes: trainers, supervisors and admins every
recording; an operator those made on his own extensions of his own PBX (another PBX's 101
is another person). Rows from before PBX ids say "main": the first PBX's when none is
called so (web.users.resolve_pbx)."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.calls.record import DEFAULT_PBX
from recordings.store import RecordingInfo
from web.users import User, pbx_of, resolve_pbx

REVIEWERS = ("trainer", "supervisor", "admin")
SEE_ALL = REVIEWERS
CONTROLLERS = ("supervisor", "admin")  # may pause anyone's recording; operators their own


def own_pbx(pbxes: Sequence[str], user: User) -> str:
    """The configured PBX a user's extensions are on."""
    return resolve_pbx(pbx_of(user), pbxes)


def is_mine(pbxes: Sequence[str], user: User, rec: RecordingInfo) -> bool:
    """Made on one of the user's extensions of his PBX."""
    return (rec.operator is not None and rec.operator in user.extensions
            and resolve_pbx(rec.pbx, pbxes) == own_pbx(pbxes, user))


def may_see(pbxes: Sequence[str], user: User, rec: RecordingInfo) -> bool:
    return user.role in SEE_ALL or is_mine(pbxes, user, rec)


def stored_ids(pbxes: Sequence[str], pbx: str) -> list[str]:
    """A PBX's ids in the rows: its own, and "main" (rows from before PBX ids) for the first."""
    legacy = pbx != DEFAULT_PBX and resolve_pbx(DEFAULT_PBX, pbxes) == pbx
    return [pbx, DEFAULT_PBX] if legacy else [pbx]
