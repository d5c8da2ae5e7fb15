import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import assay
from assay.analysis import export, holm
from assay.analysis._markdown import plot_summary


def frame():
    rows = []
    for lr, values in ((0.1, [1.0, 2.0, 3.0]), (0.2, [2.0, 4.0, 6.5])):
        for seed, v in enumerate(values):
            rows.append(
                {
                    "id": f"r{lr}{seed}",
                    "stage": "s",
                    "config.lr": lr,
                    "config.seed": seed,
                    "config.data.seed": seed,
                    "results.loss": v,
                    "results.note": "x",
                }
            )
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
    from assay.analysis._frames import records_frame

    rec = assay.RunRecord(
        id="a_1",
        stage="a.b",
        status=assay.RunStatus.DONE,
        config={"seed": 0},
        results={"lv": "-inf", "cut": "nan", "x": 1.0},
    )
    df = records_frame([rec])
    assert df["results.lv"].iloc[0] == -math.inf and math.isnan(df["results.cut"].iloc[0])
    assert set(assay.analysis._frames.metric_columns(df)) == {
        "results.lv",
        "results.cut",
        "results.x",
    }


# -- groups, parameters and metrics ---------------------------------------------------------------


def records(rows):
    return [
        assay.RunRecord(id=f"a_{i}", stage="a.b", status=assay.RunStatus.DONE, config=c, results=r)
        for i, (c, r) in enumerate(rows)
    ]


def test_a_null_key_is_a_group_and_ints_stay_ints(tmp_path):
    from assay.analysis._frames import records_frame

    rows = [
        ({"end_index": e, "seed": s}, {"x": float(10 * (e or 0) + s)})
        for e in (None, 17)
        for s in (0, 1)
    ]
    df = records_frame(records(rows))
    summary = assay.summarize(df)
    assert list(summary.group) == ["end_index=None", "end_index=17"]  # the null shard is kept
    assert list(summary["mean"]) == [0.5, 170.5]
    cmp = assay.compare_groups(df, baseline="end_index=null")
    assert list(cmp.group) == ["end_index=17"] and cmp["diff"].iloc[0] == 170.0
    assert assay.compare_groups(df, baseline="end_index=17").group.iloc[0] == "end_index=None"
    text = export(df, tmp_path / "runs", "csv").read_text()
    assert ",17," in text and "17.0" not in text


def test_timings_and_thread_counts_are_info_not_metrics():
    from assay.analysis._frames import is_info_key, metric_columns, records_frame

    res = {
        "acc_x": 0.5,
        "load_s": 1.2,
        "patch_s": 0.3,
        "threads": 4,
        "num_threads": 2,
        "t": {"total_s": 3.0},
        "device": 0,
    }
    df = records_frame(records([({"seed": 0}, res), ({"seed": 1}, res)]))
    assert metric_columns(df) == ["results.acc_x"]
    assert list(assay.summarize(df).metric) == ["acc_x"]
    assert list(assay.summarize(df, ["results.load_s"]).metric) == ["load_s"]  # asked for by name
    assert is_info_key("results.encoder_threads") and not is_info_key("results.loss")


def test_metric_lists_take_commas_and_repeats():
    from assay.analysis._frames import parse_metrics

    assert parse_metrics(["loss,acc", "results.f1", "loss"]) == [
        "results.loss",
        "results.acc",
        "results.f1",
    ]
    assert parse_metrics([]) is None
    with pytest.raises(assay.AssayError, match="'loss,,acc' has an empty name"):
        parse_metrics(["loss,,acc"])


