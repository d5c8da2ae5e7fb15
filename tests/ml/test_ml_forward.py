"""lm_forward's layer numbering and per-token loss; word alignment; hooks."""

from __future__ import annotations

import pytest
import torch

import assay.ml as ml


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_hidden_state_k_is_block_k_output_and_0_the_embeddings(arch):
    model = ml.build_model(
        arch, vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_positions=32, seed=1
    ).eval()
    x = torch.randint(0, 40, (3, 7))
    blocks = ml.transformer_blocks(model)
    names = [n for n, m in model.named_modules() if any(m is b for b in blocks)]
    with torch.no_grad(), ml.capture_activations(model, names) as acts:
        out = ml.lm_forward(model, x)
        hf = model(input_ids=x, output_hidden_states=True).hidden_states
    assert len(out.hidden_states) == 3  # n_layers + 1
    assert torch.equal(out.hidden_states[0], hf[0])  # the embedding output
    for k, name in enumerate(names, start=1):
        assert torch.equal(out.hidden_states[k], acts[name])  # after block k
    assert torch.equal(out.hidden_states[1], hf[1])
    # transformers normalises only its last entry; ours is the raw block output, the normed
    # one is final_hidden, which is what the unembedding reads
    assert not torch.allclose(out.hidden_states[2], hf[2]) and torch.equal(out.final_hidden, hf[2])
    head = model.get_output_embeddings()
    assert torch.allclose(head(out.final_hidden), out.logits, atol=1e-6)


def test_token_loss_is_next_token_cross_entropy_with_masks_as_nan(tiny_gpt2):
    x = torch.randint(0, 40, (2, 6))
    with torch.no_grad():
        out = ml.lm_forward(tiny_gpt2, x, hidden_states=False)
        hf_loss = tiny_gpt2(input_ids=x, labels=x).loss  # mean over all next tokens
    assert out.token_loss.shape == (2, 5) and out.token_loss.dtype == torch.float32
    assert out.hidden_states is None
    assert torch.allclose(out.token_loss.mean(), hf_loss, atol=1e-6)
    expected = torch.nn.functional.cross_entropy(out.logits[0, 2], x[0, 3])
    assert torch.allclose(out.token_loss[0, 2], expected)  # entry t predicts token t+1
    attention = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]])  # right / left padding
    labels = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1]])
    masked = ml.lm_forward(tiny_gpt2, x, attention, hidden_states=False, labels_mask=labels)
    nan = torch.isnan(masked.token_loss)
    assert nan.tolist() == [
        [False, False, False, True, True],  # targets 4, 5 are padding
        [True, False, True, False, False],  # context 0 is padding; target 3 not a label
    ]
    assert torch.isfinite(masked.mean_loss()).all()


def test_word_alignment_maps_words_to_token_positions_and_pools_them(tmp_path):
    tok = ml.build_word_tokenizer(["the cat sat on a mat"])
    words = ["the", "cat", "sat"]
    assert ml.word_token_alignment(tok, words) == [[0], [1], [2]]
    assert ml.word_token_alignment(tok, words, add_bos=True) == [[1], [2], [3]]

    class Pieces:  # a subword tokenizer: "cat" -> "c", "at" (offsets are all that is used)
        def __call__(self, text, add_special_tokens, return_offsets_mapping):
            assert text == "the cat sat" and not add_special_tokens
            return {"offset_mapping": [(0, 3), (4, 5), (5, 7), (8, 11)]}

    positions = ml.word_token_alignment(Pieces(), words, add_bos=True)
    assert positions == [[1], [2, 3], [4]]
    hidden = torch.arange(2 * 5 * 2, dtype=torch.float32).view(2, 5, 2)  # (B, T, D)
    pooled = ml.pool_words(hidden, positions)  # (B, W, D)
    assert pooled.shape == (2, 3, 2)
    assert torch.equal(pooled[1, 1], hidden[1, 2:4].mean(0))
    with pytest.raises(ml.MLError, match="empty"):
        ml.word_token_alignment(tok, ["the", " "])
    with pytest.raises(ml.MLError, match="outside"):
        ml.pool_words(hidden, [[9]])


def test_capture_and_patch_hooks(tiny_gpt2):
    model = tiny_gpt2
    clean, corrupt = torch.randint(0, 40, (2, 6)), torch.randint(0, 40, (2, 6))
    name = "transformer.h.0"
    with torch.no_grad():
        with ml.capture_activations(model, [name, "transformer.h.0.mlp"]) as acts:
            clean_logits = model(input_ids=clean).logits
        source = acts[name]  # (B, T, D), the first element of the block's tuple output
        assert source.shape == (2, 6, 16)
        with ml.patch_output(model, name, source):
            patched = model(input_ids=corrupt).logits
        # every unit at every position from the clean run: the clean output downstream
        assert torch.allclose(patched, clean_logits, atol=1e-6)
        patch = ml.patch_output(model, name, source, positions=[-1], units=[0, 3])
        with patch, ml.capture_activations(model, [name]) as after:  # capture sees the patch
            model(input_ids=corrupt)
        with ml.capture_activations(model, [name]) as plain:
            base = model(input_ids=corrupt).logits
        diff = after[name] != plain[name]
        assert diff[:, -1][:, [0, 3]].all() and diff.sum() == 2 * 2  # only those 4 values
        assert torch.equal(after[name][:, -1, [0, 3]], source[:, -1, [0, 3]])
        # every hook is gone after the blocks
        assert torch.equal(model(input_ids=corrupt).logits, base)
        assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(ml.MLError, match="not in GPT2LMHeadModel"):
        ml.capture_activations(model, ["transformer.h.9"]).__enter__()
    bad = ml.patch_output(model, name, torch.zeros(3, 1))
    with pytest.raises(ml.MLError, match="does not fit"), torch.no_grad(), bad:
        model(input_ids=corrupt)
    assert not any(m._forward_hooks for m in model.modules())
