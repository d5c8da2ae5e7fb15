"""Architecture specs: a closed table of types; a factory only when the spec is trusted."""

from __future__ import annotations

import pytest
import torch

import assay.ml as ml


def test_registered_types_build_and_unknown_ones_fail():
    module, kind = ml.build_architecture({"type": "mlp", "sizes": [4, 8, 2], "activation": "tanh"})
    assert kind == "vector" and [type(m).__name__ for m in module] == ["Linear", "Tanh", "Linear"]
    hf, kind = ml.build_architecture(
        {
            "type": "hf",
            "config": {
                "model_type": "gpt2",
                "n_layer": 1,
                "n_embd": 16,
                "n_head": 2,
                "vocab_size": 30,
                "n_positions": 8,
            },
        }
    )
    assert kind == "tokens" and type(hf).__name__ == "GPT2LMHeadModel"
    assert {"mlp", "hf"} <= set(ml.architectures())
    with pytest.raises(ml.MLError, match="unknown arch type 'resnet'"):
        ml.build_architecture({"type": "resnet"})
    with pytest.raises(ml.MLError, match="does not take"):
        ml.build_architecture({"type": "mlp", "sizes": [2, 2], "depth": 3})


def test_a_family_registers_a_builder_once():
    @ml.register_architecture("test.linear")
    def linear(width: int = 3) -> torch.nn.Module:
        return torch.nn.Linear(width, 1)

    module, kind = ml.build_architecture({"type": "test.linear", "width": 5})
    assert kind == "vector" and module.in_features == 5
    ml.register_architecture("test.linear")(linear)  # the same builder again: fine
    with pytest.raises(ml.MLError, match="registered already"):
        ml.register_architecture("test.linear")(lambda: torch.nn.Identity())
    with pytest.raises(ml.MLError, match="reserved"):
        ml.register_architecture("factory")


def test_a_factory_runs_only_when_the_spec_is_trusted():
    spec = {"type": "factory", "factory": "subprocess:run", "kwargs": {"args": ["true"]}}
    with pytest.raises(ml.MLError, match="names code to run.*--trust-checkpoint"):
        ml.build_architecture(spec)
    built, kind = ml.build_architecture(
        {
            "type": "factory",
            "factory": "torch.nn:Linear",
            "kwargs": {"in_features": 2, "out_features": 1},
        },
        trusted=True,
    )
    assert isinstance(built, torch.nn.Linear) and kind == "vector"
