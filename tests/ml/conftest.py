"""Tiny models shared by the ML-layer tests (d_model 16, 2 layers: milliseconds a forward)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def tiny_gpt2():
    from assay.ml import build_model

    return build_model(
        "gpt2", vocab_size=40, d_model=16, n_layers=2, n_heads=2, max_positions=32, seed=0
    ).eval()


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory, tiny_gpt2):
    path = tmp_path_factory.mktemp("models") / "gpt2"
    tiny_gpt2.save_pretrained(path)
    return path
