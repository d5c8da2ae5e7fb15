"""Numbers that mean nothing say so: models above tau, dropped directions, -inf in means/plots."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

import assay
from assay.core._run import UpstreamRun
from assay.families.volume._analysis import aggregate
from assay.families.volume._plots import plot_records, running_means, shared_bins
from assay.families.volume.stages import PerturbConfig, VolumeConfig, volume

NAN = np.nan


def fake_perturb(tmp_path, mode="exact"):
    """Three models k0, k10, k20 (base 2, n = 2 parameters), landscapes 0 and 10, 4 dirs, 3 c.

    k10 fits its own data badly (mean loss 0.42 > tau = 0.1); k0 and k20 are minima.
    """
    up_dir = tmp_path / "perturb"
    (up_dir / "artifacts").mkdir(parents=True)
    centre = np.full((3, 22), 0.01)
    centre[1, 2:12] = 0.5  # k10: its 10 extra samples have loss 0.5
    loss = np.full((3, 2, 4, 3), NAN)
    loss[0, 0] = [[0.0, 0.2, 0.3]] * 3 + [[0.0, 0.01, 0.02]]  # dir 3 never crosses: dropped
    loss[1, 0] = [[0.01, 0.05, 0.2]] * 4  # would be log V 0 (r = 1) without the flag
    loss[1, 1] = [[0.42, 0.5, 0.6]] * 4  # its own landscape: above tau at the centre
    loss[2, 0] = [[0.0, 0.01, 0.2]] * 4
    loss[2, 1] = [[0.0, 0.2, 0.3]] * 4
    np.savez(
        up_dir / "artifacts" / "curves.npz",
        coefficients=np.array([0.0, 0.5, 1.0]),
        norms=np.ones(4),
        seeds=np.arange(4),
        landscapes=np.array([0, 10]),
        base_size=2,
        levels=np.array([0, 10, 20]),
        n_params=2,
        centre_losses=centre,
        landscape_loss=np.array([[0.01, NAN], [0.01, 0.42], [0.0, 0.0]]),
        loss=loss,
        accuracy=np.ones_like(loss),
    )
    models = [
        {
            "label": f"k{k}",
            "level": k,
            "run_id": f"r{k}",
            "test_loss": t,
            "test_accuracy": 0.9,
            "train_loss": 0.0,
        }
        for k, t in ((0, 0.5), (10, 0.4), (20, 0.3))
    ]
    (up_dir / "artifacts" / "models.json").write_text(json.dumps({"models": models}))
    hist = {
        "epoch": [1, 2],
        "train_loss": [0.5, 0.1],
        "train_accuracy": [0.5, 0.9],
        "test_epoch": [2],
        "test_loss": [0.2],
        "test_accuracy": [0.8],
    }
    (up_dir / "artifacts" / "histories.json").write_text(
        json.dumps({m["label"]: hist for m in models})
    )
    cfg = PerturbConfig(levels=(0, 10, 20), landscapes=(0, 10), n_directions=4, n_coefficients=3)
    return cfg, UpstreamRun("perturb", "volume.perturb", cfg, up_dir, {})


def test_models_above_tau_are_flagged_warned_and_not_counted(tmp_path, caplog):
    pcfg, up = fake_perturb(tmp_path)
    cfg = VolumeConfig(perturb=pcfg, threshold=0.1, n_subsets=3)
    run = assay.detached_run(cfg, dir=tmp_path / "volume", upstream={"perturb": up})
    with caplog.at_level(logging.WARNING, logger="assay.volume"):
        res = volume(cfg, run)
    # k10's own training loss (0.02 + 5) / 12 = 0.418 > 0.1: flagged everywhere
    assert res["above_tau/k10"] == 1.0 and res["above_tau/k0"] == 0.0
    assert res["log_volume/L0/k10"] == -math.inf and res["cutoff/k10"] == 0
    assert res["log_volume/L0/k0"] == pytest.approx(math.log(0.25))  # (0.5^2 * 3) / 3
    assert res["log_volume/L10/k20"] == pytest.approx(math.log(0.25))
    # L0: k20 (r = 1, log V 0) beats k0 (log 0.25); flagged k10 is no rival. L10: the trained
    # model k10 is flagged: undefined, not a success (its -inf would otherwise be compared)
    summary = json.loads(run.artifact("summary.json").read_text())
    by_land = {d["landscape"]: d["trained_model_largest"] for d in summary["landscapes"]}
    assert by_land == {0: False, 10: None}
    assert res["trained_model_largest_counted"] == 1
    assert res["trained_model_largest_fraction"] == 0.0
    assert res["n_models_above_tau"] == 1 and res["n_minus_inf"] == 2
    # the engine shows these next to the -inf numbers (analyze tables, plots, report)
    assert res["_flags"] == {
        "log_volume/L0/k10": "above tau",
        "log_volume/L10/k10": "above tau",
        "cutoff/k10": "above tau",
    }
    assert summary["above_tau"] == ["k10"]
    # dropped directions: k0 in L0 dropped 1 of 4 (25% > 5%): recorded and warned
    assert res["dropped_fraction_max"] == 0.25
    assert any("k10" in w and "above tau" in w for w in summary["warnings"])
    assert any("1 of 4 directions never crossed" in w for w in summary["warnings"])
    assert sum("above tau" in r.message for r in caplog.records) == 1
    assert "WARNING" in (run.dir / "log.txt").read_text()
    table = run.artifact("table.csv").read_text().splitlines()
    assert "centre_above_tau" in table[0] and "dropped_fraction" in table[0]
    assert res["tolerance_grid_steps"] == 0.0  # exact: radii are the grid's
    for name in ("training_curves.png", "loss_curves.png", "radius_hist.png"):
        assert run.artifact(name).stat().st_size > 0


def test_aggregate_counts_minus_inf_beside_the_mean():
    def row(v, flag="False"):
        return {
            "landscape": "0",
            "model": "k0",
            "model_level": "0",
            "log_volume": str(v),
            "test_loss": "0.5",
            "test_accuracy": "0.9",
            "cutoff": "None",
            "centre_above_tau": flag,
        }

    agg = aggregate([[row(10.0)], [row(14.0)], [row("-inf", "True")]])
    assert agg[0]["n_seeds"] == 3 and agg[0]["n_minus_inf"] == 1 and agg[0]["n_above_tau"] == 1
    assert agg[0]["log_volume_mean"] == 12.0
    assert aggregate([[row("-inf")]])[0]["log_volume_mean"] == -math.inf


def test_plot_records_keep_minus_inf_and_bins_are_shared():
    rows = [
        {
            "landscape": 0,
            "model": "k0",
            "model_level": 0,
            "log_volume": 1.0,
            "cutoff": 3,
            "test_loss": 0.5,
            "test_accuracy": 0.9,
        },
        {
            "landscape": 0,
            "model": "k30",
            "model_level": 30,
            "log_volume": -math.inf,
            "cutoff": 0,
            "test_loss": 0.4,
            "test_accuracy": 0.95,
            "centre_above_tau": True,
        },
    ]
    rec = plot_records(rows)
    assert rec["minus_inf"] == [(0, "k30")] and rec["flagged"] == ["k30"]
    bins = shared_bins([np.array([1.0, 2.0, np.nan, 0.0]), np.array([4.0])], n_bins=3)
    np.testing.assert_allclose(bins, [1.0, 2.0, 3.0, 4.0])
    levels, mean = running_means(np.array([0.0, 0.0, 0.3, 0.3]), base=2)
    assert levels.tolist() == [0, 1, 2] and mean == pytest.approx([0.0, 0.1, 0.15])
