"""Models built from a config, loaded from local folders only; the word-level tokenizer."""

from __future__ import annotations

import pytest
import torch

import assay.ml as ml

SIZES = dict(vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_positions=32)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "bert"])
def test_build_model_makes_each_architecture_at_the_asked_size(arch):
    task = "masked-lm" if arch == "bert" else "causal-lm"
    model = ml.build_model(arch, task=task, d_ff=24, seed=3, **SIZES).eval()
    again = ml.build_model(arch, task=task, d_ff=24, seed=3, **SIZES).eval()
    x = torch.randint(0, 40, (2, 6))
    assert model(input_ids=x).logits.shape == (2, 6, 40)
    assert torch.equal(model(input_ids=x).logits, again(input_ids=x).logits)  # seeded
    assert len(ml.transformer_blocks(model)) == 2
    hidden = [m for m in model.modules() if isinstance(m, torch.nn.Embedding)][0].embedding_dim
    assert hidden == 16
    classifier = ml.build_model(
        arch, task="sequence-classification", num_labels=3, pad_token_id=0, **SIZES
    )
    assert classifier(input_ids=x).logits.shape == (2, 3)


def test_build_model_rejects_bad_sizes_and_names():
    with pytest.raises(ml.MLError, match="valid: gpt2, llama, qwen2, bert"):
        ml.build_model("t5", **SIZES)
    with pytest.raises(ml.MLError, match="divisible"):
        ml.build_model("gpt2", **{**SIZES, "n_heads": 3})
    with pytest.raises(ml.MLError, match="outside the vocabulary"):
        ml.build_model("gpt2", pad_token_id=40, **SIZES)
    with pytest.raises(ml.MLError, match="unknown task 'seq2seq'"):
        ml.build_model("gpt2", task="seq2seq", **SIZES)


def test_saved_models_load_back_from_local_folders_only(tmp_path, tiny_gpt2, gpt2_dir):
    loaded = ml.load_hf_model(gpt2_dir, task="auto", dtype=torch.float64)
    x = torch.randint(0, 40, (2, 6))
    assert next(loaded.parameters()).dtype == torch.float64 and not loaded.training
    assert torch.allclose(
        loaded(input_ids=x).logits.float(), tiny_gpt2(input_ids=x).logits, atol=1e-5
    )
    assert ml.infer_task(gpt2_dir) == "causal-lm"
    with pytest.raises(ml.ModelNotFoundError, match="looks like a hub id.*local paths only"):
        ml.load_hf_model("openai-community/gpt2")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ml.ModelNotFoundError, match="no config.json"):
        ml.load_hf_model(tmp_path / "empty")
    with pytest.raises(ml.ModelNotFoundError, match="no tokenizer directory"):
        ml.load_tokenizer(tmp_path / "missing")


def test_word_tokenizer_saves_a_normal_directory_with_offsets(tmp_path):
    from transformers import AutoTokenizer

    template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    tok = ml.build_word_tokenizer(
        ["the cat sat", "a dog ran the"],
        add_bos=True,
        out_dir=tmp_path / "tok",
        chat_template=template,
    )
    vocab = tok.get_vocab()
    assert [vocab[w] for w in ("<pad>", "<bos>", "<eos>", "<unk>", "the", "cat")] == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    again = AutoTokenizer.from_pretrained(tmp_path / "tok", local_files_only=True)
    assert ml.load_tokenizer(tmp_path / "tok").get_vocab() == vocab
    enc = again("the cat zebra", return_offsets_mapping=True)
    assert enc["input_ids"] == [1, 4, 5, 3]  # bos, the, cat, unk
    assert enc["offset_mapping"] == [(0, 0), (0, 3), (4, 7), (8, 13)]
    assert again(["the cat", "a"], padding=True)["input_ids"] == [[1, 4, 5], [1, 7, 0]]
    assert again.pad_token_id == 0 and again.decode([4, 5]) == "the cat"
    assert again.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == "hi "
    with pytest.raises(ml.MLError, match="no words"):
        ml.build_word_tokenizer([])
    with pytest.raises(ml.MLError, match="add_bos=True needs a bos token"):
        ml.build_word_tokenizer(["a"], specials={"bos": None}, add_bos=True)
