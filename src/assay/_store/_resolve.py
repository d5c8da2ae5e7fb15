"""One resolver for store URLs, shared by the CLI and the Python API."""

from __future__ import annotations

from pathlib import Path

from .._engine._errors import StoreError
from ._base import Store

SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")


def default_store_url(root: str | Path) -> str:
    return f"sqlite:///{Path(root) / 'assay.db'}"


def resolve_store(url: str | Store | None, root: str | Path) -> Store:
    """Open the store at ``url`` (default: an SQLite file ``<root>/assay.db``)."""
    if isinstance(url, Store):
        return url
    url = url or default_store_url(root)
    scheme = url.split(":", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise StoreError(
            f"unknown store URL scheme {scheme or url!r} in {url!r}; valid schemes: "
            f"{', '.join(SCHEMES)} (e.g. sqlite:///runs/assay.db or "
            "postgresql+psycopg://user@host/db)"
        )
    from ._sql import SQLStore

    if scheme == "sqlite":
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    return SQLStore(url, root=root)
