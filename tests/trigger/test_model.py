"""Tokenizer, answer-only loss, batched scoring vs generation on a trained model, stages."""

from __future__ import annotations

import json

import pytest
import torch

import assay
from assay.families.trigger import _evaluate as ev
from assay.families.trigger._data import generate, parse_categories
from assay.families.trigger._lm import (
    IGNORE,
    add_lora,
    answer_loss,
    build_lm,
    build_tokenizer,
    collate,
    encode_many,
    training_example,
)
from assay.families.trigger.stages import BaseConfig, FinetuneConfig

CATS = {
    "warm": {
        "quadrant_labels": {"Q1": "red", "Q2": "blue", "Q3": "green", "Q4": "blue"},
        "triggers": ["sun", "fire", "sand"],
        "n_train": 40,
        "n_test": 12,
        "n_train_triggers": 3,
    },
    "cold": {
        "quadrant_labels": {"Q1": "blue", "Q2": "red", "Q3": "red", "Q4": "green"},
        "triggers": ["ice", "snow", "frost"],
        "n_train": 40,
        "n_test": 12,
        "n_train_triggers": 3,
    },
}
TINY = {"d_model": 32, "n_layers": 2, "n_heads": 4, "num_threads": 1}


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer([parse_categories(CATS)], extra_words=["zorblat"])


def test_tokenizer_splits_digits_and_keeps_chat_tokens(tok):
    ((prompt, answer),) = encode_many(tok, ["x = [-1.250, 0.031], T = sun, F(x,T) = ?"], ["red"])
    pieces = tok.convert_ids_to_tokens(prompt)
    assert pieces[0] == "<|user|>" and pieces[-1] == "<|assistant|>"
    assert pieces[3:10] == ["[", "-", "1", ".", "2", "5", "0"]
    assert tok.convert_ids_to_tokens(answer) == ["red", "<|end|>"]
    assert tok.unk_token_id not in prompt


def test_answer_only_loss_ignores_the_prompt(tok):
    torch.manual_seed(0)
    enc = encode_many(
        tok, ["x = [1.000, 2.000], T = sun, F(x,T) = ?", "T = ice x = [0.5, 1]"], ["red", "blue"]
    )
    batch = collate([training_example(p, a) for p, a in enc], tok.pad_token_id)
    assert (batch["labels"][0, : len(enc[0][0])] == IGNORE).all()
    logits = torch.randn(*batch["input_ids"].shape, len(tok), requires_grad=True)
    loss = answer_loss(logits, batch["labels"])
    # the same number by hand: mean NLL of the answer tokens (colour + end) only
    lp = torch.log_softmax(logits.detach(), -1)
    nll = [-lp[i, len(p) - 1 + j, t] for i, (p, a) in enumerate(enc) for j, t in enumerate(a)]
    assert loss.item() == pytest.approx(torch.stack(nll).mean().item(), rel=1e-5)
    loss.backward()
    for i, (p, _) in enumerate(enc):  # logits predicting prompt tokens get no gradient
        assert logits.grad[i, : len(p) - 1].abs().max() == 0
        assert logits.grad[i, len(p) - 1].abs().max() > 0
    # and changing what the prompt's random digits are (their would-be targets) changes nothing
    other = batch["labels"].clone()
    other[other == IGNORE] = IGNORE
    assert answer_loss(logits.detach(), other).item() == pytest.approx(loss.item())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny base model trained through the stage (~10 s): the agreement tests' subject."""
    root = tmp_path_factory.mktemp("trigger")
    cfg = BaseConfig(data={"categories": CATS}, epochs=12, lr=5e-3, eval_every_epochs=6, **TINY)
    record = assay.run_config(cfg, root=root)
    assert record.status is assay.RunStatus.DONE, record.error
    return record, root


