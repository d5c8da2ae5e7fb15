"""An engine-only install: a command that needs an extra ends in one message naming it."""

import subprocess
import sys

import pytest

SUITE = "stage: example.fit\nsweep:\n  grid: {degree: [1, 2]}\n"


def blocked(tmp_path, module):
    """A folder that, put first on PYTHONPATH, makes ``module`` look not installed."""
    folder = tmp_path / f"no-{module}"
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(
        f"raise ModuleNotFoundError('No module named {module}', name={module!r})\n"
    )
    return folder


def assay(tmp_path, *args, block=None):
    env = {"PATH": "/usr/bin:/bin"}
    if block is not None:
        env["PYTHONPATH"] = str(blocked(tmp_path, block))
    return subprocess.run(
        [sys.executable, "-m", "assay", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.parametrize("command", ["analyze", "report"])
def test_analysis_without_pandas_names_the_extra(tmp_path, command):
    (tmp_path / "s.yaml").write_text(SUITE)
    assert assay(tmp_path, "run", "s.yaml", "--quiet").returncode == 0
    extra = ["--out", "r.html"] if command == "report" else []
    proc = assay(tmp_path, command, "s.yaml", *extra, block="pandas")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "pandas is not installed" in proc.stderr and "assay[analysis]" in proc.stderr


def test_a_family_without_its_extra_names_the_family_extra(tmp_path):
    proc = assay(tmp_path, "stages", "volume.train", block="torch")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "torch is not installed" in proc.stderr and "assay[volume]" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_families_says_which_are_usable(tmp_path):
    from assay.core._extras import extras, missing_for_extra

    assert {"volume", "patching", "cartography", "icl", "trigger"} <= set(extras())
    assert missing_for_extra("volume") == []  # the dev install has everything
    out = assay(tmp_path, "families").stdout
    assert "usable" in out