def test_bounded_metric_gets_a_bounded_interval_and_a_fraction_is_flagged():
    from assay.analysis._frames import CI_OUTSIDE_UNIT

    rows = [({"seed": s}, {"val_accuracy": a, "score": a}) for s, a in enumerate([0.9, 0.99])]
    summary = assay.summarize(
        pd.DataFrame(
            [
                {
                    "id": f"r{i}",
                    "stage": "s",
                    "config.seed": c["seed"],
                    **{f"results.{k}": v for k, v in r.items()},
                }
                for i, (c, r) in enumerate(rows)
            ]
        )
    )
    acc, score = summary.iloc[0], summary.iloc[1]
    # the t-interval 0.945 +- 0.57 would leave [0, 1]: the logit-t one stays inside it
    assert acc.ci_method == "logit-t" and 0 <= acc.ci_low < 0.9 and acc.ci_high == 1.0
    assert acc.bounds == "[0, 1] (name)"
    # an unknown metric whose values lie in [0, 1]: the t-interval is kept, and flagged
    half = 12.706204736174698 * float(np.std([0.9, 0.99], ddof=1)) / math.sqrt(2)
    assert score.ci_method == "t" and score.ci_high == pytest.approx(0.945 + half)
    assert CI_OUTSIDE_UNIT in score.note and "--bounds score=0:1" in score.note
    declared = assay.summarize(summary_frame_of(rows), bounds={"score": (0, 1)})
    assert declared.iloc[1].ci_method == "logit-t" and declared.iloc[1].ci_high <= 1
    assert declared.iloc[1].bounds == "[0, 1] (declared)" and not declared.iloc[1].note
    with pytest.raises(assay.AssayError, match=r"score has values 0.9..0.99 outside"):
        assay.summarize(summary_frame_of(rows), bounds={"score": (0, 0.5)})


def summary_frame_of(rows):
    return pd.DataFrame(
        [
            {
                "id": f"r{i}",
                "stage": "s",
                "config.seed": c["seed"],
                **{f"results.{k}": v for k, v in r.items()},
            }
            for i, (c, r) in enumerate(rows)
        ]
    )


def test_nonfinite_values_are_counted_and_an_all_nan_group_stays():
    df = frame()
    df.loc[0, "results.loss"] = math.inf  # lr=0.1, seed 0
    df.loc[3:5, "results.loss"] = math.nan  # every lr=0.2 run
    summary = assay.summarize(df).set_index("group")
    assert summary.loc["lr=0.1", "n"] == 2 and summary.loc["lr=0.1", "n_nonfinite"] == 1
    assert summary.loc["lr=0.1", "mean"] == 2.5 and "1 non-finite" in summary.loc["lr=0.1", "note"]
    assert summary.loc["lr=0.2", "n"] == 0 and summary.loc["lr=0.2", "n_nonfinite"] == 3
    assert "no finite value among 3 run(s)" in summary.loc["lr=0.2", "note"]


def test_vectorised_tests_match_scipy_group_by_group():
    rng = np.random.default_rng(1)
    rows = []
    for g in range(30):
        for seed in range(int(rng.integers(1, 6))):
            value = float(g % 3) if g % 7 == 0 else float(rng.normal(g % 5, 1 + g % 2))
            rows.append(
                {
                    "id": f"r{g}_{seed}",
                    "stage": "s",
                    "config.g": g,
                    "config.seed": seed,
                    "results.m": value,
                }
            )
    rows += [{"id": "dup", "stage": "s", "config.g": 4, "config.seed": 0, "results.m": 9.0}]
    df = pd.DataFrame(rows)
    cmp = assay.compare_groups(df, baseline="g=1").set_index("group")
    base = df[df["config.g"] == 1]
    for g in range(30):
        if g == 1:
            continue
        other = df[df["config.g"] == g]
        row = cmp.loc[f"g={g}"]
        a, b = base["results.m"].to_numpy(), other["results.m"].to_numpy()
        if len(a) > 1 and len(b) > 1:
            with warnings.catch_warnings():  # scipy warns on the constant groups (g % 7 == 0)
                warnings.simplefilter("ignore", RuntimeWarning)
                want = stats.ttest_ind(b, a, equal_var=False).pvalue
            assert row.p_welch == pytest.approx(want, nan_ok=True, rel=1e-9)
        else:
            assert math.isnan(row.p_welch)
        joined = base.merge(other, on="config.seed", suffixes=("_a", "_b"))
        assert row.n_pairs == len(joined)  # g=4 holds seed 0 twice: both pairs count
        if len(joined) > 1:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = stats.ttest_rel(joined["results.m_b"], joined["results.m_a"]).pvalue
            assert row.p_paired == pytest.approx(want, nan_ok=True, rel=1e-9)


