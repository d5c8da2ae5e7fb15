"""-inf log-volumes are drawn, counted per point and marked partial; analyze prints what it computed."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from assay.families.volume._analysis import aggregate, analyze, series_records
from assay.families.volume._plots import draw_series, level_axis, mark_minus_inf

INF = "-inf"


def _row(land, model, level, v, cut="None", flag="False"):
    return {
        "landscape": str(land),
        "model": model,
        "model_level": str(level),
        "log_volume": str(v),
        "test_loss": "0.5",
        "test_accuracy": "0.9",
        "cutoff": cut,
        "centre_above_tau": flag,
    }


# two seeds, two landscapes; k200 is above tau in both seeds (every landscape -inf), k30 is
# -inf in one seed at L20 only (a partial mean there)
SEEDS = [
    [
        _row(0, "k0", 0, 10.0, "2"),
        _row(0, "k30", 30, 8.0),
        _row(0, "k200", 200, INF, "0", "True"),
        _row(20, "k30", 30, 6.0),
        _row(20, "k200", 200, INF, "0", "True"),
    ],
    [
        _row(0, "k0", 0, 12.0, "3"),
        _row(0, "k30", 30, 9.0),
        _row(0, "k200", 200, INF, "0", "True"),
        _row(20, "k30", 30, INF),
        _row(20, "k200", 200, INF, "0", "True"),
    ],
]


def test_series_count_minus_inf_seeds_per_point_not_summed_over_landscapes():
    by_level, by_land = series_records(aggregate(SEEDS))
    k200 = next(s for s in by_land if s["label"].startswith("k200"))
    assert k200["label"] == "k200 (2 of 2 seeds -inf)"  # not "4 seed(s)"
    assert k200["minus_inf_x"] == [0, 20] and k200["y"] == [-math.inf, -math.inf]
    k30 = next(s for s in by_land if s["label"].startswith("k30"))
    assert k30["label"] == "k30 (seeds -inf: L20 1/2)"
    assert k30["partial"] == [False, True] and k30["y"] == [8.5, 6.0]  # 6.0: one finite seed
    assert k30["minus_inf_x"] == []  # a partial mean is a number, drawn hollow
    l20 = next(s for s in by_level if s["label"].startswith("20"))
    assert l20["label"] == "20 (seeds -inf: k30 1/2, k200 2/2)"
    assert l20["n_minus_inf"] == [1, 2] and l20["n_seeds"] == [2, 2]


def _markers(ax, marker: str) -> list:
    return [ln for ln in ax.get_lines() if ln.get_marker() == marker and len(ln.get_xdata())]


@pytest.mark.parametrize("all_minus_inf", [False, True])
def test_every_minus_inf_model_is_drawn_inside_the_axis(all_minus_inf):
    from assay.ml import agg_pyplot

    plt = agg_pyplot()
    fig, ax = plt.subplots()
    xs = [0, 30, 200]  # the highest level is -inf: autoscaling on finite points alone hid it
    ys = [-math.inf] * 3 if all_minus_inf else [10.0, 8.0, -math.inf]
    color, inf_x, tr = draw_series(ax, xs, ys, 0, 1, "L0", partial=[False, True, False])
    level_axis(ax, xs, "k")
    mark_minus_inf(ax, [(inf_x, tr, color)], partial=True)
    (tri,) = _markers(ax, "v")
    lo, hi = ax.get_xlim()
    assert all(lo <= x <= hi for x in tri.get_xdata()) and tri.get_clip_on() is False
    assert list(tri.get_xdata()) == ([0, 30, 200] if all_minus_inf else [200])
    ylo, yhi = ax.get_ylim()
    assert all(ylo <= y <= yhi for y in tri.get_ydata())  # on the edge, not blank
    hollow = [ln for ln in _markers(ax, "o") if ln.get_markerfacecolor() == "white"]
    assert len(hollow) == (0 if all_minus_inf else 1)  # the partial mean at k30
    plt.close(fig)


@dataclass
class _Rec:
    dir: Path
    config: dict
    stage: str = "volume.volume"

    def artifact(self, name: str) -> Path:
        return self.dir / name


def test_analyze_prints_the_cutoff_mean_as_computed(tmp_path, capsys):
    recs = []
    for i, table in enumerate(SEEDS):
        d = tmp_path / f"s{i}"
        d.mkdir()
        with open(d / "table.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
        recs.append(_Rec(d, {"seed": i, "threshold": 0.1}))
    analyze(recs, tmp_path / "out")
    out = capsys.readouterr().out
    k0 = next(line for line in out.splitlines() if " k0 " in line)
    assert k0.split()[-1] == "2.5"  # mean of cutoffs 2 and 3, not "2"
    k200 = next(line for line in out.splitlines() if line.split()[:2] == ["0", "k200"])
    assert "2/2" in k200 and "-inf" in k200
    with open(tmp_path / "out" / "volume_table_all.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    part = [(r["landscape"], r["model"]) for r in rows if r["partial"] == "True"]
    assert part == [("20", "k30")]
    assert (tmp_path / "out" / "volume_all.png").stat().st_size > 0
    assert np.isneginf(float(next(r for r in rows if r["model"] == "k200")["log_volume_mean"]))


def test_aggregate_says_nan_and_no_variation():
    seeds = [
        [_row(0, "k0", 0, 7.0), _row(0, "k30", 30, "nan")],
        [_row(0, "k0", 0, 7.0), _row(0, "k30", 30, "nan")],
        [_row(0, "k0", 0, 7.0), _row(0, "k30", 30, "nan")],
    ]
    k0, k30 = aggregate(seeds)
    assert k0["no_variation"] is True and k0["log_volume_ci95"] == 0.0  # not a tiny "CI"
    assert k0["log_volume_mean"] == 7.0 and not k0["partial"]
    assert k30["n_nan"] == 3 and math.isnan(k30["log_volume_mean"])  # NaN, not -inf
    assert k30["n_minus_inf"] == 0 and not k30["no_variation"]
