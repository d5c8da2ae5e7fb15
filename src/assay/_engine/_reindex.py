"""Rebuild the store's index from run directories: the directories are the source of truth."""

from __future__ import annotations

from pathlib import Path

from .._store import Store
from ._errors import AssayError
from ._run import RunRecord, record_from_dir


class ReindexError(AssayError):
    """Run directories whose files cannot be read; the store was left as it was."""


def reindex(root: str | Path, store: Store) -> dict[str, int]:
    """Put every run directory under ``root`` into ``store``; return counts by status.

    Every directory is read before anything is written: if any config.json, results.json or
    provenance.json is corrupt, nothing is changed and the error lists every bad file.
    A run directory without results or a recorded failure belongs to a run that never finished
    (killed, or still running elsewhere); it is indexed as pending so the next invocation runs it.
    """
    records: list[RunRecord] = []
    bad: list[str] = []
    for run_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        try:
            record = record_from_dir(run_dir.resolve())
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            bad.append(f"{run_dir}: {type(exc).__name__}: {exc}")
            continue
        if record is not None:
            records.append(record)
    if bad:
        raise ReindexError(
            f"{len(bad)} run director{'y' if len(bad) == 1 else 'ies'} cannot be read; the store "
            "was not changed. Fix or move them away, then rerun `assay reindex`:\n  "
            + "\n  ".join(bad)
        )
    counts: dict[str, int] = {}
    for record in records:
        store.put(record)
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
    return counts
