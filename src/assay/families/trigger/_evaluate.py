"""Evaluation over whole files in batched forwards: logit accuracy, answer loss, generation.

    evals = prepare(tok, {"test_joy_ID.jsonl": rows, ...}, colours)
    result = evaluate(model, tok, evals)          # per file: accuracy, loss, per trigger
    table = selective_table(result, old_maps, new_maps)

Logit accuracy: every candidate colour c is scored by the teacher-forced log-probability of
its whole answer continuation (all its tokens and the end-of-turn token) after the prompt; the
prediction is the best-scoring colour. ``prepare`` encodes a file once into padded tensors;
``score`` then runs one forward per chunk of rows of one prompt length (no padding) in which
each prompt is computed once and shared by all its candidates: the candidates' tokens are
appended to the prompt as a small tree, and a 4-D attention mask lets each candidate token see
the prompt and its own candidate's earlier tokens only (one slot per candidate for one-token
colours; none, a plain causal forward, when the continuation is a single token). The answer loss is the mean next-token loss over the true
answer's tokens (what training minimises). Greedy generation decodes the answer and maps it
back to a colour (or to "invalid" when it is none of them).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ._data import PREAMBLE, quadrant
from ._errors import TriggerError
from ._lm import encode_many

if TYPE_CHECKING:
    from ._lm import CausalLM

# Tokens per batched forward. Measured on one CPU thread, the family's default model (d_model
# 64, 2 layers) scoring 3,000 prompts of ~33 tokens + 4 candidate slots: 2k-3k tokens (55-80
# rows) fastest, 1.5k 8% slower, 4k 50% slower and 8k 20-35% slower (a chunk's activations
# stop fitting in cache). Raise it on a GPU.
MAX_BATCH_TOKENS = 2048
INVALID = "invalid"
# Attention implementations that take an arbitrary 4-D mask (flash attention does not).
MASKABLE = ("eager", "sdpa")


@dataclass
class EvalSet:
    """One file, encoded once into padded tensors and reused at every evaluation."""

    name: str
    rows: list[dict[str, Any]]
    candidates: list[str]  # colours
    labels: torch.Tensor  # (N,) index into candidates (-1: the label is not a candidate)
    prompt_ids: torch.Tensor  # (N, W) left-padded; W = the longest prompt
    prompt_lengths: torch.Tensor  # (N,)
    cont_ids: torch.Tensor  # (N, C, L) right-padded answer continuation of every candidate
    cont_lengths: torch.Tensor  # (N, C)

    @property
    def category(self) -> str:
        return file_category(self.name)[0]

    @property
    def split(self) -> str:
        return file_category(self.name)[1]

    def prompt(self, i: int) -> list[int]:
        """Row ``i``'s prompt ids, unpadded."""
        width = self.prompt_ids.shape[1]
        return self.prompt_ids[i, width - int(self.prompt_lengths[i]) :].tolist()

    def continuation(self, i: int, k: int) -> list[int]:
        """Row ``i``'s continuation ids for candidate ``k``, unpadded."""
        return self.cont_ids[i, k, : int(self.cont_lengths[i, k])].tolist()

    def subset(self, index: slice | torch.Tensor) -> EvalSet:
        """The rows at ``index`` (a slice or index tensor), as an EvalSet of their own."""
        ids = torch.arange(len(self.rows))[index]
        lengths = self.prompt_lengths[ids]
        width = int(lengths.max()) if len(ids) else 0
        return EvalSet(
            self.name,
            [self.rows[i] for i in ids.tolist()],
            self.candidates,
            self.labels[ids],
            self.prompt_ids[ids, self.prompt_ids.shape[1] - width :],
            lengths,
            self.cont_ids[ids],
            self.cont_lengths[ids],
        )


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


def pad_id_of(tok: Any) -> int:
    """The id padded positions hold (they are masked out, so any id would do; pad, else eos)."""
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad is None:
        raise TriggerError(
            "the tokenizer has neither a pad nor an eos token; set tok.pad_token before "
            "evaluating (batched prompts need a padding id)"
        )
    return pad


def pad(seqs: Sequence[Sequence[int]], value: int, *, left: bool) -> tuple[torch.Tensor, ...]:
    """(len(seqs), longest) ids padded on the left or right with ``value``, and the lengths.

    One scatter of the concatenated ids: no Python loop over the sequences.
    """
    lengths = torch.tensor(list(map(len, seqs)), dtype=torch.long)  # (N,)
    width = int(lengths.max()) if len(seqs) else 0
    flat = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)
    row = torch.repeat_interleave(torch.arange(len(seqs)), lengths)  # (sum,) row of each id
    col = torch.arange(len(flat)) - (lengths.cumsum(0) - lengths)[row]
    if left:
        col += (width - lengths)[row]
    ids = torch.full((len(seqs), width), value, dtype=torch.long)
    ids[row, col] = flat
    return ids, lengths


