"""Options for models larger than one device: ``device_map: auto`` loading and gradient
checkpointing; both change where memory goes, never a number."""

from __future__ import annotations

import pytest
import torch

from assay.ml import MLError, input_device, load_hf_model


def test_device_map_auto_loads_the_same_model(gpt2_dir):
    plain = load_hf_model(gpt2_dir)
    spread = load_hf_model(gpt2_dir, device_map="auto")  # no GPU here: every layer on the CPU
    assert input_device(spread) == "cpu" and not spread.training
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(spread(ids).logits, plain(ids).logits)


def test_unknown_device_map_names_the_valid_values(gpt2_dir):
    with pytest.raises(MLError, match=r"unknown device_map 'balanced'; valid: auto or null"):
        load_hf_model(gpt2_dir, device_map="balanced")
