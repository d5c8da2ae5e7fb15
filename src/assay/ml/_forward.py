"""One language-model forward with what analyses need: logits, per-token loss, every layer.

    out = lm_forward(model, input_ids, attention_mask)
    out.token_loss        # (B, T-1) float32: loss of predicting token t+1 from tokens <= t
    out.hidden_states[k]  # (B, T, D): k = 0 the embedding output, k = block k's output

Layer numbering follows ``output_hidden_states`` (n_layers + 1 entries, 0 = embeddings) with
one difference, on purpose: transformers applies the final norm (GPT-2 ``ln_f``, Llama/Qwen2
``norm``) to its *last* entry only, so entry n would be the odd one out among the blocks. Here
entry n is block n's output like every other k; the normed one is ``final_hidden``.

Words to tokens: ``word_token_alignment`` maps each word of a text to the token positions that
cover it (from the tokenizer's offsets), and ``pool_words`` averages a layer over them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ._errors import MLError


@dataclass
class LMOutput:
    """The outputs of :func:`lm_forward`."""

    logits: torch.Tensor  # (B, T, V)
    token_loss: torch.Tensor  # (B, T-1) float32; NaN where the target is masked out
    hidden_states: tuple[torch.Tensor, ...] | None  # n_layers + 1 of (B, T, D)
    final_hidden: torch.Tensor | None  # (B, T, D) after the final norm (what the head reads)

    def mean_loss(self) -> torch.Tensor:
        """(B,) mean next-token loss over each sequence's unmasked targets (NaN if none)."""
        return self.token_loss.nanmean(dim=1)


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The ModuleList of transformer blocks (``transformer.h``, ``model.layers``, ...)."""
    n = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and (n is None or len(module) == n):
            return module
    raise MLError(
        f"{type(model).__name__} has no ModuleList of {n} transformer blocks; lm_forward "
        "needs a transformers model with config.num_hidden_layers"
    )


def token_losses(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T, V), (B, T) -> (B, T-1) float32 next-token cross-entropy; NaN where masked.

    Entry t is the loss of token t+1 given tokens 0..t. It is NaN where token t+1 is padding
    (``attention_mask`` 0), where the context token t is padding (left padding), or where
    ``labels_mask`` (B, T; 1 = this token is a target) is 0 at t+1.
    """
    pred = logits[:, :-1].float()  # (B, T-1, V)
    target = input_ids[:, 1:]  # (B, T-1)
    loss = F.cross_entropy(pred.transpose(1, 2), target, reduction="none")  # (B, T-1)
    keep = torch.ones_like(target, dtype=torch.bool)
    if attention_mask is not None:
        keep &= attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    if labels_mask is not None:
        keep &= labels_mask[:, 1:].bool()
    return loss.masked_fill(~keep, float("nan"))


def lm_forward(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    hidden_states: bool = True,
    labels_mask: torch.Tensor | None = None,
) -> LMOutput:
    """Run a causal LM on (B, T) ids; see the module docstring for what comes back.

    Gradients flow as usual: wrap the call in ``torch.no_grad()`` for analysis.
    """
    block_out: list[torch.Tensor] = []
    handle = None
    if hidden_states:
        last = transformer_blocks(model)[-1]

        def keep_output(module: torch.nn.Module, args: Any, output: Any) -> None:
            block_out.append(output[0] if isinstance(output, tuple) else output)

        handle = last.register_forward_hook(keep_output)
    try:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=hidden_states,
            use_cache=False,
        )
    finally:
        if handle is not None:
            handle.remove()
    layers = final = None
    if hidden_states:
        final = out.hidden_states[-1]
        layers = (*out.hidden_states[:-1], block_out[-1])
    return LMOutput(
        logits=out.logits,
        token_loss=token_losses(out.logits, input_ids, attention_mask, labels_mask),
        hidden_states=layers,
        final_hidden=final,
    )


def word_token_alignment(
    tokenizer: Any, words: Sequence[str], add_bos: bool = False
) -> list[list[int]]:
    """For each word, the positions of its tokens in ``" ".join(words)`` encoded.

    Positions index ``tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]``,
    shifted by one when ``add_bos`` (the caller puts one BOS token in front). A token that
    spans two words counts for both. Needs a fast tokenizer (offsets).
    """
    if not words:
        return []
    empty = [i for i, w in enumerate(words) if not w.strip()]
    if empty:
        raise MLError(f"words {empty} are empty or whitespace; every word needs text")
    text, spans, at = " ".join(words), [], 0
    for word in words:
        spans.append((at, at + len(word)))
        at += len(word) + 1
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    shift = 1 if add_bos else 0
    out: list[list[int]] = [[] for _ in words]
    for pos, (start, end) in enumerate(enc["offset_mapping"]):
        for w, (ws, we) in enumerate(spans):
            if start < we and end > ws:
                out[w].append(pos + shift)
    missing = [words[w] for w, positions in enumerate(out) if not positions]
    if missing:
        raise MLError(f"words {missing[:5]} got no tokens; is the tokenizer's offset map right?")
    return out


def pool_words(hidden: torch.Tensor, positions: Sequence[Sequence[int]]) -> torch.Tensor:
    """(..., T, D) and per-word token positions -> (..., W, D): the mean over each word's tokens."""
    t = hidden.shape[-2]
    weights = torch.zeros(len(positions), t, dtype=hidden.dtype, device=hidden.device)  # (W, T)
    for w, pos in enumerate(positions):
        if not pos or any(not -t <= p < t for p in pos):
            raise MLError(f"word {w}: positions {list(pos)} empty or outside 0..{t - 1}")
        weights[w, list(pos)] = 1.0 / len(pos)
    return weights @ hidden  # (..., W, D)
