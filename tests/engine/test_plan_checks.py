"""Refused at plan time, run exactly what was asked (issue 19).

- a stage's ``check`` runs for every planned run, upstream runs too, for ``assay run`` and
  ``--dry-run``; a refusal is exit 2, one message, and nothing recorded (no store is created);
- a ``seeds:`` sweep never creates a sub-config the suite does not have (no phantom upstream
  runs), checked on every shipped suite;
- a config declaring ``seed`` on plain ``StageConfig`` is refused at registration;
- relative paths in a suite resolve against the suite file, not the working directory;
- a misspelled key inside a nested mapping names the valid keys there.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import assay
from assay.engine._suite import load_suite

REPO = Path(__file__).resolve().parents[2]
SUITES = sorted((REPO / "suites").glob("*/*.yaml"))

CHECKED = """\
stage: chk.use
config: {source: {size: 3}}
sweep:
  grid: {limit: [5, 8]}
"""


def assay_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assay", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- the check hook


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_a_failing_check_exits_2_and_records_nothing(tmp_path, root, dry):
    suite = write(tmp_path / "s.yaml", CHECKED)
    proc = assay_cli(
        "run",
        suite,
        "--import",
        "checkstages",
        "--root",
        root,
        "source.size=7",
        *(["--dry-run"] if dry else []),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    msg = proc.stderr
    assert "stage 'chk.use' refuses its config" in msg
    assert "source.size 7 exceeds limit 5" in msg and "valid: 1..5" in msg
    assert "nothing was run or recorded" in msg
    assert not root.exists()  # no store, no run folder


def test_checks_run_for_upstream_runs_too(tmp_path, root):
    suite = write(tmp_path / "s.yaml", CHECKED)
    proc = assay_cli(
        "run",
        suite,
        "--import",
        "checkstages",
        "--root",
        root,
        "source.size=13",
        "limit=20",
        "--dry-run",
    )
    assert proc.returncode == 2
    assert "stage 'chk.source' refuses its config" in proc.stderr
    assert "upstream chk.source run chk_source_" in proc.stderr
    assert "size 13 is refused" in proc.stderr
    assert not root.exists()


def test_a_passing_check_runs_and_may_read_upstream_records(tmp_path, root):
    suite = write(tmp_path / "s.yaml", CHECKED)
    proc = assay_cli("run", suite, "--import", "checkstages", "--root", root, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "2 done" in proc.stdout
    # the upstream run's artifact disappears: the check reads its record and refuses
    (src,) = root.glob("chk_source_*")
    (src / "artifacts" / "data.txt").unlink()
    before = sorted(p.name for p in root.iterdir())
    proc = assay_cli("run", suite, "--import", "checkstages", "--root", root, "limit=9")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"the finished run {src.name} has no data.txt" in proc.stderr
    assert sorted(p.name for p in root.iterdir()) == before  # nothing new recorded


def test_run_config_checks_too(tmp_path):
    import checkstages

    config = checkstages.UseConfig(source={"size": 11})
    with pytest.raises(assay.ConfigError, match="source.size 11 exceeds limit 10"):
        assay.run_config(config, root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_check_signature_is_validated_at_registration():
    class C(assay.StageConfig):
        x: int = 0

    with pytest.raises(TypeError, match=r"check must take \(config\) or \(config, plan\)"):
        assay.stage("chk.bad_check", config=C, check=lambda: None)


def test_dry_run_validates_options_like_a_run(tmp_path, root):
    suite = REPO / "suites" / "example" / "polyfit.yaml"
    proc = assay_cli(
        "run",
        suite,
        "--dry-run",
        "--executor",
        "slurm",
        "--cluster",
        "partiton=gpu",
        "--workers",
        "-3",
        "--root",
        root,
    )
    assert proc.returncode == 2, proc.stdout
    assert "workers" in proc.stderr and "-3" in proc.stderr
    assert "Traceback" not in proc.stderr and not root.exists()
    proc = assay_cli(
        "run",
        suite,
        "--dry-run",
        "--executor",
        "slurm",
        "--cluster",
        "partiton=gpu",
        "--root",
        root,
    )
    assert proc.returncode == 2, proc.stdout
    assert "partiton" in proc.stderr and "partition" in proc.stderr


# --------------------------------------------------------------------------- the seeding rule


def test_seed_on_a_plain_stage_config_is_refused_at_registration():
    class Plain(assay.StageConfig):
        seed: int = 0  # looks seeded, is not

    with pytest.raises(assay.AssayError, match="derive it from assay.SeededConfig"):
        assay.stage("chk.plain_seed", config=Plain)(lambda config, run: {})
    with pytest.raises(assay.StageNotFoundError):
        assay.get_stage("chk.plain_seed")


def test_a_seeded_config_is_seeded(tmp_path):
    class Seeded(assay.SeededConfig):
        pass

    @assay.stage("chk.seeded", config=Seeded)
    def seeded(config, run):
        import random

        return {"draw": random.random()}

    a = assay.run_config(Seeded(seed=3), root=tmp_path / "a").results["draw"]
    b = assay.run_config(Seeded(seed=3), root=tmp_path / "b").results["draw"]
    assert a == b


# --------------------------------------------------------------------------- phantom runs


def _shape(runs) -> list[tuple[str, tuple[str, ...]]]:
    """Each top run's stage and the stages of its upstream closure (seeds aside)."""
    return sorted(
        (top.stage, tuple(sorted(r.stage for r in top.closure() if r is not top))) for top in runs
    )


