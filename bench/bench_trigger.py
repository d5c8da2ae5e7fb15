"""Batched logit accuracy over 3,000 prompts vs one forward / one generate() per prompt.

    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_trigger.py          # d64, 2 layers (default)
    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_trigger.py --d-model 128 --layers 4
    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_trigger.py --dtype bfloat16

The model: a Llama-style LM (default d_model 64, 2 layers, 4 heads: trigger.base's defaults;
the family's word-level tokenizer) trained by ``trigger.base`` for 6 epochs on suites/trigger/data/base.json, so its
answers are colours; the 3,000 prompts are that config's test rows (n_test raised to 170).
All three ways start from the prompt text and end in a predicted colour per prompt:

* batched (``_evaluate.prepare`` + ``_evaluate.score``, what the stages run): encode every
  prompt once into padded tensors, then one forward per chunk of ~2k tokens of one prompt
  length in which each prompt is computed once and its 4 candidates ride along as one extra
  slot each (the colour, whose next token is the end of turn the score includes);
* one forward per prompt: render and tokenize the prompt, one forward of its 4 (prompt +
  candidate continuation) sequences, the same teacher-forced scores;
* one generate() per prompt, as a user would: ``model.generate(**tok(text), do_sample=False,
  max_new_tokens=<the longest colour's token count>, pad_token_id=, eos_token_id=)``, decoded.

Times are CPU seconds of this process (``time.process_time``: other processes' load on a
shared machine does not inflate them; with one torch thread they equal wall time on an idle
machine); wall seconds are printed too. The prompts go in 3 interleaved rounds of 1,000
(batched, forward, generate, then the next round) so every path sees the same machine.
Targets: batched >= 5x faster than one forward per prompt and >= 10x than one generate().

For reference (not a path the stages run, no target) the run also times a plain batch of
the same chunks reading only the colour's logit at the answer position: what batched costs
without the end-of-turn term of the score (its predictions are compared too).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

import assay

N_PROMPTS = 3000
ROUNDS = 3  # interleaved rounds of N_PROMPTS / ROUNDS prompts per path
# Training: enough for every greedy answer to be a colour and most to be right (the accuracy
# is printed); timing does not depend on the weights. lr 1e-3: at 3e-3 (trigger.base's
# default) this 4-layer model was still at 0.2-0.6 accuracy after 6 epochs.
TRAIN_EPOCHS = 6
TRAIN_LR = 1e-3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = ap.parse_args()
    threads = int(os.environ.get("ASSAY_NUM_THREADS", "1") or 1)
    torch.set_num_threads(threads)

    from assay.families.trigger import _evaluate as ev

    with tempfile.TemporaryDirectory(prefix="bench-trigger-") as root:
        model, tok, rows = _trained_model(args, threads, root)
    model = model.to(getattr(torch, args.dtype)).eval()
    colours = ["red", "green", "blue", "orange"]
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"model: llama-style, d_model {args.d_model}, {args.layers} layers, {args.heads} "
        f"heads, {n_params:,} parameters, vocabulary {len(tok)}, {args.dtype}, "
        f"{torch.get_num_threads()} torch thread(s)"
    )

    paths = {
        "batched": _batched,
        "forward": _per_prompt_forward,
        "generate": _per_prompt_gen,
        "colour": _colour_logit_only,
    }
    cpu = dict.fromkeys(paths, 0.0)
    wall = dict.fromkeys(paths, 0.0)
    preds: dict[str, list[str]] = {name: [] for name in paths}
    size = N_PROMPTS // ROUNDS
    for a in range(0, len(rows), size):
        chunk = rows[a : a + size]
        for name, fn in paths.items():
            c0, w0 = time.process_time(), time.perf_counter()
            preds[name] += fn(model, tok, chunk, colours, ev)
            cpu[name] += time.process_time() - c0
            wall[name] += time.perf_counter() - w0

    (es,) = ev.prepare(tok, {"bench": rows}, colours)
    width = es.prompt_lengths.float().mean().item()
    print(
        f"{len(rows)} prompts ({width:.1f} tokens each on average), {len(colours)} candidate "
        f"colours of {int(es.cont_lengths.max())} tokens (colour + end of turn)"
    )
    targets = {"forward": 5.0, "generate": 10.0}
    print(f"{'path':<22} {'CPU s':>7} {'wall s':>7} {'ms/prompt':>9}  speed-up of batched (CPU)")
    for name in paths:
        line = (
            f"{_LABEL[name]:<22} {cpu[name]:>7.2f} {wall[name]:>7.2f} "
            f"{1000 * cpu[name] / len(rows):>9.3f}"
        )
        if name == "colour":
            line += f"  (reference: batched is {cpu['batched'] / cpu[name]:.2f}x its time)"
        if name in targets:
            ratio = cpu[name] / cpu["batched"]
            verdict = "met" if ratio >= targets[name] else "MISSED"
            line += (
                f"  {ratio:5.1f}x (target >= {targets[name]:.0f}x: {verdict}; wall "
                f"{wall[name] / wall['batched']:.1f}x)"
            )
        print(line)
    same_fwd = sum(a == b for a, b in zip(preds["batched"], preds["forward"], strict=True))
    same_gen = sum(a == b for a, b in zip(preds["batched"], preds["generate"], strict=True))
    same_col = sum(a == b for a, b in zip(preds["batched"], preds["colour"], strict=True))
    invalid = sum(g not in colours for g in preds["generate"])
    gold = [ev.colour_of(r["output"]) for r in rows]
    acc = sum(p == g for p, g in zip(preds["batched"], gold, strict=True)) / len(rows)
    print(
        f"agreement with the batched logit predictions: one forward per prompt "
        f"{same_fwd}/{len(rows)}, greedy generate() {same_gen}/{len(rows)} ({invalid} "
        f"greedy answers are no colour), colour logit only {same_col}/{len(rows)}; logit "
        f"accuracy {acc:.3f}"
    )


_LABEL = {
    "batched": "batched (assay)",
    "forward": "one forward / prompt",
    "generate": "one generate / prompt",
    "colour": "colour logit only",
}


def _trained_model(args: argparse.Namespace, threads: int, root: str) -> tuple:
    """(model, tokenizer, the first 3,000 test rows) of a trigger.base run trained in root."""
    from assay.families.trigger._stage_train import load_files
    from assay.families.trigger.stages import BaseConfig
    from assay.ml import load_hf_model, load_tokenizer

    data = {
        "data_config": "suites/trigger/data/base.json",
        "overrides": {
            c: {"n_test": 170} for c in ("positive_emotions", "negative_emotions", "objects")
        },
    }
    cfg = BaseConfig(
        data=data,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        epochs=TRAIN_EPOCHS,
        lr=TRAIN_LR,
        eval_every_epochs=TRAIN_EPOCHS,
        num_threads=threads,
    )
    t0 = time.perf_counter()
    record = assay.run_config(cfg, root=root)
    if record.status is not assay.RunStatus.DONE:
        raise SystemExit(f"training the bench model failed: {record.error}")
    print(
        f"trained the bench model in {time.perf_counter() - t0:.0f} s (trigger.base, "
        f"{TRAIN_EPOCHS} epochs, {record.results['n_train_rows']} rows)"
    )
    path = record.artifact("model")
    data = assay.run_config(cfg.data, root=root)  # finished already: returned, not rerun
    files = load_files(assay.UpstreamRun(data.id, data.stage, cfg.data, data.dir, data.results))
    rows = [r for n, rs in files.items() if n.startswith("test_") for r in rs][:N_PROMPTS]
    return load_hf_model(path), load_tokenizer(path), rows


def _batched(model, tok, rows, colours, ev) -> list[str]:
    (es,) = ev.prepare(tok, {"bench": rows}, colours)
    logp, _, _ = ev.score(model, es)
    return [colours[i] for i in logp.argmax(1).tolist()]


@torch.inference_mode()
def _colour_logit_only(model, tok, rows, colours, ev) -> list[str]:
    """The batched path's chunks as plain causal forwards reading the answer position's
    logits: each colour's first-token logit, no end-of-turn term (a lower bound, not the score).
    """
    (es,) = ev.prepare(tok, {"bench": rows}, colours)
    first = es.cont_ids[0, :, 0]  # (C,) every colour's (first) token
    order = torch.argsort(es.prompt_lengths, stable=True)
    widths, sizes = torch.unique_consecutive(es.prompt_lengths[order], return_counts=True)
    best = torch.zeros(len(rows), dtype=torch.long)
    for w, group in zip(widths.tolist(), torch.split(order, sizes.tolist()), strict=True):
        step = max(1, ev.MAX_BATCH_TOKENS // (w + len(colours)))
        for a in range(0, len(group), step):
            idx = group[a : a + step]
            ids = es.prompt_ids[idx, es.prompt_ids.shape[1] - w :]
            logits = model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1]
            best[idx] = logits[:, first].argmax(1)
    return [colours[i] for i in best.tolist()]


@torch.inference_mode()
def _per_prompt_forward(model, tok, rows, colours, ev) -> list[str]:
    """Per prompt: its C (prompt + continuation) sequences, right-padded, in one forward."""
    from assay.families.trigger._lm import encode_many, render

    first = rows[0]["messages"][0]["content"]  # a word tokenizer: the same after every prompt
    conts = [answer for _, answer in encode_many(tok, [first] * len(colours), colours)]
    lens = torch.tensor([len(q) for q in conts])
    out = []
    for r in rows:
        prompt = tok(render(tok, r["messages"][0]["content"]), add_special_tokens=False)
        p = prompt["input_ids"]
        ids, mask = _right_padded([p + q for q in conts], tok.pad_token_id)
        lp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
        steps = torch.arange(ids.shape[1] - 1)
        tok_lp = lp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)  # (C, T-1)
        answer = (steps >= len(p) - 1) & (steps < len(p) - 1 + lens[:, None])
        out.append(colours[int((tok_lp * answer).sum(1).argmax())])
    return out


def _right_padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    return ids, mask


@torch.inference_mode()
def _per_prompt_gen(model, tok, rows, colours, ev) -> list[str]:
    """Per prompt: generate() greedily for as many tokens as the longest colour, decode."""
    from assay.families.trigger._lm import render

    longest = max(len(tok(c, add_special_tokens=False)["input_ids"]) for c in colours)
    out = []
    for r in rows:
        enc = tok(
            render(tok, r["messages"][0]["content"]), add_special_tokens=False, return_tensors="pt"
        )
        gen = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=longest,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        out.append(
            tok.decode(gen[0, enc["input_ids"].shape[1] :], skip_special_tokens=True).strip()
        )
    return out


if __name__ == "__main__":
    main()
