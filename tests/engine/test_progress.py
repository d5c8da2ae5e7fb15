"""Progress inside runs: one nested bar per run, its record in log.txt, resumption, status.

The family part runs one smoke config of every long stage and checks that each counter the
stage opened reached its known total (the ``progress: ... n/n`` lines ``log.txt`` keeps after
``progress.json`` is removed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import assaycli
import pytest

import assay
from assay.core._run import PROGRESS_FILE
from assay.engine._progress import eta, in_flight

COUNTER = re.compile(r"progress: (.+) in [0-9.]+s$")


def counters(run_dir: Path) -> list[str]:
    """The final label of every outer counter a run closed, from its log.txt."""
    lines = (Path(run_dir) / "log.txt").read_text().splitlines()
    return [m.group(1) for line in lines if (m := COUNTER.search(line))]


def reached_total(label: str) -> bool:
    """``epoch 3/3, batch 4/4`` -> True: the outer count equals its total."""
    m = re.match(r"[^,]*?(\d+)/(\d+)", label)
    return bool(m) and m.group(1) == m.group(2)


def test_nested_counter_is_one_bar_with_the_inner_unit_named(tmp_path):
    import progressstages

    run = assay.detached_run(progressstages.SlowTrainConfig(), dir=tmp_path)
    with run.progress(10, "epoch") as bar:
        bar.update(2)
        batches = bar.inner(400, "batch")
        batches.update(120)
        assert bar.label == "epoch 2/10, batch 120/400"
        assert bar.position == pytest.approx(2.3)
        bar.note("evaluating")  # a note forces a write: the display sees it at once
        info = json.loads((tmp_path / PROGRESS_FILE).read_text())
        assert info["label"] == "epoch 2/10, batch 120/400, evaluating"
        assert info["position"] == pytest.approx(2.3) and info["total"] == 10
        assert in_flight(info).startswith("epoch 2/10, batch 120/400, evaluating eta ")
        bar.update(7)  # the unit finished: its batches and note go
        assert bar.label == "epoch 9/10"
        assert list(bar.inner(2, "batch").track("ab")) == ["a", "b"]
        assert bar.label == "epoch 9/10, batch 2/2"
        bar.update()
        assert bar.label == "epoch 10/10"
    assert counters(tmp_path) == ["epoch 10/10"]


def test_eta_counts_only_the_work_done_since_a_resume():
    now = time.time()
    info = {"n": 300, "start": 200, "total": 1200, "started": now - 10, "position": 300}
    assert eta(info) == " eta 90s"  # 100 steps took 10 s: 900 left take 90 s
    assert eta({**info, "n": 200, "position": 200}) == ""  # nothing done yet: no rate
    shown = in_flight({**info, "desc": "step", "label": "step 300/1200"})
    assert shown == "step 300/1200 (resumed at step 200) eta 90s"


def test_resumed_run_logs_where_it_resumed(root):
    import progressstages

    config = progressstages.SlowTrainConfig(epochs=3, batches=2, step_s=0.0)
    run_dir = root / assay.detached_run(config, dir=root / "probe").id
    assay.detached_run(config, dir=run_dir).save_checkpoint({"epoch": 2})  # a killed attempt
    rec = assay.run_config(config, root=root)
    assert rec.status.value == "done" and Path(rec.dir) == run_dir.resolve()
    log = (run_dir / "log.txt").read_text()
    assert "resumed at epoch 2 of 3" in log
    assert counters(run_dir) == ["epoch 3/3"]
    assert not (run_dir / PROGRESS_FILE).exists()  # removed when the run ends


def test_status_says_an_upstream_run_is_in_flight(tmp_path, root):
    suite = tmp_path / "use.yaml"
    suite.write_text("stage: p.use\nconfig: {train: {epochs: 4, batches: 5, step_s: 0.25}}\n")
    cmd = assaycli.run_command(suite, root, "progressstages")
    status = [
        sys.executable,
        "-m",
        "assay",
        "status",
        str(suite),
        "--root",
        str(root),
        "--import",
        "progressstages",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            out = subprocess.run(status, capture_output=True, text=True).stdout
            if re.search(r"in flight: upstream run p\.train .*: epoch \d/4, batch \d/5", out):
                seen = out
                break
            time.sleep(0.3)
        assert seen, "status never showed the upstream run in flight"
        assert "0/1 done; 1 pending" in seen and "upstream runs: 1 running" in seen
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    out = subprocess.run(status, capture_output=True, text=True).stdout
    assert "1/1 done" in out and "upstream runs: 1 done" in out and "in flight" not in out


def test_hugging_face_progress_bars_are_off_inside_runs(root):
    """Loaded before the run (bars on) or by the stage itself: either way no bars in a run."""
    code = (
        "import sys, assay, progressstages\n"
        "from transformers.utils import logging\n"
        "logging.enable_progress_bar()\n"
        "cfg = progressstages.SlowTrainConfig(epochs=1, batches=1, step_s=0.0)\n"
        f"assay.run_config(cfg, root={str(root)!r})\n"
        "import huggingface_hub.utils as hub\n"
        "print(logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled())\n"
    )
    env = {k: v for k, v in os.environ.items() if "PROGRESS_BARS" not in k}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


# One smoke run of each family's long stages, in one root per family so that upstream runs are
# shared; the upstream runs (the training stages) run too, so every long stage is covered.
LONG_STAGES = {
    "volume": ("volume.perturb",),  # and volume.train
    "icl": ("icl.geometry", "icl.loo"),  # and icl.train
    "cartography": ("cartography.cluster", "cartography.train"),  # and cartography.dynamics
    "trigger": ("trigger.patch",),  # and trigger.finetune, trigger.base
    "patching": ("patching.run",),  # and patching.cartpole_dqn
}
EXPECTED_UNITS = {  # stage -> the counters its log must show, each at its total
    "volume.train": ("epoch",),
    "volume.perturb": ("model",),
    "icl.train": ("step",),
    "icl.geometry": ("context",),
    "icl.loo": ("context",),
    "cartography.dynamics": ("epoch",),
    "cartography.train": ("epoch",),
    "cartography.cluster": ("phase",),
    "trigger.base": ("epoch", "final evaluation"),
    "trigger.finetune": ("epoch", "final evaluation"),
    "trigger.patch": ("prompt group",),
    "patching.cartpole_dqn": ("env step",),
    "patching.run": ("direction",),
}


@pytest.mark.parametrize("family", sorted(LONG_STAGES))
def test_every_long_stage_reports_progress_to_a_known_total(family, root):
    from assay.testing import smoke_config

    for name in LONG_STAGES[family]:
        rec = assay.run_config(smoke_config(name), root=root)
        assert rec.status.value == "done", rec.error
    seen = set()
    for run_dir in sorted(p for p in root.iterdir() if (p / "results.json").is_file()):
        stage = json.loads((run_dir / "provenance.json").read_text())["stage"]
        labels = counters(run_dir)
        for unit in EXPECTED_UNITS.get(stage, ()):  # a data stage is not long
            mine = [lab for lab in labels if lab.startswith(unit + " ")]
            assert mine, f"{stage}: no {unit!r} counter in log.txt: {labels}"
            assert all(reached_total(lab) for lab in mine), f"{stage}: {mine}"
        seen.add(stage)
    assert seen >= {s for s in EXPECTED_UNITS if s.startswith(family + ".")}


def test_upstream_bars_are_named_by_what_varies_among_them():
    from assay.engine._api import plan_suite
    from assay.engine._progress import upstream_labels

    runs = plan_suite("suites/volume/swiss_roll_low_data_smoke.yaml")
    labels = upstream_labels(runs)
    trains = [v for v in labels.values() if v.startswith("volume.train")]
    assert "volume.train extra_samples=30 seed=1" in trains
    assert len(set(trains)) == len(trains)  # no two bars of one stage read the same
