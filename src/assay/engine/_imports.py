"""The user's stage modules: imported by name, the working directory searched last, and
remembered per run root so later commands on that root need no ``--import``.

``assay run --import mystages`` (or a suite's ``imports:`` with ``--trust-imports``) records the
module names in ``ROOT/imports.json``; ``status``, ``analyze``, ``report`` and ``serve`` on that
root import them too. Only names are kept: a remembered module is found on ``sys.path`` (the
working directory last) exactly as ``--import`` finds it, never inside the root.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ..core._io import atomic_write_json
from ..core._registry import import_modules
from ._suite import check_module_name

logger = logging.getLogger("assay")
REMEMBERED = "imports.json"


def import_user_modules(modules: Sequence[str], root: str | Path | None = None) -> None:
    """Import ``modules`` (errors are the user's to fix), then those remembered under ``root``
    (a remembered module that no longer imports is a warning: it may have been renamed)."""
    named = list(dict.fromkeys(modules))
    for module in named:
        check_module_name(module, "--import")
    remembered = [m for m in recall(root) if m not in named] if root is not None else []
    if not named and not remembered:
        return
    cwd = str(Path.cwd())
    if cwd not in sys.path:  # searched last: a `pandas.py` lying here never shadows pandas
        sys.path.append(cwd)
    import_modules(named)
    for module in remembered:
        try:
            import_modules([module])
        except Exception as exc:
            print(
                f"warning: module {module!r} remembered in {Path(root or '.') / REMEMBERED} "
                f"does not import ({exc}); pass --import NAME if it moved",
                file=sys.stderr,
            )


def recall(root: str | Path | None) -> list[str]:
    """The module names remembered under ``root`` (none when the file is absent or odd)."""
    if root is None:
        return []
    path = Path(root) / REMEMBERED
    try:
        if path.is_symlink():
            return []
        names = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and all(p.isidentifier() for p in n.split("."))]


def remember(root: str | Path, modules: Sequence[str]) -> None:
    """Add ``modules`` to what ``root`` remembers (nothing is written when nothing is new)."""
    known = recall(root)
    new = [m for m in dict.fromkeys(modules) if m not in known]
    if not new or not Path(root).is_dir():
        return
    atomic_write_json(Path(root) / REMEMBERED, [*known, *new])