@pytest.mark.parametrize("path", SUITES, ids=[f"{p.parent.name}/{p.stem}" for p in SUITES])
def test_seeds_plan_no_phantom_runs(path):
    """Seeding a suite changes seeds only: every run keeps the upstream stages it has without
    seeds, so no stage the suite's config does not reach is planned."""
    suite = load_suite(path)
    unseeded = dataclasses.replace(
        suite, sweep={k: v for k, v in suite.sweep.items() if k != "seeds"}
    )
    base = assay.plan_suite(unseeded)
    seeded = assay.plan_suite(suite, seeds=[0, 1])
    by_variant = Counter(_shape(base))
    assert Counter(_shape(seeded)) == Counter({k: 2 * n for k, n in by_variant.items()})


def test_minimal_cartography_plans_no_cluster_runs():
    runs = assay.plan_suite(REPO / "suites" / "cartography" / "minimal.yaml")
    stages = Counter(r.stage for top in runs for r in top.closure())
    assert "cartography.cluster" not in stages
    # 3 seeds x 2 variants, each seed's dynamics run shared by its two variants
    assert (
        len({r.id for top in runs for r in top.closure() if r.stage == "cartography.dynamics"})
        == 3
    )


def test_seeding_fills_only_configs_that_are_there():
    from assay.core._config import set_seed_everywhere

    class Inner(assay.SeededConfig):
        width: int = 1

    class Outer(assay.SeededConfig):
        needed: Inner = Inner()  # a default instance: it is part of the run, seeded
        optional: Inner | None = None  # absent: stays absent
        many: list[Inner] = []

    data: dict = {"many": [{"width": 2}]}
    set_seed_everywhere(Outer, data, 5)
    assert data == {
        "seed": 5,
        "needed": {"seed": 5, "width": 1},
        "many": [{"width": 2, "seed": 5}],
    }
    config = Outer.model_validate(data)
    assert config.optional is None and config.needed.seed == 5


# --------------------------------------------------------------------------- suite paths


def test_trigger_smoke_plans_from_another_directory(tmp_path):
    proc = assay_cli(
        "run",
        REPO / "suites" / "trigger" / "smoke.yaml",
        "--dry-run",
        "--root",
        tmp_path / "runs",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "runs: 2 pending; upstream: 4 pending" in proc.stdout


def test_file_refs_in_a_suite_resolve_against_the_suite_file(tmp_path):
    from assay.core._config import build_config

    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "pairs.npz").write_bytes(b"abc")
    from assay.ml import FileRef, TorchConfig

    class RefConfig(TorchConfig):
        data: FileRef

    built = build_config(RefConfig, {"data": "pairs.npz"}, stage="t", base_dir=folder)
    assert built.data.path == str(folder / "pairs.npz")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:  # outside a suite (no base folder), a relative path is the working directory's
        with pytest.raises(assay.ConfigError, match="'pairs.npz' does not exist"):
            build_config(RefConfig, {"data": "pairs.npz"}, stage="t")
    finally:
        os.chdir(cwd)


# --------------------------------------------------------------------------- nested keys


@pytest.mark.parametrize(
    ("suite", "override", "expected"),
    [
        (
            "cartography/rotten_tomatoes_smoke.yaml",
            "filter={kind: cartography, top_fracton: 1}",
            "unknown key 'filter.cartography.top_fracton'; valid keys here: kind, top_fraction",
        ),
        (
            "trigger/smoke.yaml",
            "data.overrides.objects.n_train_trigger=2",
            "unknown key(s) 'n_train_trigger' in overrides.objects; valid keys here: is_proxy, "
            "n_test, n_train, n_train_triggers",
        ),
    ],
)
def test_misspelled_nested_keys_name_the_valid_keys(tmp_path, suite, override, expected):
    proc = assay_cli(
        "run", REPO / "suites" / suite, override, "--dry-run", "--root", tmp_path / "runs"
    )
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "valid keys here: ?" not in proc.stderr


def test_plan_context_reads_nothing_without_a_store():
    import checkstages

    assert assay.PlanContext(None).finished(checkstages.SourceConfig()) is None
