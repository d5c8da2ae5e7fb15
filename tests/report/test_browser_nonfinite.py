"""NaN, -inf and flags in the HTML report, in headless Chromium: what the page draws.

The statistics chart marks a group's non-finite values at the axis edge and labels a mean over
the finite values partial; the curves mark the steps whose values were non-finite; the runs
table shows "-inf"/"nan" as warnings, sorts them consistently and puts a badge with the flag
a run's results declared ("_flags") on the cell. Skipped where Chromium or Playwright is missing.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from pydantic import Field
from test_browser import ARGS, CHROMIUM, Watch, _cells

import assay
from assay.report import collect, write_html

sys.path.append(str(Path(__file__).parents[1] / "engine"))  # statstages (stat.score)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM}: run .ci/install-browser.sh",
    ),
]


class CurveConfig(assay.SeededConfig):
    fail: bool = False
    seed: int = 0
    n_steps: int = Field(6, ge=5)


# per seed, the step whose loss is non-finite (seed 3 logs only finite values)
BAD_STEP = {0: (2, -math.inf), 1: (3, math.nan), 2: (4, math.inf)}


@assay.stage("nfb.curve", config=CurveConfig, version=1)
def curve(config: CurveConfig, run: assay.Run) -> dict:
    """A loss that goes non-finite at one step per seed; a failing variant logs a nan first."""
    step, bad = BAD_STEP.get(config.seed, (-1, 0.0))
    for t in range(config.n_steps):
        loss = bad if t == step else 1.0 / (1 + t)
        run.log_metrics(step=t, loss=loss)
        if config.fail and t == 1:
            run.log_metrics(step=2, loss=-math.inf)
            raise RuntimeError("loss went to -inf")
    return {"final": 1.0 / config.n_steps}


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (assay[report])"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, path):
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    watch = Watch(page, ("file://", "data:", "blob:"))
    page.goto(path.as_uri())
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    return context, page, watch


def _traces(page, plot: str) -> list[dict]:
    """The Plotly traces of a plot, the fields the tests read (NaN becomes null)."""
    return page.evaluate(
        f"document.getElementById('{plot}').data.map(t => ({{meta: t.meta || null, "
        "name: t.name, x: t.x, y: t.y, yaxis: t.yaxis || 'y', text: t.text || null, "
        "hovertext: t.hovertext || null, symbol: t.marker ? t.marker.symbol || null : null}))"
    )


def _meta(traces: list[dict], meta: str) -> list[dict]:
    return [t for t in traces if t["meta"] == meta]


@pytest.fixture(scope="module")
def stat_report(tmp_path_factory):
    """stat.score over the example family: mode=ok (seed 0 -inf and flagged), mode=neginf
    (every seed -inf and flagged), mode=nan (score nan), mode=const (quality 1)."""
    import statstages  # noqa: F401  (registers stat.score)

    tmp = tmp_path_factory.mktemp("nonfinite")
    suite = assay.Suite(
        name="nf",
        stage="stat.score",
        config={},
        sweep={"grid": {"mode": ["ok", "neginf", "nan", "const"]}, "seeds": [0, 1, 2]},
    )
    root = tmp / "runs"
    assay.run_suite(suite, root=root)
    data = collect(root=root, suite=suite)
    return data, write_html(tmp / "report.html", data)


def test_statistics_chart_marks_nonfinite_groups_and_partial_means(browser, stat_report):
    data, path = stat_report
    rows = {r["group"]: r for r in data["stats"]["summary"] if r["metric"] == "log_v"}
    context, page, watch = _open(browser, path)
    page.select_option("#stat-metric", "log_v")
    page.wait_for_function(
        "document.getElementById('stat-plot').layout.yaxis.title.text.startsWith('log_v')"
    )
    traces = _traces(page, "stat-plot")
    # every group is drawn: the all -inf group too, at the bottom edge
    (mean,) = _meta(traces, "mean")
    assert sorted(mean["x"]) == ["mode=const", "mode=nan"]
    (partial,) = _meta(traces, "partial")
    assert partial["x"] == ["mode=ok"] and partial["text"] == ["partial (2 of 3)"]
    assert partial["y"] == [pytest.approx(rows["mode=ok"]["mean"], rel=1e-12)]
    assert "the mean of the 2 finite of 3 runs (1 -inf left out)" in partial["hovertext"][0]
    (neg,) = _meta(traces, "nonfinite -inf")
    assert neg["yaxis"] == "y2" and neg["symbol"] == "triangle-down" and set(neg["y"]) == {0.03}
    by_group = dict(zip(neg["x"], neg["hovertext"], strict=True))
    assert set(by_group) == {"mode=neginf", "mode=ok"}
    assert "3 of 3 runs -inf (no finite value)" in by_group["mode=neginf"]
    assert "1 of 3 runs -inf (left out of the mean)" in by_group["mode=ok"]
    assert sorted(neg["text"]) == ["1 -inf", "3 -inf"]
    assert not _meta(traces, "nonfinite nan") and not _meta(traces, "nonfinite +inf")
    # the flags: beside the partial mean, and at mid-height for the group with no finite mean
    flags = {
        (x, t["yaxis"]): h
        for t in _meta(traces, "flags")
        for x, h in zip(t["x"], t["hovertext"], strict=True)
    }
    assert flags == {
        ("mode=ok", "y"): "mode=ok<br>flag: above tau (1 of 3 runs)",
        ("mode=neginf", "y2"): "mode=neginf<br>flag: above tau (3 of 3 runs)",
    }
    layout = page.evaluate("document.getElementById('stat-plot').layout")
    assert layout["xaxis"]["categoryarray"] == list(rows) and layout["yaxis2"]["range"] == [0, 1]
    assert "a ringed mean is partial" in page.text_content("#stat-info")

    # a metric nan in every run of a group: an "x" at the top, nothing at the bottom
    page.select_option("#stat-metric", "score")
    page.wait_for_function(
        "document.getElementById('stat-plot').layout.yaxis.title.text.startsWith('score')"
    )
    traces = _traces(page, "stat-plot")
    (nan,) = _meta(traces, "nonfinite nan")
    assert nan["x"] == ["mode=nan"] and nan["y"] == [0.91] and nan["symbol"] == "x-thin-open"
    assert "3 of 3 runs nan" in nan["hovertext"][0]
    assert not _meta(traces, "partial") and not _meta(traces, "nonfinite -inf")
    assert watch.errors == [] and watch.requests == []
    context.close()


def test_runs_table_shows_nonfinite_cells_as_warnings_with_flag_badges(browser, stat_report):
    data, path = stat_report
    labels = [c["label"] for c in data["table"]["columns"]]
    assert "log_v" in labels and not [c for c in labels if c.startswith(("_flags", "_bounds"))]
    context, page, watch = _open(browser, path)
    cells = page.eval_on_selector_all(
        "#runs-table tbody td.num",
        "tds => tds.filter(td => td.classList.contains('nonfinite'))"
        ".map(td => [td.textContent, td.title])",
    )
    # 3 seeds of mode=neginf and seed 0 of mode=ok: -inf (each with its badge), 3 nan scores
    assert sorted(t for t, _ in cells) == ["nan"] * 3 + ["\u2691-inf"] * 4
    assert all("not a finite number" in title for _, title in cells)
    badges = page.eval_on_selector_all(
        ".flag-badge", "bs => bs.map(b => [b.title, b.dataset.flag, b.closest('tr').dataset.id])"
    )
    neginf = {r[1] for r in data["table"]["rows"] if r[labels.index("log_v")] == "-inf"}
    assert len(badges) == 4 and {b[2] for b in badges} == neginf
    assert {tuple(b[:2]) for b in badges} == {("flag: above tau", "above tau")}
    # the text filter finds a flag's text
    page.fill("#filter", "above tau")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length == 4")
    page.fill("#filter", "")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length == 12")

    # sorting: -inf first ascending and last descending; nan after every number both ways
    page.click('#runs-table th[data-col="results.log_v"]')
    shown = [c.lstrip("\u2691") for c in _cells(page, "log_v")]
    assert shown[:4] == ["-inf"] * 4 and "-inf" not in shown[4:]
    finite = [float(c) for c in shown[4:]]
    assert finite == sorted(finite)
    page.click('#runs-table th[data-col="results.score"]')
    scores = _cells(page, "score")
    assert scores[-3:] == ["nan"] * 3 and [float(s) for s in scores[:-3]] == sorted(
        float(s) for s in scores[:-3]
    )
    page.click('#runs-table th[data-col="results.score"]')
    scores = _cells(page, "score")
    assert scores[-3:] == ["nan"] * 3 and [float(s) for s in scores[:-3]] == sorted(
        (float(s) for s in scores[:-3]), reverse=True
    )
    assert watch.errors == [] and watch.requests == []
    context.close()


def test_curves_mark_the_steps_whose_values_were_nonfinite(browser, tmp_path):
    suite = assay.Suite(
        name="nfc",
        stage="nfb.curve",
        config={},
        sweep={"grid": {"fail": [False, True]}, "seeds": [0, 1, 2, 3]},
    )
    root = tmp_path / "runs"
    assay.run_suite(suite, root=root)
    data = collect(root=root, suite=suite)
    (line,) = data["curves"]["series"]["loss"]
    # one record per step that had any: [index into steps, n -inf, n +inf, n nan]
    assert line["edges"] == [[2, 1, 0, 0], [3, 0, 0, 1], [4, 0, 1, 0]]
    assert line["n"][2:5] == [3, 3, 3] and line["nonfinite"][2:5] == [1, 1, 1]
    path = write_html(tmp_path / "report.html", data)
    context, page, watch = _open(browser, path)
    page.wait_for_function("document.getElementById('curve-plot').data.length > 0")
    traces = _traces(page, "curve-plot")
    marks = {
        t["meta"]: t
        for t in traces
        if (t["meta"] or "").startswith("nonfinite") and "failed" not in t["name"]
    }
    assert {k: (v["x"], v["y"], v["yaxis"]) for k, v in marks.items()} == {
        "nonfinite -inf": ([2], [0.03], "y2"),
        "nonfinite +inf": ([4], [0.97], "y2"),
        "nonfinite nan": ([3], [0.91], "y2"),
    }
    assert marks["nonfinite -inf"]["hovertext"] == [
        "fail=False<br>step 2: 1 of 4 runs -inf (left out of the mean of 3)"
    ]
    # each failed run's own line: its -inf at step 2
    failed = [t for t in traces if t["meta"] == "nonfinite -inf" and "failed" in t["name"]]
    assert len(failed) == 4 and all(t["x"] == [2] for t in failed)
    assert "non-finite values at the plot's edge" in page.text_content("#curve-info")
    # a run's detail plot marks its own non-finite step
    rid = next(
        r[1]
        for r in data["table"]["rows"]
        if (data["detail"][r[1]]["config"]["fail"], data["detail"][r[1]]["config"]["seed"])
        == (False, 0)
    )
    page.click(f'#runs-table tbody tr[data-id="{rid}"]')
    page.wait_for_selector("#detail:not([hidden]) #detail-plot .main-svg")
    (mark,) = _meta(_traces(page, "detail-plot"), "nonfinite -inf")
    assert mark["x"] == [2] and mark["hovertext"] == [f"run {rid}<br>step 2: -inf"]
    assert watch.errors == [] and watch.requests == []
    context.close()
