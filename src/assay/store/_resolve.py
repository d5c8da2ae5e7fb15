"""One resolver for store URLs, shared by the CLI and the Python API."""

from __future__ import annotations

from pathlib import Path

from ..core._errors import StoreError
from ._base import Store

SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")


def default_store_url(root: str | Path) -> str:
    return f"sqlite:///{Path(root) / 'assay.db'}"


def resolve_store(url: str | Store | None, root: str | Path, read_only: bool = False) -> Store:
    """Open the store at ``url`` (default: an SQLite file ``<root>/assay.db``).

    ``read_only``: the caller only reads (listings, reports); nothing is created or written,
    so a root on a read-only mount or another user's root can be read.
    """
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

    if scheme == "sqlite" and not read_only:
        Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    return SQLStore(url, root=root, read_only=read_only)
