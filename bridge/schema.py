"""Every table of the one database schema, registered on `Base.metadata`.

Import this where the whole schema matters (Alembic's env, schema tests); each module
still imports only the tables it uses.
"""

from __future__ import annotations

import bridge.call_log.tables  # noqa: F401
import cluster.lease  # noqa: F401
import crm_adapters.builtin_tables  # noqa: F401
import recordings.review_store  # noqa: F401
import recordings.store  # noqa: F401
import reports.member_log  # noqa: F401
import web.audit_log  # noqa: F401
import web.users  # noqa: F401
from bridge.call_log.tables import Base

metadata = Base.metadata
