"""Provenance across runs: which commits produced them, which were dirty, what differs.

A report is trusted only as far as its runs came from the same code and environment: this
summarises the ``provenance.json`` of every recorded run and names what is not shared (several
commits, uncommitted changes, package versions that differ between runs).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ..core._run import RunRecord

MAX_IDS = 50  # run ids listed per flagged item; the count covers all


def provenance_summary(
    records: Sequence[RunRecord], prov: Mapping[str, Mapping[str, Any] | None]
) -> dict[str, Any]:
    """Commits (with dirty counts), dirty runs, package/python/host values that differ."""
    recorded = [r for r in records if prov.get(r.id)]
    missing = [r.id for r in records if r.dir is not None and r.attempts and not prov.get(r.id)]
    commits: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    dirty_ids = []
    packages: dict[str, dict[str, list[str]]] = {}
    envs: dict[str, dict[str, list[str]]] = {
        "python": {},
        "host": {},
        "device": {},
        "platform": {},
    }
    for r in recorded:
        p = prov[r.id] or {}
        git = p.get("git") or {}
        key = (git.get("commit"), git.get("branch"))
        entry = commits.setdefault(
            key, {"commit": key[0], "branch": key[1], "runs": 0, "dirty": 0, "diffs": Counter()}
        )
        entry["runs"] += 1
        if git.get("dirty"):
            entry["dirty"] += 1
            entry["diffs"][git.get("diff_sha256") or "unknown"] += 1
            dirty_ids.append(r.id)
        for name, version in (p.get("packages") or {}).items():
            packages.setdefault(name, {}).setdefault(str(version), []).append(r.id)
        for field, values in envs.items():
            if p.get(field) is not None:
                values.setdefault(str(p[field]), []).append(r.id)
    n = len(recorded)
    all_ids = [r.id for r in recorded]
    for versions in packages.values():
        have = {rid for ids in versions.values() for rid in ids}
        if len(have) < n:  # installed for some runs only: that differs too
            versions["(not installed)"] = [rid for rid in all_ids if rid not in have]
    differing = {name: _counts(v) for name, v in sorted(packages.items()) if len(v) > 1}
    return {
        "n_recorded": n,
        "missing": missing[:MAX_IDS],
        "n_missing": len(missing),
        "commits": [
            {**c, "diffs": len(c["diffs"])}
            for c in sorted(commits.values(), key=lambda c: -c["runs"])
        ],
        "dirty": dirty_ids[:MAX_IDS],
        "n_dirty": len(dirty_ids),
        "packages_differing": differing,
        "packages_shared": {
            name: next(iter(v)) for name, v in sorted(packages.items()) if len(v) == 1
        },
        "environment": {f: _counts(v) for f, v in envs.items() if v},
    }


def _counts(values: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    """``[{value, runs, ids}]``, the most common value first."""
    return [
        {"value": k, "runs": len(ids), "ids": ids[:MAX_IDS]}
        for k, ids in sorted(values.items(), key=lambda kv: -len(kv[1]))
    ]
