"""The report's data record: every number the HTML shows, computed here and tested here.

:func:`collect` plans the suite (or takes every run of a stage), reads the store once and the
run folders through a :class:`~._runfiles.RunFiles` cache, and calls the engine's analysis
(``summarize``, ``compare_groups``) for the statistics. The result is plain JSON data; the
renderer (:mod:`._html`) only draws it.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis import (
    NO_VARIATION,
    RESERVED,
    SAME_DIFFERENCE,
    SAME_IN_BOTH,
    compare_groups,
    flatten,
    group_columns,
    group_labels,
    records_frame,
    seed_column,
    summarize,
)
from ..core._errors import AssayError
from ..core._run import RunRecord, RunStatus
from ..core._stale import stale_reason
from ..store import Store, resolve_store
from ._curves import RUN_POINTS, _thin, aggregate_curves, run_series
from ._families import family_sections
from ._provenance import provenance_summary
from ._runfiles import RunFiles

MAX_RESULT_COLUMNS = 40  # wider tables stop being readable; the rest is in each run's detail
MAX_FAILURES = 100  # failures shown with their tails; the table's state filter lists all
MAX_STATS_ROWS = 1_000  # rows of the statistics table (10,000 one-seed groups would be noise)
ERROR_TAIL_LINES = 25
LOG_TAIL_LINES = 8
NONFINITE = ("nan", "inf", "-inf")


def collect(
    *,
    root: str | Path = "runs",
    store: str | Store | None = None,
    suite: Any = None,
    overrides: Sequence[str] = (),
    stage: str | None = None,
    seeds: Sequence[int] | None = None,
    imports: Sequence[str] = (),
    trust_imports: bool = False,
    baseline: str | None = None,
    families: bool = True,
    files: RunFiles | None = None,
    memo: dict[Any, Any] | None = None,
    planned: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Everything the report shows, as JSON-able data.

    Args:
        suite: a suite (path or object): its planned runs, recorded or not. Exactly one of
            ``suite`` and ``stage``.
        stage: every recorded run of this stage.
        baseline: ``key=value[,key=value]`` of the group the tests compare against (default
            the first group).
        families: add the sections of the families whose stages ran (their analyze hooks).
        files: a cache of parsed run files, kept by ``assay serve`` between refreshes.
        memo: family sections by their runs, kept by ``assay serve`` between refreshes.
        planned: the suite's planned runs when the caller already planned it (``serve``).
    """
    from ..engine._api import as_suite, plan_rows, plan_suite

    if (suite is None) == (stage is None):
        raise AssayError("a report needs a suite file or --stage NAME (exactly one of them)")
    files = files or RunFiles()
    t0 = time.perf_counter()
    opened = resolve_store(store, root, read_only=True)
    try:
        plan: dict[str, Any] | None = None
        if suite is not None:
            suite = as_suite(suite)
            if planned is None:
                planned = plan_suite(
                    suite,
                    overrides,
                    imports=imports,
                    trust_imports=trust_imports,
                    seeds=list(seeds) if seeds else None,
                )
            rows = plan_rows(planned, opened)
            known = opened.get_many(r.id for r in planned)
            got = opened.get_many(r.id for r in rows if r.upstream)
            ups = [got[r.id] for r in rows if r.upstream and r.id in got]  # in plan order
            records = [
                known.get(p.id)
                or RunRecord(p.id, p.stage, RunStatus.PENDING, json.loads(p.config_json))
                for p in planned
            ]
            index = {p.id: p.index for p in planned}
            plan = _plan(suite, overrides, planned, rows)
            title = f"assay report: {suite.name}"
        else:
            records = opened.query(stage=stage)
            ups = []
            if not records:
                raise AssayError(
                    f"no recorded runs of stage {stage!r} in {opened.url}; "
                    "`assay ls` lists the recorded runs"
                )
            index = {r.id: i for i, r in enumerate(records)}
            title = f"assay report: stage {stage}"
        url = opened.url
    finally:
        if not isinstance(store, Store):
            opened.close()
    now = time.time()
    prov = {r.id: files.json(r.dir / "provenance.json") if r.dir else None for r in records}
    df = records_frame(records)
    done = df[df["status"] == RunStatus.DONE.value]
    flat = {r.id: _flat(r) for r in records}
    stats = _statistics(done, baseline)
    labels = _group_labels(df)
    table = _table(df, records, flat, index, prov, now)
    curves = _curves(records, labels, files)
    curves["upstream"] = _upstream_curves(ups, files)
    from ..sinks import recorded_problems

    problems: list[str] = recorded_problems(root)  # trackers a run could not reach
    sections = []
    if families:
        finished = [r for r in records if r.status is RunStatus.DONE]
        sections = family_sections(finished, problems, memo)
    return _jsonable(
        {
            "title": title,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "generated_s": round(now, 3),
            "source": {
                "root": str(Path(root).resolve()),
                "store": url,
                "stage": stage,
                "suite": None if suite is None else suite.name,
            },
            "plan": plan,
            "counts": dict(Counter(r.status.value for r in records)),
            "table": table,
            "detail": _details(records, prov, labels),
            "running": _running(records, files, now),
            "stats": stats,
            "curves": curves,
            "provenance": provenance_summary(records, prov),
            "failures": _failures(records, df, table["param_keys"], files),
            "families": sections,
            "problems": problems,
            "build_s": round(time.perf_counter() - t0, 3),
        }
    )


