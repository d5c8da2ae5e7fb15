"""Reading what runs left in their folders (provenance, metrics, error and log tails), cached.

``assay serve`` rebuilds the report every few seconds while a suite runs; a file is parsed again
only when its size or modification time changed, so a refresh of a 1,000-run suite rereads the
few files of the runs in flight, not all of them.

Every file is read through the engine's root guard: runs live at ``<root>/<id>/``, and a file
(or a run folder) that is a symbolic link leading outside that root is never read. A tail shows
a note in its place instead (:data:`OUTSIDE_NOTE`); JSON and metrics read as missing.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..core._guard import OutsideRootError, open_in_root, real_in_root
from ..core._metrics import parse_metric_lines

_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
TAIL_BYTES = 16_384  # an error or log tail never needs more than the end of the file
OUTSIDE_NOTE = (
    "({name} not shown: it is a symbolic link leading outside the run root, and the report "
    "never reads outside a root)"
)
_OUTSIDE = object()  # what a guarded read returns for a file that leads outside the root


class RunFiles:
    """Parsed run files keyed by path and (mtime, size). One per report builder or server."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}

    def _cached(self, kind: str, path: Path, parse: Any) -> Any:
        try:  # the run's root is its folder's parent: <root>/<id>/<file>
            real = real_in_root(path.parent.parent, path, verb="read")
            st = os.stat(real)
        except OutsideRootError:
            return _OUTSIDE
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_size)
        key = (kind, str(path))
        hit = self._cache.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        try:
            value = parse(path)
        except OutsideRootError:  # swapped for a link since the check above
            return _OUTSIDE
        except (OSError, ValueError):
            value = None  # a file being replaced right now: read it on the next refresh
        self._cache[key] = (stamp, value)
        return value

    def json(self, path: Path) -> Any:
        value = self._cached("json", path, lambda p: json.loads(_read_text(p)))
        return None if value is _OUTSIDE else value

    def metrics(self, path: Path) -> list[dict[str, Any]]:
        """The lines of ``metrics.jsonl``; a partly written last line is left for later."""
        value = self._cached("metrics", path, _read_metrics)
        return [] if value is _OUTSIDE else value or []

    def tail(self, path: Path, lines: int) -> str | None:
        """The last ``lines`` lines, or a note when the file is a link leading outside."""
        value = self._cached(f"tail{lines}", path, lambda p: _tail(p, lines))
        return OUTSIDE_NOTE.format(name=path.name) if value is _OUTSIDE else value


def _open(path: Path) -> int:
    """A descriptor for a run file, refused (OutsideRootError) through a link leading out."""
    return open_in_root(path.parent.parent, path)


def _read_text(path: Path) -> str:
    with os.fdopen(_open(path), "rb") as f:
        return f.read().decode("utf-8")


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    with os.fdopen(_open(path), "rb") as f:
        rows = parse_metric_lines(f.read())
    return [r for r in rows if isinstance(r.get("step"), int)]


def _tail(path: Path, lines: int) -> str:
    with os.fdopen(_open(path), "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        text = f.read().decode("utf-8", errors="replace")
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def as_float(value: Any) -> float | None:
    """A metric value as a float: numbers, and the strings JSON uses for nan/inf; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return _NONFINITE.get(value)
    return None
