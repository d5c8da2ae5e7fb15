"""Run stores: where the index of every run lives (SQLite by default, PostgreSQL for teams).

The SQL backend (and SQLAlchemy) is imported when a store is opened, not with assay.
"""

from ._base import Store as Store
from ._resolve import resolve_store as resolve_store