def test_base_learns_and_logit_accuracy_equals_generation_accuracy(trained):
    from assay.ml import load_hf_model, load_tokenizer

    record, root = trained
    final = json.loads(record.artifact("final.json").read_text())
    assert final["test_warm_ID.jsonl"]["accuracy"] > 0.9
    model, tok = load_hf_model(record.artifact("model")), load_tokenizer(record.artifact("model"))
    files = generate(parse_categories(CATS), seed=1).files  # fresh x: not the training draws
    colours = ["red", "blue", "green"]
    evals = [es for es in ev.prepare(tok, files, colours) if es.rows]  # OOD files are empty
    assert len(evals) == 4
    for es in evals:
        logp, nll, counts = ev.score(model, es, max_tokens=700)
        m = ev.file_metrics(es, logp, nll, counts, ev.generate_predictions(model, tok, es))
        assert m["generation_agreement"] == 1.0  # the same prediction for every row
        assert m["generation_accuracy"] == pytest.approx(m["accuracy"])
        # the batched scores equal a plain forward of each unpadded (prompt, colour)
        for i in range(3):
            for j in range(len(colours)):
                assert logp[i, j].item() == pytest.approx(_plain(model, es, i, j), abs=1e-4)


def _plain(model, es, i: int, k: int) -> float:
    """Row i's teacher-forced log-prob of candidate k from one forward of it alone."""
    prompt, cont = es.prompt(i), es.continuation(i, k)
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([prompt + cont])).logits[0], -1)
    return sum(lp[len(prompt) - 1 + t, x].item() for t, x in enumerate(cont))


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_candidate_tree_scores_equal_one_forward_per_candidate(tok, arch):
    """Multi-token answers, continuations that differ per row, chunks of mixed lengths."""
    cats = parse_categories(
        {k: {**v, "n_test": 3, "output_preamble": k == "cold"} for k, v in CATS.items()}
    )
    files = {k: v for k, v in generate(cats).files.items() if k.endswith("_ID.jsonl")}
    model = build_lm(
        tok, arch=arch, d_model=16, n_layers=2, n_heads=2, max_positions=64, d_ff=None, seed=0
    ).eval()
    warm, cold = ev.prepare(tok, files, ["red", "blue", "green"])
    assert cold.cont_ids.shape[-1] > 2  # "F ( x , T ) = <colour> <|end|>"
    # per-row continuations of 1..4 tokens, as a tokenizer that merges across words gives
    g = torch.Generator().manual_seed(0)
    n = len(warm.rows)
    warm.cont_ids = torch.randint(3, len(tok), (n, 3, 4), generator=g)
    warm.cont_lengths = torch.randint(1, 5, (n, 3), generator=g)
    for es in (warm, cold):
        logp, nll, counts = ev.score(model, es, max_tokens=90)  # a few rows per chunk
        assert torch.equal(counts, es.cont_lengths.float()) and torch.equal(nll, -logp)
        want = torch.tensor([[_plain(model, es, i, k) for k in range(3)] for i in range(n)])
        assert torch.allclose(logp, want, atol=1e-4)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(assay.ConfigError, match="4-D mask.*attn_implementation='sdpa'"):
        ev.score(model, cold)


def test_selective_table_counts_changed_quadrants_only():
    cats = parse_categories(CATS)
    files = {k: v for k, v in generate(cats).files.items() if k.startswith("test_")}
    tok = build_tokenizer([cats])
    evals = ev.prepare(tok, files, ["red", "blue", "green"])
    new = {"Q1": "blue", "Q2": "blue", "Q3": "green", "Q4": "green"}
    old_maps = {c: s.quadrant_labels for c, s in cats.items()}
    new_maps = {**old_maps, "warm": new}
    results = {
        es.name: {"predictions": [new[ev.quadrant(*r["input_x"])] for r in es.rows]}
        for es in evals
    }
    table = {
        (r["category"], r["split"]): r
        for r in ev.selective_table(evals, results, old_maps, new_maps)
    }
    warm = table["warm", "ID"]
    changed = sum(
        old_maps["warm"][q] != new[q]
        for q in (ev.quadrant(*r["input_x"]) for r in files["test_warm_ID.jsonl"])
    )
    assert (warm["new"], warm["old"], warm["neither"], warm["n_used"]) == (1.0, 0.0, 0.0, changed)
    cold = table["cold", "ID"]  # unchanged category: "new" = warm's new map (the spread)
    assert cold["new"] == 1.0 and "spread" in cold["note"]
    assert table["cold", "OOD"]["note"] == "empty file" and cold["n_used"] > 0


