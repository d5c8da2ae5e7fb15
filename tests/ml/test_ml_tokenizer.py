"""build_word_tokenizer's ``split``: whitespace words (the default) or digits and punctuation too."""

from __future__ import annotations

import json

import pytest

import assay.ml as ml

TEXTS = ["x = [-1.25, 3] and T = joy.", "What is F(x,T)?"]


def test_default_split_is_whitespace_only_and_unchanged(tmp_path):
    tok = ml.build_word_tokenizer(TEXTS, out_dir=tmp_path / "tok")
    assert tok.get_vocab() == ml.build_word_tokenizer(TEXTS, split="whitespace").get_vocab()
    words = [w for w, i in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])][4:]
    assert words[:6] == ["x", "=", "[-1.25,", "3]", "and", "T"]  # a word: what whitespace cut
    assert "joy." in words and "F(x,T)?" in words
    saved = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert saved["pre_tokenizer"]["type"] == "WhitespaceSplit"
    assert tok("joy.", add_special_tokens=False)["input_ids"] == [tok.get_vocab()["joy."]]


def test_digits_punctuation_split_reads_numbers_digit_by_digit(tmp_path):
    tok = ml.build_word_tokenizer(
        TEXTS, split="digits_punctuation", out_dir=tmp_path / "tok", specials={"bos": None}
    )
    vocab = tok.get_vocab()
    # specials first, then every piece in order of first appearance
    assert [vocab[w] for w in ("<pad>", "<eos>", "<unk>", "x", "=", "[", "-", "1", ".")] == list(
        range(9)
    )
    assert set(vocab) == {
        "<pad>",
        "<eos>",
        "<unk>",
        *"x=[-1.25,3]T?F()",
        "and",
        "joy",
        "What",
        "is",
    }
    enc = tok("T = [-3.5, 12]", add_special_tokens=False, return_offsets_mapping=True)
    pieces = tok.convert_ids_to_tokens(enc["input_ids"])
    assert pieces == ["T", "=", "[", "-", "3", ".", "5", ",", "1", "2", "]"]
    assert enc["offset_mapping"][4] == (6, 7) and enc["offset_mapping"][9] == (12, 13)
    # numbers never seen as a whole are known digit by digit; special tokens are never split
    assert tok.unk_token_id not in enc["input_ids"]
    assert tok("<eos>", add_special_tokens=False)["input_ids"] == [tok.eos_token_id]
    reloaded = ml.load_tokenizer(tmp_path / "tok")
    assert reloaded("T = [-3.5, 12]", add_special_tokens=False)["input_ids"] == enc["input_ids"]
    assert reloaded.decode(enc["input_ids"][2:7]) == "[ - 3 . 5"


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ml.MLError, match="unknown split 'chars'; valid: whitespace, digits_pun"):
        ml.build_word_tokenizer(TEXTS, split="chars")
