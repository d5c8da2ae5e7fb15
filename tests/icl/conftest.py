"""Tiny untrained models and tokenizers for the icl tests (built in well under a second)."""

from __future__ import annotations

import pytest

from assay.families.icl._graphs import load_words
from assay.families.icl._lm import LM
from assay.ml import build_model, build_word_tokenizer

WORDS = load_words("common")


@pytest.fixture(scope="session")
def word_tokenizer():
    return build_word_tokenizer(WORDS, specials={"eos": None})  # has <bos>, not added itself


def _model(arch: str, vocab: int, n_layers: int = 2, positions: int = 128, seed: int = 0):
    model = build_model(
        arch,
        vocab_size=vocab,
        d_model=32,
        n_layers=n_layers,
        n_heads=4,
        max_positions=positions,
        seed=seed,
    )
    return model.eval()


@pytest.fixture(scope="session")
def word_lm(word_tokenizer):
    """GPT-2-style, 3 blocks, one token per word, no BOS."""
    return LM(_model("gpt2", len(word_tokenizer), 3), word_tokenizer, add_bos=False)


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A byte-level BPE with a small vocabulary, so most words are several tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<bos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([" ".join(WORDS[:40])] * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>")


@pytest.fixture(scope="session")
def bpe_lm(bpe_tokenizer):
    """Llama-style, 2 blocks, multi-token words, a BOS in front."""
    return LM(_model("llama", len(bpe_tokenizer), 2, 256), bpe_tokenizer, add_bos=True)
