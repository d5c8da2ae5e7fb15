"""Clean/corrupted observation pairs from an environment, for patching RL agents.

    assay patching inputs --env CartPole-v1 --corrupt negate:2,3 --n 256 -o pairs.npz
    assay patching inputs --env CartPole-v1 --model agent.zip --corrupt noise:0.05 -o pairs.npz

Clean observations come from episodes of the environment (seeded), played by the agent's
greedy action when ``--model`` is given (the argmax of its Q-values or action logits) or by
random actions otherwise; one is kept every ``--every`` steps so consecutive ones differ. The
corrupted partner of each is the same observation changed by the ``--corrupt`` specs, applied
in order:

    negate:DIMS             multiply those observation dimensions by -1 (CartPole's pole: 2,3)
    noise:STD[:DIMS]        add Gaussian noise of that std (to DIMS, default all), seeded
    set:DIM=VALUE[,...]     overwrite dimensions with values
    shuffle                 another clean observation (a random derangement: never itself)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from assay import atomic_path

from ._errors import PatchingError

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]
KINDS = ("negate:DIMS", "noise:STD[:DIMS]", "set:DIM=VALUE[,DIM=VALUE]", "shuffle")


def _dims(text: str, spec: str) -> list[int]:
    try:
        dims = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        dims = []
    if not dims:
        raise PatchingError(
            f"--corrupt {spec!r}: expected comma-separated dimensions, got {text!r}"
        )
    return dims


def _one(spec: str) -> tuple[Corruption, list[int]]:
    """A corruption and the dimensions it names (checked against the observation later)."""
    kind, _, rest = spec.partition(":")
    if kind == "shuffle" and not rest:

        def shuffle(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            if len(x) < 2:
                raise PatchingError("--corrupt shuffle needs at least 2 observations (--n 2)")
            order = rng.permutation(len(x))
            partner = np.empty(len(x), dtype=int)
            partner[order] = np.roll(order, -1)  # a cycle through all: nobody keeps itself
            return x[partner]

        return shuffle, []
    if kind == "negate" and rest:
        dims = _dims(rest, spec)

        def negate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            x = x.copy()
            x[:, dims] *= -1
            return x

        return negate, dims
    if kind == "noise" and rest:
        std_text, _, dim_text = rest.partition(":")
        try:
            std = float(std_text)
        except ValueError:
            std = -1.0
        if not std > 0:
            raise PatchingError(f"--corrupt {spec!r}: the noise std must be a number > 0")
        dims = _dims(dim_text, spec) if dim_text else []

        def noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            x = x.copy()
            cols = dims or list(range(x.shape[1]))
            x[:, cols] += rng.normal(0.0, std, size=(len(x), len(cols))).astype(x.dtype)
            return x

        return noise, dims
    if kind == "set" and rest:
        values: dict[int, float] = {}
        for item in rest.split(","):
            dim, eq, value = item.partition("=")
            try:
                values[int(dim)] = float(value)
            except ValueError:
                eq = ""
            if not eq:
                raise PatchingError(f"--corrupt {spec!r}: expected DIM=VALUE items, got {item!r}")

        def set_values(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            x = x.copy()
            for dim, value in values.items():
                x[:, dim] = value
            return x

        return set_values, list(values)
    raise PatchingError(f"unknown --corrupt spec {spec!r}; valid: {', '.join(KINDS)}")


def parse_corruptions(specs: Sequence[str]) -> list[tuple[str, Corruption, list[int]]]:
    return [(spec, *_one(spec)) for spec in specs]


def _policy(model_path: str | None, env, seed: int, trust_checkpoint: bool = False):
    """Greedy actions of the agent, or seeded random actions; and a description."""
    if model_path is None:
        env.action_space.seed(seed)
        return (lambda obs: env.action_space.sample()), "random actions"
    import torch

    from ._models import load_model

    if not hasattr(env.action_space, "n"):
        raise PatchingError(
            f"--model plays greedily, which needs a discrete action space; {env.spec.id} has "
            f"{env.action_space}. Leave --model out for random play"
        )
    model = load_model(model_path, trust_checkpoint=trust_checkpoint)

    def act(obs: np.ndarray) -> int:
        with torch.inference_mode():
            out = model.forward(torch.as_tensor(obs, dtype=torch.float32)[None])  # (1, A)
        return int(out.argmax(-1))

    return act, f"greedy play of {model.description}"


def make_pairs(
    env_id: str,
    corruptions: list[tuple[str, Corruption, list[int]]],
    n: int,
    *,
    model: str | None = None,
    seed: int = 0,
    every: int = 2,
    trust_checkpoint: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(clean (n, D), corrupted (n, D), how the observations were played); ``trust_checkpoint``
    loads ``model`` with SB3's own loader (``_models.load_model``)."""
    import gymnasium as gym

    if n < 1 or every < 1:
        raise PatchingError(f"--n and --every must be >= 1, got {n} and {every}")
    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:
        raise PatchingError(
            f"unknown environment {env_id!r} ({exc}); give a gymnasium id such as CartPole-v1"
        ) from None
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise PatchingError(
            f"{env_id} observations are {space}; `patching inputs` handles flat Box "
            "observations (vectors). Write pairs yourself for other spaces"
        )
    for spec, _, dims in corruptions:
        bad = [d for d in dims if not 0 <= d < space.shape[0]]
        if bad:
            raise PatchingError(
                f"--corrupt {spec!r}: dimension(s) {bad} out of range for {env_id} "
                f"observations of size {space.shape[0]} (valid 0..{space.shape[0] - 1})"
            )
    act, info = _policy(model, env, seed, trust_checkpoint)
    obs, _ = env.reset(seed=seed)
    rows: list[np.ndarray] = []
    t = 0
    while len(rows) < n:
        if t % every == 0:
            rows.append(np.asarray(obs, dtype=np.float32))
        obs, _, done, trunc, _ = env.step(act(obs))
        t += 1
        if done or trunc:
            obs, _ = env.reset()
    clean = np.stack(rows)
    corrupted = clean
    rng = np.random.default_rng(seed)
    for _, fn, _ in corruptions:
        corrupted = fn(corrupted, rng)
    return clean, corrupted.astype(np.float32), info


def save_pairs(path: str | Path, clean: np.ndarray, corrupted: np.ndarray) -> None:
    """A pairs file ``patching run --inputs`` reads: clean, corrupted, ids (row numbers)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, clean=clean, corrupted=corrupted, ids=np.arange(len(clean)))
