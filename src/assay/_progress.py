"""Progress display: a rich progress bar on a terminal, plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
from typing import TextIO

from ._runner import Outcome

_STYLE = {"done": "green", "skipped": "dim", "failed": "red", "failed-earlier": "red"}


class ProgressDisplay:
    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total = total
        self.count = 0
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self._rich = None
        if enabled and self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            self._rich = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._task = self._rich.add_task("runs", total=total)
            self._rich.start()

    def update(self, outcome: Outcome) -> None:
        self.count += 1
        if not self.enabled:
            return
        line = f"[{self.count}/{self.total}] {outcome.status:<14} {outcome.id}"
        if outcome.status in ("done", "failed"):
            line += f" ({outcome.duration_s:.2f}s)"
        if outcome.error and outcome.status.startswith("failed"):
            line += f": {outcome.error.splitlines()[0][:160]}"
        if self._rich is not None:
            from rich.text import Text

            self._rich.console.print(Text(line, style=_STYLE.get(outcome.status, "")))
            self._rich.advance(self._task)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
