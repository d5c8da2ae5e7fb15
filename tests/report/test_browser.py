"""The report in a real browser: headless Chromium driven by Playwright.

Skipped, with the reason, where Chromium or Playwright is missing (`.ci/install-browser.sh`
installs both). ``ASSAY_SCREENSHOT=docs/report.png`` also saves the screenshot for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import run_demo, write_suite
from test_report import start_server, stop_server

from assay.report import collect, write_html

CHROMIUM = os.environ.get("ASSAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# The flags that work in containers: no sandbox, no GPU, nothing phoned home.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM}: run .ci/install-browser.sh",
    ),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (assay[report])"
    )
    with sync_api.sync_playwright() as p:
        # launch() gives every run a fresh temporary profile (--user-data-dir)
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Watch:
    """Console errors, page errors, and every request that is not the page's own."""

    def __init__(self, page, allowed: tuple[str, ...]) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: r.url.startswith(allowed) or self.requests.append(r.url))


def _cells(page, label: str) -> list[str]:
    labels = page.eval_on_selector_all(
        "#runs-table thead th", "ths => ths.map(t => t.textContent)"
    )
    j = labels.index(label)
    return page.eval_on_selector_all(
        "#runs-table tbody tr", f"trs => trs.map(tr => tr.children[{j}].textContent)"
    )


def _close(text: str, value: float) -> bool:
    return abs(float(text) - value) <= 5e-4 * abs(value)  # 4 significant digits shown


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    suite, root = run_demo(tmp)
    path = write_html(tmp / "report.html", collect(root=root, suite=suite))
    return root, path


