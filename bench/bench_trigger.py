"""Batched logit accuracy over 3,000 prompts vs one generate() / one forward per prompt.

    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_trigger.py

The model is the trigger family's base size (Llama-style, d_model 64, 2 layers, word-level
tokenizer; 4 candidate colours), trained for one epoch so its answers are colours. All three
ways give the same predictions (checked on the prompts they share); only the time differs.
The per-prompt baselines are timed on a slice and scaled to 3,000 prompts (said in the output).
Targets: >= 20x faster than generate() per prompt, >= 5x faster than one forward per prompt.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

import assay
from assay.families.trigger import _evaluate as ev
from assay.families.trigger.stages import BaseConfig

N_PROMPTS = 3000
N_GENERATE = 150  # generate() per prompt, timed on this many and scaled
N_FORWARD = 600  # one forward per prompt, timed on this many and scaled
CATS = {
    "warm": {"quadrant_labels": {"Q1": "red", "Q2": "blue", "Q3": "green", "Q4": "orange"},
             "triggers": ["sun", "fire", "sand", "lava", "heat"], "n_train": 20, "n_test": 300,
             "n_train_triggers": 5},
    "cold": {"quadrant_labels": {"Q1": "blue", "Q2": "red", "Q3": "orange", "Q4": "green"},
             "triggers": ["ice", "snow", "frost", "hail", "sleet"], "n_train": 20, "n_test": 300,
             "n_train_triggers": 5},
}  # fmt: skip


def main() -> None:
    torch.set_num_threads(int(os.environ.get("ASSAY_NUM_THREADS", "1") or 1))
    root = tempfile.mkdtemp()
    cfg = BaseConfig(data={"categories": CATS}, epochs=1, eval_every_epochs=1, num_threads=1)
    record = assay.run_config(cfg, root=root)
    from assay.families.trigger._stage_train import load_files
    from assay.ml import load_hf_model, load_tokenizer

    model = load_hf_model(record.artifact("model"))
    tok = load_tokenizer(record.artifact("model"))
    files = load_files(assay.UpstreamRun(*_data_run(root)))
    rows = [r for n, rs in files.items() if n.startswith("test_") for r in rs][:N_PROMPTS]
    colours = ["red", "blue", "green", "orange"]
    (es,) = ev.prepare(tok, {"bench": rows}, colours)
    print(
        f"{len(rows)} prompts, {len(colours)} candidates, model {sum(p.numel() for p in model.parameters())} params, {torch.get_num_threads()} thread(s)"
    )

    t0 = time.perf_counter()
    logp, _, _ = ev.score(model, es, tok.pad_token_id)
    batched = time.perf_counter() - t0
    pred = logp.argmax(1)

    t0 = time.perf_counter()
    per_fwd = torch.stack([_one_forward(model, es.prompt_ids[i], es.conts[i], tok.pad_token_id)
                           for i in range(N_FORWARD)])  # fmt: skip
    forward_s = (time.perf_counter() - t0) * N_PROMPTS / N_FORWARD
    assert torch.equal(per_fwd.argmax(1), pred[:N_FORWARD]), "per-prompt forward disagrees"

    gen_set = _slice(es, slice(0, N_GENERATE))
    t0 = time.perf_counter()
    generated = [ev.generate_predictions(model, tok, _slice(gen_set, i), batch_size=1)[0]
                 for i in range(N_GENERATE)]  # fmt: skip
    generate_s = (time.perf_counter() - t0) * N_PROMPTS / N_GENERATE
    agree = sum(
        g == colours[p] for g, p in zip(generated, pred[:N_GENERATE].tolist(), strict=True)
    )
    print(f"batched logit scoring: {batched:.2f}s for {N_PROMPTS} prompts")
    print(f"one forward per prompt: {forward_s:.1f}s (timed on {N_FORWARD}, scaled) -> "
          f"{forward_s / batched:.1f}x (target >= 5x)")  # fmt: skip
    print(f"one generate() per prompt: {generate_s:.1f}s (timed on {N_GENERATE}, scaled) -> "
          f"{generate_s / batched:.1f}x (target >= 20x); greedy agrees with the logit "
          f"prediction on {agree}/{N_GENERATE}")  # fmt: skip


@torch.inference_mode()
def _one_forward(model, prompt: list[int], conts: list[list[int]], pad_id: int) -> torch.Tensor:
    """The baseline: one forward per prompt over its C (prompt + candidate) sequences."""
    width = len(prompt) + max(map(len, conts))
    ids = torch.full((len(conts), width), pad_id, dtype=torch.long)
    for k, q in enumerate(conts):
        ids[k, : len(prompt) + len(q)] = torch.tensor(prompt + q)
    lp = torch.log_softmax(model(input_ids=ids).logits[:, :-1], -1)  # (C, T-1, V)
    return torch.stack([sum(lp[k, len(prompt) - 1 + t, x] for t, x in enumerate(q))
                        for k, q in enumerate(conts)])  # fmt: skip


def _slice(es: ev.EvalSet, i: int | slice) -> ev.EvalSet:
    s = i if isinstance(i, slice) else slice(i, i + 1)
    return ev.EvalSet(
        es.name, es.rows[s], es.prompt_ids[s], es.labels[s], es.candidates, es.conts[s]
    )


def _data_run(root: str) -> tuple:
    from assay.families.trigger.stages import GenerateConfig

    rec = assay.run_config(GenerateConfig(categories=CATS), root=root)
    return rec.id, rec.stage, GenerateConfig(categories=CATS), rec.dir, rec.results


if __name__ == "__main__":
    main()
