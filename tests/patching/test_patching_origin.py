"""Origin compatibility (the published tool's files and agent dirs) and no silent wrong answers."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import assay
from assay import AssayError
from assay.families.patching._inputs import load_pairs
from assay.families.patching._models import load_model
from assay.families.patching.stages import PatchingRunConfig
from assay.ml.patching import (
    PROBE_BATCH,
    BatchedPatcher,
    InputPairs,
    load_definitions,
    parse_definitions,
    probe_structure,
)

try:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError:  # conftest skips the directory without SB3
    BaseFeaturesExtractor = nn.Module


class MLPExtractor(BaseFeaturesExtractor):
    """Like the published agents' feature extractor: a Linear + ReLU named ``mlp``."""

    def __init__(self, observation_space, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.mlp = nn.Sequential(nn.Linear(observation_space.shape[0], features_dim), nn.ReLU())

    def forward(self, obs):
        return self.mlp(obs)


@pytest.fixture(scope="module")
def origin_agent(tmp_path_factory):
    """A published-shape agent directory: agent.zip of a DQN with an ``mlp`` extractor."""
    import gymnasium as gym
    from stable_baselines3 import DQN

    agent = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        seed=0,
        policy_kwargs={"features_extractor_class": MLPExtractor, "net_arch": [8, 8]},
    )
    folder = tmp_path_factory.mktemp("agent")
    agent.save(folder / "agent.zip")
    return folder


def test_published_definition_files_load_unchanged(origin_agent, cartpole_pairs_npz, tmp_path):
    # The published generator's single_neuron file: names relative to the Q-network, the
    # output layer named both q_net.4 and output_logits (its include_output_logits default).
    structure_names = {"features_extractor.mlp.0": 16, "q_net.0": 8, "q_net.2": 8, "q_net.4": 2}
    published = [{name: [u]} for name, n in structure_names.items() for u in range(n)]
    published += [{"output_logits": [u]} for u in range(2)] + [{"q_net.2": "all"}]
    (tmp_path / "defs.json").write_text(json.dumps(published, indent=2))
    # Its custom extractor class exists only pickled inside the zip: the trusted route.
    with pytest.raises(AssayError, match="features extractor.*--trust-checkpoint"):
        load_model(origin_agent)
    model = load_model(origin_agent, trust_checkpoint=True)  # the directory, as --agent_path
    assert "agent.zip" in model.description
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    assert structure.resolve_name("q_net.0") == "q_net.q_net.0"
    assert structure.resolve_name("features_extractor.mlp.0") == "q_net.features_extractor.mlp.0"
    assert structure.resolve_name("output_logits") == "q_net.q_net.4"
    defs = load_definitions(tmp_path / "defs.json")
    assert [d.to_json() for d in defs] == published  # the file round-trips as written
    pairs = load_pairs([cartpole_pairs_npz], model)
    out = BatchedPatcher(model, structure).run(defs, pairs)
    assert [d.label() for d in out.definitions][:2] == [
        "features_extractor.mlp.0[0]",
        "features_extractor.mlp.0[1]",
    ]
    l2 = out.metrics["l2"]
    # output_logits[u] is the output layer's unit u: identical numbers
    torch.testing.assert_close(l2[-3:-1], l2[-5:-3])
    expected = BatchedPatcher(model, structure).run(
        parse_definitions([{"q_net.q_net.0": [3]}, {"q_net.features_extractor.mlp.0": [5]}]),
        pairs,
    )
    torch.testing.assert_close(l2[[16 + 3, 5]], expected.metrics["l2"])


def test_agent_directories_need_exactly_one_model_file(origin_agent, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AssayError, match=r"holds no model files .*exactly one"):
        load_model(empty)
    two = tmp_path / "two"
    two.mkdir()
    for name in ("agent.zip", "backup.zip"):
        (two / name).write_bytes((origin_agent / "agent.zip").read_bytes())
    with pytest.raises(AssayError, match=r"holds 2 model files .*agent.zip, backup.zip"):
        load_model(two)
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as z:
        z.writestr("readme.txt", "not an agent")
    with pytest.raises(AssayError, match="a zip but not a stable-baselines3 agent"):
        load_model(tmp_path / "notes.zip")


