"""The batched runner equals the unbatched reference; patching "all" restores the source."""

from __future__ import annotations

import pytest
import torch
from patching_reference import reference_patch

from assay.families.patching._inputs import load_pairs
from assay.families.patching._models import load_model
from assay.ml.patching import (
    PROBE_BATCH,
    BatchedPatcher,
    InputPairs,
    generate,
    parse_definitions,
    probe_structure,
    select_modules,
)


def _close(batched: dict, reference: dict, atol: float = 1e-6) -> None:
    # The equality tests run the models in float64: then every metric, even the cosine of a
    # tiny output change, agrees to ~1e-12 and any indexing slip shows up as a real mismatch.
    assert set(batched) == set(reference)
    for name in reference:
        torch.testing.assert_close(
            batched[name], reference[name], atol=atol, rtol=1e-5, equal_nan=True, msg=name
        )


@pytest.fixture(scope="module")
def dqn(dqn_zip, cartpole_pairs_npz):
    model = load_model(dqn_zip)
    model.root.double()
    # SB3's preprocessing casts observations to float32; call the same modules without it.
    q_net = model.root.q_net
    model.fn = lambda x, readout: q_net.q_net(q_net.features_extractor(x))
    pairs = load_pairs([cartpole_pairs_npz], model)
    pairs = InputPairs(pairs.ids, pairs.clean.double(), pairs.corrupted.double())
    return model, probe_structure(model, pairs.corrupted[:1].repeat(PROBE_BATCH, 1)), pairs


@pytest.fixture(scope="module")
def gpt2(gpt2_dir, token_pairs):
    model = load_model(gpt2_dir)
    model.root.double()
    clean, corrupted = token_pairs
    pairs = InputPairs([f"s{i}" for i in range(len(clean))], clean, corrupted)
    return model, probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1)), pairs


def test_structure_comes_from_the_live_model(dqn):
    model, structure, _ = dqn
    chosen = select_modules(structure, include_output=True)
    assert [(m.name, m.n_units) for m in chosen] == [
        ("q_net.q_net.0", 32),
        ("q_net.q_net.1", 32),
        ("q_net.q_net.2", 32),
        ("q_net.q_net.3", 32),
        ("q_net.q_net.4", 2),
    ]
    # q_net_target never runs in a forward, so it is not offered.
    assert not any(n.startswith("q_net_target") for n in structure.modules)
    assert structure.output_module() == "q_net.q_net.4"
    assert [m.name for m in select_modules(structure)][-1] == "q_net.q_net.3"


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_dqn_batched_equals_reference(dqn, direction):
    model, structure, pairs = dqn
    defs = generate("single_neuron", select_modules(structure, include_output=True)[:3])[::5]
    defs += parse_definitions(
        [
            {"q_net.q_net.2": "all"},
            {"q_net.q_net.0": [1, 2, 3], "q_net.q_net.2": [5]},
            {"q_net.q_net.3": [0, 31], "q_net.q_net.1": [4]},
            {"q_net.q_net.4": [1]},
        ]
    )
    # Odd K and a small row budget exercise partial chunks and input slicing.
    runner = BatchedPatcher(model, structure, defs_per_forward=5, max_batch_rows=40)
    out = runner.run(defs, pairs, direction)
    _close(out.metrics, reference_patch(model, defs, pairs, direction))


def test_gpt2_batched_equals_reference(gpt2):
    model, structure, pairs = gpt2
    defs = parse_definitions(
        [
            {"transformer.h.0.mlp.act": [3]},
            {"transformer.h.0.mlp.act": {"units": [5, 9], "positions": [2]}},
            {"transformer.h.1.mlp.act": {"units": "all", "positions": [-1, 2]}},
            {"transformer.h.0.attn": {"units": [0, 1], "positions": [2, 3]}},  # tuple output
            {"transformer.h.0": {"units": "all", "positions": [2]}},  # residual stream
            {"transformer.h.1.attn": "all", "transformer.h.0.mlp.c_proj": [7]},
            {"transformer.ln_f": [4]},
        ]
    )
    runner = BatchedPatcher(model, structure, defs_per_forward=3)
    out = runner.run(defs, pairs, "denoising", logit_diff=(3, 4))
    _close(out.metrics, reference_patch(model, defs, pairs, "denoising", logit_diff=(3, 4)))


def test_skipping_work_changes_nothing_but_speed(gpt2):
    model, structure, pairs = gpt2
    defs = generate(
        "neuron_groups",
        select_modules(structure, layers=["transformer.h.*.mlp.act"]),
        group_size=32,
    )
    fast = BatchedPatcher(model, structure).run(defs, pairs)
    for flags in ({"reuse_prefix": False}, {"slice_positions": False}):
        slow = BatchedPatcher(model, structure, **flags).run(defs, pairs)
        _close(fast.metrics, slow.metrics)


def test_readout_mid_sequence_slices_later_positions_away(gpt2_dir, token_pairs):
    model = load_model(gpt2_dir)
    model.root.double()
    model.readout_position = 3
    clean, corrupted = token_pairs
    pairs = InputPairs([str(i) for i in range(len(clean))], clean, corrupted)
    structure = probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1))
    # causal attention: nothing after position 3 can reach a readout at 3
    assert structure.modules["transformer.h.0.mlp"].readout_positions == (0, 1, 2, 3)
    assert structure.modules["transformer.h.1.mlp"].readout_positions == (3,)
    assert structure.modules["transformer.h.0.attn"].readout_positions is None  # mixes positions
    defs = parse_definitions(
        [
            {"transformer.h.0.mlp.act": [3]},
            {"transformer.h.0.mlp.act": {"units": [5], "positions": [2, 5]}},
            {"transformer.h.1.attn": "all"},
            {"transformer.h.0": {"units": "all", "positions": [2]}},
        ]
    )
    out = BatchedPatcher(model, structure, defs_per_forward=2).run(defs, pairs)
    _close(out.metrics, reference_patch(model, defs, pairs))