def prepare(
    tok: Any, files: Mapping[str, list[dict[str, Any]]], colours: Sequence[str]
) -> list[EvalSet]:
    """Encode each file's prompts and every candidate continuation once, as padded tensors."""
    pad_value = pad_id_of(tok)
    out = []
    c = len(colours)
    for name, rows in files.items():
        prompts = [r["messages"][0]["content"] for r in rows]
        answers = [r["output"] for r in rows]
        preamble = bool(rows) and answers[0].startswith(PREAMBLE)
        cand_answers = [f"{PREAMBLE}{col}" if preamble else col for col in colours]
        index = {col: i for i, col in enumerate(colours)}
        labels = torch.tensor([index.get(colour_of(a), -1) for a in answers], dtype=torch.long)
        if not rows:
            empty = torch.zeros(0, dtype=torch.long)
            out.append(
                EvalSet(
                    name,
                    [],
                    list(colours),
                    labels,
                    empty.view(0, 0),
                    empty,
                    empty.view(0, c, 0),
                    empty.view(0, c),
                )
            )
            continue
        # Continuations are the same after every prompt for a word tokenizer; check that on
        # a few rows and encode them per row only when the tokenizer says otherwise.
        probe = sorted({0, len(rows) // 2, len(rows) - 1})
        pairs = encode_many(
            tok, [prompts[i] for i in probe for _ in colours], cand_answers * len(probe)
        )
        shared = [pairs[k][1] for k in range(c)]
        if all(pairs[j * c + k][1] == shared[k] for j in range(len(probe)) for k in range(c)):
            text = render_many(tok, prompts)
            prompt_lists = tok(text, add_special_tokens=False)["input_ids"]
            conts, cont_lengths = pad(shared, pad_value, left=False)  # (C, L)
            conts = conts.expand(len(rows), -1, -1)  # (N, C, L), a view: no copy
            cont_lengths = cont_lengths.expand(len(rows), -1)
        else:
            enc = encode_many(tok, [p for p in prompts for _ in colours], cand_answers * len(rows))
            prompt_lists = [enc[i * c][0] for i in range(len(rows))]
            conts, cont_lengths = pad([a for _, a in enc], pad_value, left=False)
            conts, cont_lengths = conts.view(len(rows), c, -1), cont_lengths.view(len(rows), c)
        prompt_ids, prompt_lengths = pad(prompt_lists, pad_value, left=True)
        out.append(
            EvalSet(
                name, rows, list(colours), labels, prompt_ids, prompt_lengths, conts, cont_lengths
            )
        )
    return out


def render_many(tok: Any, prompts: Sequence[str]) -> list[str]:
    """``render(tok, p)`` of every prompt, in one chat-template call (a quarter faster)."""
    messages = [[{"role": "user", "content": p}] for p in prompts]
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def candidate_tree(
    width: int, cont_ids: torch.Tensor, cont_lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The appended candidate tokens, their positions and the (R or 1, T, T) "may attend" mask.

    Every row is a prompt of exactly ``width`` tokens (``score`` groups rows by length, so
    there is no padding) followed by S = C*(L-1) slots: slot k*(L-1)+t holds candidate k's
    token t (the last token of a candidate is never input: no score needs what it predicts).
    Prompt tokens attend causally; a candidate token attends to the whole prompt and to its own
    candidate's tokens up to itself, never to another candidate's, and sits at position
    width + t, exactly as if it followed the prompt alone. A padded slot (a candidate shorter
    than L) attends to itself only (no empty softmax rows). When every row's candidates have
    the same lengths the mask is one (1, T, T) pattern shared by the chunk.
    """
    r, c, L = cont_ids.shape
    s = c * (L - 1)
    appended = cont_ids[:, :, :-1].reshape(r, s)  # (R, S)
    slot_t = torch.arange(L - 1).repeat(c)  # (S,) token index of each slot in its candidate
    slot_k = torch.arange(c).repeat_interleave(L - 1)  # (S,) its candidate
    t = width + s
    static = torch.zeros(t, t, dtype=torch.bool)
    static[:width, :width] = torch.ones(width, width, dtype=torch.bool).tril()
    static[width:, :width] = True
    static[width:, width:] = (slot_k[:, None] == slot_k[None]) & (slot_t[None] <= slot_t[:, None])
    lengths = cont_lengths[:1] if bool((cont_lengths == cont_lengths[:1]).all()) else cont_lengths
    a_valid = slot_t < (lengths - 1).repeat_interleave(L - 1, dim=1)  # (R or 1, S)
    key_valid = torch.cat([torch.ones(len(lengths), width, dtype=torch.bool), a_valid], 1)
    allowed = (static & key_valid[:, None, :]) | torch.eye(t, dtype=torch.bool)  # (R|1, T, T)
    pos = torch.cat([torch.arange(width), width + slot_t])  # (T,)
    return appended, pos, allowed


@torch.inference_mode()
def score(
    model: torch.nn.Module, es: EvalSet, max_tokens: int = MAX_BATCH_TOKENS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C) summed log-probs of each candidate continuation, (N, C) summed NLL, (N, C) counts.

    Rows go in chunks of one prompt length (no padding, so no padding mask and no per-row
    positions). When every continuation is one token (L = 1: the colour, no end token), a
    chunk is a plain causal forward whose last logits score the candidates. Otherwise each
    chunk is one forward of (R, W + S) tokens (see ``candidate_tree``) whose last S + 1 logits
    score every candidate: position W - 1 predicts each candidate's first token, slot (k, t)
    its token t + 1. A single-token colour plus its end token (L = 2) makes the tree one slot
    per candidate; its end token's log-prob is part of the score (and of the answer loss), so
    the candidates cannot be read from the prompt's last logits alone.
    """
    n, c, L = es.cont_ids.shape
    logp, counts = torch.zeros(n, c), es.cont_lengths.float().clone()
    if n == 0:
        return logp, -logp, counts
    s = c * (L - 1)
    impl = getattr(model.config, "_attn_implementation", "eager")
    if s and impl not in MASKABLE:
        raise TriggerError(
            f"batched scoring needs an attention implementation that takes a 4-D mask "
            f"({', '.join(MASKABLE)}); this model uses {impl!r}. Load it with "
            "attn_implementation='sdpa'"
        )
    param = next(model.parameters())
    # src[k, t]: the kept logit row that predicts candidate k's token t
    src = torch.cat(
        [torch.zeros(c, 1, dtype=torch.long), 1 + torch.arange(s).view(c, L - 1)], 1
    )  # (C, L)
    valid = torch.arange(L) < es.cont_lengths[..., None]  # (N, C, L)
    full_w = es.prompt_ids.shape[1]
    order = torch.argsort(es.prompt_lengths, stable=True)
    widths, sizes = torch.unique_consecutive(es.prompt_lengths[order], return_counts=True)
    for w, group in zip(widths.tolist(), torch.split(order, sizes.tolist()), strict=True):
        step = max(1, max_tokens // (w + s))
        for a in range(0, len(group), step):
            idx = group[a : a + step]
            prompt = es.prompt_ids[idx, full_w - w :]  # (R, W): every row exactly w tokens
            conts = es.cont_ids[idx]  # (R, C, L)
            if s == 0:  # every continuation is one token: a plain causal forward
                logits = model(
                    input_ids=prompt.to(param.device), use_cache=False, logits_to_keep=1
                ).logits  # (R, 1, V)
            else:
                appended, pos, allowed = candidate_tree(w, conts, es.cont_lengths[idx])
                ids = torch.cat([prompt, appended], 1)  # (R, T)
                if impl == "sdpa":  # sdpa takes the boolean mask as is (cheaper than additive)
                    mask = allowed[:, None]  # (R or 1, 1, T, T)
                else:  # eager adds the mask to the scores
                    mask = torch.zeros(allowed.shape, dtype=param.dtype).masked_fill(
                        ~allowed, torch.finfo(param.dtype).min
                    )[:, None]
                mask = mask.expand(len(idx), -1, -1, -1)
                logits = model(
                    input_ids=ids.to(param.device),
                    attention_mask=mask.to(param.device),
                    position_ids=pos.expand(len(idx), -1).to(param.device),
                    use_cache=False,
                    logits_to_keep=s + 1,
                ).logits  # (R, S+1, V)
            lp = torch.log_softmax(logits.float(), -1).cpu()
            rows = torch.arange(len(idx))[:, None, None]
            tok_lp = lp[rows, src[None], conts]  # (R, C, L)
            logp[idx] = (tok_lp * valid[idx]).sum(-1)
    return logp, -logp, counts


@torch.inference_mode()
def generate_predictions(
    model: CausalLM, tok: Any, es: EvalSet, batch_size: int = 256
) -> list[str]:
    """Greedy decoding of every prompt (left-padded batches) mapped to a colour or INVALID.

    A row's prediction is the first candidate whose whole continuation (colour and end token)
    the decoded tokens start with.
    """
    device = next(model.parameters()).device
    n, c, L = es.cont_ids.shape
    full_w = es.prompt_ids.shape[1]
    preds: list[str] = []
    for a in range(0, n, batch_size):
        lengths = es.prompt_lengths[a : a + batch_size]
        w = int(lengths.max())
        ids = es.prompt_ids[a : a + batch_size, full_w - w :]
        mask = (torch.arange(w) >= (w - lengths)[:, None]).long()
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=L,
            do_sample=False,
            eos_token_id=tok.eos_token_id,
            pad_token_id=pad_id_of(tok),
        )[:, w:].cpu()
        gen = torch.full((len(ids), L), -1, dtype=torch.long)  # -1: nothing decoded there
        gen[:, : out.shape[1]] = out
        conts, clen = es.cont_ids[a : a + batch_size], es.cont_lengths[a : a + batch_size]
        valid = torch.arange(L) < clen[..., None]  # (R, C, L)
        match = ((gen[:, None] == conts) | ~valid).all(-1)  # (R, C)
        first = torch.where(match.any(1), match.int().argmax(1), -1)
        preds += [es.candidates[k] if k >= 0 else INVALID for k in first.tolist()]
    return preds


def file_metrics(
    es: EvalSet,
    logp: torch.Tensor,
    nll: torch.Tensor,
    counts: torch.Tensor,
    generated: list[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, answer loss and per-trigger accuracy of one file; NaN (flagged) when empty."""
    n = len(es.rows)
    if n == 0:
        return {
            "n": 0,
            "accuracy": math.nan,
            "loss": math.nan,
            "per_trigger": {},
            "predictions": [],
            "note": "empty file: no triggers in this split",
        }
    pred = logp.argmax(1)
    labels = es.labels
    correct = pred == labels
    rows = torch.arange(n)
    true_nll = torch.where(labels >= 0, nll[rows, labels.clamp(min=0)], torch.nan)
    true_cnt = counts[rows, labels.clamp(min=0)]
    per_trigger: dict[str, list[bool]] = {}
    for r, ok in zip(es.rows, correct.tolist(), strict=True):
        per_trigger.setdefault(r["input_trigger"], []).append(ok)
    out: dict[str, Any] = {
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


def evaluate(
    model: CausalLM, tok: Any, evals: Sequence[EvalSet], generation: bool = False, bar: Any = None
) -> dict[str, dict[str, Any]]:
    """file name -> metrics (see ``file_metrics``), the model in eval mode throughout.

    ``bar``: a run's progress counter; the files are counted inside its current unit."""
    was_training = model.training
    model.eval()
    files = bar.inner(len(evals), "eval file") if bar is not None else None
    try:
        out = {}
        for es in evals:
            logp, nll, counts = score(model, es)
            gen = generate_predictions(model, tok, es) if generation and es.rows else None
            out[es.name] = file_metrics(es, logp, nll, counts, gen)
            if files is not None:
                files.update()
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
        new: Mapping[str, str] | None
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
            why = (
                "empty file"
                if not es.rows
                else "no old map"
                if old is None
                else "old and new maps agree on every quadrant"
            )
            table.append(
                {
                    **row,
                    "n_used": 0,
                    "old": math.nan,
                    "new": math.nan,
                    "neither": math.nan,
                    "note": why,
                }
            )
            continue
        assert old is not None and new is not None  # else `use` is empty
        o = n_ = neither = 0
        for p, q, u in zip(preds, quads, use, strict=True):
            if u:
                o += p == old[q]
                n_ += p == new[q]
                neither += p not in (old[q], new[q])
        k = sum(use)
        table.append(
            {**row, "n_used": k, "old": o / k, "new": n_ / k, "neither": neither / k, "note": note}
        )
    return table


def format_table(table: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"{'category':<22} {'split':<5} {'n':>5} {'used':>5} {'old':>6} {'new':>6} "
        f"{'neither':>7}  note"
    ]
    for r in table:
        lines.append(
            f"{r['category']:<22} {r['split']:<5} {r['n']:>5} {r['n_used']:>5} "
            f"{r['old']:>6.3f} {r['new']:>6.3f} {r['neither']:>7.3f}  {r['note']}"
        )
    return "\n".join(lines)
