"""Rebuild the store's index from run directories: the directories are the source of truth."""

from __future__ import annotations

from pathlib import Path

from ._run import record_from_dir
from ._store import Store


def reindex(root: str | Path, store: Store) -> dict[str, int]:
    """Put every run directory under ``root`` into ``store``; return counts by status.

    A run directory without results or a recorded failure belongs to a run that never finished
    (killed, or still running elsewhere); it is indexed as pending so the next invocation runs it.
    """
    counts: dict[str, int] = {}
    for run_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        record = record_from_dir(run_dir.resolve())
        if record is None:
            continue
        store.put(record)
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    return counts
