"""Shared fixtures: a tiny CartPole DQN (trained once per session), a tiny GPT-2, input pairs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("transformers")


@pytest.fixture(scope="session")
def dqn_zip(tmp_path_factory):
    """A DQN trained for 1,500 CartPole steps (~1 s): enough for non-trivial weights."""
    import gymnasium as gym
    from stable_baselines3 import DQN

    env = gym.make("CartPole-v1")
    agent = DQN(
        "MlpPolicy",
        env,
        learning_starts=200,
        seed=0,
        verbose=0,
        policy_kwargs={"net_arch": [32, 32]},
    )
    agent.learn(1500)
    path = tmp_path_factory.mktemp("dqn") / "dqn.zip"
    agent.save(path)
    return path


@pytest.fixture(scope="session")
def cartpole_obs():
    """(24, 4) observations from random CartPole play."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    rows = []
    while len(rows) < 24:
        rows.append(obs)
        obs, _, done, trunc, _ = env.step(int(rng.integers(2)))
        if done or trunc:
            obs, _ = env.reset()
    return np.stack(rows).astype(np.float32)


@pytest.fixture(scope="session")
def cartpole_pairs_npz(tmp_path_factory, cartpole_obs):
    """Clean observations and corrupted ones with the pole mirrored (angle, angular velocity)."""
    corrupted = cartpole_obs.copy()
    corrupted[:, 2:] *= -1
    path = tmp_path_factory.mktemp("inputs") / "pairs.npz"
    np.savez(path, clean=cartpole_obs, corrupted=corrupted, ids=np.arange(len(cartpole_obs)))
    return path


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    """A 2-layer GPT-2 (d_model 32, vocab 50) with random weights, saved with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=32,
        n_head=4,
        n_positions=16,
        vocab_size=50,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    path = tmp_path_factory.mktemp("gpt2") / "model"
    GPT2LMHeadModel(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def token_pairs():
    """(6, 7) clean token ids; corrupted differ at position 2 only."""
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 50, (6, 7), generator=g)
    corrupted = clean.clone()
    corrupted[:, 2] = (clean[:, 2] + 7) % 50
    return clean, corrupted
