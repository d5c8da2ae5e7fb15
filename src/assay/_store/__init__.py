"""Run stores: where the index of every run lives (SQLite by default, PostgreSQL for teams)."""

from ._base import Store as Store
from ._resolve import resolve_store as resolve_store
from ._sql import SCHEMA_VERSION as SCHEMA_VERSION
from ._sql import SQLStore as SQLStore