def _plan(suite: Any, overrides: Sequence[str], planned: Sequence[Any], rows: Sequence[Any]):
    top = Counter(r.state.value for r in rows if not r.upstream)
    up = Counter(r.state.value for r in rows if r.upstream)
    return {
        "name": suite.name,
        "stage": suite.stage,
        "description": suite.description,
        "path": str(suite.path) if suite.path else None,
        "sweep": suite.sweep,
        "config": suite.config,
        "overrides": list(overrides),
        "n_runs": len(planned),
        "states": dict(top),
        "upstream_states": dict(up),
        "upstream_stages": sorted({r.stage for r in rows if r.upstream}),
    }


def _group_labels(df: Any) -> dict[str, str]:
    """Run id -> group label: config minus seed, by the columns that vary among *all* runs of
    the report (planned, running, failed and finished), so a running ``lr=2.0`` run is never
    averaged into the ``lr=0.05`` curve while only ``lr=0.05`` runs have finished."""
    if df.empty:
        return {}
    return dict(zip(df["id"], group_labels(df, group_columns(df)), strict=True))


CURVE_STATES = (RunStatus.DONE, RunStatus.RUNNING, RunStatus.FAILED)


def _curves(records: Sequence[RunRecord], labels: dict[str, str], files: RunFiles) -> dict:
    """Group curves of the finished and running runs, and each failed run's own partial curve
    (what its ``metrics.jsonl`` holds), drawn apart and marked failed as W&B and MLflow draw
    crashed runs: a run cut short would pull a group's mean towards its early steps."""
    series = {}
    for r in records:
        if r.status in CURVE_STATES and r.dir:
            s = run_series(files.metrics(r.dir / "metrics.jsonl"))
            if s:
                series[r.id] = s
    failed = {r.id for r in records if r.status is RunStatus.FAILED and r.id in series}
    curves = aggregate_curves(series, {k: v for k, v in labels.items() if k not in failed})
    curves["failed"] = _failed_lines({k: series[k] for k in failed}, labels)
    return curves


