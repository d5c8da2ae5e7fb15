"""No symbolic link planted in a run root takes a read or a write outside it (issue 16).

Each test plants a link to ``tmp_path/outside`` where a shared root's other users could (a file
of a run, a run's subfolder, the run folder itself), drives the real API or command, and checks
that the outside file is unchanged and unread and that the user is told which link to remove.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import teststages
import torch

import assay
from assay.core._config import run_id
from assay.core._guard import OutsideRootError, open_in_root
from assay.core._io import atomic_dir, atomic_path, atomic_write_text
from assay.core._registry import get_stage
from assay.core._run import record_from_dir
from assay.engine._reindex import reindex
from assay.report._runfiles import RunFiles
from assay.store import resolve_store

SECRET = "the outside secret\n"
TESTS = Path(__file__).parent


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    return folder


def untouched(outside: Path) -> bool:
    """The outside folder holds exactly the secret, unchanged."""
    return (
        sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        and (outside / "secret.txt").read_text() == SECRET
    )


def rid_of(config) -> str:
    entry = get_stage("t.count")
    return run_id(entry.name, entry.version, config)


def handle(root: Path) -> assay.Run:
    return assay.detached_run(teststages.StepsConfig(), dir=root / "run")


# -- the live run handle: every file a stage writes or reads ---------------------------------------
@pytest.mark.parametrize("name", ["log.txt", "metrics.jsonl"])
def test_appends_never_follow_a_link_out_of_the_root(tmp_path, outside, name):
    run = handle(tmp_path / "runs")
    (run.dir / name).symlink_to(outside / "secret.txt")
    with pytest.raises(OutsideRootError, match=rf"{name} is a symbolic link to .*secret.txt"):
        run.log("hello") if name == "log.txt" else run.log_metrics(0, loss=1.0)
    assert untouched(outside)


@pytest.mark.parametrize("folder", ["artifacts", "checkpoints"])
def test_a_linked_subfolder_takes_no_artifact_or_checkpoint(tmp_path, outside, folder):
    run = handle(tmp_path / "runs")
    (run.dir / folder).symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideRootError, match=rf"{folder} is a symbolic link.*rm "):
        if folder == "artifacts":
            run.save_json("a.json", {"x": 1})
        else:
            run.save_checkpoint({"step": 1})
    with pytest.raises(OutsideRootError):
        if folder == "artifacts":
            with run.write_artifact("b.npz"):
                pass
        else:
            run.load_checkpoint()
    assert untouched(outside)


def test_an_artifact_link_is_replaced_not_written_through(tmp_path, outside):
    run = handle(tmp_path / "runs")
    (run.artifacts_dir / "a.json").symlink_to(outside / "secret.txt")
    path = run.save_json("a.json", {"x": 1})
    assert not path.is_symlink() and path.read_text() == '{\n  "x": 1\n}\n'
    assert untouched(outside)


def test_a_checkpoint_linking_out_is_not_loaded(tmp_path, outside):
    torch.save({"step": 7}, outside / "checkpoint.pt")
    run = handle(tmp_path / "runs")
    (run.checkpoint_dir / "checkpoint.pt").symlink_to(outside / "checkpoint.pt")
    with pytest.raises(OutsideRootError, match="checkpoint.pt is a symbolic link"):
        run.load_checkpoint()


def test_links_that_stay_inside_the_root_are_followed(tmp_path):
    run = handle(tmp_path / "runs")
    (run.dir.parent / "shared.txt").write_text("")
    (run.dir / "log.txt").symlink_to(run.dir.parent / "shared.txt")
    run.log("kept")
    assert (run.dir.parent / "shared.txt").read_text().endswith(" kept\n")


def test_upstream_artifacts_linking_out_are_refused(tmp_path, outside):
    root = tmp_path / "runs"
    rec = assay.run_config(teststages.CountConfig(x=1), root=root)
    (rec.dir / "artifacts").mkdir()
    (rec.dir / "artifacts" / "data.txt").symlink_to(outside / "secret.txt")
    (rec.dir / "artifacts" / "model").mkdir()
    (rec.dir / "artifacts" / "model" / "weights.bin").symlink_to(outside / "secret.txt")
    for name in ("data.txt", "model"):  # a folder artifact: every link beneath it too
        with pytest.raises(OutsideRootError, match="outside the run root"):
            rec.artifact(name)


# -- the runner: the run folder and the files it records -------------------------------------------
def test_a_run_folder_linking_out_is_refused_with_one_message(tmp_path, outside):
    root, config = tmp_path / "runs", teststages.CountConfig(x=3)
    root.mkdir()
    (root / rid_of(config)).symlink_to(outside, target_is_directory=True)
    rec = assay.run_config(config, root=root)
    assert rec.status is assay.RunStatus.FAILED
    assert f"{root / rid_of(config)} is a symbolic link to {outside}" in rec.error
    assert "--retry-failed" in rec.error
    assert untouched(outside)


@pytest.mark.parametrize(
    "name",
    [
        "log.txt",
        "metrics.jsonl",
        "config.json",
        "provenance.json",
        "error.txt",
        ".results.attempt-1.json",
        "progress.json",
    ],
)
def test_a_run_file_linking_out_fails_the_run_before_it_writes(tmp_path, outside, name):
    root, config = tmp_path / "runs", teststages.CountConfig(x=4)
    (root / rid_of(config)).mkdir(parents=True)
    (root / rid_of(config) / name).symlink_to(outside / "secret.txt")
    rec = assay.run_config(config, root=root)
    assert rec.status is assay.RunStatus.FAILED and f"{name} is a symbolic link" in rec.error
    assert untouched(outside)
    (root / rid_of(config) / name).unlink()  # the fix the message names
    assert assay.run_config(config, root=root, retry_failed=True).status is assay.RunStatus.DONE


def test_results_are_never_truncated_through_a_link(tmp_path, outside):
    folder = tmp_path / "runs" / "r"
    folder.mkdir(parents=True)
    (folder / ".results.attempt-1.json").symlink_to(outside / "secret.txt")
    with pytest.raises(OutsideRootError):
        open_in_root(
            tmp_path / "runs",
            folder / ".results.attempt-1.json",
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
        )
    assert untouched(outside)


def test_the_cli_names_the_link_and_exits_non_zero(tmp_path, outside):
    root, config = tmp_path / "runs", teststages.CountConfig(x=5)
    root.mkdir()
    (root / rid_of(config)).symlink_to(outside, target_is_directory=True)
    suite = tmp_path / "s.yaml"
    suite.write_text("stage: t.count\nimports: [teststages]\nconfig: {x: 5}\n")
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "run", str(suite), "--root", str(root), "--trust-imports"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "is a symbolic link" in proc.stdout + proc.stderr
    assert "error.txt" not in proc.stdout  # refused before it ran: there is no traceback file
    assert untouched(outside)


# -- reindex -----------------------------------------------------------------------------------------
def test_reindex_skips_a_run_folder_linking_out_and_says_so(tmp_path, outside):
    root = tmp_path / "runs"
    rec = assay.run_config(teststages.CountConfig(x=6), root=root)
    evil = outside / "t_count_0123456789ab"
    evil.mkdir()
    for name in ("config.json", "provenance.json", "results.json"):
        (evil / name).write_text((rec.dir / name).read_text())
    (root / evil.name).symlink_to(evil, target_is_directory=True)
    said: list[str] = []
    with resolve_store(None, root) as store:
        assert reindex(root, store, warn=said.append) == {"done": 1}
        assert store.get(evil.name) is None
    assert len(said) == 1 and f"{root / evil.name} is a symbolic link to {evil}" in said[0]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "reindex", "--root", str(root)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0 and "indexed 1 run(s): 1 done" in proc.stdout
    assert "skipped: refusing to index" in proc.stderr


def test_reindex_reads_no_run_file_linking_out(tmp_path, outside):
    root = tmp_path / "runs"
    rec = assay.run_config(teststages.CountConfig(x=7), root=root)
    (outside / "results.json").write_text('{"x2": 999}')
    (rec.dir / "results.json").unlink()
    (rec.dir / "results.json").symlink_to(outside / "results.json")
    with pytest.raises(OutsideRootError):
        record_from_dir(rec.dir)
    with resolve_store(None, root) as store, pytest.raises(assay.AssayError, match="results.json"):
        reindex(root, store)


# -- the report ----------------------------------------------------------------------------------------
def test_the_report_shows_a_note_instead_of_an_outside_secret(tmp_path, outside):
    root = tmp_path / "runs"
    flag = tmp_path / "fail"
    flag.write_text("")
    config = teststages.CountConfig(x=8, fail_if_exists=str(flag))
    rec = assay.run_config(config, root=root)
    assert rec.status is assay.RunStatus.FAILED
    for name in ("error.txt", "log.txt", "metrics.jsonl", "provenance.json"):
        (rec.dir / name).unlink(missing_ok=True)
        (rec.dir / name).symlink_to(outside / "secret.txt")
    files = RunFiles()
    assert "error.txt not shown" in files.tail(rec.dir / "error.txt", 20)
    assert files.json(rec.dir / "provenance.json") is None
    assert files.metrics(rec.dir / "metrics.jsonl") == []
    out = tmp_path / "report.html"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "assay",
            "report",
            "--stage",
            "t.count",
            "--root",
            str(root),
            "--import",
            "teststages",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "the outside secret" not in html and "error.txt not shown" in html
    assert untouched(outside)


# -- sinks ----------------------------------------------------------------------------------------------
def _sinks(names, root: Path, suite: str, warnings: list[str]):
    from assay.sinks import open_sinks

    run_dir = root / "t_fit_abc"
    run_dir.mkdir(parents=True, exist_ok=True)
    return open_sinks(
        names,
        run_id="t_fit_abc",
        stage="t.fit",
        suite=suite,
        config={"lr": 0.1},
        root=root,
        run_dir=run_dir,
        warn=warnings.append,
    )


@pytest.mark.parametrize("kind", ["dots", "absolute"])
def test_a_suite_name_never_takes_tensorboard_outside_the_root(tmp_path, kind):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (assay[sinks])")
    root = tmp_path / "a" / "b" / "runs"
    name = "../../../../x" if kind == "dots" else str(tmp_path / "abs")
    warnings: list[str] = []
    sinks = _sinks(["tensorboard"], root, name, warnings)
    sinks.log_metrics(0, {"loss": 1.0})
    sinks.finish("done", {"loss": 1.0}, None)
    assert warnings == [] and sinks.names == ["tensorboard"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(root) for p in written)
    (folder,) = (root / "tensorboard").iterdir()
    assert folder.name == (
        "x" if kind == "dots" else str(tmp_path / "abs").strip("/").replace("/", "_")
    )


def test_safe_name_keeps_one_plain_folder_name():
    from assay.sinks import safe_name

    assert [safe_name(n) for n in ("../../x", "/tmp/abs", "..", "", "demo-1a2b", "a b/c")] == [
        "x",
        "tmp_abs",
        "assay",
        "assay",
        "demo-1a2b",
        "a_b_c",
    ]


@pytest.mark.parametrize("kind", ["mlflow", "wandb"])
def test_a_tracker_path_linking_out_stops_that_sink_only(tmp_path, outside, monkeypatch, kind):
    pytest.importorskip(kind, reason=f"{kind} is not installed (assay[sinks])")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "runs"
    root.mkdir()
    if kind == "mlflow":
        (root / "mlflow.db").symlink_to(outside / "secret.txt")
    else:
        (root / "wandb").symlink_to(outside, target_is_directory=True)
    warnings: list[str] = []
    sinks = _sinks([kind], root, "demo", warnings)
    assert sinks.names == [] and len(warnings) == 1
    assert f"sink {kind} could not start: OutsideRootError" in warnings[0]
    assert untouched(outside)


# -- the io layer every writer shares ----------------------------------------------------------------
def test_atomic_writes_with_a_root_refuse_a_folder_linking_out(tmp_path, outside):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "sub").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideRootError):
        atomic_write_text(root / "sub" / "x.txt", "x", root=root)
    with (
        pytest.raises(OutsideRootError),
        atomic_path(root / "sub" / "deeper" / "y.png", root=root),
    ):
        pass
    with pytest.raises(OutsideRootError), atomic_dir(root / "sub" / "model", root=root):
        pass
    assert untouched(outside)


def test_files_made_by_other_writers_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        with atomic_dir(tmp_path / "model") as tmp:
            fd = os.open(tmp / "weights.bin", os.O_WRONLY | os.O_CREAT, 0o600)  # a weight writer
            os.close(fd)
            (tmp / "sub").mkdir(mode=0o700)
        with atomic_path(tmp_path / "a.pt") as tmp:
            os.chmod(tmp, 0o600)
    finally:
        os.umask(old)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in [tmp_path / "model", *(tmp_path / "model").rglob("*"), tmp_path / "a.pt"]
    }
    assert modes == {"model": 0o775, "weights.bin": 0o664, "sub": 0o775, "a.pt": 0o664}


# -- file modes: a group shares a root under umask 002 ---------------------------------------------
def test_every_file_the_model_writing_families_record_follows_umask_002(tmp_path):
    """icl.train (model/ by save_pretrained) and trigger.finetune (its data and base upstream,
    model/ and the LoRA adapter/): 0664 files and 0775 folders in every run, not 0600/0700."""
    from assay.testing import smoke_config

    torch.set_num_threads(1)
    root = tmp_path / "runs"
    old = os.umask(0o002)
    try:
        for name in ("icl.train", "trigger.finetune"):
            rec = assay.run_config(smoke_config(name), root=root)
            assert rec.status is assay.RunStatus.DONE, rec.error
    finally:
        os.umask(old)
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert {p.name.split("_")[0] + "." + p.name.split("_")[1] for p in runs} == {
        "icl.train",
        "trigger.generate",
        "trigger.base",
        "trigger.finetune",
    }
    wrong = {}
    for run_dir in runs:
        for path in [run_dir, *run_dir.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode != (0o775 if path.is_dir() else 0o664):
                wrong[str(path.relative_to(root))] = oct(mode)
    assert wrong == {}
    assert (root / rid_prefix(runs, "trigger_finetune") / "artifacts" / "adapter").is_dir()


def rid_prefix(runs: list[Path], prefix: str) -> str:
    return next(p.name for p in runs if p.name.startswith(prefix + "_"))


def test_show_reads_no_provenance_linking_out(tmp_path, outside):
    root = tmp_path / "runs"
    rec = assay.run_config(teststages.CountConfig(x=9), root=root)
    (outside / "provenance.json").write_text('{"host": "the outside secret"}')
    (rec.dir / "provenance.json").unlink()
    (rec.dir / "provenance.json").symlink_to(outside / "provenance.json")
    proc = subprocess.run(
        [sys.executable, "-m", "assay", "show", rec.id, "--root", str(root)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "provenance.json is a symbolic link" in proc.stderr
    assert "the outside secret" not in proc.stdout + proc.stderr
