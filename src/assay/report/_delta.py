"""What ``assay serve`` sends a page that already holds an earlier build: only what changed.

A build's data record is cut into *runs* (per run id: its table row, its detail, its own
curve) and *blocks* (everything else: counts, statistics, group curves, the sections' HTML...).
Each part gets a version (a short hash of its JSON). A page polls with the fingerprint of the
build it holds; the server keeps the versions of its last few builds, so it answers

- ``{"unchanged": true}`` when nothing changed (a few bytes),
- ``{"delta": ...}`` with the changed runs, the ids that left, the run order when it changed and
  the changed blocks, when it knows the page's build,
- the whole record otherwise (a page older than the builds kept, or a restarted server).

The page merges a delta into its copy (report.js ``applyDelta``); the merged record equals the
new build's (tested in tests/report/test_compare_data.py).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

KEEP_BUILDS = 16  # builds remembered per report: a page polling every 2 s is never older


@dataclass(frozen=True)
class Snapshot:
    """The versions of one build's parts: ``runs`` by id (in table order) and ``blocks``."""

    runs: dict[str, str]
    blocks: dict[str, str]


def _version(obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def split(data: dict[str, Any], sections_html: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(runs, blocks)`` of a build: the per-run parts by id and every other block."""
    curves = data.get("curves") or {}
    per_run = curves.get("runs") or {}
    detail = data.get("detail") or {}
    runs = {
        row[1]: {"row": row, "detail": detail.get(row[1]), "curve": per_run.get(row[1])}
        for row in data["table"]["rows"]
    }
    blocks = {k: v for k, v in data.items() if k not in ("table", "detail", "curves")}
    blocks["table"] = {k: v for k, v in data["table"].items() if k != "rows"}
    blocks["curves"] = {k: v for k, v in curves.items() if k != "runs"}
    blocks["sections_html"] = sections_html
    return runs, blocks


def snapshot(runs: dict[str, Any], blocks: dict[str, Any]) -> Snapshot:
    return Snapshot(
        {k: _version(v) for k, v in runs.items()}, {k: _version(v) for k, v in blocks.items()}
    )


def delta(old: Snapshot, new: Snapshot, runs: dict[str, Any], blocks: dict[str, Any]) -> dict:
    """The parts of the new build (``runs``, ``blocks``; versions ``new``) that differ from
    the build whose versions are ``old``."""
    changed = {k: runs[k] for k, v in new.runs.items() if old.runs.get(k) != v}
    out: dict[str, Any] = {
        "runs": changed,
        "removed": [k for k in old.runs if k not in new.runs],
        "blocks": {k: blocks[k] for k, v in new.blocks.items() if old.blocks.get(k) != v},
    }
    if list(old.runs) != list(new.runs):
        out["order"] = list(new.runs)
    return out


def merge(data: dict[str, Any], sections_html: str, change: dict[str, Any]):
    """Apply ``change`` (from :func:`delta`) to an older build: ``(data, sections_html)`` of
    the new one. What the page does in JavaScript, written here for the tests."""
    runs, blocks = split(data, sections_html)
    runs.update(change["runs"])
    for k in change["removed"]:
        runs.pop(k, None)
    blocks.update(change["blocks"])
    order = change.get("order") or list(runs)
    out = {k: v for k, v in blocks.items() if k not in ("table", "curves", "sections_html")}
    out["table"] = {**blocks["table"], "rows": [runs[k]["row"] for k in order]}
    out["detail"] = {k: runs[k]["detail"] for k in order if runs[k]["detail"] is not None}
    out["curves"] = {
        **blocks["curves"],
        "runs": {k: runs[k]["curve"] for k in order if runs[k]["curve"] is not None},
    }
    return out, blocks["sections_html"]


class Builds:
    """The last ``KEEP_BUILDS`` snapshots of one report, by fingerprint."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, Snapshot] = OrderedDict()

    def add(self, fingerprint: str, snap: Snapshot) -> None:
        self._kept[fingerprint] = snap
        self._kept.move_to_end(fingerprint)
        while len(self._kept) > KEEP_BUILDS:
            self._kept.popitem(last=False)

    def get(self, fingerprint: str | None) -> Snapshot | None:
        return self._kept.get(fingerprint) if fingerprint else None
