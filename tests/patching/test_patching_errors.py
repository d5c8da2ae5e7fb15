"""Bad definitions, unknown modules, mismatched shapes and unpaired ids fail with clear messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import assay
from assay import AssayError
from assay.families.patching._inputs import load_pairs
from assay.families.patching._models import load_model
from assay.ml.patching import (
    PROBE_BATCH,
    check_kinds,
    load_definitions,
    parse_definitions,
    probe_structure,
    save_definitions,
    select_modules,
    validate,
)


@pytest.fixture(scope="module")
def dqn(dqn_zip):
    model = load_model(dqn_zip)
    return model, probe_structure(model, model.example_input(PROBE_BATCH))


def test_public_definition_shape_round_trips(tmp_path):
    public = [
        {"q_net.q_net.0": [3]},
        {"q_net.q_net.2": "all"},
        {"q_net.q_net.0": [1, 2], "q_net.q_net.2": [5]},
    ]
    path = tmp_path / "defs.json"
    path.write_text(json.dumps(public))
    defs = load_definitions(path)
    assert [d.to_json() for d in defs] == public
    assert defs[0].single_unit() == ("q_net.q_net.0", 3)
    positioned = parse_definitions([{"h.0.mlp.act": {"units": [4], "positions": [-1]}}])
    save_definitions(defs + positioned, path)
    assert [d.to_json() for d in load_definitions(path)] == public + [
        {"h.0.mlp.act": {"units": [4], "positions": [-1]}}
    ]
    assert load_definitions('[{"a": "all"}]')[0].patches[0].units is None  # JSON string form


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (
            {"not": "a list"},
            "must be a non-empty list",
        ),  # a single object is read as one definition
        ([{}], "definition 0 must be a non-empty object"),
        ([{"q_net.q_net.0": "some"}], "units must be a non-empty list"),
        ([{"q_net.q_net.0": [1.5]}], "must be integers"),
        ([{"q_net.q_net.0": [1, 1]}], "duplicates"),
        ([{"q_net.q_net.0": {"positions": [1]}}], 'needs "units"'),
        ("nope", "must be a JSON list"),
    ],
)
def test_malformed_definitions_name_the_problem(bad, match):
    with pytest.raises(AssayError, match=match):
        parse_definitions(bad)


def test_unknown_module_lists_valid_names_and_sizes(dqn):
    _, structure = dqn
    with pytest.raises(AssayError) as info:
        validate(parse_definitions([{"q_net.0": [3]}]), structure)
    message = str(info.value)
    assert "'q_net.0' does not exist" in message and "q_net.q_net.0 [32]" in message
    with pytest.raises(
        AssayError, match=r"unit\(s\) \[32\] of 'q_net.q_net.2' out of range: it has 32"
    ):
        validate(parse_definitions([{"q_net.q_net.2": [0, 32]}]), structure)
    with pytest.raises(AssayError, match="no sequence-position axis"):
        validate(
            parse_definitions([{"q_net.q_net.2": {"units": [0], "positions": [0]}}]), structure
        )
    with pytest.raises(AssayError, match="valid kinds"):
        check_kinds("linear,dense")
    with pytest.raises(AssayError, match="matches no module"):
        select_modules(structure, layers=["q_net.q_net.9*"])


def test_mismatched_input_shapes_fail(dqn, tmp_path):
    model, _ = dqn
    np.save(tmp_path / "clean.npy", np.zeros((4, 3), np.float32))
    np.save(tmp_path / "corrupted.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(AssayError, match=r"shape \(3,\) per sample but .* expects \(4,\)"):
        load_pairs([tmp_path / "clean.npy", tmp_path / "corrupted.npy"], model)
    (tmp_path / "ragged.json").write_text(
        json.dumps([{"id": "a", "obs": [0, 0, 0, 0]}, {"id": "b", "obs": [0, 0]}])
    )
    with pytest.raises(AssayError, match="different shapes"):
        load_pairs([tmp_path / "ragged.json", tmp_path / "ragged.json"], model)


def test_unpaired_ids_fail(dqn, tmp_path):
    model, _ = dqn
    rows = lambda ids: [{"id": i, "obs": [0.0, 0.0, 0.1, 0.0]} for i in ids]  # noqa: E731
    (tmp_path / "clean.json").write_text(json.dumps(rows(["a", "b", "c"])))
    (tmp_path / "corrupted.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows(["a", "b", "d"]))
    )
    with pytest.raises(
        AssayError, match=r"1 clean id\(s\) have no corrupted partner \(e.g. \['c'\]\).*\['d'\]"
    ):
        load_pairs([tmp_path / "clean.json", tmp_path / "corrupted.jsonl"], model)
    (tmp_path / "dup.json").write_text(json.dumps(rows(["a", "a"])))
    with pytest.raises(AssayError, match="more than once"):
        load_pairs([tmp_path / "dup.json", tmp_path / "dup.json"], model)
    pairs = load_pairs([tmp_path / "clean.json", tmp_path / "clean.json"], model)
    assert pairs.ids == ["a", "b", "c"] and pairs.clean.shape == (3, 4)


def test_token_inputs_need_equal_lengths_per_pair_and_a_tokenizer(gpt2_dir, tmp_path):
    model = load_model(gpt2_dir)
    (tmp_path / "pairs.jsonl").write_text(
        json.dumps({"id": 1, "clean": [1, 2, 3], "corrupted": [1, 2, 4]})
        + "\n"
        + json.dumps({"id": 2, "clean": [1, 2], "corrupted": [1, 3, 5]})
        + "\n"
    )
    with pytest.raises(AssayError, match=r"different lengths \(e.g. id '2'\)"):
        load_pairs([tmp_path / "pairs.jsonl"], model)
    (tmp_path / "texts.jsonl").write_text(json.dumps({"id": 1, "clean": "hi", "corrupted": "ho"}))
    with pytest.raises(AssayError, match="has no tokenizer"):
        load_pairs([tmp_path / "texts.jsonl"], model)
    (tmp_path / "big.jsonl").write_text(
        json.dumps({"id": 1, "clean": [1, 99], "corrupted": [1, 2]})
    )
    with pytest.raises(AssayError, match="token id 99 >= vocab size 50"):
        load_pairs([tmp_path / "big.jsonl"], model)


def test_a_checkpoint_naming_a_factory_runs_no_code_without_trust(tmp_path, monkeypatch):
    """A weights-only file whose "arch" names subprocess:run must not get it called."""
    import subprocess as sp

    calls = []
    monkeypatch.setattr(sp, "run", lambda *a, **k: calls.append(a))
    crafted = {
        "arch": {
            "type": "factory",
            "factory": "subprocess:run",
            "kwargs": {"args": ["touch", str(tmp_path / "pwned")]},
        },
        "state_dict": {},
    }
    torch.save(crafted, tmp_path / "crafted.pt")  # loads fine with weights_only=True
    with pytest.raises(AssayError, match="names code to run.*--trust-checkpoint"):
        load_model(tmp_path / "crafted.pt")
    assert calls == [] and not (tmp_path / "pwned").exists()
    with pytest.raises(AssayError):  # trusted: the factory is called (and returns no module)
        load_model(tmp_path / "crafted.pt", trust_checkpoint=True)
    assert len(calls) == 1
    # the user's own --arch may name a factory: that is their code, not the file's
    net = torch.nn.Linear(4, 2)
    torch.save(net.state_dict(), tmp_path / "bare.pt")
    mine = {
        "type": "factory",
        "factory": "torch.nn:Linear",
        "kwargs": {"in_features": 4, "out_features": 2},
    }
    x = torch.randn(3, 4)
    torch.testing.assert_close(load_model(tmp_path / "bare.pt", arch=mine).forward(x), net(x))
    # and through the stage, with the real subprocess.run: the file's factory is refused
    monkeypatch.undo()
    from assay.families.patching.stages import PatchingRunConfig

    (tmp_path / "defs.json").write_text("[]")
    (tmp_path / "one.json").write_text('[{"0": [0]}]')  # one definition: passes the plan check
    config = PatchingRunConfig(
        model=str(tmp_path / "crafted.pt"),
        inputs=[str(tmp_path / "defs.json")],
        definitions=str(tmp_path / "one.json"),
    )
    record = assay.run_config(config, root=tmp_path / "runs")
    assert record.status is assay.RunStatus.FAILED and "names code to run" in record.error
    assert not (tmp_path / "pwned").exists()


def test_torch_checkpoints_need_an_arch_and_trust_for_pickles(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    arch = {"type": "mlp", "sizes": [4, 8, 2], "activation": "relu"}
    torch.save({"arch": arch, "state_dict": net.state_dict()}, tmp_path / "with_arch.pt")
    model = load_model(tmp_path / "with_arch.pt")
    x = torch.randn(3, 4)
    torch.testing.assert_close(model.forward(x), net(x))
    assert model.input_shape == (4,)

    torch.save(net.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(AssayError, match="without an architecture spec"):
        load_model(tmp_path / "bare.pt")
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    assert load_model(tmp_path / "bare.pt", arch=str(tmp_path / "arch.json")).input_shape == (4,)
    with pytest.raises(AssayError, match="does not fit the arch spec"):
        load_model(tmp_path / "bare.pt", arch={"type": "mlp", "sizes": [4, 9, 2]})

    torch.save(net, tmp_path / "pickled.pt")
    with pytest.raises(AssayError, match="--trust-checkpoint"):
        load_model(tmp_path / "pickled.pt")
    trusted = load_model(tmp_path / "pickled.pt", trust_checkpoint=True)
    torch.testing.assert_close(trusted.forward(x), net(x))
    with pytest.raises(AssayError, match="unknown model kind"):
        load_model(tmp_path / "pickled.pt", kind="onnx")


def test_pt_and_npz_inputs_pair_by_their_ids(dqn, tmp_path):
    model, _ = dqn
    clean = torch.randn(3, 4)
    torch.save(
        {"clean": clean, "corrupted": -clean, "ids": ["x", "y", "z"]}, tmp_path / "pairs.pt"
    )
    pairs = load_pairs([tmp_path / "pairs.pt"], model)
    assert pairs.ids == ["x", "y", "z"] and torch.equal(pairs.corrupted, -clean)
    np.savez(tmp_path / "clean.npz", inputs=clean.numpy(), ids=np.array([3, 1, 2]))
    np.savez(
        tmp_path / "corrupted.npz", inputs=clean.numpy()[::-1].copy(), ids=np.array([2, 1, 3])
    )
    pairs = load_pairs([tmp_path / "clean.npz", tmp_path / "corrupted.npz"], model)
    assert pairs.ids == ["3", "1", "2"]
    torch.testing.assert_close(pairs.corrupted, pairs.clean)  # matched by id, not by row
    (tmp_path / "pairs.csv").write_text("a,b\n")
    with pytest.raises(AssayError, match="unknown format"):
        load_pairs([tmp_path / "pairs.csv"], model)
