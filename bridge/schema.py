"""Every table of the one database schema, registered on `Base.metadata`.

Import this where the whole schema matters (Alembic's env, schema tests); each module
still imports only the tables it uses.
"""

from __future__ import annotations

import bridge.audit_log  # noqa: F401
import bridge.call_log_tables  # noqa: F401
import crm_adapters.builtin_tables  # noqa: F401
import recordings.review_store  # noqa: F401
import recordings.store  # noqa: F401
import screenpop.users  # noqa: F401
from bridge.call_log_tables import Base

metadata = Base.metadata
