"""The `assay analyze` hook of icl: per-layer numbers over seeds, grouped by what varies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assay import RunRecord, RunStatus
from assay.families.icl import _analysis as A


def _run(tmp_path, name, stage, config, results=None, files=None):
    d = tmp_path / name
    (d / "artifacts").mkdir(parents=True)
    for fname, content in (files or {}).items():
        if fname.endswith(".npz"):
            np.savez(d / "artifacts" / fname, **content)
        else:
            (d / "artifacts" / fname).write_text(json.dumps(content))
    return RunRecord(
        id=name, stage=stage, status=RunStatus.DONE, config=config, results=results or {}, dir=d
    )


def _curves(scale: float, nan_at=None):
    grid = [[scale * (1 + i + j / 10) for j in range(2)] for i in range(2)]  # [layer][length]
    if nan_at:
        grid[nan_at[0]][nan_at[1]] = None
    metrics = {m: {"mean": grid} for m in A.ENERGY_METRICS}
    return {"layers": [0, 2], "context_lengths": [8, 32], "metrics": metrics}


def _css(value: float):
    grid = np.full((2, 2, 32), np.nan)  # (length, layer, position)
    grid[-1, 0, :] = value
    grid[-1, 1, :16] = 2 * value
    return {
        "layers": np.array([0, 2]),
        "context_lengths": np.array([8, 32]),
        "separation__row": grid,
    }


@pytest.fixture
def records(tmp_path):
    geo = [
        _run(
            tmp_path,
            f"g{kind}{seed}",
            "icl.geometry",
            {"seed": seed, "graph": {"kind": kind}},
            files={"curves.json": _curves(scale, nan), "css.npz": _css(scale)},
        )
        for seed, kind, scale, nan in [
            (0, "grid", 1.0, None),
            (1, "grid", 3.0, (1, 1)),
            (0, "triangular", 5.0, None),
        ]
    ]
    loo_doc = {
        "layers": [0, 3],
        "influence": {
            name: {"bridge": {"mean": [0.5, 1.5]}, "anchor": {"mean": [0.25, None]}}
            for name in A.LOO_INFLUENCES
        },
    }
    loo = [_run(tmp_path, "l0", "icl.loo", {"seed": 0}, files={"loo.json": loo_doc})]
    train = [
        _run(
            tmp_path,
            f"t{s}",
            "icl.train",
            {"seed": s},
            results={"p_nbr/grid/n8": p, "p_nbr/grid/n64": p + 0.3, "train_loss": 1.0},
        )
        for s, p in [(0, 0.5), (1, 0.6), (2, 0.7)]
    ]
    failed = RunRecord(id="bad", stage="icl.loo", status=RunStatus.FAILED, config={"seed": 9})
    return [*geo, *loo, *train, failed]


def test_energy_is_averaged_over_seeds_within_groups_of_what_varies(records):
    rows = A.geometry_rows(records)
    grid = [r for r in rows if r["group"] == "graph.kind=grid"]
    cell = next(
        r
        for r in grid
        if r["metric"] == "dirichlet_energy_standardised"
        and r["layer"] == 2
        and r["context_length"] == 8
    )
    assert cell["mean"] == pytest.approx((2.0 + 6.0) / 2) and cell["n_runs"] == 2
    assert cell["interval"] == "t" and cell["lo"] < 4.0 < cell["hi"]
    nan_cell = next(r for r in grid if r["layer"] == 2 and r["context_length"] == 32)
    assert nan_cell["mean"] == pytest.approx(2.1) and nan_cell["n_nonfinite"] == 1  # shown
    tri = [r for r in rows if r["group"] == "graph.kind=triangular"]
    assert tri and all(r["n_runs"] == 1 and np.isnan(r["lo"]) for r in tri)  # no interval


def test_css_is_the_mean_over_positions_at_the_longest_length(records):
    rows = [r for r in A.css_rows(records) if r["group"] == "graph.kind=grid"]
    by_layer = {r["layer"]: r for r in rows}
    assert by_layer[0]["phi"] == "separation/row" and by_layer[0]["context_length"] == 32
    assert by_layer[0]["mean"] == pytest.approx(2.0)  # seeds: 1 and 3
    assert by_layer[2]["mean"] == pytest.approx(4.0)  # NaN positions skipped, not zeros


def test_loo_bridge_and_anchor_per_layer_and_neighbour_probability_bounded(records):
    loo = A.loo_rows(records)  # the failed run is ignored
    ratio = {(r["layer"], r["kind"]): r for r in loo if r["influence"] == "ratio"}
    assert ratio[(3, "bridge")]["mean"] == 1.5 and ratio[(0, "anchor")]["mean"] == 0.25
    assert ratio[(3, "anchor")]["n_nonfinite"] == 1 and np.isnan(ratio[(3, "anchor")]["mean"])
    nbr = {r["n_words"]: r for r in A.nbr_rows(records)}
    assert nbr[8]["mean"] == pytest.approx(0.6) and nbr[8]["interval"] == "logit-t"
    assert 0.0 <= nbr[64]["lo"] <= nbr[64]["mean"] <= nbr[64]["hi"] <= 1.0


def test_hook_prints_key_numbers_and_writes_tables_and_plots(records, tmp_path, capsys):
    A.analyze(records, tmp_path / "out")
    printed = capsys.readouterr().out
    assert (
        "icl energy vs context length [graph.kind=grid] dirichlet_energy_standardised" in printed
    )
    assert "layer 3  bridge: 1.5  anchor: nan" in printed
    assert "WARNING:" in printed and "n_nonfinite" in printed
    for name in ("energy_vs_length", "css", "loo_bridge_anchor", "p_nbr"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 0, name
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "p_nbr.csv")
    assert set(table["n_words"]) == {8, 64} and (table["n_runs"] == 3).all()


def test_hook_is_silent_without_icl_runs(capsys, tmp_path):
    A.analyze([RunRecord(id="x", stage="volume.run", status=RunStatus.DONE, config={})], None)
    assert capsys.readouterr().out == ""
