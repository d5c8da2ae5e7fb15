"""Comparing runs in the offline report, in headless Chromium with the network off: runs and
groups side by side (config diff, results, overlaid curves), parallel coordinates, the scatter,
and upstream stages' curves.

``ASSAY_COMPARE_SCREENSHOT=docs/compare.png`` also saves the comparison view for the README.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _helpers import write_suite
from test_browser import Watch, browser, demo, pytestmark  # noqa: F401 (fixtures, marks)

import assay
from assay.report import collect, write_html


def _open(browser, path: Path, height: int = 1300):  # noqa: F811 (the fixture's name)
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": height})
    page = context.new_page()
    watch = Watch(page, ("file://", "data:", "blob:"))
    page.goto(path.as_uri())
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    return context, page, watch


def _runs(root: Path) -> dict[str, dict]:
    """Run id -> {config, results (None: failed), metrics lines}."""
    out = {}
    for d in root.iterdir():
        if (d / "config.json").exists():
            res = d / "results.json"
            out[d.name] = {
                "config": json.loads((d / "config.json").read_text()),
                "results": json.loads(res.read_text()) if res.exists() else None,
                "metrics": [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()],
            }
    return out


def _rows(page, table: str) -> dict[str, tuple[str, list[str]]]:
    """Rows of a comparison table: key -> (row class, cell texts)."""
    got = page.eval_on_selector_all(
        f"#{table} tbody tr",
        "trs => trs.map(tr => [tr.dataset.key, tr.className,"
        " [...tr.querySelectorAll('td')].map(td => td.textContent)])",
    )
    return {k: (c, cells) for k, c, cells in got}


def test_compare_runs_and_groups_side_by_side(browser, demo, tmp_path):  # noqa: F811
    root, path = demo
    runs = _runs(root)
    a, b = sorted(
        (r for r, v in runs.items() if v["results"] and v["config"]["seed"] == 0),
        key=lambda r: runs[r]["config"]["lr"],
    )
    assert (runs[a]["config"]["lr"], runs[b]["config"]["lr"]) == (0.1, 0.3)
    context, page, watch = _open(browser, path)
    assert page.is_hidden("#compare-body")
    page.check(f'#runs-table input.pick[data-id="{a}"]')
    page.check(f'#runs-table input.pick[data-id="{b}"]')
    page.wait_for_selector("#compare-body:not([hidden])")
    assert page.is_hidden("#detail")  # ticking a run is not opening its detail

    # the config diff lists exactly the key that differs, with each run's value
    diff = _rows(page, "compare-diff")
    assert diff == {"lr": ("diff", ["0.1", "0.3"])}
    page.check("#compare-all-keys")
    every = _rows(page, "compare-diff")
    assert every["n_steps"] == ("same", ["12", "12"]) and every["lr"][0] == "diff"
    assert set(every) == set(runs[a]["config"])
    page.uncheck("#compare-all-keys")

    # results side by side, from each run's results.json
    results = _rows(page, "compare-results")
    for j, rid in enumerate((a, b)):
        assert float(results["final_loss"][1][j]) == pytest.approx(
            runs[rid]["results"]["final_loss"], rel=5e-4
        )

    # overlaid curves: each run's own, its logged values
    page.select_option("#compare-metric", "loss")
    traces = page.evaluate(
        "document.querySelector('#compare-plot').data.map(t => [t.name, t.x, t.y])"
    )
    assert [t[0] for t in traces] == [f"run {a}", f"run {b}"]
    for (_, x, y), rid in zip(traces, (a, b), strict=True):
        assert x == [m["step"] for m in runs[rid]["metrics"]]
        assert y == pytest.approx([m["loss"] for m in runs[rid]["metrics"]], rel=1e-5)

    # a group beside them: its seeds' values, its mean results and its mean curve
    page.select_option("#compare-group", "lr=0.1")
    page.click("#compare-add-group")
    diff = _rows(page, "compare-diff")
    assert diff["lr"] == ("diff", ["0.1", "0.3", "0.1"])
    assert diff["seed"] == ("diff", ["0", "0", "0 | 1 | 2"])
    group = [v for v in runs.values() if v["results"] and v["config"]["lr"] == 0.1]
    mean = sum(v["results"]["final_loss"] for v in group) / 3
    cell = _rows(page, "compare-results")["final_loss"][1][2]
    assert cell.endswith("(mean of 3)") and float(cell.split()[0]) == pytest.approx(mean, 5e-4)
    names = page.evaluate("document.querySelector('#compare-plot').data.map(t => t.name)")
    assert names == [f"run {a}", f"run {b}", "group lr=0.1"]

    # a failed run compares too: no results, its partial curve
    failed = next(r for r, v in runs.items() if v["results"] is None)
    page.check(f'#runs-table input.pick[data-id="{failed}"]')
    last = page.evaluate("document.querySelector('#compare-plot').data.slice(-1)[0]")
    assert last["name"] == f"run {failed}" and last["x"] == [0, 1, 2]
    assert last["line"]["dash"] == "dash"
    page.uncheck(f'#runs-table input.pick[data-id="{failed}"]')

    shot = Path(os.environ.get("ASSAY_COMPARE_SCREENSHOT") or tmp_path / "compare.png")
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#compare").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    page.click("#compare-clear")
    assert page.is_hidden("#compare-body")
    assert page.locator("#runs-table input.pick:checked").count() == 0
    assert watch.errors == [] and watch.requests == []
    context.close()


def test_parallel_coordinates_and_scatter(browser, demo):  # noqa: F811
    root, path = demo
    runs = _runs(root)
    done = {r: v for r, v in runs.items() if v["results"]}
    context, page, watch = _open(browser, path)
    assert page.get_attribute("body", "data-explore") is None  # drawn when first in view
    page.locator("#explore").scroll_into_view_if_needed()
    page.wait_for_selector('body[data-explore="1"]')
    pc = "document.querySelector('#parcoords-plot').data[0]"
    assert page.evaluate(f"{pc}.type") == "parcoords"
    dims = page.evaluate(f"{pc}.dimensions.map(d => [d.label, d.values])")
    assert [d[0] for d in dims] == ["lr", "seed", "final_loss"]
    assert sorted(dims[2][1]) == pytest.approx(
        sorted(v["results"]["final_loss"] for v in done.values()), rel=1e-9
    )
    page.select_option("#parcoords-metric", "results.acc")
    page.wait_for_function(f"{pc}.dimensions.slice(-1)[0].label == 'acc'")
    assert page.evaluate(f"{pc}.line.colorbar.title.text") == "acc"

    sc = "document.querySelector('#scatter-plot')"
    assert page.evaluate(f"[{sc}.layout.xaxis.title.text, {sc}.layout.yaxis.title.text]") == [
        "lr",
        "final_loss",
    ]
    page.select_option("#scatter-x", "config.seed")
    page.select_option("#scatter-y", "results.acc")
    page.wait_for_function(f"{sc}.layout.xaxis.title.text == 'seed'")
    trace = page.evaluate(f"{sc}.data[0]")
    points = sorted(zip(trace["customdata"], trace["x"], trace["y"], strict=True))
    assert points == [
        (r, done[r]["config"]["seed"], pytest.approx(done[r]["results"]["acc"]))
        for r in sorted(done)
    ]
    # coloured by a number: one trace on a colour scale; by a string: one trace per value
    page.select_option("#scatter-color", "config.lr")
    assert page.evaluate(f"{sc}.data[0].marker.colorbar.title.text") == "lr"
    page.select_option("#scatter-color", "results.label")
    names = page.evaluate(f"{sc}.data.map(t => [t.name, t.x.length])")
    assert sorted(names) == [["label=lr0.1", 3], ["label=lr0.3", 3]]
    assert watch.errors == [] and watch.requests == []
    context.close()


def test_upstream_stages_curves_are_shown_by_stage(browser, tmp_path):  # noqa: F811
    import reportstages  # noqa: F401

    suite = write_suite(
        tmp_path,
        """\
        name: up
        stage: rpt.eval
        config: {train: {n_steps: 6}}
        sweep:
          grid: {train.lr: [0.1, 0.3, 0.9], train.seed: [0, 1]}
        """,
    )
    root = tmp_path / "runs"
    assay.run_suite(suite, root=root)
    path = write_html(tmp_path / "up.html", collect(root=root, suite=suite))
    context, page, watch = _open(browser, path)
    assert page.is_visible("#curve-stage")
    assert page.evaluate("document.querySelector('#curve-stage').value") == "rpt.train"
    traces = page.evaluate(
        "document.querySelector('#curve-plot').data.filter(t => t.name)"
        ".map(t => [t.name, t.line.dash || 'solid'])"
    )
    assert [n for n, d in traces if d == "solid"] == ["lr=0.1", "lr=0.3"]
    assert sum(d == "dash" for _, d in traces) == 2  # lr=0.9 diverged: 2 failed upstream runs
    assert "6 runs" in page.text_content("#curve-stage option[value='rpt.train']")
    assert watch.errors == [] and watch.requests == []
    context.close()
