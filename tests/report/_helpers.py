"""Suites and runs the report tests share."""

from __future__ import annotations

import textwrap
from pathlib import Path

import assay

SUITE = """\
name: rpt-demo
description: decaying losses at three rates
stage: rpt.train
config: {n_steps: 12}
sweep:
  grid: {lr: [0.1, 0.3, 0.9]}
  seeds: [0, 1, 2]
"""


def write_suite(tmp: Path, text: str = SUITE) -> Path:
    path = tmp / "suite.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def run_demo(tmp: Path) -> tuple[Path, Path]:
    """The demo suite run inline: 6 done (lr 0.1, 0.3), 3 failed (lr 0.9)."""
    import reportstages  # noqa: F401  (registers rpt.train)

    suite, root = write_suite(tmp), tmp / "runs"
    assay.run_suite(suite, root=root)
    return suite, root
