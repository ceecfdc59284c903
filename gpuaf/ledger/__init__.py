"""The ledger: the portal's database (SQLAlchemy 2; SQLite by default, PostgreSQL supported).

The batch system and the hub are the sources of truth; the ledger records what the
portal saw of them, and an audit trail of what people did.
"""

from gpuaf.ledger.db import Ledger, migrate

__all__ = ["Ledger", "migrate"]
