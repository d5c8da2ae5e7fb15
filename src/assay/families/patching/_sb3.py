"""Stable-Baselines3 agents, loaded without running code from the zip unless the user says so.

    assay patching structure --model agent.zip                      # safe route (default)
    assay patching structure --model agent.zip --trust-checkpoint   # SB3's own loader

An SB3 ``agent.zip`` holds ``policy.pth`` (the policy's state dict) and ``data``: JSON in which
every object JSON cannot hold (the policy class, the spaces, schedules, a ``policy_kwargs`` with
a class in it) is a ``:serialized:`` base64 cloudpickle blob. SB3's ``load_from_zip_file``
unpickles those blobs, and unpickling runs whatever code the blob names.

The safe route never touches a blob. It reads ``policy.pth`` with
``torch.load(weights_only=True)`` and, from ``data``, only the plain JSON fields SB3 writes
beside each blob: the spaces' ``_shape``/``dtype``/``n``, ``policy_kwargs``' ``net_arch``, the
activation's class *name* (looked up in a closed table), ``use_sde``. From them it builds SB3's
own, installed policy class (``DQNPolicy`` or ``ActorCriticPolicy``, the classes behind
``MlpPolicy``) and loads the weights strictly, so outputs equal SB3's own load of the same zip.
What cannot be rebuilt that way (a custom features extractor or policy class, image or dict
observations, sb3-contrib policies) is refused with one message naming ``--trust-checkpoint``,
which takes the trusted route: SB3's own loader, cloudpickle included.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

from ._errors import PatchingError

# The modules of the policy classes the safe route rebuilds (MlpPolicy of DQN, PPO and A2C).
DQN_MODULE = "stable_baselines3.dqn.policies"
ACTOR_CRITIC_MODULE = "stable_baselines3.common.policies"
ACTIVATIONS = ("ReLU", "Tanh", "GELU", "SiLU", "ELU", "LeakyReLU", "Sigmoid", "Identity")
_CLASS_REPR = re.compile(r"^<class '([\w.]+)'>$")
# policy_kwargs the safe route reads; optimizer_* only shape training, never the forward.
BOOL_KWARGS = (
    "share_features_extractor",
    "normalize_images",
    "ortho_init",
    "squash_output",
    "full_std",
    "use_expln",
)
IGNORED_KWARGS = ("optimizer_class", "optimizer_kwargs")


def _refuse(path: Path, why: str) -> PatchingError:
    return PatchingError(
        f"{path}: {why}, so the policy cannot be rebuilt without unpickling the zip's data "
        "(which runs code stored in the file). If you trust where the agent came from, pass "
        "--trust-checkpoint to load it with stable-baselines3's own loader"
    )


def read_zip(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The zip's ``data`` JSON (blobs left as they are) and ``policy.pth``, weights only."""
    import torch

    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise PatchingError(
                    f"{path} is a zip but not a stable-baselines3 agent (it has no 'data' and "
                    "'policy.pth' entries); save agents with agent.save(PATH), or pass "
                    "--model-kind torch/hf for other files"
                )
            text, weights = z.read("data"), z.read("policy.pth")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PatchingError(f"{path} is not a readable zip file ({exc})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PatchingError(f"{path}: its 'data' entry is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise PatchingError(f"{path}: its 'data' entry is not a JSON object")
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _refuse(path, "policy.pth holds objects other than tensors") from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... on a damaged file
        raise PatchingError(f"{path}: policy.pth is not a readable torch file ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise PatchingError(f"{path}: policy.pth holds a {type(state).__name__}, not a state dict")
    return data, state


def _space(path: Path, entry: Any, what: str) -> Any:
    """A gymnasium Box (float) or Discrete space from the plain fields beside its blob."""
    import gymnasium as gym
    import numpy as np

    kind = entry.get(":type:", "") if isinstance(entry, dict) else ""
    if kind.endswith(".Box'>"):
        shape, dtype = entry.get("_shape"), entry.get("dtype")
        ok_shape = isinstance(shape, list) and all(type(s) is int and s > 0 for s in shape)
        if ok_shape and dtype in ("float16", "float32", "float64"):
            return gym.spaces.Box(-np.inf, np.inf, tuple(shape), dtype=np.dtype(dtype))
    elif kind.endswith(".Discrete'>"):
        try:
            n, start = int(entry.get("n")), int(entry.get("start", 0))
        except (TypeError, ValueError):
            n = 0
        if n > 0:
            return gym.spaces.Discrete(n, start=start)
    raise _refuse(path, f"its {what} is {kind or 'missing'!r}, not a float Box or a Discrete")


def _activation(path: Path, text: Any) -> Any:
    from torch import nn

    match = _CLASS_REPR.match(text) if isinstance(text, str) else None
    name = match.group(1).rpartition(".")[2] if match else None
    if not match or not match.group(1).startswith("torch.nn.") or name not in ACTIVATIONS:
        raise _refuse(
            path,
            f"its activation_fn is {text!r}, not one of torch.nn's {', '.join(ACTIVATIONS)}",
        )
    return getattr(nn, name)


def _net_arch(path: Path, value: Any) -> Any:
    def ints(v: Any) -> bool:
        return isinstance(v, list) and all(type(s) is int and s > 0 for s in v)

    heads = isinstance(value, dict) and value
    if ints(value) or (
        heads and all(k in ("pi", "vf", "qf") and ints(v) for k, v in heads.items())
    ):
        return value
    raise _refuse(path, f"its net_arch is {value!r}, not a list of positive sizes")


def _policy_kwargs(path: Path, entry: Any) -> dict[str, Any]:
    """The keyword arguments of the policy, from plain JSON fields only."""
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise _refuse(path, f"its policy_kwargs is a {type(entry).__name__}")
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key in (":type:", ":serialized:", *IGNORED_KWARGS):
            continue
        if key == "net_arch":
            out[key] = _net_arch(path, value)
        elif key == "activation_fn":
            out[key] = _activation(path, value)
        elif key in BOOL_KWARGS and isinstance(value, bool):
            out[key] = value
        elif key == "log_std_init" and type(value) in (int, float):
            out[key] = float(value)
        elif key == "features_extractor_class" and str(value).endswith(".FlattenExtractor'>"):
            continue  # the default
        elif key == "features_extractor_kwargs" and value in ({}, None):
            continue
        else:
            raise _refuse(path, f"its policy_kwargs sets {key}={str(value)[:80]!r}")
    return out


def safe_plan(path: Path) -> tuple[str, Any, Any, dict[str, Any], dict[str, Any]]:
    """What the safe route would build, from the zip alone: (policy kind ``"dqn"`` or
    ``"actor-critic"``, observation space, action space, policy kwargs, weights). Refuses, with
    one message naming ``--trust-checkpoint``, what only unpickling could rebuild; builds no
    policy, so a plan-time check can call it."""
    data, state = read_zip(path)
    cls_entry = data.get("policy_class")
    module = cls_entry.get("__module__") if isinstance(cls_entry, dict) else None
    keys = sorted(state)
    if module == DQN_MODULE and any(k.startswith("q_net.q_net.") for k in keys):
        kind = "dqn"
    elif module == ACTOR_CRITIC_MODULE and "action_net.weight" in state:
        kind = "actor-critic"
    else:
        raise _refuse(
            path,
            f"its policy class comes from {module!r} with weights {', '.join(keys[:4])}...; "
            "rebuilt without unpickling are MlpPolicy agents of DQN, PPO and A2C",
        )
    if any("features_extractor." in k for k in keys):
        raise _refuse(path, "its policy has a features extractor with weights (a CNN or custom)")
    observation = _space(path, data.get("observation_space"), "observation_space")
    action = _space(path, data.get("action_space"), "action_space")
    kwargs = _policy_kwargs(path, data.get("policy_kwargs"))
    if kind == "actor-critic":
        use_sde = data.get("use_sde", False)
        kwargs["use_sde"] = use_sde if isinstance(use_sde, bool) else False
    elif not hasattr(action, "n"):
        raise _refuse(path, "it is a DQN agent without a Discrete action space")
    return kind, observation, action, kwargs, state


def load_policy_safely(path: Path) -> Any:
    """SB3's own policy class, rebuilt from plain JSON and weights-only tensors (see above)."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy

    kind, observation, action, kwargs, state = safe_plan(path)
    cls: Any = DQNPolicy if kind == "dqn" else ActorCriticPolicy
    try:
        policy = cls(observation, action, lambda _: 0.0, **kwargs)
        policy.load_state_dict(state)  # strict: every tensor has its place and shape
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:
        raise _refuse(
            path, f"its weights do not fit the {cls.__name__} its data describes ({exc})"
        ) from None
    return policy, action


def load_policy_trusted(path: Path) -> Any:
    """SB3's own loader (unpickles the zip's data): only behind ``--trust-checkpoint``."""
    import inspect

    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, params, _ = load_from_zip_file(path, device="cpu")
    except Exception as exc:
        raise PatchingError(
            f"{path} is not a readable stable-baselines3 agent zip: {exc}"
        ) from exc
    needed = ("policy_class", "observation_space", "action_space")
    if not isinstance(data, dict) or any(k not in data for k in needed) or "policy" not in params:
        raise PatchingError(
            f"{path} is a zip but not a stable-baselines3 agent (no 'data' entry with "
            f"{', '.join(needed)} and no 'policy' weights); save agents with agent.save(PATH), "
            "or pass --model-kind torch/hf for other files"
        )
    policy_cls = data["policy_class"]
    kwargs = dict(data.get("policy_kwargs") or {})
    if "use_sde" in inspect.signature(policy_cls.__init__).parameters and "use_sde" in data:
        kwargs["use_sde"] = data["use_sde"]
    try:
        policy = policy_cls(
            data["observation_space"], data["action_space"], lambda _: 0.0, **kwargs
        )
        policy.load_state_dict(params["policy"])
    except Exception as exc:  # whatever the unpickled objects turned out to be
        raise PatchingError(
            f"{path}: stable-baselines3's loader could not rebuild the policy "
            f"({type(exc).__name__}: {exc})"
        ) from None
    return policy, data["action_space"]
