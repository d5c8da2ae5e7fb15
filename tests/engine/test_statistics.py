"""Every number either means something or says why not: intervals, bounds, zero variance, group
labels and non-finite values (issue 20), on real numbers and through `assay analyze`."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import assay
from assay.analysis import (
    CI_OUTSIDE_UNIT,
    SAME_DIFFERENCE,
    SAME_IN_BOTH,
    compare_groups,
    known_bounds,
    parse_bounds,
    records_frame,
    summarize,
)
from assay.analysis._stats import mean_interval
from assay.store import resolve_store


def frame(rows):
    """rows: (config dict, results dict) -> the analysis DataFrame of done runs."""
    return records_frame(
        [
            assay.RunRecord(
                id=f"a_{i}", stage="a.b", status=assay.RunStatus.DONE, config=c, results=r
            )
            for i, (c, r) in enumerate(rows)
        ]
    )


# -- one interval, continuous, inside the bounds ---------------------------------------------------


def test_five_seeds_at_one_give_a_zero_width_interval_and_a_near_one_a_nearby_interval():
    ones = mean_interval([1.0] * 5, bounds=(0, 1))
    assert (ones.lo, ones.mean, ones.hi) == (1.0, 1.0, 1.0) and ones.no_variation
    near = mean_interval([1, 1, 1, 1, 0.99], bounds=(0, 1))  # was Wilson [0.566, 1] vs [0.994, 1]
    assert near.method == "logit-t" and not near.no_variation
    assert near.hi == 1.0 and near.lo == pytest.approx(0.99251, abs=1e-5)


def test_the_interval_moves_continuously_with_the_data():
    for delta in (1e-2, 1e-4, 1e-6, 1e-9):  # towards five seeds at 1: the interval shrinks to 1
        iv = mean_interval([1, 1, 1, 1, 1 - delta], bounds=(0, 1))
        assert iv.hi == 1.0 and 0 < 1 - iv.lo <= 0.76 * delta
    base = [0.62, 0.7, 0.75, 0.81, 0.9]
    iv0 = mean_interval(base, bounds=(0, 1))
    for h in (1e-3, 1e-5, 1e-7):  # a small change of one value: a change of the same order
        iv = mean_interval([base[0] + h, *base[1:]], bounds=(0, 1))
        assert abs(iv.lo - iv0.lo) <= 0.6 * h and abs(iv.hi - iv0.hi) <= 0.2 * h
    at_bound = mean_interval([0, 0.3, 0.6], bounds=(0, 1))
    inside = mean_interval([1e-9, 0.3, 0.6], bounds=(0, 1))
    assert (inside.lo, inside.hi) == pytest.approx((at_bound.lo, at_bound.hi), abs=1e-8)


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0), (0.0, 100.0)])
def test_bounded_intervals_stay_inside_and_contain_the_mean(bounds):
    rng = np.random.default_rng(0)
    a, b = bounds
    for n in (2, 3, 5, 8):
        for _ in range(50):
            x = a + (b - a) * rng.beta(0.3, 0.3, size=n)  # many values near the bounds
            x[rng.random(n) < 0.2] = b
            iv = mean_interval(x, bounds=bounds)
            assert a <= iv.lo <= iv.mean <= iv.hi <= b


def test_unbounded_and_one_sided_metrics_use_the_t_interval():
    x = [1.0, 2.0, 4.0, 7.0]
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(x), scale=stats.sem(x))
    assert (mean_interval(x).lo, mean_interval(x).hi) == pytest.approx((lo, hi))
    err = mean_interval([0.1, 2.0, 3.0], bounds=(0, math.inf))  # an absolute error
    assert err.method == "t" and err.lo == 0.0 and err.clipped


def test_accuracy_09_1_1_is_bounded_in_the_summary_and_the_report_curves():
    from assay.report._curves import aggregate_curves

    df = frame([({"seed": s}, {"accuracy": v}) for s, v in enumerate([0.9, 1.0, 1.0])])
    row = summarize(df).iloc[0]
    assert row.ci_method == "logit-t" and 0.79 < row.ci_low < 0.9 and row.ci_high == 1.0
    series = {f"r{s}": {"accuracy": {0: v}} for s, v in enumerate([0.9, 1.0, 1.0])}
    curves = aggregate_curves(series, {rid: "all" for rid in series})
    (line,) = curves["series"]["accuracy"]
    assert line["hi"] == [1.0] and line["lo"][0] == pytest.approx(row.ci_low, abs=1e-5)


# -- bounds declared once ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,values,want",
    [
        ("val_accuracy", [0.5], (0, 1)),
        ("results.eval.top1_acc", [0.5], (0, 1)),
        ("error_rate", [0.1], (0, 1)),
        ("learning_rate", [0.1], None),
        ("eval_f1", [0.87], (0, 1)),
        ("eval_f1", [87.5, 91.0], (0, 100)),  # QA scores in percent
        ("eval_exact_match", [80.0], (0, 100)),
        ("kendall_tau", [-0.3], (-1, 1)),
        ("cos_sim", [0.2], (-1, 1)),
        ("logvol_abs_err", [3.0], (0, math.inf)),
        ("loss", [0.5], None),
        ("val_accuracy", [1.5], None),  # a name whose range the values leave declares nothing
    ],
)
def test_name_rules(name, values, want):
    assert known_bounds(name, values) == want


def test_abs_err_and_a_kendall_tau_get_no_pass_its_bounds_note():
    df = frame(
        [
            ({"seed": s}, {"abs_err": e, "kendall_tau": t, "score": e})
            for s, (e, t) in enumerate([(0.05, 0.1), (0.9, 0.95)])
        ]
    )
    rows = summarize(df).set_index("metric")
    assert CI_OUTSIDE_UNIT not in rows.loc["abs_err", "note"]
    assert CI_OUTSIDE_UNIT not in rows.loc["kendall_tau", "note"]
    assert rows.loc["kendall_tau", "ci_low"] >= -1 and rows.loc["kendall_tau", "ci_high"] <= 1
    assert (
        rows.loc["abs_err", "ci_low"] == 0 and rows.loc["abs_err", "bounds"] == "[0, inf] (name)"
    )
    assert CI_OUTSIDE_UNIT in rows.loc["score", "note"]  # unknown range: still flagged


def test_a_stage_declares_bounds_in_its_results_and_the_user_on_the_command_line():
    rows = [
        ({"seed": s}, {"em": v, "_bounds": {"em": [0, 100]}})
        for s, v in enumerate([70.0, 95.0, 99.0])
    ]
    row = summarize(frame(rows)).iloc[0]
    assert row.bounds == "[0, 100] (results)" and row.ci_low >= 0 and row.ci_high <= 100
    assert list(summarize(frame(rows)).metric) == ["em"]  # "_bounds" is no metric
    assert parse_bounds(["acc=0:1,abs_err=0:inf", "results.tau=-1:1"]) == {
        "results.acc": (0, 1),
        "results.abs_err": (0, math.inf),
        "results.tau": (-1, 1),
    }
    user = summarize(frame(rows), bounds=parse_bounds(["em=0:100"])).iloc[0]
    assert user.bounds == "[0, 100] (declared)"
    for bad, message in [
        ("acc", "is not METRIC=LOW:HIGH"),
        ("acc=1:0", "low < high"),
        ("acc=a:1", "pair \\[low, high\\] of numbers"),
    ]:
        with pytest.raises(assay.AssayError, match=message):
            parse_bounds([bad])
    with pytest.raises(assay.AssayError, match="em has values 70..99 outside its bounds"):
        summarize(frame(rows), bounds={"em": (0, 1)})
    with pytest.raises(assay.AssayError, match=r"unknown metric\(s\) in --bounds acc"):
        summarize(frame(rows), bounds={"acc": (0, 1)})
    clash = [*rows, ({"seed": 9}, {"em": 1.0, "_bounds": {"em": [0, 1]}})]
    with pytest.raises(assay.AssayError, match='runs declare different "_bounds" for em'):
        summarize(frame(clash))


# -- zero variance: NaN and a note, never a tiny p --------------------------------------------------


def test_identical_paired_differences_give_no_p_value_but_a_note():
    rows = [
        ({"lr": lr, "seed": s}, {"m": v})
        for lr, vals in ((1, [0.2, 0.4, 0.6]), (2, [0.3, 0.5, 0.7]))
        for s, v in enumerate(vals)
    ]
    (row,) = compare_groups(frame(rows), baseline="lr=1").itertuples()
    assert math.isnan(row.p_paired) and SAME_DIFFERENCE in row.note  # scipy: 7.95e-33
    assert row.n_pairs == 3 and row.p_welch == pytest.approx(
        stats.ttest_ind([0.3, 0.5, 0.7], [0.2, 0.4, 0.6], equal_var=False).pvalue
    )


def test_identical_groups_give_nan_and_no_variation_in_table_and_report_data():
    from assay.report._data import _statistics
    from assay.report._html import _pval

    rows = [({"lr": lr, "seed": s}, {"m": v}) for lr, v in ((1, 0.5), (2, 0.75)) for s in range(3)]
    df = frame(rows)
    (row,) = compare_groups(df).itertuples()
    assert math.isnan(row.p_welch) and math.isnan(row.p_paired)  # Welch was 0.0
    assert SAME_IN_BOTH in row.note and row.diff == 0.25
    summary = summarize(df)
    assert list(summary.note) == [
        "no variation: all 3 values are 0.5",
        "no variation: all 3 values are 0.75",
    ]
    assert list(summary.ci_low) == list(summary.ci_high) == [0.5, 0.75]
    comp = _statistics(df, None)["comparison"][0]
    assert comp["p_welch_holm"] == comp["p_paired_holm"] == "no variation"
    assert _pval(comp["p_welch_holm"]) == "no variation"  # not "n/a (needs 2 runs per group)"


# -- group labels and baselines --------------------------------------------------------------------


def test_groups_are_named_by_the_keys_they_set():
    filters = [
        {"kind": None, "top_fraction": None},
        {"kind": "top", "top_fraction": 0.1},
        {"kind": "top", "top_fraction": 0.3},
        {"kind": "random", "top_fraction": None},
    ]
    rows = [
        ({"filter": f, "seed": s}, {"m": float(i + s)})
        for i, f in enumerate(filters)
        for s in range(2)
    ]
    assert list(summarize(frame(rows)).group) == [
        "filter.kind=None, filter.top_fraction=None",  # nothing set: the Nones say so
        "filter.kind=top, filter.top_fraction=0.1",
        "filter.kind=top, filter.top_fraction=0.3",
        "filter.kind=random",
    ]


def test_a_partial_baseline_is_chosen_within_each_other_factor():
    rows = [
        ({"lora_r": r, "task": t, "seed": s}, {"m": r + 100 * (t == "b") + s})
        for t in ("a", "b")
        for r in (8, 16, 32)
        for s in range(3)
    ]
    cmp = compare_groups(frame(rows), baseline="lora_r=8")
    assert list(zip(cmp.group, cmp.baseline, cmp["diff"], strict=True)) == [
        ("lora_r=16, task=a", "lora_r=8, task=a", 8.0),
        ("lora_r=32, task=a", "lora_r=8, task=a", 24.0),
        ("lora_r=16, task=b", "lora_r=8, task=b", 8.0),
        ("lora_r=32, task=b", "lora_r=8, task=b", 24.0),
    ]
    assert cmp.n_pairs.eq(3).all()
    with pytest.raises(assay.AssayError, match="matches 0 groups"):
        compare_groups(frame(rows), baseline="lora_r=4")


# -- non-finite values ------------------------------------------------------------------------------


def test_store_and_load_runs_keep_nonfinite_results_as_floats(root):
    import statstages  # noqa: F401  (registers stat.score)

    suite = assay.Suite(
        name="s", stage="stat.score", config={"mode": "neginf"}, sweep={"seeds": [0, 1]}
    )
    assay.run_suite(suite, root=root)
    df = assay.load_runs(root, suite=suite)
    assert df["results.log_v"].tolist() == [-math.inf, -math.inf]
    with resolve_store(None, root) as store:
        (rec, _) = store.query(stage="stat.score")
    assert rec.results["log_v"] == -math.inf and isinstance(rec.results["log_v"], float)


def test_summary_counts_nonfinite_by_kind_and_the_plot_marks_them(tmp_path):
    from assay.analysis._markdown import plot_summary, summary_plot_data

    rows = [
        ({"g": g, "seed": s}, {"lv": v, "_flags": {"lv": "above tau"} if v == -math.inf else {}})
        for g, vals in (
            ("a", [1.0, -math.inf, 3.0]),
            ("b", [-math.inf] * 3),
            ("c", [math.nan, 2.0, math.inf]),
        )
        for s, v in enumerate(vals)
    ]
    summary = summarize(frame(rows)).set_index("group")
    assert summary.loc["g=a", ["n", "mean", "n_nonfinite", "n_neginf"]].tolist() == [2, 2.0, 1, 1]
    assert summary.loc["g=b", ["n", "n_nonfinite", "n_neginf"]].tolist() == [0, 3, 3]
    assert summary.loc["g=c", ["n_nan", "n_posinf"]].tolist() == [1, 1]
    assert summary.loc["g=a", "flags"] == "above tau (1 of 3 runs)"
    assert "no finite value among 3 run(s): 3 -inf" in summary.loc["g=b", "note"]
    data = summary_plot_data("lv", summary.reset_index())
    assert data["mean"] == [2.0, None, 2.0] and data["partial"] == [0, 2]
    assert {(e["x"], e["kind"], e["count"]) for e in data["edges"]} == {
        (0, "-inf", 1),
        (1, "-inf", 3),
        (2, "+inf", 1),
        (2, "nan", 1),
    }
    assert data["flags"] == {0: "above tau (1 of 3 runs)", 1: "above tau (3 of 3 runs)"}
    (png,) = plot_summary(summary.reset_index(), tmp_path)
    record = json.loads((tmp_path / "lv.json").read_text())
    assert png.stat().st_size > 1000 and record["edges"][1] == {"x": 1, "kind": "-inf", "count": 3}


# -- end to end: `assay analyze` on a suite over the example family --------------------------------


def cli(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "assay", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_analyze_says_what_nan_inf_and_zero_variance_groups_are(tmp_path, root):
    suite = tmp_path / "stat.yaml"
    suite.write_text(
        "name: stat\nstage: stat.score\nimports: [statstages]\n"
        "config: {fit: {degree: 3}}\n"
        "sweep: {grid: {mode: [ok, nan, neginf, const]}, seeds: [0, 1, 2]}\n"
    )
    cli("run", suite, "--root", root, "--import", "statstages", "--quiet")
    out = tmp_path / "out"
    shown = cli(
        "analyze",
        suite,
        "--root",
        root,
        "--import",
        "statstages",
        "--out",
        out,
        "--baseline",
        "mode=const",
    ).stdout
    assert "no variation" in shown and "above tau (3 of 3 runs)" in shown
    with open(out / "summary.csv", newline="") as f:
        summary = {(r["group"], r["metric"]): r for r in csv.DictReader(f)}
    assert summary[("mode=neginf", "log_v")]["n_neginf"] == "3"
    assert summary[("mode=ok", "log_v")]["n"] == "2"
    assert summary[("mode=nan", "score")]["note"] == "no finite value among 3 run(s): 3 nan"
    assert summary[("mode=const", "quality")]["note"] == "no variation: all 3 values are 1"
    assert summary[("mode=ok", "quality")]["bounds"] == "[0, 1] (results)"
    with open(out / "comparison.csv", newline="") as f:
        same = [
            r for r in csv.DictReader(f) if (r["metric"], r["group"]) == ("quality", "mode=nan")
        ]
    assert same[0]["p_welch"] == "" and SAME_IN_BOTH in same[0]["note"]  # 3 vs 3 constant
    record = json.loads((out / "plots" / "log_v.json").read_text())
    assert {"x": 2, "kind": "-inf", "count": 3} in record["edges"] and record["mean"][2] is None
    report = (out / "report.md").read_text()
    assert "## Non-finite values and flags" in report
    assert "- log_v / mode=neginf: 3 -inf of 3 run(s); flags: above tau (3 of 3 runs)" in report
    assert "| mode=const | quality | 3 | 1 | 0 | 1 | 1 | logit-t |" in report
    bad = cli(
        "analyze",
        suite,
        "--root",
        root,
        "--import",
        "statstages",
        "--bounds",
        "quality=1",
        check=False,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "error: --bounds 'quality=1' is not METRIC=LOW:HIGH; write e.g. --bounds acc=0:1 or "
        "--bounds abs_err=0:inf"
    ]


def test_a_wide_two_run_analysis_stays_readable(tmp_path, root):
    suite = tmp_path / "wide.yaml"
    suite.write_text(
        "name: wide\nstage: stat.score\nimports: [statstages]\n"
        "config: {n_extra: 300}\nsweep: {seeds: [0, 1]}\n"
    )
    cli("run", suite, "--root", root, "--import", "statstages", "--quiet")
    shown = cli("analyze", suite, "--root", root, "--import", "statstages").stdout
    lines = shown.splitlines()
    assert len(lines) <= 70 and max(map(len, lines)) <= 200  # 40 rows shown, cells cut
    assert "more summary row(s) not shown (304 in all)" in shown


def test_the_report_data_says_why_when_declared_bounds_do_not_hold():
    from assay.report._data import _statistics

    rows = [
        ({"seed": s}, {"em": v, "_bounds": {"em": [0, 1]}}) for s, v in enumerate([70.0, 95.0])
    ]
    stats_ = _statistics(frame(rows), None)
    assert stats_["summary"] == [] and stats_["notes"] == [
        "no statistics: metric em (bounds from its results) has values 70..95 outside its bounds "
        "[0, 1]; fix the bounds or the metric"
    ]


def test_a_metric_nan_in_every_run_is_listed_not_dropped():
    rows = [({"lr": lr, "seed": s}, {"m": math.nan, "x": 1.0}) for lr in (1, 2) for s in range(2)]
    summary = summarize(frame(rows))
    m = summary[summary.metric == "m"]
    assert list(m.n) == [0, 0] and list(m.n_nan) == [2, 2]
    assert list(m.note) == ["no finite value among 2 run(s): 2 nan"] * 2


def test_the_html_report_shows_flags_and_no_variation(tmp_path, root):
    pytest.importorskip("jinja2")
    import statstages  # noqa: F401  (registers stat.score)

    from assay.report import collect, render_html

    suite = assay.Suite(
        name="s",
        stage="stat.score",
        config={},
        sweep={"grid": {"mode": ["neginf", "const", "nan"]}, "seeds": [0, 1, 2]},
    )
    assay.run_suite(suite, root=root)
    data = collect(root=root, suite=suite, baseline="mode=const")
    rows = {(r["group"], r["metric"]): r for r in data["stats"]["summary"]}
    assert rows[("mode=neginf", "log_v")]["flags"] == "above tau (3 of 3 runs)"
    comp = [
        r
        for r in data["stats"]["comparison"]
        if (r["metric"], r["group"]) == ("quality", "mode=nan")
    ]
    assert comp[0]["p_welch_holm"] == "no variation"
    page = render_html(data)
    assert "flags: above tau (3 of 3 runs)" in page
    row = page[page.index("<tr><td>quality</td><td>mode=nan</td>") :]
    row = row[: row.index("</tr>")]
    assert row.count(">no variation<") == 2 and "n/a" not in row  # 3 vs 3 constant groups
    row = page[page.index("<tr><td>log_v</td><td>mode=neginf</td>") :]
    assert ">no finite values<" in row[: row.index("</tr>")]  # every seed -inf