def test_ten_thousand_groups_take_seconds_not_minutes():
    import time

    n = 10_000  # one seed per group: the old per-group scan took ~30 s here
    df = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "stage": "s",
            "config.lr": np.arange(n),
            "config.seed": 0,
            "results.loss": np.arange(n) * 0.5,
        }
    )
    t0 = time.perf_counter()
    summary, cmp = assay.summarize(df), assay.compare_groups(df)
    assert time.perf_counter() - t0 < 8  # ~0.3 s measured on 2 busy cores
    assert len(summary) == n and len(cmp) == n - 1 and summary["n"].eq(1).all()
    assert summary.group.iloc[-1] == "lr=9999" and cmp["diff"].iloc[-1] == 9999 * 0.5


# -- rendering --------------------------------------------------------------------------------------


def test_long_plot_titles_are_wrapped_inside_the_figure():
    from assay.analysis._markdown import summary_figure

    metric = "validation_loss_of_the_second_probe_head_after_warmup_per_token"
    fig = summary_figure(metric, assay.summarize(frame()))
    fig.canvas.draw()
    box, title = fig.bbox, fig.axes[0].title.get_window_extent()
    assert box.x0 <= title.x0 and title.x1 <= box.x1 and title.y1 <= box.y1
    assert "\n" in fig.axes[0].get_title()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_many_groups_are_numbered_not_named(tmp_path):
    from assay.analysis._markdown import MAX_LABELLED_GROUPS, summary_figure

    n = MAX_LABELLED_GROUPS + 10
    df = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "stage": "s",
            "config.lr": range(n),
            "results.loss": np.arange(n, dtype=float),
        }
    )
    fig = summary_figure("loss", assay.summarize(df))
    assert fig.axes[0].get_xlabel() == f"group (row order of summary, {n:,} groups)"
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_table_page_says_how_many_more_and_where(tmp_path):
    from assay.analysis._markdown import table_page

    df = pd.DataFrame({"a": range(100)})
    shown, more = table_page(df, "summary", tmp_path / "summary.csv", max_rows=40)
    assert len(shown) == 40 and more.startswith("... 60 more summary row(s) not shown (100 in")
    assert str(tmp_path / "summary.csv") in more
    assert table_page(df, "summary", None, max_rows=40)[1].endswith(
        "pass --out DIR to write all of them"
    )
    assert table_page(df, "summary", None, max_rows=100) == (df, None)


def test_report_includes_family_plots(tmp_path):
    from assay.analysis._markdown import family_plots, write_report

    df = frame()
    summary, cmp = assay.summarize(df), assay.compare_groups(df)
    plots = plot_summary(summary, tmp_path / "plots")
    (tmp_path / "volume" / "g1").mkdir(parents=True)
    (tmp_path / "volume" / "g1" / "curve.png").write_bytes(b"\x89PNG")
    found = family_plots(tmp_path, ["volume", "patching"])
    assert found == {"volume": [tmp_path / "volume" / "g1" / "curve.png"]}
    text = write_report(tmp_path, "t", df, summary, cmp, plots, found).read_text()
    assert "![loss](plots/loss.png)" in text and "![curve](volume/g1/curve.png)" in text
    assert "## volume (the family's own analysis)" in text


def test_named_seed_fields_are_pooled_over_not_grouped():
    import pandas as pd

    from assay.analysis._frames import group_columns

    df = pd.DataFrame(
        {
            "config.seed": [0, 1, 2, 3],
            "config.data_seed": [10, 11, 12, 13],
            "config.train.model_seed": [5, 6, 7, 8],
            "config.lr": [1, 1, 2, 2],
            "results.acc": [0.5, 0.6, 0.7, 0.8],
        }
    )
    assert group_columns(df) == ["config.lr"]
