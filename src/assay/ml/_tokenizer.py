"""A word-level tokenizer built locally with ``tokenizers``: one id per word.

    tok = build_word_tokenizer(["the cat sat", "a dog ran"], out_dir="runs/tok")
    tok("the cat", return_offsets_mapping=True)     # ids [5, 6], offsets [(0, 3), (4, 7)]
    AutoTokenizer.from_pretrained("runs/tok")        # a normal tokenizer directory
    build_word_tokenizer(["x = [-1.25, 3]"], split="digits_punctuation")   # x = [ - 1 . 2 5 , 3 ]

What a word is (``split``):

* ``"whitespace"`` (default): a whitespace-separated string (``WhitespaceSplit``), so "cat." is
  one word, not two: for synthetic languages a word is exactly what the data generator wrote;
* ``"digits_punctuation"``: that, then every punctuation character (ASCII and Unicode) and
  every digit is a word of its own, so numbers are read digit by digit from a vocabulary of a
  few dozen pieces instead of one word per number ever written.

Ids: the special tokens first (pad, bos, eos, unk, in that order, those that are set), then
the words in order of first appearance, so the same inputs always give the same ids. Special
tokens are never split.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

from ._errors import MLError

DEFAULT_SPECIALS = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>"}
SPLITS = ("whitespace", "digits_punctuation")


def word_splitter(split: str = "whitespace") -> Any:
    """The ``tokenizers`` pre-tokenizer that cuts text into the words of ``split``."""
    from tokenizers import pre_tokenizers as pt

    if split == "whitespace":
        return pt.WhitespaceSplit()
    if split == "digits_punctuation":
        return pt.Sequence(
            [pt.WhitespaceSplit(), pt.Punctuation("isolated"), pt.Digits(individual_digits=True)]
        )
    raise MLError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def build_word_tokenizer(
    words: Iterable[str],
    *,
    specials: dict[str, str | None] | None = None,
    add_bos: bool = False,
    add_eos: bool = False,
    out_dir: str | os.PathLike[str] | None = None,
    chat_template: str | None = None,
    model_max_length: int | None = None,
    split: Literal["whitespace", "digits_punctuation"] = "whitespace",
) -> Any:
    """A ``PreTrainedTokenizerFast`` over the words of ``words`` (words or whole texts).

    Args:
        words: vocabulary words or texts; each item is cut into words by ``split``.
        specials: role -> token for roles pad, bos, eos, unk (default ``<pad>``, ``<bos>``,
            ``<eos>``, ``<unk>``); a role set to None has no token.
        add_bos / add_eos: whether encoding with ``add_special_tokens=True`` (the default of
            ``tok(text)``) puts bos before / eos after the text.
        out_dir: save it there (``save_pretrained``) as a normal tokenizer directory.
        chat_template: a Jinja chat template stored with the tokenizer.
        split: what a word is: ``"whitespace"`` or ``"digits_punctuation"`` (see the module
            docstring); the saved tokenizer splits new text the same way.
    """
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    roles = {**DEFAULT_SPECIALS, **(specials or {})}
    bad = set(roles) - set(DEFAULT_SPECIALS)
    if bad:
        raise MLError(f"unknown special-token role(s) {sorted(bad)}; valid: pad, bos, eos, unk")
    for role, flag in (("bos", add_bos), ("eos", add_eos)):
        if flag and not roles[role]:
            raise MLError(f"add_{role}=True needs a {role} token; set specials[{role!r}]")
    vocab: dict[str, int] = {}
    for token in roles.values():
        if token is not None and token not in vocab:
            vocab[token] = len(vocab)
    splitter = word_splitter(split)
    for text in words:
        for word, _ in splitter.pre_tokenize_str(text):
            vocab.setdefault(word, len(vocab))
    if len(vocab) == sum(t is not None for t in roles.values()):
        raise MLError("build_word_tokenizer got no words; pass the vocabulary or a corpus")

    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=roles["unk"]))
    tokenizer.pre_tokenizer = splitter
    if add_bos or add_eos:
        bos, eos = roles["bos"], roles["eos"]
        # a set flag has its token (checked above)
        head = [bos] if add_bos and bos is not None else []
        tail = [eos] if add_eos and eos is not None else []
        single = " ".join([*head, "$A", *tail])
        pair = " ".join([*head, "$A", "$B", *tail])
        used = [*head, *tail]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=single, pair=pair, special_tokens=[(t, vocab[t]) for t in used]
        )
    kwargs: dict[str, Any] = {
        f"{role}_token": tok for role, tok in roles.items() if tok is not None
    }
    if model_max_length is not None:
        kwargs["model_max_length"] = model_max_length
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kwargs)
    if chat_template is not None:
        fast.chat_template = chat_template
    if out_dir is not None:
        fast.save_pretrained(os.fspath(out_dir))
    return fast
