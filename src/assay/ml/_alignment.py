"""Word -> token alignment of many word lists at once: one tokenizer call, no O(T·W) loop.

    ids, positions = word_token_alignments(tokenizer, [["apple", "bird"], ["car"]], add_bos=True)
    positions[b][w]   # token positions of word w of text b (shifted by one for the BOS)

The rule is that of ``assay.ml.word_token_alignment`` (a token belongs to every word whose
character span in ``" ".join(words)`` it overlaps; a bare-space token belongs to none), which
it equals on every input (tested); the words' spans are sorted, so the words a token overlaps
are one ``searchsorted`` range instead of a scan over all words. Written for leave-one-out over many
leave-one-out (65 texts of 64 words per context); generic, to fold into ``_forward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._errors import MLError


def word_token_alignments(
    tokenizer: Any, contexts: Sequence[Sequence[str]], add_bos: bool = False
) -> tuple[list[list[int]], list[list[list[int]]]]:
    """Token ids (without the BOS) and per-word token positions of each ``" ".join(words)``."""
    for words in contexts:
        empty = [i for i, w in enumerate(words) if not w.strip()]
        if empty:
            raise MLError(f"words {empty} are empty or whitespace; every word needs text")
    texts = [" ".join(words) for words in contexts]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    shift = 1 if add_bos else 0
    all_positions = []
    for words, offsets in zip(contexts, enc["offset_mapping"], strict=True):
        lengths = np.fromiter((len(w) for w in words), np.int64, len(words))
        starts = np.concatenate([[0], np.cumsum(lengths[:-1] + 1)])  # (W,) span [start, end)
        ends = starts + lengths
        off = np.asarray(offsets, np.int64).reshape(-1, 2)  # (T, 2)
        first = np.searchsorted(ends, off[:, 0], side="right")  # first word with end > start
        stop = np.searchsorted(starts, off[:, 1], side="left")  # words with start < end
        out: list[list[int]] = [[] for _ in words]
        for pos in np.flatnonzero(stop > first).tolist():
            for w in range(first[pos], stop[pos]):
                out[w].append(pos + shift)
        missing = [words[w] for w, p in enumerate(out) if not p]
        if missing:
            raise MLError(
                f"words {missing[:5]} got no tokens; is the tokenizer's offset map right?"
            )
        all_positions.append(out)
    return [list(ids) for ids in enc["input_ids"]], all_positions
