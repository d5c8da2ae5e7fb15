"""trigger.patch reads the colours' logits where the model predicts the colour, preamble or not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import assay
from assay.families.trigger._data import PREAMBLE, parse_categories
from assay.families.trigger._errors import TriggerError
from assay.families.trigger._lm import encode_many
from assay.families.trigger._patch import make_pairs, patch_grids
from assay.families.trigger.stages import BaseConfig

CATS = {
    "warm": {
        "quadrant_labels": {"Q1": "red", "Q2": "blue", "Q3": "green", "Q4": "blue"},
        "triggers": ["sun", "fire", "sand"],
        "n_train": 40,
        "n_test": 12,
        "n_train_triggers": 3,
        "output_preamble": True,
    },
    "cold": {
        "quadrant_labels": {"Q1": "blue", "Q2": "red", "Q3": "red", "Q4": "green"},
        "triggers": ["ice", "snow", "frost"],
        "n_train": 40,
        "n_test": 12,
        "n_train_triggers": 3,
        "output_preamble": True,
    },
}
TINY = {"d_model": 32, "n_layers": 2, "n_heads": 4, "num_threads": 1}


@pytest.fixture(scope="module")
def model_and_tok(tmp_path_factory):
    """A tiny base model trained through the stage on answers "F(x,T) = <colour>" (~25 s; 12 epochs did not learn the colours)."""
    from assay.ml import load_hf_model, load_tokenizer

    torch.set_num_threads(1)
    cfg = BaseConfig(data={"categories": CATS}, epochs=30, lr=5e-3, eval_every_epochs=30, **TINY)
    rec = assay.run_config(cfg, root=tmp_path_factory.mktemp("trigger_patch"))
    assert rec.status is assay.RunStatus.DONE, rec.error
    return load_hf_model(rec.artifact("model")).eval(), load_tokenizer(rec.artifact("model"))


def _diff_at_colour(model, tok, prompt: str, colour_a: str, colour_b: str) -> tuple[int, float]:
    """(input length, logit[a] - logit[b]) from one plain forward of prompt + "F(x,T) = "."""
    (ids, ans_a), (_, ans_b) = encode_many(
        tok, [prompt, prompt], [PREAMBLE + colour_a, PREAMBLE + colour_b]
    )
    k = next(i for i, (u, v) in enumerate(zip(ans_a, ans_b, strict=False)) if u != v)
    assert "".join(tok.decode(ans_a[:k]).split()) == "".join(PREAMBLE.split())
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + ans_a[:k]])).logits[0, -1]
    return len(ids) + k, (logits[ans_a[k]] - logits[ans_b[k]]).item()


def test_patch_measures_at_the_colour_after_the_preamble(model_and_tok):
    model, tok = model_and_tok
    cats = parse_categories(CATS)
    maps = {c: dict(s.quadrant_labels) for c, s in cats.items()}
    grids, skipped = patch_grids(
        model,
        tok,
        cats["warm"],
        cats["cold"],
        maps["warm"],
        maps["cold"],
        n_pairs=16,
        template=0,
        seed=0,
    )
    assert grids and skipped["multi_token_colour"] == 0
    pairs = make_pairs(cats["warm"], cats["cold"], 16, 0, 0)
    for g in grids:
        q = g["quadrant"]
        assert g["tokens"][-7:] == ["F", "(", "x", ",", "T", ")", "="]  # ends at the preamble
        # the gap: clean minus corrupted logit difference where the colour is predicted, by hand
        gaps = []
        for p in pairs:
            if _quadrant_of(p) != q:
                continue
            (la, da), (lb, db) = (
                _diff_at_colour(model, tok, p[i], maps["warm"][q], maps["cold"][q]) for i in (3, 4)
            )
            if la == lb == g["length"]:
                gaps.append(da - db)
        assert len(gaps) == g["n_pairs"]
        assert g["mean_gap"] == pytest.approx(float(np.mean(gaps)), abs=1e-4)
        assert g["mean_gap"] > 1.0  # the model tells warm from cold: a real gap (was ~0.01)
        score = torch.tensor(g["score"])  # (layer, position) restored fractions
        assert score[-1, -1].item() == pytest.approx(1.0, abs=1e-4)  # last block, last position
        finite = score[torch.isfinite(score)]
        assert finite.min() > -0.25 and finite.max() < 1.25, g["score"]


def _quadrant_of(pair) -> str:
    from assay.families.trigger._data import quadrant

    return quadrant(*pair[0])


def test_patch_refuses_categories_whose_answers_differ_in_form(model_and_tok):
    model, tok = model_and_tok
    cold = {**CATS["cold"], "output_preamble": False}
    cats = parse_categories({"warm": CATS["warm"], "cold": cold})
    maps = {c: dict(s.quadrant_labels) for c, s in cats.items()}
    with pytest.raises(TriggerError, match="output_preamble differs"):
        patch_grids(
            model,
            tok,
            cats["warm"],
            cats["cold"],
            maps["warm"],
            maps["cold"],
            n_pairs=4,
            template=0,
            seed=0,
        )
