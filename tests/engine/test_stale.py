"""Know when code changed: a finished run made by other code than is installed is called stale."""

import json
import subprocess
import sys

import pytest

PACKAGE = {
    "__init__.py": "",
    "stages.py": """\
import assay
from ._helper import scale


class Cfg(assay.SeededConfig):
    x: float = 1.0


@assay.stage("stalepkg.double", config=Cfg)
def double(config, run):
    return {"y": scale(config.x)}
""",
    "_helper.py": "def scale(x):\n    return 2 * x\n",
    "_plots.py": "# drawn by nobody in this test\n",
}
SUITE = "stage: stalepkg.double\nimports: [stalepkg.stages]\nsweep:\n  grid: {x: [1.0, 2.0]}\n"


@pytest.fixture
def project(tmp_path):
    pkg = tmp_path / "stalepkg"
    pkg.mkdir()
    for name, text in PACKAGE.items():
        (pkg / name).write_text(text)
    (tmp_path / "suite.yaml").write_text(SUITE)
    return tmp_path


def assay(project, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "assay", *args, "--root", "runs", "--import", "stalepkg.stages"],
        capture_output=True,
        text=True,
        cwd=project,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def results(project):
    return sorted(
        json.loads(p.read_text())["y"] for p in (project / "runs").glob("*/results.json")
    )


def test_a_stage_edit_makes_its_runs_stale_and_rerun_stale_reruns_them(project):
    assert "2 done" in assay(project, "run", "suite.yaml", "--quiet")
    prov = json.loads(next((project / "runs").glob("*/provenance.json")).read_text())
    assert prov["code"]["stage_sha256"] and prov["code"]["modules"] == [
        "stalepkg._helper",
        "stalepkg.stages",
    ]

    # a module the stage never imports changes: nothing is stale
    (project / "stalepkg" / "_plots.py").write_text("# a new plot\n")
    assert "stale" not in assay(project, "status", "suite.yaml")

    # the function body of a module the stage imports changes: both runs are stale
    (project / "stalepkg" / "_helper.py").write_text("def scale(x):\n    return 3 * x\n")
    status = assay(project, "status", "suite.yaml")
    assert "2 finished run(s) are stale" in status
    assert status.count("stage code changed since") == 2
    out = assay(project, "run", "suite.yaml", "--quiet")
    assert "2 skipped" in out and "2 finished run(s) are stale" in out
    assert results(project) == [2.0, 4.0]  # kept as they were
    assay(project, "report", "suite.yaml", "--out", "r.html")
    page = (project / "r.html").read_text()
    assert "2 finished run(s) are stale" in page and "stage code changed since" in page

    out = assay(project, "run", "suite.yaml", "--quiet", "--rerun-stale")
    assert "2 done" in out and "reran 2 stale run(s)" in out
    assert results(project) == [3.0, 6.0]
    kept = sorted((project / "runs" / ".stale").iterdir())
    assert len(kept) == 2 and all((k / "results.json").exists() for k in kept)
    assert "stale" not in assay(project, "status", "suite.yaml")
    assert "2 skipped" in assay(project, "run", "suite.yaml", "--quiet")
