"""Progress display: rich on a terminal, plain lines otherwise (logs, CI).

Besides one line per finished run (named by its varying parameters, not only its hash), the
terminal display shows every run in flight, upstream runs included, with the counter the stage
reports through ``run.progress()`` and an ETA. Runs execute in other processes too, so a
background thread asks the store which of the suite's runs are running and reads their
``progress.json`` (written atomically, throttled by the run).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..core._flatten import flatten
from ..core._guard import OutsideRootError
from ..core._io import read_json
from ..core._run import PROGRESS_FILE, Outcome
from ..core._spec import PlannedRun

_STYLE = {
    "done": "green",
    "skipped": "dim",
    "failed": "red",
    "failed-earlier": "red",
    "done-elsewhere": "cyan",
    "failed-elsewhere": "red",
}
POLL_S = 0.5
_LIBRARY_PROGRESS_OFF = {  # module -> the function that turns its progress bars off
    "huggingface_hub.utils": "disable_progress_bars",
    "transformers.utils.logging": "disable_progress_bar",
    "datasets.utils": "disable_progress_bars",
}


def describe(planned: PlannedRun) -> str:
    """``stage k=v k=v`` for a run: what a researcher recognises it by."""
    params = " ".join(f"{k}={v}" for k, v in planned.params.items())
    return f"{planned.stage} {params}".strip()


def upstream_labels(runs: Sequence[PlannedRun]) -> dict[str, str]:
    """Names for upstream runs, which have no suite parameters of their own: the stage and the
    config keys that vary among that stage's upstream runs (``volume.train extra_samples=200
    seed=1``), so two bars of one stage never read the same."""
    tops = {r.id for r in runs}
    by_stage: dict[str, dict[str, dict[str, Any]]] = {}
    for top in runs:
        for r in top.closure():
            if r.id not in tops:
                flat: dict[str, Any] = {}
                flatten(json.loads(r.config_json), "", flat)
                by_stage.setdefault(r.stage, {})[r.id] = flat
    labels = {}
    for stage, flats in by_stage.items():
        keys = sorted({k for f in flats.values() for k in f})
        varying = [k for k in keys if len({json.dumps(f.get(k)) for f in flats.values()}) > 1]
        for rid, flat in flats.items():
            shown = " ".join(f"{k.rsplit('.', 1)[-1]}={flat.get(k)}" for k in varying)
            labels[rid] = f"{stage} {shown}".strip()
    return labels


def eta(info: dict[str, Any]) -> str:
    """`` eta 42s`` from a run's progress record: the rate of the units done since it (re)started."""
    total, started = info.get("total"), info.get("started")
    position = info.get("position") or info.get("n") or 0
    done = position - (info.get("start") or 0)  # a resumed run's earlier units took no time now
    if not total or done <= 0 or started is None:
        return ""
    left = (time.time() - started) / done * (total - position)
    return f" eta {left:.0f}s" if left < 120 else f" eta {left / 60:.1f}min"


def in_flight(info: dict[str, Any] | None) -> str:
    """``epoch 3/10, batch 120/400 eta 42s`` for a run's progress record ('' when it has none)."""
    if not info:
        return ""
    label = info.get("label") or info.get("desc") or ""
    if not info.get("label") and info.get("n") is not None:
        label = f"{label} {info['n']}/{info.get('total') or '?'}".strip()
    if info.get("start"):  # a resumed run: where it picked up
        label += f" (resumed at {info.get('desc') or ''} {info['start']})".replace("  ", " ")
    return (label + eta(info)).strip()


def read_progress(run_dir: Path) -> dict[str, Any]:
    """A running run's ``progress.json`` ({} when it reports none or the file is mid-rename)."""
    try:
        info = read_json(Path(run_dir) / PROGRESS_FILE, root=Path(run_dir).parent)
    except (OSError, ValueError, OutsideRootError):  # a link leading out of the root: not read
        return {}
    return info if isinstance(info, dict) else {}


def silence_library_progress() -> None:
    """Turn off the progress bars Hugging Face libraries draw (loading weights, writing shards)
    inside runs: they would tear the live display and fill log files. Libraries loaded already
    are told directly; the environment covers those a stage imports later (nothing is imported
    here)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for module, call in _LIBRARY_PROGRESS_OFF.items():
        if module in sys.modules:
            getattr(sys.modules[module], call, lambda: None)()


class ProgressDisplay:
    def __init__(
        self,
        runs: Sequence[PlannedRun],
        *,
        root: str | Path = "runs",
        store: str | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.store_url = store
        self.total = len(runs)
        self.count = 0
        self.root = Path(root)
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.by_id = {r.id: r for top in runs for r in top.closure()}
        self.labels = upstream_labels(runs)
        self._rich: Any = None
        self._live: dict[str, Any] = {}
        self._stop = threading.Event()
        if enabled and self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._rich = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._task = self._rich.add_task("runs", total=self.total)
            self._rich.start()
            self._thread = threading.Thread(target=self._poll, daemon=True, name="assay-progress")
            self._thread.start()

    def update(self, outcome: Outcome) -> None:
        self.count += 1
        if not self.enabled:
            return
        planned = self.by_id.get(outcome.id)
        name = describe(planned) if planned else outcome.stage
        line = f"[{self.count}/{self.total}] {outcome.label:<14} {name} ({outcome.id})"
        if outcome.label in ("done", "failed"):
            line += f" {outcome.duration_s:.2f}s"
        if outcome.error and outcome.failed:
            line += f": {outcome.error.splitlines()[0][:160]}"
        if self._rich is not None:
            from rich.text import Text

            self._rich.console.print(Text(line, style=_STYLE.get(outcome.label, "")))
            self._rich.advance(self._task)
        else:
            print(line, file=self.stream, flush=True)

    def _poll(self) -> None:
        """Show a bar for each of the suite's runs that the store says is running."""
        from ..core._run import RunStatus
        from ..store import resolve_store

        store = None
        try:
            while not self._stop.wait(POLL_S):
                if store is None:
                    if not (self.store_url or (self.root / "assay.db").exists()):
                        continue
                    store = resolve_store(self.store_url, self.root)
                try:
                    running = {r.id for r in store.query(status=RunStatus.RUNNING, light=True)}
                except Exception:  # the display must never break a suite
                    continue
                for rid in [*self._live, *(r for r in running if r in self.by_id)]:
                    info = None
                    if rid in running:
                        info = read_progress(self.root / rid)
                    self._show(rid, info)
        finally:
            if store is not None:
                store.close()

    def _show(self, rid: str, info: dict[str, Any] | None) -> None:
        task = self._live.get(rid)
        if info is None:
            if task is not None:
                self._rich.remove_task(task)
                del self._live[rid]
            return
        from rich.markup import escape

        name = self.labels.get(rid) or describe(self.by_id[rid])
        label = escape(f"  {name} {in_flight(info)}".rstrip())
        done = info.get("position") or info.get("n") or 0
        if task is None:
            self._live[rid] = self._rich.add_task(label, total=info.get("total"), completed=done)
        else:
            self._rich.update(task, description=label, total=info.get("total"), completed=done)

    def close(self) -> None:
        self._stop.set()
        if self._rich is not None:
            self._rich.stop()
