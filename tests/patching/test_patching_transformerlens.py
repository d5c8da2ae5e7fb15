"""Agreement with TransformerLens's own patching on the same weights (skipped if not installed)."""

from __future__ import annotations

import copy

import pytest
import torch

from assay.families.patching._models import load_model
from assay.ml.patching import (
    PROBE_BATCH,
    BatchedPatcher,
    InputPairs,
    parse_definitions,
    probe_structure,
)


def test_single_neuron_mlp_sweep_matches_generic_activation_patch(gpt2_dir, token_pairs):
    pytest.importorskip("transformer_lens")
    pd = pytest.importorskip("pandas")
    import transformer_lens.patching as tl_patching
    from transformer_lens.model_bridge import TransformerBridge

    model = load_model(gpt2_dir)
    # The bridge wraps the HF modules in place, so it gets its own copy of the same weights.
    bridge = TransformerBridge.boot_transformers(
        str(gpt2_dir), hf_model=copy.deepcopy(model.root), device="cpu"
    )
    bridge.eval()
    clean, corrupted = token_pairs
    units = [(layer, u) for layer in range(2) for u in range(0, 128, 11)]

    def set_neuron(act, index, clean_act):
        act[..., index[1]] = clean_act[..., index[1]]
        return act

    _, clean_cache = bridge.run_with_cache(clean)
    expected = tl_patching.generic_activation_patch(
        bridge,
        corrupted,
        clean_cache,
        lambda logits: logits[:, -1, 3] - logits[:, -1, 4],
        set_neuron,
        "post",
        index_df=pd.DataFrame(units, columns=["layer", "neuron"]),
        reduce="none",
    ).values  # (n_units, batch)

    structure = probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1))
    defs = parse_definitions([{f"transformer.h.{layer}.mlp.act": [u]} for layer, u in units])
    pairs = InputPairs([str(i) for i in range(len(clean))], clean, corrupted)
    ours = BatchedPatcher(model, structure).run(defs, pairs, logit_diff=(3, 4))
    torch.testing.assert_close(ours.metrics["logit_diff"], expected.float(), atol=1e-5, rtol=1e-5)
