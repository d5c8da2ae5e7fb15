"""Word-level access to a causal LM: every layer's word representations and word losses.

    lm = load_lm(path, device="cpu", dtype=torch.float32)
    states = word_states(lm, [["apple", "bird", ...], ...], layers=None)
    states.reps   # (L, B, W, d) float32: layer l of word w (mean over the word's tokens)
    states.loss   # (B, W) float32: -log p(word w | words < w), NaN for word 0 without a BOS

Layer numbering, used everywhere in this family: layer 0 = embedding output, layer k = the
output of block k (``assay.ml.lm_forward``: ``output_hidden_states`` indexing, except that the
last entry is block n's output before the final norm, like every other block).

Words become tokens through the tokenizer's offsets (``assay.ml.word_token_alignment``) on the
text ``" ".join(words)``; with a BOS token every position shifts by one, explicitly. A
multi-token word's representation is the mean over its tokens; its loss is the sum of its
tokens' losses (the loss of the whole word).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from assay import ConfigError
from assay.ml import (
    AdaptiveBatch,
    input_device,
    lm_forward,
    load_hf_model,
    load_tokenizer,
    transformer_blocks,
    word_token_alignments,
)


@dataclasses.dataclass
class LM:
    model: Any
    tokenizer: Any
    add_bos: bool
    device: str = "cpu"
    # one adaptive batch per loaded model, so a halving after an out-of-memory sticks for the
    # stage; its ``used`` goes into the stage's results (``batch_size_used``)
    batch: AdaptiveBatch = dataclasses.field(
        default_factory=lambda: AdaptiveBatch(None, knob="batch_size", what="sequence")
    )

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def max_positions(self) -> int:
        c = self.model.config
        return int(getattr(c, "n_positions", None) or c.max_position_embeddings)

    def check_layers(self, layers: Sequence[int] | None) -> list[int]:
        """The layers to analyse (None: all 0..n_layers); an out-of-range one is a ConfigError."""
        if layers is None:
            return list(range(self.n_layers + 1))
        bad = [layer for layer in layers if not 0 <= layer <= self.n_layers]
        if bad:
            raise ConfigError(
                f"layer(s) {bad} out of range: this model has {self.n_layers} blocks, so layers "
                f"0..{self.n_layers} (0 = embedding output, k = after block k); fix `layers`"
            )
        return list(layers)


def load_lm(
    path,
    *,
    device: str = "cpu",
    dtype=None,
    add_bos: bool | None = None,
    device_map: str | None = None,
) -> LM:
    """A causal LM and its tokenizer from one local folder. ``add_bos=None``: put a BOS in front
    exactly when the tokenizer itself adds one to ``tok(text)`` (Llama yes, GPT-2 no).
    ``device_map="auto"``: the model's layers spread over the GPUs (``device`` unused)."""
    tok = load_tokenizer(path)
    model = load_hf_model(
        path, task="causal-lm", dtype=dtype, device=device, device_map=device_map
    )
    if device_map is not None:
        device = input_device(model)
    if add_bos is None:
        ids = tok("a")["input_ids"]
        add_bos = tok.bos_token_id is not None and len(ids) > 0 and ids[0] == tok.bos_token_id
    if add_bos and tok.bos_token_id is None:
        raise ConfigError(f"add_bos=True but the tokenizer at {path} has no BOS token")
    return LM(model, tok, bool(add_bos), device)


@dataclasses.dataclass
class Encoded:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor  # (B, T)
    positions: list[list[list[int]]]  # [b][w] token positions of word w


def encode(lm: LM, contexts: Sequence[Sequence[str]]) -> Encoded:
    """Token ids of each context (``" ".join(words)``, BOS first when ``lm.add_bos``): one
    tokenizer call for all contexts."""
    tok = lm.tokenizer
    rows, positions = word_token_alignments(tok, contexts, add_bos=lm.add_bos)
    if lm.add_bos:
        rows = [[tok.bos_token_id, *ids] for ids in rows]
    unk = tok.unk_token_id
    if unk is not None and len(tok) < 1000:  # a word-level vocabulary: unknown words are errors
        unknown = sorted(
            {
                w
                for words, ids in zip(contexts, rows, strict=True)
                if unk in ids
                for w in words
                if w != tok.unk_token and tok.convert_tokens_to_ids(w) == unk
            }
        )
        if unknown:
            raise ConfigError(
                f"words {unknown[:5]} are not in the model's vocabulary; use a word list "
                "the model was trained on (graph.words) or a model that knows them"
            )
    longest = max(len(r) for r in rows)
    if longest > lm.max_positions:
        raise ConfigError(
            f"context of {longest} tokens is longer than the model's {lm.max_positions} "
            "positions; use shorter contexts (context_lengths / n_words) or a longer-context model"
        )
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(rows), longest), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    return Encoded(ids, mask, positions)


