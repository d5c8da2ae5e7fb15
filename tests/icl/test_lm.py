"""Layer numbering, word <-> token alignment (with and without BOS) and bad model input."""

from __future__ import annotations

import pytest
import torch

from assay import ConfigError
from assay.families.icl._graphs import load_words
from assay.families.icl._lm import encode, word_states

WORDS = load_words("common")

CONTEXT = ["apple", "bird", "car", "apple", "egg", "bird"]


def test_layer_numbering_is_embeddings_then_each_block_output(word_lm):
    model = word_lm.model
    st = word_states(word_lm, [CONTEXT])
    assert st.layers == [0, 1, 2, 3] and st.reps.shape == (4, 1, 6, 32)
    ids = encode(word_lm, [CONTEXT]).input_ids
    captured = []
    hooks = [
        b.register_forward_hook(
            lambda m, a, out: captured.append(out[0] if isinstance(out, tuple) else out)
        )
        for b in model.transformer.h
    ]
    with torch.no_grad():
        hf = model(ids, output_hidden_states=True).hidden_states
    for h in hooks:
        h.remove()
    emb = model.transformer.wte(ids) + model.transformer.wpe(torch.arange(6))
    assert torch.allclose(st.reps[0, 0], emb[0], atol=1e-6)  # layer 0 = embedding output
    for k in (1, 2, 3):  # layer k = after block k
        assert torch.allclose(st.reps[k, 0], captured[k - 1][0], atol=1e-6)
    for k in (0, 1, 2):  # the same as output_hidden_states indexing ...
        assert torch.allclose(st.reps[k], hf[k], atol=1e-6)
    # ... except its last entry, which transformers returns after the final norm (ln_f)
    assert torch.allclose(model.transformer.ln_f(st.reps[3]), hf[3], atol=1e-5)


def test_word_alignment_without_and_with_bos(word_lm):
    from assay.families.icl._lm import LM

    plain = encode(word_lm, [CONTEXT])
    assert plain.positions[0] == [[i] for i in range(6)]
    assert plain.input_ids[0].tolist() == word_lm.tokenizer.convert_tokens_to_ids(CONTEXT)
    bos_lm = LM(word_lm.model, word_lm.tokenizer, add_bos=True)
    with_bos = encode(bos_lm, [CONTEXT])
    assert with_bos.input_ids[0, 0].item() == word_lm.tokenizer.bos_token_id
    assert with_bos.positions[0] == [[i + 1] for i in range(6)]  # shifted by the BOS
    a, b = word_states(word_lm, [CONTEXT]), word_states(bos_lm, [CONTEXT])
    assert torch.isnan(a.loss[0, 0]) and torch.isfinite(b.loss[0, 0])  # word 0: predictable
    with torch.no_grad():
        out = bos_lm.model(with_bos.input_ids, output_hidden_states=True)
    assert torch.allclose(b.reps[1, 0], out.hidden_states[1][0, 1:], atol=1e-6)  # not off by one


def test_multi_token_words_pool_by_mean_and_sum_their_losses(bpe_lm):
    words = ["opera", "girl", "math", "sand", "opera"]
    enc = encode(bpe_lm, [words])
    pos = enc.positions[0]
    flat = [p for ps in pos for p in ps]
    assert flat == sorted(set(flat)) and min(flat) == 1  # in order, each in one word, after BOS
    tok = bpe_lm.tokenizer
    for p in sorted(set(range(1, enc.input_ids.shape[1])) - set(flat)):
        assert tok.decode(enc.input_ids[0, p : p + 1]).strip() == ""  # only bare spaces left out
    assert max(len(p) for p in pos) > 1  # the BPE really splits words
    st = word_states(bpe_lm, [words])
    with torch.no_grad():
        out = bpe_lm.model(enc.input_ids, output_hidden_states=True)
    logp = out.logits[0, :-1].log_softmax(-1)
    token_loss = -logp.gather(1, enc.input_ids[0, 1:, None])[:, 0]
    for w, ps in enumerate(pos):
        assert torch.allclose(st.reps[1, 0, w], out.hidden_states[1][0, ps].mean(0), atol=1e-5)
        assert st.loss[0, w].item() == pytest.approx(
            token_loss[[p - 1 for p in ps]].sum().item(), rel=1e-5
        )


def test_layer_out_of_range_is_a_clear_config_error(word_lm):
    with pytest.raises(ConfigError, match=r"layer\(s\) \[4\] out of range.*layers 0\.\.3"):
        word_states(word_lm, [CONTEXT], layers=[0, 4])


def test_context_longer_than_the_model_positions_is_a_clear_config_error(word_lm):
    too_long = (WORDS * 2)[:129]
    with pytest.raises(ConfigError, match=r"129 tokens is longer than the model's 128 positions"):
        word_states(word_lm, [too_long])


def test_unknown_words_for_a_word_level_model_are_a_clear_config_error(word_lm):
    with pytest.raises(ConfigError, match=r"\['zebra'\] are not in the model's vocabulary"):
        word_states(word_lm, [["apple", "zebra"]])


@pytest.mark.parametrize("add_bos", [False, True])
def test_batched_alignment_equals_the_shared_one_word_list_at_a_time(bpe_tokenizer, add_bos):
    from assay.ml import word_token_alignment, word_token_alignments

    contexts = [WORDS[i : i + 9] for i in range(0, 60, 7)] + [["a", "bb", "a"], ["opera"]]
    ids, positions = word_token_alignments(bpe_tokenizer, contexts, add_bos=add_bos)
    for words, row, pos in zip(contexts, ids, positions, strict=True):
        assert pos == word_token_alignment(bpe_tokenizer, words, add_bos=add_bos)
        assert row == bpe_tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]
    assert any(len(p) > 1 for pos in positions for p in pos)  # multi-token words covered
