"""icl's analysis tables count NaN runs and say "no variation" instead of a zero-width interval."""

from __future__ import annotations

import math

from assay import RunRecord, RunStatus
from assay.families.icl._analysis import summary_lines, tables


def _train(i: int, p8: float, p16: float) -> RunRecord:
    return RunRecord(
        id=f"icl_train_{i}",
        stage="icl.train",
        status=RunStatus.DONE,
        config={"seed": i, "graph": "grid"},
        results={"p_nbr/grid/n8": p8, "p_nbr/grid/n16": p16},
        dir="/nowhere",
    )


def test_nan_counted_and_identical_runs_flagged():
    recs = [_train(0, 0.5, math.nan), _train(1, 0.5, 0.6), _train(2, 0.5, 0.8)]
    rows = {r["n_words"]: r for r in tables(recs)["p_nbr"]}
    assert rows[8]["no_variation"] and rows[8]["lo"] == rows[8]["hi"] == 0.5
    assert rows[16]["n_nonfinite"] == 1 and rows[16]["n_runs"] == 2 and rows[16]["mean"] == 0.7
    assert not rows[16]["no_variation"] and 0 <= rows[16]["lo"] < 0.7 < rows[16]["hi"] <= 1
    text = "\n".join(summary_lines(tables(recs)))
    assert "0.5 (no variation)" in text and "(1 nan)" in text
    assert "WARNING: 1 cell(s) left out NaN/inf values" in text
