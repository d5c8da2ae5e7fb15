"""trigger's multi-seed table: identical seeds say "no variation", unmeasured seeds are counted."""

from __future__ import annotations

import math

from assay.families.trigger._analysis import aggregate


def _row(old, new, n_used=10):
    return {
        "category": "warm",
        "split": "ID",
        "n_used": n_used,
        "old": old,
        "new": new,
        "neither": 1 - old - new,
        "note": "",
    }


def test_identical_seeds_give_no_interval_and_say_so():
    (a,) = aggregate(
        [[_row(0.0, 1.0)], [_row(0.0, 1.0)], [_row(0.0, 1.0)], [_row(0.0, 1.0)], [_row(0.0, 1.0)]]
    )
    assert (a["new"], a["new_lo"], a["new_hi"]) == (1.0, 1.0, 1.0)  # was [0.57, 1.00]
    assert "new: no variation (5 seeds at 1.000)" in a["note"]


def test_unmeasured_seeds_are_counted_not_averaged():
    (a,) = aggregate([[_row(0.2, 0.8)], [_row(0.4, 0.6)], [_row(math.nan, math.nan, n_used=0)]])
    assert a["n_seeds"] == 3 and a["n_missing"] == 1
    assert math.isclose(a["new"], 0.7) and a["new_lo"] < 0.7 < a["new_hi"] <= 1.0
    assert "new: no variation" not in a["note"] and "neither: no variation" in a["note"]
