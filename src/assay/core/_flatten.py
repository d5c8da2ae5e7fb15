"""Nested configs and results as flat ``a.b`` keys: one flattening for analysis, the report and
the progress display."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    """``{"a": {"b": 1}}`` -> ``{"<prefix>a.b": 1}``; lists of scalars become tuples (hashable).

    Under ``results.`` the strings ``"nan"``, ``"inf"``, ``"-inf"`` (how non-finite results are
    written to JSON) become floats; a config's string stays a string (``mode: nan`` is a name).
    """
    kind = type(obj)
    if kind in _SCALARS:  # most cells: skip the (slow) abstract Mapping check
        numeric = kind is str and obj in _NONFINITE and prefix.startswith("results.")
        out[prefix[:-1]] = float(obj) if numeric else obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            flatten(value, f"{prefix}{key}.", out)
        if not obj and prefix:
            out[prefix[:-1]] = None
    elif isinstance(obj, list):
        out[prefix[:-1]] = (
            tuple(obj) if all(not isinstance(v, dict | list) for v in obj) else str(obj)
        )
    else:
        out[prefix[:-1]] = obj


_NONFINITE = frozenset({"nan", "inf", "-inf"})
_SCALARS = frozenset({int, float, bool, type(None), str})
