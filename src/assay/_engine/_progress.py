"""Progress display: rich on a terminal, plain lines otherwise (logs, CI).

Besides one line per finished run (named by its varying parameters, not only its hash), the
terminal display shows every run in flight, upstream runs included, with the counter the stage
reports through ``run.progress()`` and an ETA. Runs execute in other processes too, so a
background thread asks the store which of the suite's runs are running and reads their
``progress.json`` (written atomically, throttled by the run).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ._io import read_json
from ._run import PROGRESS_FILE, Outcome
from ._spec import PlannedRun

_STYLE = {"done": "green", "skipped": "dim", "failed": "red", "failed-earlier": "red",
          "done-elsewhere": "cyan", "failed-elsewhere": "red"}  # fmt: skip
POLL_S = 0.5


def describe(planned: PlannedRun) -> str:
    """``stage k=v k=v`` for a run: what a researcher recognises it by."""
    params = " ".join(f"{k}={v}" for k, v in planned.params.items())
    return f"{planned.stage} {params}".strip()


def eta(info: dict[str, Any]) -> str:
    n, total, started = info.get("n") or 0, info.get("total"), info.get("started")
    if not total or not n or started is None:
        return ""
    left = (time.time() - started) / n * (total - n)
    return f" eta {left:.0f}s" if left < 120 else f" eta {left / 60:.1f}min"


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
        from .._store import resolve_store
        from ._run import RunStatus

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
                        try:
                            info = read_json(self.root / rid / PROGRESS_FILE)
                        except (OSError, ValueError):
                            info = {}
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

        label = f"  {describe(self.by_id[rid])}"
        if info.get("desc"):
            label += f" ({info['desc']})"
        label = escape(label + eta(info))
        if task is None:
            self._live[rid] = self._rich.add_task(label, total=info.get("total"),
                                                  completed=info.get("n") or 0)  # fmt: skip
        else:
            self._rich.update(task, description=label, total=info.get("total"),
                              completed=info.get("n") or 0)  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        if self._rich is not None:
            self._rich.stop()
