"""Evaluation over whole files in batched forwards: logit accuracy, answer loss, generation.

    evals = prepare(tok, {"test_joy_ID.jsonl": rows, ...}, colours)
    result = evaluate(model, tok, evals)          # per file: accuracy, loss, per trigger
    table = selective_table(result, old_maps, new_maps)

Logit accuracy: every candidate colour c is scored by the teacher-forced log-probability of
its whole answer continuation (all its tokens and the end-of-turn token) after the prompt; the
prediction is the best-scoring colour. Candidates are scored together: the (prompt, candidate)
sequences of many rows go through one forward. The answer loss is the mean next-token loss over
the true answer's tokens (what training minimises). Greedy generation decodes the answer and
maps it back to a colour (or to "invalid" when it is none of them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._data import PREAMBLE, quadrant
from ._lm import encode_many

# Tokens per batched forward: (prompt, candidate) sequences are packed up to this many tokens.
# ~16k tokens of a d_model-64 model keep activations in cache on a CPU; raise it on a GPU.
MAX_BATCH_TOKENS = 16384
INVALID = "invalid"


@dataclass
class EvalSet:
    """One file, encoded once and reused at every evaluation."""

    name: str
    rows: list[dict[str, Any]]
    prompt_ids: list[list[int]]
    labels: list[int]  # index into candidates (-1: the label is not a candidate colour)
    candidates: list[str]  # colours
    conts: list[list[list[int]]]  # per row, per candidate: continuation ids

    @property
    def category(self) -> str:
        return file_category(self.name)[0]

    @property
    def split(self) -> str:
        return file_category(self.name)[1]


def file_category(name: str) -> tuple[str, str]:
    """``train_joy.jsonl`` -> ("joy", "train"); ``test_joy_OOD.jsonl`` -> ("joy", "OOD")."""
    stem = name.removesuffix(".jsonl")
    if stem.startswith("test_"):
        cat, _, split = stem[5:].rpartition("_")
        return cat, split
    kind, _, cat = stem.partition("_")
    return cat, kind


def colour_of(answer: str) -> str:
    return answer.removeprefix(PREAMBLE)


def prepare(
    tok: Any, files: Mapping[str, list[dict[str, Any]]], colours: Sequence[str]
) -> list[EvalSet]:
    """Encode each file's prompts and every candidate continuation once."""
    out = []
    for name, rows in files.items():
        prompts = [r["messages"][0]["content"] for r in rows]
        answers = [r["output"] for r in rows]
        preamble = bool(rows) and answers[0].startswith(PREAMBLE)
        cand_answers = [f"{PREAMBLE}{c}" if preamble else c for c in colours]
        conts: list[list[list[int]]] = []
        prompt_ids: list[list[int]] = []
        if rows:
            # Continuations are the same after every prompt for a word tokenizer; check that
            # on a few rows and encode per row only when the tokenizer says otherwise.
            probe = sorted({0, len(rows) // 2, len(rows) - 1})
            pairs = encode_many(tok, [prompts[i] for i in probe for _ in colours],
                                cand_answers * len(probe))  # fmt: skip
            shared = [pairs[c][1] for c in range(len(colours))]
            same = all(pairs[j * len(colours) + c][1] == shared[c]
                       for j in range(len(probe)) for c in range(len(colours)))  # fmt: skip
            if same:
                text = [_prompt_text(tok, p) for p in prompts]
                prompt_ids = tok(text, add_special_tokens=False)["input_ids"]
                conts = [shared] * len(rows)
            else:
                enc = encode_many(tok, [p for p in prompts for _ in colours],
                                  cand_answers * len(rows))  # fmt: skip
                prompt_ids = [enc[i * len(colours)][0] for i in range(len(rows))]
                conts = [[enc[i * len(colours) + c][1] for c in range(len(colours))]
                         for i in range(len(rows))]  # fmt: skip
        index = {c: i for i, c in enumerate(colours)}
        labels = [index.get(colour_of(a), -1) for a in answers]
        out.append(
            EvalSet(name, rows, [list(p) for p in prompt_ids], labels, list(colours), conts)
        )
    return out


def _prompt_text(tok: Any, prompt: str) -> str:
    from ._lm import render

    return render(tok, prompt)


@torch.inference_mode()
def score(
    model: torch.nn.Module, es: EvalSet, pad_id: int, max_tokens: int = MAX_BATCH_TOKENS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C) summed log-probs of each candidate continuation, (N, C) summed NLL, (N, C) counts.

    Per chunk of rows: one forward over the left-padded prompts (R, W) fills the key/value
    cache, which is repeated C times; a second forward runs only the candidates' tokens
    (R*C, L). The prompt is computed once instead of once per candidate. Explicit position
    ids keep left padding exact (the same scores as one unpadded row at a time).
    """
    n, c = len(es.rows), len(es.candidates)
    logp, counts = torch.zeros(n, c), torch.zeros(n, c)
    if n == 0:
        return logp, -logp, counts
    device = next(model.parameters()).device
    width = max(map(len, es.prompt_ids)) + max(len(q) for qs in es.conts for q in qs)
    step = max(1, max_tokens // (width * c))
    for a in range(0, n, step):
        b = min(n, a + step)
        prompts, conts = es.prompt_ids[a:b], [q for qs in es.conts[a:b] for q in qs]
        w, lc = max(map(len, prompts)), max(map(len, conts))
        ids = torch.full((b - a, w), pad_id, dtype=torch.long)
        mask = torch.zeros((b - a, w), dtype=torch.long)
        for k, p in enumerate(prompts):
            ids[k, w - len(p) :], mask[k, w - len(p) :] = torch.tensor(p), 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    position_ids=pos.to(device), use_cache=True, logits_to_keep=1)  # fmt: skip
        first = torch.log_softmax(out.logits[:, -1].float(), -1).cpu()  # (R, V): next token
        key = _cache_kwarg(model)
        cache = getattr(out, key)  # the filled key/value cache
        cache.batch_repeat_interleave(c)
        cids = torch.full((len(conts), lc), pad_id, dtype=torch.long)
        cmask = torch.zeros((len(conts), lc), dtype=torch.long)
        for k, q in enumerate(conts):
            cids[k, : len(q)], cmask[k, : len(q)] = torch.tensor(q), 1
        start = mask.sum(1).repeat_interleave(c)[:, None]  # (R*C, 1): prompt lengths
        out2 = model(
            input_ids=cids.to(device),
            attention_mask=torch.cat([mask.repeat_interleave(c, 0), cmask], 1).to(device),
            position_ids=(start + torch.arange(lc)).to(device),
            use_cache=True, **{key: cache},
        )  # fmt: skip
        rest = torch.log_softmax(out2.logits[:, :-1].float(), -1).cpu()  # predicts tokens 1..
        tok_lp = torch.cat(
            [
                first.repeat_interleave(c, 0).gather(1, cids[:, :1]),
                rest.gather(-1, cids[:, 1:, None]).squeeze(-1),
            ],
            1,
        )  # (R*C, L)
        tok_lp = tok_lp * cmask
        logp[a:b] = tok_lp.sum(1).view(b - a, c)
        counts[a:b] = cmask.sum(1).float().view(b - a, c)
    return logp, -logp, counts


def _cache_kwarg(model: torch.nn.Module) -> str:
    """transformers 5.x renamed ``past_key_values`` to ``cache``; use the model's name for it."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.inference_mode()
def generate_predictions(
    model: torch.nn.Module, tok: Any, es: EvalSet, batch_size: int = 256
) -> list[str]:
    """Greedy decoding of every prompt (left-padded batches) mapped to a colour or INVALID."""
    device = next(model.parameters()).device
    max_new = max((len(q) for conts in es.conts for q in conts), default=1)
    preds: list[str] = []
    for a in range(0, len(es.rows), batch_size):
        chunk = es.prompt_ids[a : a + batch_size]
        width = max(map(len, chunk))
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, p in enumerate(chunk):
            ids[k, width - len(p) :] = torch.tensor(p)
            mask[k, width - len(p) :] = 1
        out = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new,
            do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )[:, width:].cpu()  # fmt: skip
        for k in range(len(chunk)):
            preds.append(_match(out[k].tolist(), es.conts[a + k], es.candidates))
    return preds


def _match(gen: list[int], conts: list[list[int]], candidates: list[str]) -> str:
    for cont, colour in zip(conts, candidates, strict=True):
        if gen[: len(cont)] == cont:
            return colour
    return INVALID


def file_metrics(es: EvalSet, logp: torch.Tensor, nll: torch.Tensor, counts: torch.Tensor,
                 generated: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Accuracy, answer loss and per-trigger accuracy of one file; NaN (flagged) when empty."""
    n = len(es.rows)
    if n == 0:
        return {"n": 0, "accuracy": math.nan, "loss": math.nan, "per_trigger": {},
                "predictions": [], "note": "empty file: no triggers in this split"}  # fmt: skip
    pred = logp.argmax(1)
    labels = torch.tensor(es.labels)
    correct = pred == labels
    rows = torch.arange(n)
    true_nll = torch.where(labels >= 0, nll[rows, labels.clamp(min=0)], torch.nan)
    true_cnt = counts[rows, labels.clamp(min=0)]
    per_trigger: dict[str, list[bool]] = {}
    for r, ok in zip(es.rows, correct.tolist(), strict=True):
        per_trigger.setdefault(r["input_trigger"], []).append(ok)
    out = {
        "n": n,
        "accuracy": correct.float().mean().item(),
        "loss": (true_nll.nansum() / true_cnt[labels >= 0].sum()).item(),
        "per_trigger": {t: sum(v) / len(v) for t, v in per_trigger.items()},
        "predictions": [es.candidates[i] for i in pred.tolist()],
    }
    if generated is not None:
        gold = [colour_of(r["output"]) for r in es.rows]
        out["generation_accuracy"] = sum(g == y for g, y in zip(generated, gold, strict=True)) / n
        out["generation_invalid"] = sum(g == INVALID for g in generated) / n
        out["generation_agreement"] = (
            sum(g == p for g, p in zip(generated, out["predictions"], strict=True)) / n
        )
    return out


def evaluate(model: torch.nn.Module, tok: Any, evals: Sequence[EvalSet],
             generation: bool = False) -> dict[str, dict[str, Any]]:  # fmt: skip
    """file name -> metrics (see ``file_metrics``), the model in eval mode throughout."""
    was_training = model.training
    model.eval()
    try:
        out = {}
        for es in evals:
            logp, nll, counts = score(model, es, tok.pad_token_id)
            gen = generate_predictions(model, tok, es) if generation and es.rows else None
            out[es.name] = file_metrics(es, logp, nll, counts, gen)
        return out
    finally:
        model.train(was_training)


def selective_table(
    evals: Sequence[EvalSet],
    results: Mapping[str, Mapping[str, Any]],
    old_maps: Mapping[str, Mapping[str, str]],
    new_maps: Mapping[str, Mapping[str, str]],
) -> list[dict[str, Any]]:
    """Per test file (category x ID/OOD): fraction of predictions following old / new / neither.

    "old" is the category's base map. "new" is its fine-tuning map when that changed, else the
    map fine-tuning introduced (the first changed category's new map): for an untouched
    category, "new" measures how far the change spread to it. Fractions are over the rows whose
    quadrant has different old and new colours (elsewhere a prediction cannot tell the maps
    apart); ``n_used`` counts them and ``note`` says which map "new" is.
    """
    changed = {c: m for c, m in new_maps.items() if c in old_maps and dict(old_maps[c]) != dict(m)}
    table = []
    for es in evals:
        if es.split not in ("ID", "OOD"):
            continue
        cat, preds = es.category, results[es.name]["predictions"]
        old = old_maps.get(cat)
        if cat in changed:
            new, note = changed[cat], ""
        elif changed:
            src = next(iter(changed))
            new, note = changed[src], f"unchanged; new = {src}'s new map (spread)"
        else:
            new, note = new_maps.get(cat), "no map changed: new = old"
        row: dict[str, Any] = {"category": cat, "split": es.split, "n": len(es.rows)}
        quads = [quadrant(*r["input_x"]) for r in es.rows]
        use = [old[q] != new[q] for q in quads] if old is not None and new is not None else []
        if not any(use):
            why = ("empty file" if not es.rows else "no old map" if old is None
                   else "old and new maps agree on every quadrant")  # fmt: skip
            table.append({**row, "n_used": 0, "old": math.nan, "new": math.nan,
                          "neither": math.nan, "note": why})  # fmt: skip
            continue
        o = n_ = neither = 0
        for p, q, u in zip(preds, quads, use, strict=True):
            if u:
                o += p == old[q]
                n_ += p == new[q]
                neither += p not in (old[q], new[q])
        k = sum(use)
        table.append({**row, "n_used": k, "old": o / k, "new": n_ / k, "neither": neither / k,
                      "note": note})  # fmt: skip
    return table


def format_table(table: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"{'category':<22} {'split':<5} {'n':>5} {'used':>5} {'old':>6} {'new':>6} "
             f"{'neither':>7}  note"]  # fmt: skip
    for r in table:
        lines.append(f"{r['category']:<22} {r['split']:<5} {r['n']:>5} {r['n_used']:>5} "
                     f"{r['old']:>6.3f} {r['new']:>6.3f} {r['neither']:>7.3f}  {r['note']}")  # fmt: skip
    return "\n".join(lines)
