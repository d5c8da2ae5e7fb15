"""What ``assay analyze --out DIR`` owns in DIR, so that a second analysis never mixes with the
first: each analysis lists the files it wrote in ``DIR/.assay-analysis.json``; the next one into
the same folder removes exactly those first (stale plots included) and writes its own list.
Files the user put in DIR are never touched.

    previous, removed = clear_outputs(out)   # before writing anything
    before = stamps(out)                     # the user's own files, left alone
    ...                                      # tables, plots, report.md, the families' hooks
    record_outputs(out, before, "suite polyfit")
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core._errors import AssayError

MANIFEST = ".assay-analysis.json"
MANIFEST_VERSION = 1


def _owned(out: Path, rel: str) -> Path | None:
    """``out/rel`` when it is a plain file inside ``out`` (a damaged or edited manifest can
    name nothing outside it)."""
    path = out / rel
    if Path(rel).is_absolute() or ".." in Path(rel).parts or path.is_symlink():
        return None
    return path if path.is_file() else None


def clear_outputs(out: Path) -> tuple[str | None, list[str]]:
    """Remove the files the previous analysis into ``out`` wrote; ``(what it analysed, the
    removed paths relative to out)``. Empty folders it leaves are removed too."""
    if out.exists() and not out.is_dir():
        raise AssayError(f"--out {str(out)!r} is a file; give a folder (it is created if missing)")
    manifest = out / MANIFEST
    if not manifest.is_file():
        return None, []
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        files, what = list(record["files"]), record.get("what")
    except (ValueError, KeyError, TypeError):
        raise AssayError(
            f"{manifest} is damaged; delete it (and the outputs it listed) by "
            "hand, or pick another --out folder"
        ) from None
    removed = []
    for rel in files:
        path = _owned(out, str(rel))
        if path is not None:
            path.unlink()
            removed.append(str(rel))
    for rel in sorted({str(Path(r).parent) for r in removed}, key=len, reverse=True):
        folder = out / rel
        while folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
    manifest.unlink()
    return what, removed


def stamps(out: Path) -> dict[str, int]:
    """Every plain file under ``out`` (relative path) with its modification time."""
    found = {}
    for folder, _, names in os.walk(out):
        for name in names:
            path = Path(folder) / name
            if name != MANIFEST and not path.is_symlink():
                found[path.relative_to(out).as_posix()] = path.stat().st_mtime_ns
    return found


def record_outputs(out: Path, before: dict[str, int], what: str) -> list[str]:
    """Write the manifest: every file under ``out`` that is new or changed since ``before``
    (:func:`stamps` taken before writing). Returns them."""
    from ..core._io import atomic_write_text

    files = [rel for rel, ns in stamps(out).items() if before.get(rel) != ns]
    record = {"version": MANIFEST_VERSION, "what": what, "files": sorted(files)}
    atomic_write_text(out / MANIFEST, json.dumps(record, indent=2) + "\n")
    return sorted(files)


def begin_outputs(out: Path) -> dict[str, int]:
    """Clear what the previous analysis into ``out`` wrote (saying so) and return the
    :func:`stamps` of what is left, for :func:`record_outputs`."""
    what, removed = clear_outputs(out)
    if removed:
        print(
            f"--out {out}: removed the {len(removed)} file(s) of the previous analysis"
            f"{f' ({what})' if what else ''}; files of your own are kept"
        )
    out.mkdir(parents=True, exist_ok=True)
    return stamps(out)
