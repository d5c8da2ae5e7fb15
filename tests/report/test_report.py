"""The HTML file, family sections, and the `report`/`serve` commands (no browser needed)."""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from _helpers import run_demo

import assay
from assay.report import (
    ReportSection,
    _families,
    add_commands,
    collect,
    read_report_data,
    write_html,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return run_demo(tmp_path_factory.mktemp("demo"))


def test_the_file_is_self_contained_and_holds_its_data(demo, tmp_path):
    suite, root = demo
    data = collect(root=root, suite=suite)
    path = write_html(tmp_path / "r.html", data)
    text = path.read_text()
    assert read_report_data(path) == json.loads(json.dumps(data))
    # nothing is fetched: no external src/href, and the page's policy forbids any request
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "default-src 'none'" in text and "connect-src 'none'" in text
    plotly = re.search(r'id="assay-plotly" type="application/gzip-base64">([^<]*)<', text)
    import gzip

    js = gzip.decompress(base64.b64decode(plotly.group(1))).decode()
    assert js.startswith("/**") and "plotly.js v" in js[:300]  # the bundle itself, inlined
    assert path.stat().st_size < 3_000_000
    with pytest.raises(assay.AssayError, match="must end in .html"):
        write_html(tmp_path / "r.txt", data)


def _fake_family(monkeypatch, **hooks):
    fam = assay.Family(name="rpt", description="report test family", **hooks)
    monkeypatch.setattr("assay.core._registry.families", lambda: {"rpt": fam})
    return fam


def analyze_hook(records, out_dir):
    """An analyze hook as families write them: prints, a PNG and a CSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    print(f"rpt: {len(records)} finished runs")
    out_dir.mkdir(parents=True)
    fig, ax = plt.subplots()
    ax.plot([r.results["final_loss"] for r in records])
    assay.save_figure(fig, out_dir / "losses.png")
    (out_dir / "table.csv").write_text(
        "id,loss\n" + "".join(f"{r.id},{r.results['final_loss']}\n" for r in records)
    )


def broken_hook(records, out_dir):
    raise ValueError("no table.csv in run rpt_x")


def test_analyze_hooks_become_sections(demo, monkeypatch):
    suite, root = demo
    _fake_family(monkeypatch, analyze=f"{__name__}:analyze_hook")
    data = collect(root=root, suite=suite)
    (sec,) = data["families"]
    assert sec["family"] == "rpt" and sec["source"] == "analyze" and sec["error"] is None
    assert sec["text"] == "rpt: 6 finished runs"
    (img,) = sec["images"]
    assert img["name"] == "losses.png" and base64.b64decode(img["b64"])[:4] == b"\x89PNG"
    (table,) = sec["tables"]
    assert table["columns"] == ["id", "loss"] and len(table["rows"]) == 6


def test_a_failing_hook_is_shown_and_reported(demo, monkeypatch):
    suite, root = demo
    _fake_family(monkeypatch, analyze=f"{__name__}:broken_hook")
    data = collect(root=root, suite=suite)
    (sec,) = data["families"]
    assert sec["error"] == "ValueError: no table.csv in run rpt_x"
    assert "ValueError" in sec["text"]
    assert data["problems"] == [
        "family rpt: the analyze hook failed (ValueError: no table.csv in run rpt_x); its "
        "section shows the traceback"
    ]


def report_hook(records):
    import plotly.graph_objects as go

    losses = sorted(r.results["final_loss"] for r in records)
    fig = go.Figure(go.Bar(x=list(range(len(losses))), y=losses))
    return [
        ReportSection(
            "sorted losses",
            text="the family's own view",
            figures=[fig],
            tables=[("losses", [{"rank": i, "loss": v} for i, v in enumerate(losses)])],
        )
    ]


def test_a_report_hook_contributes_interactive_figures(demo, monkeypatch):
    suite, root = demo
    _fake_family(monkeypatch, report=f"{__name__}:report_hook")
    data = collect(root=root, suite=suite)
    (sec,) = data["families"]
    assert sec["source"] == "report" and sec["title"] == "sorted losses"
    assert sec["figures"][0]["data"][0]["type"] == "bar"
    assert len(sec["figures"][0]["data"][0]["y"]) == 6
    assert sec["tables"][0]["columns"] == ["rank", "loss"]
    memo: dict = {}
    assert _families.family_sections([], [], memo) == []


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assay.report", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_report_command_writes_the_file(demo, tmp_path):
    suite, root = demo
    out = tmp_path / "sub" / "demo.html"
    res = _cli(
        "report", str(suite), "--root", str(root), "--import", "reportstages", "--out", str(out)
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout and "9 run(s): 6 done, 3 failed" in res.stdout
    assert read_report_data(out)["counts"] == {"done": 6, "failed": 3}
    res = _cli("report", "--stage", "rpt.train", "--root", str(root))
    assert res.returncode == 0, res.stderr
    assert (root / "reports" / "rpt.train.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--root", "R"], "report needs a suite file or --stage NAME"),
        (["report", "s.yaml", "--stage", "x"], "not both"),
        (["report", "--stage", "rpt.nope"], "no recorded runs of stage 'rpt.nope'"),
        (["report", "missing.yaml"], "suite file 'missing.yaml' does not exist"),
        (["serve", "--refresh-s", "0"], "--refresh-s must be > 0, got 0.0"),
    ],
)
def test_bad_input_gets_one_message(demo, args, message, capsys):
    from assay.report._cli import main

    _, root = demo
    args = [a if a != "R" else str(root) for a in args]
    if "--root" not in args:
        args += ["--root", str(root)]
    assert main(args) == 2  # the same entry point `python -m assay.report` runs
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_add_commands_builds_both_subcommands():
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["report", "s.yaml", "lr=0.1", "--out", "x.html"])
    assert args.suite == "s.yaml" and args.overrides == ["lr=0.1"] and args.out == "x.html"
    args = parser.parse_args(["serve", "--root", "r", "--port", "0"])
    assert args.host == "127.0.0.1" and args.port == 0 and callable(args.func)
    assert "127.0.0.1" in parser._subparsers._group_actions[0].choices["serve"].format_help()


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """`python -m assay.report serve ... --port 0`, and the URL it prints."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assay.report",
            "serve",
            *args,
            "--port",
            "0",
            "--refresh-s",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not found:
        proc.kill()
        raise AssertionError(f"serve printed {line!r}; stderr: {proc.stderr.read()}")
    return proc, found.group(1)


def stop_server(proc: subprocess.Popen) -> str:
    """Stop it; what it wrote to stderr (pipes closed)."""
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    return err


def _get(url: str, host: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_answers_only_local_requests_and_sends_changes(demo):
    suite, root = demo
    proc, url = start_server(str(suite), "--root", str(root), "--import", "reportstages")
    try:
        status, page = _get(url)
        assert status == 200 and 'data-live="1"' in page and "connect-src 'self'" in page
        status, body = _get(url + "data.json")
        fp = json.loads(body)["data"]["fingerprint"]
        assert json.loads(body)["data"]["counts"] == {"done": 6, "failed": 3}
        assert "Grouped statistics" in json.loads(body)["sections_html"]
        assert json.loads(_get(url + f"data.json?since={fp}")[1]) == {"unchanged": True}
        status, _ = _get(url, host="evil.example:80")  # DNS rebinding: refused
        assert status == 403
        assert _get(url + "nope")[0] == 404
        # a stage's report from the same server
        status, body = _get(url + "data.json?stage=rpt.train")
        assert status == 200 and json.loads(body)["data"]["plan"] is None
    finally:
        stop_server(proc)


def test_serve_without_suite_lists_the_stages(demo):
    _, root = demo
    proc, url = start_server("--root", str(root))
    try:
        status, page = _get(url)
        assert status == 200 and 'href="?stage=rpt.train"' in page and "6 done, 3 failed" in page
        t0 = time.time()
        status, page = _get(url + "?stage=rpt.train")
        assert status == 200 and "assay report: stage rpt.train" in page
        assert time.time() - t0 < 30
    finally:
        stop_server(proc)
