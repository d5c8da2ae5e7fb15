"""Batched scoring's paths agree with one forward and one generate() per prompt.

``score`` groups rows by prompt length (no padding) and takes one of three shapes: a plain
causal forward when every continuation is one token; one slot per candidate under one shared
(1, T, T) mask for one-token colours plus the end-of-turn token (what the stages score); the
per-row candidate tree for continuations of several tokens or that differ per row.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import assay
from assay.families.trigger import _evaluate as ev
from assay.families.trigger._data import generate, parse_categories
from assay.families.trigger._lm import build_lm, build_tokenizer, render
from assay.families.trigger.stages import BaseConfig

CATS = {
    "warm": {
        "quadrant_labels": {"Q1": "red", "Q2": "blue", "Q3": "green", "Q4": "blue"},
        "triggers": ["sun", "fire", "sand"],
        "n_train": 40,
        "n_test": 8,
        "n_train_triggers": 3,
    },
    "cold": {
        "quadrant_labels": {"Q1": "blue", "Q2": "red", "Q3": "red", "Q4": "green"},
        "triggers": ["ice", "snow", "frost"],
        "n_train": 40,
        "n_test": 8,
        "n_train_triggers": 3,
    },
}
COLOURS = ["red", "blue", "green"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny base model trained through the stage (~10 s), so greedy answers are colours."""
    from assay.ml import load_hf_model, load_tokenizer

    root = tmp_path_factory.mktemp("trigger-eval")
    cfg = BaseConfig(
        data={"categories": CATS},
        epochs=12,
        lr=5e-3,
        eval_every_epochs=12,
        d_model=32,
        n_layers=2,
        n_heads=4,
        num_threads=1,
    )
    record = assay.run_config(cfg, root=root)
    assert record.status is assay.RunStatus.DONE, record.error
    path = record.artifact("model")
    return load_hf_model(path).eval(), load_tokenizer(path)


def _test_rows(cats) -> list[dict]:
    files = generate(cats, seed=1).files  # fresh x: not the training draws
    return [r for name, rows in files.items() if name.startswith("test_") for r in rows]


@torch.inference_mode()
def _one_forward(model, ids: list[int]) -> torch.Tensor:
    """(len(ids), V) log-probs of one unpadded sequence, alone in its forward."""
    return torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)


def _reference(model, es: ev.EvalSet) -> torch.Tensor:
    """(N, C) teacher-forced log-prob of every (prompt, continuation), one forward each."""
    out = torch.zeros(es.cont_ids.shape[:2])
    for i in range(len(es.rows)):
        prompt = es.prompt(i)
        for k in range(out.shape[1]):
            cont = es.continuation(i, k)
            lp = _one_forward(model, prompt + cont)
            out[i, k] = sum(lp[len(prompt) - 1 + t, x] for t, x in enumerate(cont))
    return out


def test_one_token_colours_equal_one_forward_and_one_generate_per_prompt(trained):
    model, tok = trained
    rows = _test_rows(parse_categories(CATS))
    (es,) = ev.prepare(tok, {"test.jsonl": rows}, COLOURS)
    n = len(rows)
    assert es.cont_ids.shape[1:] == (3, 2)  # one-token colours + the end-of-turn token
    assert len(set(es.prompt_lengths.tolist())) >= 3  # several prompt lengths: several groups
    logp, nll, counts = ev.score(model, es, max_tokens=200)  # ~5 rows a chunk: many chunks
    assert torch.equal(nll, -logp) and torch.equal(counts, torch.full((n, 3), 2.0))
    assert torch.allclose(logp, _reference(model, es), atol=1e-5)
    # one chunk per prompt length gives the same scores
    assert torch.allclose(ev.score(model, es, max_tokens=10**6)[0], logp, atol=1e-5)

    # The colour alone (a one-token continuation) takes the plain causal path: its scores are
    # the answer position's log-probs; adding the end token's log-prob gives the score above.
    colour_only = replace(es, cont_ids=es.cont_ids[..., :1], cont_lengths=torch.ones(n, 3).long())
    plain, _, _ = ev.score(model, colour_only, max_tokens=200)
    colour_ids, end = es.cont_ids[0, :, 0], es.cont_ids[0, 0, 1]
    answer = torch.stack([_one_forward(model, es.prompt(i))[-1, colour_ids] for i in range(n)])
    assert torch.allclose(plain, answer, atol=1e-5)
    end_lp = torch.tensor(
        [
            [_one_forward(model, es.prompt(i) + [int(c)])[-1, end] for c in colour_ids]
            for i in range(n)
        ]
    )
    assert torch.allclose(logp, plain + end_lp, atol=1e-5)

    # Predictions: the same colour as one greedy generate() per prompt, as a user calls it.
    generated = []
    for r in rows:
        enc = tok(
            render(tok, r["messages"][0]["content"]), add_special_tokens=False, return_tensors="pt"
        )
        out = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=2,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        generated.append(
            tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        )
    predicted = [COLOURS[k] for k in logp.argmax(1).tolist()]
    assert predicted == generated
    assert torch.equal(plain.argmax(1), logp.argmax(1))
    assert ev.file_metrics(es, logp, nll, counts)["accuracy"] > 0.8  # a trained model (0.90 here)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_multi_token_candidates_stay_on_the_tree(arch):
    """Preamble answers (7 tokens), per-row continuations, eager and sdpa masks agree."""
    cats = parse_categories({k: {**v, "output_preamble": True} for k, v in CATS.items()})
    tok = build_tokenizer([cats])
    rows = _test_rows(cats)[::3]
    model = build_lm(
        tok, arch=arch, d_model=16, n_layers=2, n_heads=2, max_positions=64, d_ff=None, seed=0
    ).eval()
    (es,) = ev.prepare(tok, {"test.jsonl": rows}, COLOURS)
    assert es.cont_ids.shape[-1] > 2  # "F ( x , T ) = <colour> <|end|>"
    assert len(set(es.prompt_lengths.tolist())) >= 2
    logp, _, _ = ev.score(model, es, max_tokens=150)
    assert torch.allclose(logp, _reference(model, es), atol=1e-5)
    # continuations of 1..4 tokens differing per row: a per-row mask
    g = torch.Generator().manual_seed(0)
    ragged = replace(
        es,
        cont_ids=torch.randint(3, len(tok), (len(rows), 3, 4), generator=g),
        cont_lengths=torch.randint(1, 5, (len(rows), 3), generator=g),
    )
    sdpa, _, _ = ev.score(model, ragged, max_tokens=150)
    assert torch.allclose(sdpa, _reference(model, ragged), atol=1e-5)
    model.set_attn_implementation("eager")  # an additive mask instead of a boolean one
    eager, _, _ = ev.score(model, ragged, max_tokens=150)
    assert torch.allclose(eager, sdpa, atol=1e-5)
