"""A suite's user modules: imported once by the user's word, remembered for later commands."""

import json
import subprocess
import sys

import pytest

STAGES = """\
import assay


class Cfg(assay.SeededConfig):
    x: float = 1.0


@assay.stage("mine.square", config=Cfg)
def square(config, run):
    return {"y": config.x ** 2}
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "minestages.py").write_text(STAGES)
    (tmp_path / "s.yaml").write_text("stage: mine.square\nsweep:\n  grid: {x: [1.0, 2.0]}\n")
    (tmp_path / "t.yaml").write_text(
        "stage: mine.square\nimports: [minestages]\nsweep:\n  grid: {x: [3.0]}\n"
    )
    return tmp_path


def assay(project, *args):
    return subprocess.run(
        [sys.executable, "-m", "assay", *args], capture_output=True, text=True, cwd=project
    )


def test_run_remembers_its_imports_for_status_analyze_and_report(project):
    assert assay(project, "run", "s.yaml", "--import", "minestages", "--quiet").returncode == 0
    assert json.loads((project / "runs" / "imports.json").read_text()) == ["minestages"]
    status = assay(project, "status", "s.yaml")
    assert status.returncode == 0 and "2/2 done" in status.stdout, status.stderr
    analyze = assay(project, "analyze", "s.yaml")
    assert analyze.returncode == 0 and "2 run(s)" in analyze.stdout, analyze.stderr
    report = assay(project, "report", "s.yaml", "--out", "r.html")
    assert report.returncode == 0 and (project / "r.html").exists(), report.stderr


def test_report_finds_an_import_in_the_working_directory(project):
    assert assay(project, "run", "s.yaml", "--import", "minestages", "--quiet").returncode == 0
    (project / "runs" / "imports.json").unlink()  # only the flag now
    report = assay(project, "report", "s.yaml", "--import", "minestages", "--out", "r.html")
    assert report.returncode == 0, report.stderr


def test_analyze_honours_trust_imports(project):
    assert (
        assay(project, "run", "t.yaml", "--trust-imports", "--quiet", "--root", "r2").returncode
        == 0
    )
    (project / "r2" / "imports.json").unlink()
    refused = assay(project, "analyze", "t.yaml", "--root", "r2")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    trusted = assay(project, "analyze", "t.yaml", "--root", "r2", "--trust-imports")
    assert trusted.returncode == 0 and "1 run(s)" in trusted.stdout, trusted.stderr


def test_a_remembered_module_that_is_gone_is_a_warning(project):
    assert assay(project, "run", "s.yaml", "--import", "minestages", "--quiet").returncode == 0
    (project / "runs" / "imports.json").write_text(json.dumps(["minestages", "gone_module"]))
    status = assay(project, "status", "s.yaml")
    assert status.returncode == 0 and "gone_module" in status.stderr
