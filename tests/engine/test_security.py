"""Nothing in a run directory, checkpoint or suite file executes code unless the user says so."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import teststages  # noqa: F401 - registers the t.* stages
import torch

import assay
from assay.core._run import ArtifactNameError


class Planted:
    """What an attacker pickles into a checkpoint: loading it would create ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    run = assay.detached_run(teststages.StepsConfig(), dir=tmp_path / "run")
    pwned = tmp_path / "pwned"
    torch.save({"step": 1, "evil": Planted(pwned)}, run.checkpoint_dir / "checkpoint.pt")
    with pytest.raises(assay.CheckpointError, match="refusing to load.*trusted=True"):
        run.load_checkpoint()
    assert not pwned.exists()


def test_plain_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    run = assay.detached_run(teststages.StepsConfig(), dir=tmp_path / "run")
    state = {"step": 3, "model": torch.nn.Linear(2, 2).state_dict(), "losses": [0.5, 0.25]}
    run.save_checkpoint(state)
    back = run.load_checkpoint()
    assert back["step"] == 3 and back["losses"] == [0.5, 0.25]
    assert torch.equal(back["model"]["weight"], state["model"]["weight"])


@pytest.mark.parametrize("name", ["../../x.json", "/tmp/abs.json", "a/../../b.json", "", "."])
def test_artifact_names_stay_inside_the_run(tmp_path, name):
    run = assay.detached_run(teststages.StepsConfig(), dir=tmp_path / "run")
    with pytest.raises(ArtifactNameError):
        run.save_json(name, {"x": 1})
    with pytest.raises(ArtifactNameError), run.write_artifact(name):
        pass
    with pytest.raises(ArtifactNameError):
        run.artifact(name)
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == []


def test_artifact_names_are_normalised(tmp_path):
    run = assay.detached_run(teststages.StepsConfig(), dir=tmp_path / "run")
    path = run.save_json("./plots//a.json", {"x": 1})
    assert path == run.artifacts_dir / "plots" / "a.json" and run.artifact("plots/a.json") == path


def assay_script():
    return str(Path(sys.executable).parent / "assay")


@pytest.mark.parametrize("entry", ["script", "module"])
def test_a_module_in_the_working_directory_is_not_imported(tmp_path, entry):
    (tmp_path / "pandas.py").write_text("open('pwned', 'w').write('x')\nraise SystemExit(9)\n")
    cmd = [assay_script()] if entry == "script" else [sys.executable, "-m", "assay"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [*cmd, "analyze", "--stage", "example.fit", "--root", "runs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert not (tmp_path / "pwned").exists(), proc.stderr
    assert proc.returncode == 2 and "no runs recorded" in proc.stderr


def test_suite_imports_need_the_users_word(tmp_path):
    (tmp_path / "mystages.py").write_text("open('imported', 'w').write('x')\n")
    suite = tmp_path / "s.yaml"
    suite.write_text("stage: my.stage\nimports: [mystages]\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [assay_script(), "run", str(suite), "--root", "runs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 2 and "--import mystages" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "imported").exists()


def test_recorded_files_follow_the_umask(tmp_path):
    root = tmp_path / "runs"
    rec = assay.run_config(teststages.CountConfig(x=2), root=root)
    mask = os.umask(0)
    os.umask(mask)
    want = 0o666 & ~mask
    for name in ("config.json", "results.json", "provenance.json", "metrics.jsonl", "log.txt"):
        assert stat.S_IMODE((rec.dir / name).stat().st_mode) == want, name
    assert stat.S_IMODE((root / "assay.db").stat().st_mode) == want


def test_a_suite_file_cannot_construct_python_objects(tmp_path):
    pwned = tmp_path / "pwned"
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"stage: example.fit\nname: !!python/object/apply:os.system ['touch {pwned}']\n"
    )
    with pytest.raises(assay.SuiteError, match="malformed YAML"):
        assay.load_suite(suite)
    assert not pwned.exists()


def test_the_one_torch_loader_unpickles_only_when_trusted(tmp_path):
    pwned = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"evil": Planted(pwned)}, path)
    with pytest.raises(assay.CheckpointError, match="would run code.*pass the flag"):
        assay.load_torch_file(path, trusted=False, fix="pass the flag")
    assert not pwned.exists()
