import math

import pandas as pd
import pytest
from scipy import stats

import assay
from assay._analysis import export, holm
from assay._report import plot_summary


def frame():
    rows = []
    for lr, values in ((0.1, [1.0, 2.0, 3.0]), (0.2, [2.0, 4.0, 6.5])):
        for seed, v in enumerate(values):
            rows.append({"id": f"r{lr}{seed}", "stage": "s", "config.lr": lr,
                         "config.seed": seed, "config.data.seed": seed, "results.loss": v,
                         "results.note": "x"})  # fmt: skip
    return pd.DataFrame(rows)


def test_summary_mean_std_and_t_interval():
    summary = assay.summarize(frame())
    row = summary[summary.group == "lr=0.1"].iloc[0]
    assert (row.n, row["mean"], row["std"]) == (3, 2.0, 1.0)
    half = 4.302652729911275 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
    assert row.ci_low == pytest.approx(2 - half) and row.ci_high == pytest.approx(2 + half)
    assert list(summary.metric) == ["loss", "loss"]  # non-numeric results are not metrics


def test_holm_adjustment_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, math.nan])[0] == 0.5 and math.isnan(holm([0.5, math.nan])[1])


def test_comparison_welch_and_paired_against_scipy():
    cmp = assay.compare_groups(frame(), baseline="lr=0.1")
    (row,) = cmp.itertuples()
    a, b = [1.0, 2.0, 3.0], [2.0, 4.0, 6.5]
    assert row.p_welch == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    assert row.p_paired == pytest.approx(stats.ttest_rel(b, a).pvalue)
    assert row.n_pairs == 3 and row.diff == pytest.approx(sum(b) / 3 - 2)


def test_bad_baseline_and_metric_are_explained():
    with pytest.raises(assay.AssayError, match="matches 0 groups"):
        assay.compare_groups(frame(), baseline="lr=0.3")
    with pytest.raises(assay.AssayError, match="not a config key; keys that vary: lr"):
        assay.compare_groups(frame(), baseline="momentum=1")
    with pytest.raises(assay.AssayError, match="unknown metric.*numeric results: loss"):
        assay.summarize(frame(), ["results.acc"])


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_round_trips(tmp_path, fmt):
    df = frame()
    path = export(df, tmp_path / "runs", fmt)
    back = getattr(pd, f"read_{fmt}")(path)
    assert list(back["results.loss"]) == list(df["results.loss"])


def test_plot_files(tmp_path):
    paths = plot_summary(assay.summarize(frame()), tmp_path)
    assert [p.name for p in paths] == ["loss.png"] and paths[0].read_bytes()[:4] == b"\x89PNG"


def test_load_runs_from_store(root):
    suite = assay.Suite(name="s", stage="example.fit", config={}, sweep={"seeds": [0, 1]})
    assay.run_suite(suite, root=root)
    df = assay.load_runs(root, suite=suite)
    assert list(df["config.seed"]) == [0, 1] and df["results.test_mse"].gt(0).all()
    assert len(assay.load_runs(root, stage="example.data")) == 2


def test_nonfinite_results_come_back_as_floats():
    from assay._analysis import records_frame

    rec = assay.RunRecord(id="a_1", stage="a.b", status=assay.RunStatus.DONE, config={"seed": 0},
                          results={"lv": "-inf", "cut": "nan", "x": 1.0})  # fmt: skip
    df = records_frame([rec])
    assert df["results.lv"].iloc[0] == -math.inf and math.isnan(df["results.cut"].iloc[0])
    assert set(assay._analysis.metric_columns(df)) == {"results.lv", "results.cut", "results.x"}
