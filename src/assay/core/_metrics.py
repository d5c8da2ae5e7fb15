"""Reading a run's ``metrics.jsonl``: one reader for the report, the sinks and anyone else.

The file is appended line by line while the run goes on, so only complete lines count (a last
line without its newline is being written). A damaged line is skipped, never fatal. Reads go
through the root guard: a file that links outside the root is refused (OutsideRootError).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ._guard import StrPath, open_in_root

METRICS_FILE = "metrics.jsonl"


def parse_metric_lines(data: bytes) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` content: complete lines that hold a JSON object."""
    text = data.decode("utf-8", errors="replace")
    lines = text[: text.rfind("\n") + 1].splitlines()
    try:  # one decode per file: 10,000 runs x 50 lines in seconds, not tens of seconds
        rows = json.loads("[" + ",".join(line for line in lines if line.strip()) + "]")
    except ValueError:  # a damaged line: parse one by one, keep the readable ones
        rows = []
        for line in lines:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return [r for r in rows if isinstance(r, dict)]


def read_metrics(path: StrPath, root: StrPath | None = None) -> list[dict[str, Any]]:
    """The rows of the metrics file ``path`` (``ROOT/<id>/metrics.jsonl``; ``root`` defaults to
    the run folder's parent); [] when there is none yet."""
    path = Path(path)
    if not path.exists():
        return []
    with os.fdopen(open_in_root(root or path.parent.parent, path), "rb") as f:
        return parse_metric_lines(f.read())
