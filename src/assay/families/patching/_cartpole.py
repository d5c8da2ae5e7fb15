"""The CartPole example: a small DQN trained with stable-baselines3, and mirrored-pole pairs.

Clean inputs are observations from the trained agent's own episodes; the corrupted partner of
each is the same cart with the pole mirrored (pole angle and angular velocity negated), which
flips the action a good policy takes. Patching then asks which units carry the pole's side.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

# rl-baselines3-zoo's CartPole DQN hyper-parameters, with a smaller 64x64 network; 20k steps
# take ~13 s on one CPU thread and reach returns of ~100-200 (DQN on CartPole is noisy).
DQN_KWARGS: dict[str, Any] = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
)
# CartPole observation: cart position, cart velocity, pole angle, pole angular velocity.
POLE = slice(2, 4)


def train_dqn(
    steps: int,
    hidden: tuple[int, ...] = (64, 64),
    seed: int = 0,
    device: str = "cpu",
    counter: Any = None,
) -> tuple[Any, float]:
    """A DQN agent after ``steps`` environment steps, and the seconds it took.

    ``counter``: a run's progress counter, set to the environment steps taken."""
    import gymnasium as gym
    from stable_baselines3 import DQN

    kwargs = dict(DQN_KWARGS)
    kwargs["learning_starts"] = min(kwargs["learning_starts"], max(steps // 4, 1))
    t0 = time.perf_counter()
    agent = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        policy_kwargs={"net_arch": list(hidden)},
        seed=seed,
        verbose=0,
        device=device,
        **kwargs,
    )
    agent.learn(steps, callback=None if counter is None else _counting(counter))
    return agent, time.perf_counter() - t0


def steps_taken(steps: int) -> int:
    """Environment steps ``train_dqn(steps)`` takes: DQN collects whole rollouts of
    ``train_freq`` steps until it has ``steps``, so 600 asked are 768 taken."""
    freq = DQN_KWARGS["train_freq"]
    return -(-steps // freq) * freq


def _counting(counter: Any) -> Any:
    """An SB3 callback that sets ``counter`` to the environment steps taken so far."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Count(BaseCallback):
        def _on_step(self) -> bool:
            counter.set(self.num_timesteps)
            return True  # never stops training

    return Count()


def rollout(agent: Any, n_obs: int, seed: int = 0, every: int = 2) -> tuple[np.ndarray, float]:
    """(n_obs, 4) observations from greedy episodes, one every ``every`` steps; mean return."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=seed)
    rows: list[np.ndarray] = []
    returns: list[float] = []
    ret, t = 0.0, 0
    while len(rows) < n_obs:
        if t % every == 0:
            rows.append(obs)
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, done, trunc, _ = env.step(int(action))
        ret, t = ret + float(reward), t + 1
        if done or trunc:
            returns.append(ret)
            obs, _ = env.reset()
            ret = 0.0
    mean_return = float(np.mean(returns)) if returns else ret
    return np.stack(rows).astype(np.float32), mean_return


def mirrored_pairs(clean: np.ndarray) -> np.ndarray:
    """The corrupted partner of each observation: the pole on the other side."""
    corrupted = clean.copy()
    corrupted[:, POLE] *= -1
    return corrupted