@dataclasses.dataclass
class WordStates:
    reps: torch.Tensor  # (L, B, W, d) float32, L = len(layers)
    loss: torch.Tensor  # (B, W) float32
    layers: list[int]


@torch.no_grad()
def word_states(
    lm: LM,
    contexts: Sequence[Sequence[str]],
    layers: Sequence[int] | None = None,
    batch_size: int = 64,
    loss: bool = True,
) -> WordStates:
    """Every requested layer's word representations and (``loss``) the word losses,
    at most ``batch_size`` contexts per forward (right padding; causal attention keeps real
    positions exact), halved after an out-of-memory (``lm.batch``). ``loss=False``:
    ``WordStates.loss`` is NaN (nothing computed)."""
    layers = lm.check_layers(layers)
    n_words = {len(c) for c in contexts}
    if len(n_words) != 1:
        raise ConfigError(f"contexts in one call need equal word counts, got {sorted(n_words)}")
    reps, losses = [], []

    def forward(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        enc = encode(lm, contexts[a:b])
        out = lm_forward(lm.model, enc.input_ids.to(lm.device), enc.attention_mask.to(lm.device))
        hs = torch.stack([out.hidden_states[layer] for layer in layers]).float().cpu()
        if loss:
            word_loss = _word_loss(out.token_loss.float().cpu(), enc.positions)
        else:
            word_loss = torch.full((len(enc.positions), len(enc.positions[0])), torch.nan)
        return pool(hs, enc.positions), word_loss  # (L, B, W, d), (B, W)

    # at most batch_size contexts per forward, fewer after an out-of-memory (lm.batch)
    for rep, word_loss in lm.batch.map(len(contexts), forward, limit=batch_size):
        reps.append(rep)
        losses.append(word_loss)
    return WordStates(torch.cat(reps, 1), torch.cat(losses, 0), layers)


def pool(hidden: torch.Tensor, positions: list[list[list[int]]]) -> torch.Tensor:
    """(L, B, T, d) token states -> (L, B, W, d): word w of row b is the mean of its tokens
    ``positions[b][w]`` (a gather when every word is one token)."""
    n_l, n_b, t, d = hidden.shape
    n_w = len(positions[0])
    flat = hidden.reshape(n_l, n_b * t, d)
    if all(len(p) == 1 for words in positions for p in words):
        first = torch.tensor([b * t + p[0] for b, words in enumerate(positions) for p in words])
        return flat[:, first].reshape(n_l, n_b, n_w, d)
    rows: list[int] = []  # output row (b * n_w + w) of each token
    cols: list[int] = []  # flat token index (b * t + q)
    weights: list[float] = []  # 1 / tokens of its word
    for b, words in enumerate(positions):
        for w, pos in enumerate(words):
            rows += [b * n_w + w] * len(pos)
            cols += [b * t + q for q in pos]
            weights += [1.0 / len(pos)] * len(pos)
    picked = flat[:, torch.tensor(cols)] * torch.tensor(weights, dtype=hidden.dtype)[:, None]
    out = torch.zeros(n_l, n_b * n_w, d, dtype=hidden.dtype, device=hidden.device)
    return out.index_add_(1, torch.tensor(rows), picked).reshape(n_l, n_b, n_w, d)


def forward_states(model, input_ids, attention_mask, cache=None, use_cache: bool = False):
    """(hidden states per layer, cache): one forward with a key/value cache, numbered like
    ``assay.ml.lm_forward`` (entry n = block n's output before the final norm). ``cache``
    holds the states of the positions before ``input_ids``; ``attention_mask`` covers both."""
    block_out: list[torch.Tensor] = []

    def keep(module, args, output):
        block_out.append(output[0] if isinstance(output, tuple) else output)

    handle = transformer_blocks(model)[-1].register_forward_hook(keep)
    kwargs = {}
    if cache is not None or use_cache:
        name = (
            "cache"
            if "cache" in inspect.signature(model.forward).parameters
            else ("past_key_values")
        )
        kwargs = {name: cache, "use_cache": True}
    try:
        out = model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs
        )
    finally:
        handle.remove()
    cache_out = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    return [*out.hidden_states[:-1], block_out[-1]], cache_out


def _word_loss(token_loss: torch.Tensor, positions: list[list[list[int]]]) -> torch.Tensor:
    """(B, T-1) token losses -> (B, W): Σ over a word's tokens p of token_loss[p - 1]."""
    out = torch.full((len(positions), len(positions[0])), float("nan"))
    for b, words in enumerate(positions):
        for i, pos in enumerate(words):
            if min(pos) >= 1:
                out[b, i] = token_loss[b, [p - 1 for p in pos]].sum()
    return out
