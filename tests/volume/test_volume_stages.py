"""The three stages through the engine: conformance, caching, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import assay
from assay.families.volume.stages import PerturbConfig, TrainConfig, VolumeConfig
from assay.testing import check_stage

SMALL_TRAIN = TrainConfig(epochs=150, pool_size=60, test_size=200, eval_every=50)
SMALL = PerturbConfig(train=SMALL_TRAIN, levels=(0, 20, 60), n_directions=24)


@pytest.mark.parametrize("name", ["volume.train", "volume.perturb", "volume.volume"])
def test_stage_conformance(name, tmp_path):
    check_stage(name, tmp_path)


def test_changing_tau_reuses_the_cached_curves(tmp_path):
    first = assay.run_config(
        VolumeConfig(perturb=SMALL, threshold=0.1, n_subsets=5), root=tmp_path
    )
    assert first.status is assay.RunStatus.DONE
    perturb = assay.run_config(SMALL, root=tmp_path)
    curves = perturb.artifact("curves.npz")
    mtime, attempts = curves.stat().st_mtime_ns, perturb.attempts
    second = assay.run_config(
        VolumeConfig(perturb=SMALL, threshold=0.05, n_subsets=5), root=tmp_path
    )
    assert second.status is assay.RunStatus.DONE and second.id != first.id
    again = assay.run_config(SMALL, root=tmp_path)
    assert again.attempts == attempts and curves.stat().st_mtime_ns == mtime
    # the volume table has one row per (landscape, model trained on >= it): 3 + 2 + 1
    rows = second.artifact("table.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6
    assert {"log_volume/L0/k0", "log_volume/L60/k60", "cutoff/k20"} <= set(second.results)
    for plot in ("logvol_vs_model_level.png", "logvol_vs_landscape.png", "radius_hist.png"):
        assert second.artifact(plot).stat().st_size > 0


def test_adaptive_mode_runs_for_its_listed_thresholds(tmp_path):
    # a fresh config, not SMALL.model_copy(update=...): the engine caches the run id on the
    # instance and model_copy shares that cache
    p = PerturbConfig(**{**SMALL.model_dump(), "mode": "adaptive", "thresholds": (0.1,)})
    exact = assay.run_config(VolumeConfig(perturb=SMALL, n_subsets=5, plots=False), root=tmp_path)
    adapt = assay.run_config(VolumeConfig(perturb=p, n_subsets=5, plots=False), root=tmp_path)
    # the tolerance the radii were found to is explicit in the results
    assert exact.results["tolerance_grid_steps"] == 0.0
    assert adapt.results["tolerance_grid_steps"] == 1.0
    a = np.load(exact.artifact("radii.npz"))
    b = np.load(adapt.artifact("radii.npz"))
    norm_step = 2.0 / 99 * np.sqrt(4353) * 1.1  # one grid step in c near c<=1, times ||d||
    for key in ("L0/k0", "L20/k60"):
        ok = ~(np.isnan(a[key]) | np.isnan(b[key]))
        assert ok.sum() > 10
        assert np.all(np.abs(a[key][ok] - b[key][ok]) <= norm_step)
    with pytest.raises(ValueError, match="threshold 0.05 was not bisected"):
        VolumeConfig(perturb=p, threshold=0.05)


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"threshold must be > 0.*got 0"):
        VolumeConfig(threshold=0)
    with pytest.raises(ValueError, match=r"threshold must be > 0.*got -0.1"):
        VolumeConfig(threshold=-0.1)
    with pytest.raises(ValueError, match="landscapes is empty"):
        PerturbConfig(landscapes=())
    with pytest.raises(ValueError, match=r"landscapes \[0, 900\] must lie in 0..780"):
        PerturbConfig(landscapes=(0, 900))
    with pytest.raises(ValueError, match="level 2000 is larger than the data"):
        PerturbConfig(levels=(0, 2000))
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid: swiss_roll, digits"):
        TrainConfig(dataset="imagenet")
    with pytest.raises(ValueError, match="set thresholds"):
        PerturbConfig(mode="adaptive")
    with pytest.raises(ValueError, match="threshold 2.0 is above perturb.loss_cap=1.0"):
        VolumeConfig(threshold=2.0)
    with pytest.raises(ValueError, match=r"landscapes \[5\] were not evaluated"):
        VolumeConfig(perturb=SMALL, landscapes=(5,))
    with pytest.raises(ValueError, match="accuracy_threshold 0.8 needs curves"):
        VolumeConfig(accuracy_threshold=0.8)
    with pytest.raises(assay.ConfigError, match="not found under data_dir|needs torchvision"):
        from assay.families.volume._data import build_split

        build_split(TrainConfig(dataset="mnist", data_dir=str(tmp_path)))


def test_dataset_variants_build(tmp_path):
    from assay.families.volume._data import build_split

    digits = build_split(TrainConfig(dataset="digits", regime="poison", model="cnn"))
    assert digits.x_base.shape[1:] == (1, 8, 8) and len(digits.x_test) == 600
    assert len(digits.x_base) + len(digits.x_pool) + len(digits.x_test) == 1797
    mod = build_split(TrainConfig(dataset="modular", regime="noise"))
    assert mod.x_base.shape[1] == 46 and mod.n_classes == 23
    imb = TrainConfig(
        dataset="digits", regime="imbalance", imbalance_classes=(0, 1), pool_size=120
    )
    split = build_split(imb)
    assert np.isin(split.y_pool.numpy(), [0, 1]).mean() == pytest.approx(0.9)
    with pytest.raises(assay.ConfigError, match="imbalance_fraction=0.9 of classes"):
        build_split(imb.model_copy(update={"pool_size": 1000}))
    clean = build_split(TrainConfig(dataset="digits"))
    poison = build_split(TrainConfig(dataset="digits", regime="poison"))
    assert (clean.y_pool != poison.y_pool).all()  # every poisoned label is wrong
    assert json.dumps(TrainConfig().model_dump())  # configs are plain JSON


def test_perturb_resumes_after_the_last_finished_model(tmp_path, monkeypatch):
    from assay.families.volume import _stage_perturb

    ups = [assay.run_config(c, root=tmp_path / "runs") for c in SMALL.model_configs()]
    clean = assay.detached_run(SMALL, dir=tmp_path / "clean", upstream={"models": ups})
    _stage_perturb.perturb(SMALL, clean)

    real, calls = _stage_perturb._evaluate_model, []

    def dies_on_the_second_model(*args):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args)

    monkeypatch.setattr(_stage_perturb, "_evaluate_model", dies_on_the_second_model)
    run = assay.detached_run(SMALL, dir=tmp_path / "resumed", upstream={"models": ups})
    with pytest.raises(KeyboardInterrupt):
        _stage_perturb.perturb(SMALL, run)
    assert run.load_checkpoint()["done"] == 1
    monkeypatch.setattr(_stage_perturb, "_evaluate_model", real)
    _stage_perturb.perturb(SMALL, run)  # picks up at model 1
    a, b = np.load(clean.artifact("curves.npz")), np.load(run.artifact("curves.npz"))
    np.testing.assert_array_equal(a["loss"], b["loss"])


def test_sam_and_minibatch_training_lower_the_loss():
    from assay.families.volume._data import build_split
    from assay.families.volume._models import build_model
    from assay.families.volume._train import train_model

    for extra in ({"optimizer": "sam", "sam_adaptive": True}, {"batch_size": 16}):
        cfg = TrainConfig(extra_samples=40, epochs=60, pool_size=40, test_size=100, **extra)
        split = build_split(cfg)
        x, y = split.train_set(40)
        model = build_model(cfg, (2,), 2, "bce")
        hist = train_model(model, x, y, split.x_test, split.y_test, cfg, "bce")
        assert hist["train_loss"][-1] < hist["train_loss"][0] - 0.05, extra
        assert len(hist["test_loss"]) == 60 // cfg.eval_every


def test_fixed_dataset_variation_trains_one_model_per_value():
    p = PerturbConfig(levels=(380,), vary="batch_size", values=(16, 400), landscapes=(0, 380))
    cfgs = p.model_configs()
    assert [(c.extra_samples, c.batch_size) for c in cfgs] == [(380, 16), (380, 400)]
    with pytest.raises(ValueError, match="give both"):
        PerturbConfig(vary="batch_size")