def _failed_lines(series: dict[str, dict[str, dict[int, float]]], labels: dict[str, str]):
    """``{metric: [{run, group, steps, values}]}`` of the failed runs, thinned to
    ``RUN_POINTS`` points each (non-finite values as "nan"/"inf")."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rid, s in series.items():
        for metric, values in s.items():
            steps, _ = _thin(sorted(values), RUN_POINTS)
            out.setdefault(metric, []).append(
                {
                    "run": rid,
                    "group": labels.get(rid, ""),
                    "steps": steps,
                    "values": [
                        float(f"{values[t]:.6g}") if math.isfinite(values[t]) else str(values[t])
                        for t in steps
                    ],
                }
            )
    return out


def _upstream_curves(records: Sequence[RunRecord], files: RunFiles) -> dict[str, Any]:
    """The curves of the upstream runs a suite depends on, by stage (a volume suite's metrics
    are logged by its ``volume.train`` runs): per stage, grouped by the config keys that vary
    among that stage's runs, failed runs apart, as for the suite's own stage."""
    out = {}
    for stage in sorted({r.stage for r in records}):
        mine = [r for r in records if r.stage == stage]
        df = records_frame(mine)
        curves = _curves(mine, _group_labels(df), files)
        curves.pop("runs", None)  # upstream runs have no row in the table, so no detail
        if curves["metrics"]:
            out[stage] = {**curves, "n_runs": len(mine)}
    return out


def _statistics(done: Any, baseline: str | None) -> dict[str, Any]:
    """Mean and 95% CI per group and metric (the engine's ``summarize``, whose ``note`` says
    what a row cannot say: one seed, non-finite values left out, a bounded interval), and the
    tests against the baseline (``compare_groups``: Welch, and paired over shared seeds; Holm)."""
    if done.empty:
        return {
            "summary": [],
            "comparison": [],
            "metrics": [],
            "baseline": None,
            "notes": ["no finished runs yet: statistics appear when runs finish"],
            "seed_column": None,
        }
    notes = []
    try:
        summary = summarize(done)
    except AssayError as exc:  # a stage's "_bounds" its values leave: say so, keep the page
        return {
            "summary": [],
            "comparison": [],
            "metrics": [],
            "baseline": None,
            "notes": [f"no statistics: {exc}"],
            "seed_column": None,
        }
    comparison = compare_groups(done, baseline)
    rows = summary.to_dict("records")
    if len(rows) > MAX_STATS_ROWS:
        notes.append(f"showing {MAX_STATS_ROWS} of {len(rows)} (group, metric) rows")
        rows = rows[:MAX_STATS_ROWS]
    comp = comparison.to_dict("records") if not comparison.empty else []
    for r in comp:  # a test with nothing to test says why, not "n/a (needs 2 runs)"
        note = str(r.get("note") or "")
        if SAME_IN_BOTH in note:
            r["p_welch"] = r["p_welch_holm"] = NO_VARIATION
        if SAME_DIFFERENCE in note:
            r["p_paired"] = r["p_paired_holm"] = NO_VARIATION
        if not r["n"] or not r["n_baseline"]:  # every value NaN or infinite in a group
            r["p_welch"] = r["p_welch_holm"] = "no finite values"
    return {
        "summary": rows,
        "comparison": comp[:MAX_STATS_ROWS],
        "metrics": list(dict.fromkeys(r["metric"] for r in rows)),
        "baseline": (
            None
            if not comp
            else comp[0]["baseline"]
            if len({r["baseline"] for r in comp}) == 1
            else "one per variant (the baseline column of comparison)"
        ),
        "notes": notes,
        "seed_column": (seed_column(done) or "").removeprefix("config.") or None,
    }


def _flat(rec: RunRecord) -> dict[str, Any]:
    """A run's config and results as ``config.<key>``/``results.<key>`` cells. Unlike the
    DataFrame, a missing result stays missing here and a nan result stays "nan"."""
    row: dict[str, Any] = {}
    flatten(rec.config, "config.", row)
    flatten(rec.results or {}, "results.", row)
    return row


def _table(
    df: Any,
    records: Sequence[RunRecord],
    flat: dict[str, dict[str, Any]],
    index: dict[str, int],
    prov: dict[str, Any],
    now: float,
) -> dict[str, Any]:
    """The runs table: one row per run, columns described once, values as row arrays."""
    params = group_columns(df) if len(df) else []
    seed = seed_column(df) if len(df) else None
    if seed and seed not in params:
        params.append(seed)
    # "_flags" and "_bounds" declare, not measure: a flag is drawn as a badge on its cell
    # (from the run's detail), never as a column of its own
    results = list(
        dict.fromkeys(
            k
            for r in records
            for k in flat[r.id]
            if k.startswith("results.") and k.split(".", 2)[1] not in RESERVED
        )
    )
    notes = []
    if len(results) > MAX_RESULT_COLUMNS:
        notes.append(
            f"{len(results)} result keys: the table shows the first "
            f"{MAX_RESULT_COLUMNS}; each run's detail has all of them"
        )
        results = results[:MAX_RESULT_COLUMNS]
    columns: list[dict[str, Any]] = [
        {"key": "index", "label": "#", "kind": "meta"},
        {"key": "id", "label": "id", "kind": "meta"},
        {"key": "state", "label": "state", "kind": "meta"},
    ]
    columns += [{"key": c, "label": c.removeprefix("config."), "kind": "param"} for c in params]
    columns += [{"key": c, "label": c.removeprefix("results."), "kind": "result"} for c in results]
    columns += [
        {"key": "duration_s", "label": "duration_s", "kind": "meta"},
        {"key": "attempts", "label": "attempts", "kind": "meta"},
        {"key": "commit", "label": "commit", "kind": "meta"},
    ]
    # finished runs made by other code than is installed now (see assay.core._stale)
    stale = {
        rec.id: why
        for rec in records
        if rec.status is RunStatus.DONE
        and (why := stale_reason((prov.get(rec.id) or {}).get("code"), rec.stage))
    }
    if stale:
        columns.append({"key": "stale", "label": "stale", "kind": "meta"})
        notes.append(
            f"{len(stale)} finished run(s) are stale (stage code changed since they "
            "ran): `assay run SUITE --rerun-stale` reruns them"
        )
    rows = []
    for rec in records:
        cells = flat[rec.id]
        git = (prov.get(rec.id) or {}).get("git") or {}
        duration = rec.duration_s
        if duration is None and rec.status is RunStatus.RUNNING and rec.started:
            duration = now - rec.started
        commit = (git.get("commit") or "")[:10] + ("+dirty" if git.get("dirty") else "")
        row: list[Any] = [index.get(rec.id), rec.id, rec.status.value]
        row += [_cell(cells.get(c)) for c in [*params, *results]]
        row += [None if duration is None else round(duration, 3), rec.attempts, commit or None]
        if stale:
            row.append(stale.get(rec.id))
        rows.append(row)
    column: dict[str, Any]
    for j, column in enumerate(columns):
        vals = [row[j] for row in rows if row[j] is not None]
        column["numeric"] = bool(vals) and all(_is_number(v) for v in vals)
    return {
        "columns": columns,
        "rows": rows,
        "notes": notes,
        "param_keys": [c.removeprefix("config.") for c in params],
    }


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) or v in NONFINITE


def _cell(value: Any) -> Any:
    """A table cell as JSON: numbers, short strings; non-finite floats as "nan"/"inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return str(value)