def test_patching_all_units_reproduces_the_source_downstream(dqn, gpt2):
    model, structure, pairs = dqn
    out = BatchedPatcher(model, structure).run(
        parse_definitions([{"q_net.q_net.2": "all"}]), pairs
    )
    gap = (out.source_out - out.base_out).norm(dim=-1).float()
    torch.testing.assert_close(out.metrics["l2"][0], gap)
    assert torch.allclose(
        out.metrics["cosine_to_source"][0], torch.ones(len(pairs), dtype=torch.float64), atol=1e-5
    )
    defined = torch.isfinite(out.metrics["normalised"][0])
    assert defined.any()
    torch.testing.assert_close(
        out.metrics["normalised"][0][defined], torch.ones(int(defined.sum()), dtype=torch.float64)
    )

    # A transformer's residual stream after block 0, at every position, carries everything.
    model, structure, pairs = gpt2
    defs = parse_definitions(
        [
            {"transformer.h.0": "all"},
            {"transformer.h.0": {"units": "all", "positions": [2, 3, 4, 5, 6]}},
        ]
    )
    out = BatchedPatcher(model, structure).run(defs, pairs, "noising")
    gap = (out.source_out - out.base_out).norm(dim=-1).float()
    torch.testing.assert_close(out.metrics["l2"][0], gap)
    # causal attention: positions 0-1 never see the corrupted token at 2, so 2.. suffice
    torch.testing.assert_close(out.metrics["l2"][1], gap)


def test_readout_position_and_both_directions_are_consistent(gpt2):
    model, structure, pairs = gpt2
    defs = parse_definitions([{"transformer.h.0": "all"}])
    den = BatchedPatcher(model, structure).run(defs, pairs, "denoising")
    noi = BatchedPatcher(model, structure).run(defs, pairs, "noising")
    # denoising with everything patched gives the clean run, noising the corrupted one
    torch.testing.assert_close(den.source_out, noi.base_out)
    torch.testing.assert_close(den.metrics["l2"], noi.metrics["l2"], atol=1e-5, rtol=1e-5)


def test_readout_position_picks_that_positions_logits(gpt2_dir, token_pairs):
    model = load_model(gpt2_dir)
    clean, _ = token_pairs
    full = model.root(input_ids=clean).logits  # (B, T, V)
    for position in (-1, 3, 0):
        model.readout_position = position
        torch.testing.assert_close(model.forward(clean), full[:, position])


def test_ppo_actor_head_is_patched_by_name(tmp_path, cartpole_pairs_npz):
    import gymnasium as gym
    from stable_baselines3 import PPO

    agent = PPO(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        n_steps=64,
        batch_size=32,
        seed=0,
        policy_kwargs={"net_arch": [16]},
    )
    agent.learn(64)
    agent.save(tmp_path / "ppo.zip")
    model = load_model(tmp_path / "ppo.zip")
    pairs = load_pairs([cartpole_pairs_npz], model)
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    assert structure.output_module() == "action_net"
    assert [m.name for m in select_modules(structure)] == [
        "mlp_extractor.policy_net.0",
        "mlp_extractor.policy_net.1",
    ]  # the critic never runs in the actor's forward, so it is not offered
    defs = generate("single_neuron", select_modules(structure, include_output=True))
    out = BatchedPatcher(model, structure, defs_per_forward=7).run(defs, pairs)
    ref = reference_patch(model, defs, pairs)
    # a float32 model: compare the metrics that stay well-conditioned for tiny output changes
    for name in ("l2", "delta_chosen", "action_changed", "margin_change", "restored"):
        torch.testing.assert_close(out.metrics[name], ref[name], atol=1e-5, rtol=1e-4, msg=name)


def test_out_of_memory_halves_the_inputs_per_forward_and_changes_no_number(gpt2, caplog):
    """A device that fits 3 inputs per patched forward: same metrics, the size recorded."""
    model, structure, pairs = gpt2
    assert len(pairs) == 6
    defs = parse_definitions([{"transformer.h.0.mlp.act": [3]}, {"transformer.h.1.attn": "all"}])
    want = BatchedPatcher(model, structure).run(defs, pairs, "denoising")
    runner = BatchedPatcher(model, structure)
    forward = runner._patched_forward

    def small_device(target, lengths, a, b, *args):
        if b - a > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return forward(target, lengths, a, b, *args)

    runner._patched_forward = small_device
    got = runner.run(defs, pairs, "denoising")
    _close(got.metrics, want.metrics)
    assert want.batch == {"inputs_per_forward_used": 6}
    assert got.batch == {"inputs_per_forward_used": 3, "inputs_per_forward_halvings": 1}
    assert got.n_forwards == 2 * want.n_forwards  # 6 inputs, 3 per forward
    logged = [r.getMessage() for r in caplog.records if r.name == "assay.ml"]
    assert len(logged) == 1 and "at 6 inputs per forward; 3 fit" in logged[0]
    assert "max_batch_rows sets the largest tried" in logged[0]
