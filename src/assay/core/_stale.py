"""Know when code changed: a fingerprint of each stage's code, recorded with every run.

A run's id is its config (so a comment edit does not invalidate a month of runs); what code
produced it is recorded beside it, in ``provenance.json`` under ``"code"``:

- ``stage_sha256``: the stage's module and every module of the same package it imports,
  transitively (found by reading their ``import`` statements, nothing is executed). This is
  the fingerprint that decides staleness: a finished run whose recorded ``stage_sha256``
  differs from the installed code's is *stale* ("stage code changed since").
- ``package_sha256``: every ``.py`` file of the stage's package (informative: a change in a
  module the stage never imports, such as the family's plots, does not make its runs stale).

``assay run`` and ``assay status`` count stale runs, ``assay run --rerun-stale`` reruns them
(the old run folder is kept under ``ROOT/.stale/``), and the report flags them. A stage whose
results change meaning without a code change still bumps ``version=`` (that changes the id).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._registry import Stage, get_stage
from ._run import RunStatus
from ._spec import PlannedRun

STALE_DIR = ".stale"  # ROOT/.stale/<id>-<time>/: the folders of runs rerun by --rerun-stale


def _package_of(module: str) -> str:
    """The package whose files make a stage's code: ``assay.families.<name>`` for assay's own
    families, else the module's top-level package (a lone module is its own package)."""
    parts = module.split(".")
    if parts[:2] == ["assay", "families"] and len(parts) >= 3:
        return ".".join(parts[:3])
    return parts[0]


def _module_file(module: str) -> Path | None:
    mod = sys.modules.get(module)
    file = getattr(mod, "__file__", None)
    if file is None:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        file = spec.origin if spec is not None else None
    if not file or not str(file).endswith(".py"):
        return None
    return Path(file)


def _imports_of(source: bytes, module: str, is_package: bool) -> set[str]:
    """The absolute names of the modules ``source`` imports (relative imports resolved)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    base = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                prefix = ".".join(anchor)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            # `from . import _x` names a module too
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


@functools.cache
def stage_code(module: str) -> dict[str, Any]:
    """The fingerprint of the code a stage defined in ``module`` runs (see the module doc)."""
    package = _package_of(module)
    digest = hashlib.sha256()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        seen.add(name)
        source = path.read_bytes()
        digest.update(name.encode() + b"\0" + hashlib.sha256(source).digest())
        for dep in _imports_of(source, name, path.name == "__init__.py"):
            if (dep == package or dep.startswith(package + ".")) and dep not in seen:
                todo.append(dep)
    # sorted names so the order modules were met in does not matter
    ordered = hashlib.sha256()
    for name in sorted(seen):
        path = _module_file(name)
        if path is not None:
            ordered.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return {
        "stage_module": module,
        "stage_sha256": ordered.hexdigest() if seen else None,
        "modules": sorted(seen),
        "package": package,
        "package_sha256": _package_digest(package),
    }


@functools.cache
def _package_digest(package: str) -> str | None:
    path = _module_file(package)
    if path is None:
        return None
    if path.name != "__init__.py":  # a lone module
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    folder = path.parent
    for file in sorted(folder.rglob("*.py")):
        if "__pycache__" in file.parts:
            continue
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def code_record(stage: Stage) -> dict[str, Any]:
    """What provenance records of a stage's code."""
    return stage_code(stage.module)


def stale_reason(recorded: Any, stage: str) -> str | None:
    """Why a finished run of ``stage`` is stale, or None (also None when it recorded nothing:
    a run from before fingerprints were recorded is not called stale on a guess)."""
    if not isinstance(recorded, dict) or not recorded.get("stage_sha256"):
        return None
    try:
        current = code_record(get_stage(stage))
    except Exception:  # a stage no longer registered: nothing installed to compare with
        return None
    if current["stage_sha256"] and recorded["stage_sha256"] != current["stage_sha256"]:
        return "stage code changed since"
    return None


def _recorded_code(run_dir: Path) -> Any:
    try:
        with open(run_dir / "provenance.json", encoding="utf-8") as f:
            return json.load(f).get("code")
    except (OSError, ValueError, AttributeError):
        return None


def find_stale(runs: Sequence[PlannedRun], store: Any, root: Path) -> dict[str, str]:
    """``{run id: reason}`` for the finished runs of ``runs`` (and their upstream runs) that
    were produced by other code than is installed now."""
    planned = {r.id: r for top in runs for r in top.closure()}
    if not planned:
        return {}
    records = store.get_many(planned, light=True)
    stale: dict[str, str] = {}
    for rid, rec in records.items():
        if rec.status is not RunStatus.DONE:
            continue
        run_dir = Path(rec.dir) if rec.dir else root / rid
        reason = stale_reason(_recorded_code(run_dir), rec.stage)
        if reason is not None:
            stale[rid] = reason
    return stale


def retire(run_ids: Iterable[str], store: Any, root: Path) -> list[str]:
    """Move stale runs' folders to ``ROOT/.stale/<id>-<time>/`` and record them pending again,
    so the next execution reruns them from scratch (no checkpoint of the old code is resumed).
    Returns the ids retired."""
    from ._run import RunRecord

    retired = []
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for rid in run_ids:
        rec = store.get(rid)
        if rec is None or rec.status is not RunStatus.DONE:
            continue
        run_dir = Path(rec.dir) if rec.dir else root / rid
        if run_dir.is_dir() and not run_dir.is_symlink():
            keep = root / STALE_DIR / f"{rid}-{stamp}"
            keep.parent.mkdir(parents=True, exist_ok=True)
            os.replace(run_dir, keep)
        store.put(RunRecord(rid, rec.stage, RunStatus.PENDING, rec.config, dir=rec.dir))
        retired.append(rid)
    return retired