def test_define_includes_the_output_layer_by_default(origin_agent, tmp_path, capsys):
    from assay._cli import main

    args = ["patching", "define", "--type", "layer", "--model", str(origin_agent)]
    args.append("--trust-checkpoint")  # a custom extractor: SB3's own loader
    assert main([*args, "--kinds", "linear"]) == 0
    names = [next(iter(d)) for d in json.loads(capsys.readouterr().out)]
    linears = ["q_net.features_extractor.mlp.0", "q_net.q_net.0", "q_net.q_net.2"]
    assert names == [*linears, "q_net.q_net.4"]
    assert main([*args, "--exclude-output"]) == 0
    assert "q_net.q_net.4" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def gpt2(gpt2_dir, token_pairs):
    model = load_model(gpt2_dir)
    clean, corrupted = token_pairs
    pairs = InputPairs([f"s{i}" for i in range(len(clean))], clean, corrupted)
    return model, probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1)), pairs


def test_out_of_range_readout_and_logit_diff_fail(gpt2):
    model, structure, pairs = gpt2
    defs = parse_definitions([{"transformer.h.0.mlp": "all"}])
    model.readout_position = 40  # length 7: once wrapped to position 5
    try:
        with pytest.raises(AssayError, match=r"readout_position 40 is out of range .* -7\.\.6"):
            BatchedPatcher(model, structure).run(defs, pairs)
    finally:
        model.readout_position = -1
    with pytest.raises(AssayError, match=r"logit_diff index\(es\) \[50\] out of range.*0\.\.49"):
        BatchedPatcher(model, structure).run(defs, pairs, logit_diff=(3, 50))
    with pytest.raises(AssayError, match="two different output indices"):
        BatchedPatcher(model, structure).run(defs, pairs, logit_diff=(3, 3))
    with pytest.raises(AssayError, match="no definitions to run"):
        BatchedPatcher(model, structure).run([], pairs)


def test_nan_inputs_are_refused_by_id(dqn_zip, tmp_path):
    model = load_model(dqn_zip)
    clean = np.zeros((3, 4), np.float32)
    clean[1, 2] = np.nan
    np.savez(tmp_path / "pairs.npz", clean=clean, corrupted=-clean, ids=np.array([7, 8, 9]))
    with pytest.raises(AssayError, match=r"clean input\(s\) with id '8' contain NaN"):
        load_pairs([tmp_path / "pairs.npz"], model)
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    pairs = InputPairs(["a", "b"], torch.zeros(2, 4), torch.tensor([[0.0] * 4, [np.inf] * 4]))
    with pytest.raises(AssayError, match=r"corrupted input\(s\) with id 'b'"):
        BatchedPatcher(model, structure).run(parse_definitions([{"q_net.0": [1]}]), pairs)


def test_stage_refuses_end_past_the_end_and_empty_definitions(
    tmp_path, dqn_zip, cartpole_pairs_npz
):
    (tmp_path / "defs.json").write_text(json.dumps([{"q_net.0": [u]} for u in range(5)]))
    base = {"model": str(dqn_zip), "inputs": [str(cartpole_pairs_npz)], "num_threads": 1}
    config = PatchingRunConfig(**base, definitions=str(tmp_path / "defs.json"), end_index=9)
    # refused at plan time (the stage's check): nothing runs, nothing is recorded
    with pytest.raises(assay.ConfigError, match="end_index 9 is past the end") as exc:
        assay.run_config(config, root=tmp_path / "runs")
    assert "holds 5 definitions (valid end_index: 1..5" in str(exc.value)
    (tmp_path / "empty.json").write_text("[]")
    config = PatchingRunConfig(**base, definitions=str(tmp_path / "empty.json"))
    with pytest.raises(assay.ConfigError, match="holds no definitions") as exc:
        assay.run_config(config, root=tmp_path / "runs")
    assert "valid start" not in str(exc.value)
    assert not (tmp_path / "runs").exists()
