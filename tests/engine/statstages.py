"""A stage over the example family's fit whose results carry NaN, -inf and values that do not
vary, with declared bounds and flags (imported with ``--import statstages`` by the statistics
tests)."""

from __future__ import annotations

import math
from typing import Literal

import assay
from assay.families.example import FitConfig


class ScoreConfig(assay.SeededConfig):
    fit: FitConfig = FitConfig()
    mode: Literal["ok", "nan", "neginf", "const"] = "ok"
    n_extra: int = 0  # extra metrics m000, m001, ...: a wide result set
    seed: int = 0


@assay.stage("stat.score", config=ScoreConfig, version=1)
def score(config: ScoreConfig, run: assay.Run) -> dict:
    """Metrics derived from the fit's test error; ``mode`` decides which go non-finite."""
    mse = run.upstream["fit"].results["test_mse"]
    neginf = config.mode == "neginf" or (config.mode == "ok" and config.seed == 0)
    extra = {f"m{i:03d}": mse * i for i in range(config.n_extra)}
    return {
        **extra,
        "test_mse": mse,
        # a fraction the name does not reveal: its range comes from "_bounds"
        "quality": 1.0 if config.mode in ("const", "nan") else 1.0 / (1.0 + mse),
        "log_v": -math.inf if neginf else math.log(mse),
        "score": math.nan if config.mode == "nan" else mse * 10,
        "_bounds": {"quality": [0, 1]},
        "_flags": {"log_v": "above tau"} if neginf else {},
    }