def _details(
    records: Sequence[RunRecord], prov: dict[str, Any], labels: dict[str, str]
) -> dict[str, Any]:
    """Per run: its group, the full config and results, and its provenance in a few fields."""
    out = {}
    for r in records:
        p = prov.get(r.id) or {}
        git = p.get("git") or {}
        out[r.id] = {
            "stage": r.stage,
            "group": labels.get(r.id, ""),
            "config": r.config,
            "results": r.results,
            "error": r.error,
            "dir": str(r.dir) if r.dir else None,
            "provenance": {
                "commit": git.get("commit"),
                "dirty": git.get("dirty"),
                "host": p.get("host"),
                "python": p.get("python"),
                "device": p.get("device"),
                "started": p.get("time_start_iso"),
                "attempt": p.get("attempt"),
            }
            if p
            else None,
        }
    return out


def _running(records: Sequence[RunRecord], files: RunFiles, now: float) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if r.status is not RunStatus.RUNNING:
            continue
        progress = files.json(r.dir / "progress.json") if r.dir else None
        out.append(
            {
                "id": r.id,
                "progress": progress,
                "heartbeat_age_s": round(now - r.heartbeat, 1) if r.heartbeat else None,
                "running_s": round(now - r.started, 1) if r.started else None,
            }
        )
    return out


def _failures(
    records: Sequence[RunRecord], df: Any, param_keys: Sequence[str], files: RunFiles
) -> dict[str, Any]:
    failed = [r for r in records if r.status is RunStatus.FAILED]
    cols = [f"config.{k}" for k in param_keys]
    params = {
        row["id"]: {k.removeprefix("config."): row[k] for k in cols}
        for row in df[df["status"] == "failed"][["id", *cols]].to_dict("records")
    }
    shown = []
    for r in failed[:MAX_FAILURES]:
        shown.append(
            {
                "id": r.id,
                "attempts": r.attempts,
                "error": r.error,
                "params": params.get(r.id, {}),
                "error_tail": files.tail(r.dir / "error.txt", ERROR_TAIL_LINES) if r.dir else None,
                "log_tail": files.tail(r.dir / "log.txt", LOG_TAIL_LINES) if r.dir else None,
            }
        )
    return {"n": len(failed), "shown": shown}


def _jsonable(obj: Any) -> Any:
    """Plain JSON: non-finite floats become "nan"/"inf"/"-inf" (JSON has no literal for them;
    the page shows them as such), numpy scalars become numbers, tuples lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if hasattr(obj, "tolist"):  # numpy scalars and arrays (Plotly figures hold arrays)
        return _jsonable(obj.tolist())
    return str(obj)