def test_report_file_offline(browser, demo, tmp_path):
    root, path = demo
    results = {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/results.json")}
    context = browser.new_context(offline=True, viewport={"width": 1400, "height": 1300})
    page = context.new_page()
    watch = Watch(page, ("file://", "data:", "blob:"))
    page.goto(path.as_uri())
    page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
    assert page.locator("#runs-table tbody tr").count() == 9
    assert page.text_content("#counts").startswith("6 done 3 failed 0 running 0 pending")

    # the right numbers, in the right rows
    ids, losses = _cells(page, "id"), _cells(page, "final_loss")
    for rid, text in zip(ids, losses, strict=True):
        if rid in results:
            assert _close(text, results[rid]["final_loss"])
        else:
            assert text == ""  # failed: no result

    # sort by final_loss: ascending, failed (empty) last; again: descending
    page.click('#runs-table th[data-col="results.final_loss"]')
    order = sorted(results, key=lambda r: results[r]["final_loss"])
    assert _cells(page, "id")[:6] == order and _cells(page, "final_loss")[6:] == [""] * 3
    page.click('#runs-table th[data-col="results.final_loss"]')
    assert _cells(page, "id")[:6] == order[::-1]
    assert page.get_attribute('th[data-col="results.final_loss"]', "aria-sort") == "descending"

    # filter by column and by state
    page.fill("#filter", "lr=0.3")
    page.wait_for_function("document.querySelector('#page-info').textContent.includes('of 3')")
    assert set(_cells(page, "lr")) == {"0.3"}
    assert page.text_content("#page-info").startswith("rows 1–3 of 3 (filtered from 9)")
    page.fill("#filter", "final_loss<0.3 seed>=1")
    want = sum(
        1
        for r, v in results.items()
        if v["final_loss"] < 0.3
        and json.loads((root / r / "config.json").read_text())["seed"] >= 1
    )
    page.wait_for_function(f"document.querySelectorAll('#runs-table tbody tr').length == {want}")
    page.fill("#filter", "nosuchcolumn>1")
    page.wait_for_function(
        "document.querySelector('#filter-error').textContent.includes("
        "\"no column 'nosuchcolumn'\")"
    )
    page.fill("#filter", "")
    page.select_option("#state-filter", "failed")
    page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length == 3")
    assert set(_cells(page, "state")) == {"failed"}
    page.select_option("#state-filter", "")

    # a run's detail: its config, results and own curve
    first = order[0]
    page.click(f'#runs-table tbody tr[data-id="{first}"]')
    page.wait_for_selector("#detail:not([hidden]) #detail-plot .main-svg")
    config = json.loads(page.text_content("#detail-config"))
    assert config == json.loads((root / first / "config.json").read_text())
    shown = json.loads(page.text_content("#detail-results"))
    assert shown["final_loss"] == results[first]["final_loss"]

    # switch the curve's metric
    layout = "document.querySelector('#curve-plot').layout.yaxis.title.text"
    assert page.evaluate(layout) == "acc"
    page.select_option("#curve-metric", "loss")
    page.wait_for_function(f"{layout} == 'loss'")
    traces = page.evaluate(
        "document.querySelector('#curve-plot').data.filter(t => t.name)"
        ".map(t => [t.name, t.line.dash || 'solid', t.x, t.y])"
    )
    assert [t[0] for t in traces if t[1] == "solid"] == ["lr=0.1", "lr=0.3"]
    # failed runs' partial curves: drawn from their metrics.jsonl, dashed, named failed
    failed = {t[0].rsplit(" ", 1)[1]: t for t in traces if t[1] == "dash"}
    assert set(failed) == set(ids) - set(results) and len(failed) == 3
    for rid, (name, _, x, y) in failed.items():
        logged = [
            json.loads(line) for line in (root / rid / "metrics.jsonl").read_text().splitlines()
        ]
        assert name == f"lr=0.9 · failed {rid}" and x == [0, 1, 2]
        assert y == pytest.approx([m["loss"] for m in logged], rel=1e-5)
    assert "3 failed run(s), dashed" in page.text_content("#curve-info")
    # log scale and EMA smoothing (W&B's debiased one): the raw line stays, faint
    page.check("#curve-logy")
    page.wait_for_function("document.querySelector('#curve-plot').layout.yaxis.type == 'log'")
    page.eval_on_selector(
        "#curve-smooth", "e => { e.value = '0.5'; e.dispatchEvent(new Event('input')) }"
    )
    mean = next(t[3] for t in traces if t[0] == "lr=0.1")
    smooth = page.evaluate(
        "document.querySelector('#curve-plot').data.filter(t => t.name == 'lr=0.1')[0].y"
    )
    want, last = [], 0.0
    for k, v in enumerate(mean, 1):
        last = 0.5 * last + 0.5 * v
        want.append(last / (1 - 0.5**k))
    assert smooth == pytest.approx(want, rel=1e-9)
    page.eval_on_selector(
        "#curve-smooth", "e => { e.value = '0'; e.dispatchEvent(new Event('input')) }"
    )
    page.uncheck("#curve-logy")
    # the statistics chart's log axis
    page.check("#stat-logy")
    page.wait_for_function("document.querySelector('#stat-plot').layout.yaxis.type == 'log'")
    page.uncheck("#stat-logy")
    assert page.evaluate("document.querySelector('#stat-plot').data[0].x.length") == 2

    page.click("#detail-close")
    assert page.is_hidden("#detail")
    page.set_viewport_size({"width": 1400, "height": 1700})
    page.evaluate("window.scrollTo(0, 0)")
    shot = Path(os.environ.get("ASSAY_SCREENSHOT") or tmp_path / "report.png")
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    assert watch.errors == [] and watch.requests == []
    context.close()


def test_serve_refreshes_while_a_suite_runs(browser, tmp_path):
    suite = write_suite(
        tmp_path,
        """\
        name: live
        stage: rpt.train
        config: {n_steps: 6, sleep_s: 0.5}
        sweep:
          grid: {lr: [0.1, 0.3]}
          seeds: [0, 1, 2]
        """,
    )
    root = tmp_path / "runs"
    server, url = start_server(str(suite), "--root", str(root), "--import", "reportstages")
    runner = None
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        watch = Watch(page, (url, "data:", "blob:"))
        page.goto(url)
        page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
        page.evaluate("window.__same_page = true")  # gone if the page reloaded
        assert page.text_content("#counts").startswith("0 done 0 failed 0 running 6 pending")
        generated = page.text_content("#generated")
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "assay",
                "run",
                str(suite),
                "--root",
                str(root),
                "--import",
                "reportstages",
                "--quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # zoom into the curves as soon as they appear: refreshes must keep that view
        plot = "document.querySelector('#curve-plot')"
        page.wait_for_function(f"{plot}.data && {plot}.data.length > 0", timeout=60_000)
        page.evaluate(f"Plotly.relayout({plot}, {{'xaxis.range': [1, 3], 'yaxis.range': [0, 2]}})")
        seen = set()
        deadline = time.time() + 120
        while time.time() < deadline:
            done = int(page.text_content('#counts [data-state="done"]').split()[0])
            seen.add(done)
            if done == 6:
                break
            time.sleep(0.2)
        assert page.evaluate(f"{plot}.layout.xaxis.range") == [1, 3]
        assert page.evaluate(f"{plot}.layout.yaxis.range") == [0, 2]
        assert page.text_content("#generated") != generated  # the header follows the data
        assert int(page.get_attribute("body", "data-deltas") or 0) >= 3  # changes, not all data
        assert 6 in seen and len(seen) >= 3, seen  # the table filled in as runs finished
        _, err = runner.communicate(timeout=60)
        assert runner.returncode == 0, err
        assert page.evaluate("window.__same_page") is True
        page.wait_for_function("document.querySelectorAll('#runs-table tbody tr').length == 6")
        results = {p.parent.name: json.loads(p.read_text()) for p in root.glob("*/results.json")}
        for rid, text in zip(_cells(page, "id"), _cells(page, "final_loss"), strict=True):
            assert _close(text, results[rid]["final_loss"])
        assert set(_cells(page, "state")) == {"done"}
        assert page.evaluate("document.querySelector('#curve-plot').data.length") > 0
        assert watch.errors == [] and watch.requests == []
    finally:
        context.close()
        if runner is not None and runner.poll() is None:
            runner.kill()
            runner.communicate()
        stop_server(server)


def test_a_refresh_keeps_every_zoom_and_the_compared_runs(browser, tmp_path):
    """A served, finished suite; one run's record changes: the page merges the delta and keeps
    the curves' zoom, the run detail's zoom and the runs ticked for comparison."""
    import dataclasses

    from assay.store import resolve_store

    suite, root = run_demo(tmp_path)
    server, url = start_server(str(suite), "--root", str(root), "--import", "reportstages")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        watch = Watch(page, (url, "data:", "blob:"))
        page.goto(url)
        page.wait_for_selector('body[data-ready="1"]', timeout=30_000)
        rows = page.eval_on_selector_all(
            "#runs-table tbody tr", "trs => trs.map(t => t.dataset.id)"
        )
        first, second = rows[0], rows[4]
        page.click(f'#runs-table tbody tr[data-id="{first}"] td:nth-child(3)')
        page.wait_for_selector("#detail-plot .main-svg")
        page.check(f'#runs-table input.pick[data-id="{second}"]')
        plot, detail = (
            "document.querySelector('#curve-plot')",
            "document.querySelector('#detail-plot')",
        )
        page.evaluate(f"Plotly.relayout({plot}, {{'xaxis.range': [2, 5]}})")
        page.evaluate(f"Plotly.relayout({detail}, {{'xaxis.range': [1, 4]}})")
        final = page.text_content("#counts")
        with resolve_store(None, root) as store:
            rec = store.get(second)
            store.put(dataclasses.replace(rec, attempts=rec.attempts + 1))
        page.wait_for_function("Number(document.body.dataset.deltas || 0) >= 1", timeout=30_000)
        assert page.text_content("#counts") == final
        assert page.evaluate(f"{plot}.layout.xaxis.range") == [2, 5]
        assert page.evaluate(f"{detail}.layout.xaxis.range") == [1, 4]
        assert page.is_checked(f'#runs-table input.pick[data-id="{second}"]')
        assert page.eval_on_selector_all("#compare-diff th", "t => t.length") >= 2
        attempts = _cells(page, "attempts")[4]
        assert attempts == str(rec.attempts + 1)  # the changed run's row, merged in
        assert watch.errors == [] and watch.requests == []
    finally:
        context.close()
        stop_server(server)
