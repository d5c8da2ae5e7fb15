"""Rebuild the store's index from run directories: the directories are the source of truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..core._errors import AssayError
from ..core._guard import OutsideRootError, real_in_root
from ..core._run import RunRecord, record_from_dir
from ..store import Store


class ReindexError(AssayError):
    """Run directories whose files cannot be read; the store was left as it was."""


def reindex(
    root: str | Path, store: Store, *, warn: Callable[[str], None] | None = None
) -> dict[str, int]:
    """Put every run directory under ``root`` into ``store``; return counts by status.

    Every directory is read before anything is written: if any config.json, results.json or
    provenance.json is corrupt, nothing is changed and the error lists every bad file.
    A run directory without results or a recorded failure belongs to a run that never finished
    (killed, or still running elsewhere); it is indexed as pending so the next invocation runs it.
    A run folder that is a symbolic link leading outside ``root`` is not a run of this root: it
    is skipped, and ``warn`` (default: nothing) is told why.
    """
    records: list[RunRecord] = []
    bad: list[str] = []
    for run_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        try:
            real = Path(real_in_root(root, run_dir, verb="index"))
        except OutsideRootError as exc:
            if warn is not None:
                warn(f"skipped: {exc}")
            continue
        try:  # a config.json, results.json or provenance.json linking outside: OutsideRootError
            record = record_from_dir(real, root=Path(root))
        except (OSError, ValueError, OutsideRootError) as exc:  # JSONDecodeError: a ValueError
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
