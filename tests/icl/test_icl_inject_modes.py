"""icl.inject replaces a word (default) or inserts one before it, as the published code did."""

from __future__ import annotations

import json

import numpy as np
import pytest

import assay
from assay.families.icl._stage_perturb import InjectConfig, injected
from assay.testing import smoke_config


def test_replace_and_insert_build_the_contexts_they_say():
    words, nodes = ["a", "b", "c", "d", "e", "f"], np.arange(6)
    new = {1: ("X", -1), 3: ("Y", 9)}
    w, n = injected(words, nodes, new, "replace")
    assert w == ["a", "X", "c", "Y", "e", "f"] and n.tolist() == [0, -1, 2, 9, 4, 5]
    w, n = injected(words, nodes, new, "insert")  # same length: the last two words fall off
    assert w == ["a", "X", "b", "c", "Y", "d"] and n.tolist() == [0, -1, 1, 2, 9, 3]


def test_insert_mode_refuses_positions_that_push_words_out():
    with pytest.raises(ValueError, match="mode insert needs distinct positions"):
        InjectConfig(n_words=24, inject_at=(5, 5), mode="insert")
    with pytest.raises(ValueError, match="lands at 20 and its 4 after_words would pass the 24"):
        InjectConfig(n_words=24, inject_at=(10, 19), mode="insert")
    InjectConfig(n_words=24, inject_at=(10, 19))  # replace: fine


def test_insert_mode_runs_and_records_where_the_words_went(tmp_path):
    cfg = smoke_config("icl.inject", inject_at=(8, 12), mode="insert")
    rec = assay.run_config(cfg, root=tmp_path)
    assert rec.status is assay.RunStatus.DONE, rec.error
    doc = json.loads((rec.dir / "artifacts" / "inject.json").read_text())
    assert doc["mode"] == "insert" and doc["injected_positions"] == [8, 13]
    for kind in cfg.kinds:
        assert np.isfinite(rec.results[f"{kind}/following_words_loss"])
