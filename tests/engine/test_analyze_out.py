"""`assay analyze --out DIR` twice into one folder: the second analysis replaces what the first
wrote (its manifest lists it), stale plots included, and leaves the user's own files alone."""

import json
import subprocess
import sys

SUITE = """\
name: {name}
stage: example.fit
config: {{data: {{n_train: 20}}}}
sweep:
  grid: {{degree: [1, 3]}}
  seeds: [0, 1]
"""


def assay(*args):
    return subprocess.run(
        [sys.executable, "-m", "assay", *map(str, args)], capture_output=True, text=True
    )


def test_a_second_analysis_into_one_folder_replaces_the_first(tmp_path):
    root, out = tmp_path / "runs", tmp_path / "analysis"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(SUITE.format(name="first"))
    second.write_text(SUITE.format(name="second").replace("[1, 3]", "[2, 4]"))
    for suite in (first, second):
        assert assay("run", suite, "--root", root, "--quiet").returncode == 0
    proc = assay("analyze", first, "--root", root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in (out / "plots").iterdir()} >= {"test_mse.png", "train_mse.png"}
    (out / "notes.txt").write_text("mine")
    manifest = json.loads((out / ".assay-analysis.json").read_text())
    assert manifest["what"] == "first" and "plots/train_mse.png" in manifest["files"]
    assert "notes.txt" not in manifest["files"]

    proc = assay("analyze", second, "--root", root, "--out", out, "--metric", "test_mse")
    assert proc.returncode == 0, proc.stderr
    removed = len(manifest["files"])
    assert f"removed the {removed} file(s) of the previous analysis (first)" in proc.stdout
    assert {p.stem for p in (out / "plots").iterdir()} == {"test_mse"}  # no stale plot
    runs = (out / "runs.csv").read_text()
    assert "config.degree" in runs and ",4," in runs and ",3," not in runs
    assert (out / "notes.txt").read_text() == "mine"
    manifest = json.loads((out / ".assay-analysis.json").read_text())
    assert manifest["what"] == "second" and "plots/train_mse.png" not in manifest["files"]
    assert sorted(manifest["files"]) == sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and p.name not in ("notes.txt", ".assay-analysis.json")
    )


def test_out_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "a.yaml").write_text(SUITE.format(name="a"))
    root = tmp_path / "runs"
    assert assay("run", tmp_path / "a.yaml", "--root", root, "--quiet").returncode == 0
    (tmp_path / "afile").write_text("x")
    proc = assay("analyze", tmp_path / "a.yaml", "--root", root, "--out", tmp_path / "afile")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--out" in proc.stderr and "is a file; give a folder" in proc.stderr


def test_variant_group_names_never_overlap_under_the_axis():
    """A `variants:` sweep names its groups by every key a variant sets: long names."""
    import matplotlib.pyplot as plt
    import pandas as pd

    import assay
    from assay.analysis._markdown import summary_figure

    keys = [
        "data.overrides.negative_emotions.n_train_triggers",
        "data.overrides.negative_emotions.is_proxy",
        "lora_r",
    ]
    variants = [(None, None, 2), (2, True, 2), (4, True, 8), (8, False, 8), (16, True, 4)]
    rows = [
        {
            "id": f"r{i}{s}",
            "stage": "trigger.finetune",
            "config.seed": s,
            **{f"config.{k}": v for k, v in zip(keys, variant, strict=True)},
            "results.accuracy": 0.5 + 0.01 * i + 0.001 * s,
        }
        for i, variant in enumerate(variants)
        for s in range(2)
    ]
    summary = assay.summarize(pd.DataFrame(rows))
    fig = summary_figure("accuracy", summary)
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert len(ticks) == 5 and ticks[1].get_text().split("\n") == [
        "data.overrides.",
        "negative_emotions.",
        "n_train_triggers=2.0",
        "data.overrides.",
        "negative_emotions.",
        "is_proxy=True",
        "lora_r=2",
    ]  # one key per line, cut at dots
    boxes = [t.get_window_extent() for t in ticks]
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:], strict=False))
    page = fig.bbox
    assert all(page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 for b in boxes)
    plt.close(fig)