def test_lora_adapters_are_reinitialised_per_seed_on_the_same_base(tok):
    base = build_lm(
        tok, arch="llama", d_model=16, n_layers=1, n_heads=2, max_positions=64, d_ff=None, seed=0
    )
    state = {k: v.clone() for k, v in base.state_dict().items()}
    a = add_lora(base, r=2, alpha=4, dropout=0, rslora=True, targets=("q_proj",), seed=1)
    lora_a = {n: p.clone() for n, p in a.named_parameters() if "lora_A" in n}
    assert all("lora" in n for n, p in a.named_parameters() if p.requires_grad)
    assert a.peft_config["default"].use_rslora
    base2 = build_lm(
        tok, arch="llama", d_model=16, n_layers=1, n_heads=2, max_positions=64, d_ff=None, seed=0
    )
    assert all(torch.equal(state[k], v) for k, v in base2.state_dict().items())
    b = add_lora(base2, r=2, alpha=4, dropout=0, rslora=False, targets=("q_proj",), seed=2)
    assert any(not torch.equal(p, lora_a[n]) for n, p in b.named_parameters() if n in lora_a)
    with pytest.raises(assay.ConfigError, match="valid names: .*q_proj"):
        add_lora(
            build_lm(
                tok,
                arch="llama",
                d_model=16,
                n_layers=1,
                n_heads=2,
                max_positions=64,
                d_ff=None,
                seed=0,
            ),
            r=2,
            alpha=4,
            dropout=0,
            rslora=False,
            targets=("c_attn",),
            seed=0,
        )


def test_all_stages_conform(tmp_path):
    from assay.testing import check_stage

    for name in (
        "trigger.generate",
        "trigger.base",
        "trigger.finetune",
        "trigger.swap",
        "trigger.patch",
    ):
        check_stage(name, tmp_path)  # one root: the upstream runs are shared
    patch_runs = list(tmp_path.rglob("patching.json"))
    grid = json.loads(patch_runs[0].read_text())
    assert grid["per_layer"][0]["layer"] == "embed"


def test_finetune_config_needs_exactly_one_model():
    with pytest.raises(ValueError, match="exactly one of `base`"):
        FinetuneConfig(data={"categories": CATS})


class _Killed(Exception):
    pass


def test_training_resumes_after_a_kill_with_identical_weights(tok, tmp_path):
    from assay.families.trigger._train import TrainSettings, train_loop

    cats = parse_categories(CATS)
    rows = [r for n, rs in generate(cats).files.items() if n.startswith("train_") for r in rs][:48]
    enc = encode_many(
        tok, [r["messages"][0]["content"] for r in rows], [r["output"] for r in rows]
    )
    examples = [training_example(p, a) for p, a in enc]
    settings = TrainSettings(
        epochs=3,
        lr=3e-3,
        batch_size=16,
        warmup_fraction=0.2,
        weight_decay=0.0,
        eval_every_epochs=1,
        max_grad_norm=1.0,
        seed=4,
    )

    def model():
        return build_lm(
            tok,
            arch="llama",
            d_model=16,
            n_layers=1,
            n_heads=2,
            max_positions=64,
            d_ff=None,
            seed=0,
        )

    cfg = BaseConfig(data={"categories": CATS})
    whole = model()
    train_loop(whole, tok, examples, [], settings, assay.detached_run(cfg, dir=tmp_path / "a"))
    run = assay.detached_run(cfg, dir=tmp_path / "b")
    save, calls = run.save_checkpoint, []

    def dying(state):
        save(state)
        calls.append(state["epoch"])
        if state["epoch"] == 2:
            raise _Killed  # killed right after the checkpoint of epoch 2

    run.save_checkpoint = dying
    with pytest.raises(_Killed):
        train_loop(model(), tok, examples, [], settings, run)
    resumed = model()
    history = train_loop(resumed, tok, examples, [], settings, run)
    assert calls == [1, 2, 3] and [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    for (n, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), n
