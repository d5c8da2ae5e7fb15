"""Load the model to patch from a file: a torch checkpoint, an SB3 agent or a Hugging Face dir.

Every loader returns an ``assay.ml.patching.LoadedModel``: the root ``nn.Module`` whose
``named_modules()`` names the patchable layers, and a ``forward`` mapping a batch of inputs to
a batch of output vectors (B, O): Q-values, action logits, or next-token logits at the readout.

No architecture is guessed from state-dict key names. A state dict needs an architecture spec
(``assay.ml.build_architecture``): ``--arch spec.json`` from the user, or an ``"arch"`` entry
saved in the checkpoint:

    {"type": "mlp", "sizes": [4, 64, 64, 2], "activation": "relu"}
    {"type": "hf", "config": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, ...}}
    {"type": "factory", "factory": "my_pkg.models:build", "kwargs": {"width": 64}}

A spec read from a checkpoint file may only name registered types (mlp, hf, families'
builders): a ``factory`` there would run code named by the file, so it needs
``--trust-checkpoint``. The user's own ``--arch`` may name a factory.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from assay import AssayError, load_torch_file
from assay.ml import (
    build_architecture,
    check_no_remote_code,
    infer_task,
    load_hf_model,
    load_tokenizer,
)
from assay.ml.patching import LoadedModel, from_hf, from_module

from ._errors import PatchingError

MODEL_KINDS = ("auto", "torch", "sb3", "hf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")
# What an agent directory (the published tool's --agent_path) may hold as its model.
AGENT_FILES = (".zip", ".pt", ".pth")


def agent_file(path: Path) -> Path:
    """The one model file (.zip / .pt / .pth) directly inside an agent directory."""
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in AGENT_FILES)
    if len(found) == 1:
        return found[0]
    what = "no" if not found else f"{len(found)}"
    listing = f": {', '.join(p.name for p in found)}" if found else ""
    raise PatchingError(
        f"agent directory {str(path)!r} holds {what} model files ({', '.join(AGENT_FILES)})"
        f"{listing}; it must hold exactly one (or a config.json for a Hugging Face model). "
        "Pass the file itself: --model DIR/agent.zip"
    )


def load_model(
    path: str | Path,
    kind: str = "auto",
    *,
    arch: str | dict | None = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Dispatch on ``kind`` (auto: a dir with config.json is HF, ``.zip`` is SB3, else torch)."""
    path = Path(path)
    if kind not in MODEL_KINDS:
        raise PatchingError(f"unknown model kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    if not path.exists():
        raise PatchingError(f"model path {str(path)!r} does not exist")
    if path.is_dir() and not (path / "config.json").is_file():
        path = agent_file(path)  # an agent directory, as the published --agent_path
    if kind == "auto":
        is_hf = (path / "config.json").is_file()
        kind = "hf" if is_hf else "sb3" if path.suffix == ".zip" else "torch"
    if kind == "hf":
        model = load_hf(path, trust_checkpoint=trust_checkpoint)
    elif kind == "sb3":
        model = load_sb3(path, trust_checkpoint=trust_checkpoint)
    else:
        model = load_torch(path, arch=arch, trust_checkpoint=trust_checkpoint)
    model.root.eval()  # dropout off: patched and unpatched runs must be deterministic
    return model


def load_sb3(path: Path, *, trust_checkpoint: bool = False) -> LoadedModel:
    """A stable-baselines3 agent: rebuild its policy from the zip and patch the policy network.

    By default without unpickling anything (``_sb3.load_policy_safely``: MlpPolicy agents of
    DQN, PPO and A2C); ``trust_checkpoint`` uses SB3's own loader, which runs code stored in
    the zip. Module names are relative to the policy (``q_net.q_net.0``); for DQN-style policies
    the published tool's names relative to the Q-network (``q_net.0``,
    ``features_extractor.mlp.0``) resolve too, and ``output_logits`` names the output layer.
    """
    from stable_baselines3.common.policies import ActorCriticPolicy

    from ._sb3 import load_policy_safely, load_policy_trusted

    load = load_policy_trusted if trust_checkpoint else load_policy_safely
    policy, space = load(path)
    policy_cls = type(policy)
    names = [f"action {i}" for i in range(space.n)] if hasattr(space, "n") else None

    prefixes: tuple[str, ...]
    if hasattr(policy, "q_net") and hasattr(policy.q_net, "q_net"):  # DQN-style: Q-values

        def fn(x: torch.Tensor, readout: int) -> torch.Tensor:
            return policy.q_net(x)  # (B, n_actions)

        what, prefixes = "Q-values", ("q_net.",)  # the published tool's names
    elif isinstance(policy, ActorCriticPolicy):  # PPO / A2C: the actor's action logits

        def fn(x: torch.Tensor, readout: int) -> torch.Tensor:
            features = policy.extract_features(x)
            if isinstance(features, tuple):  # separate actor/critic extractors
                features = features[0]
            return policy.action_net(policy.mlp_extractor.forward_actor(features))

        what, prefixes = "action logits (actor head)", ()
    else:
        raise PatchingError(
            f"{path}: policy class {policy_cls.__name__} is not supported; supported: DQN-style "
            "policies with a q_net (DQN, QR-DQN) and ActorCriticPolicy (PPO, A2C)"
        )
    return LoadedModel(
        root=policy,
        fn=fn,
        input_kind="vector",
        input_shape=tuple(policy.observation_space.shape),
        description=f"SB3 {policy_cls.__name__} from {path.name} -> {what}",
        output_names=names,
        name_prefixes=prefixes,
    )


def load_hf(path: Path, *, trust_checkpoint: bool = False) -> LoadedModel:
    """A Hugging Face model directory: a causal LM (next-token logits) or sequence classifier.

    A folder whose config names its own code (``auto_map``) loads only with
    ``trust_checkpoint`` (``assay.ml.check_no_remote_code``)."""
    check_no_remote_code(path, trusted=trust_checkpoint, flag="--trust-checkpoint")
    task = infer_task(path)  # from config.json's "architectures"
    if task not in ("causal-lm", "sequence-classification"):
        raise PatchingError(
            f"{path} holds a {task} model; patching reads next-token or class logits, so it "
            "supports causal LMs and *ForSequenceClassification models"
        )
    model = load_hf_model(path, task, trust_remote_code=trust_checkpoint)
    has_tokenizer = any((path / f).exists() for f in TOKENIZER_FILES)
    tokenizer = load_tokenizer(path, trust_remote_code=trust_checkpoint) if has_tokenizer else None
    return from_hf(model, f"HF {type(model).__name__} from {path.name}", tokenizer)


def read_arch(arch: str | Path | dict | None, what: str = "--arch") -> dict | None:
    """An architecture spec given as a dict, a JSON string or a JSON file (a JSON object)."""
    if arch is None or isinstance(arch, dict):
        return arch
    text = str(arch)
    if not text.lstrip().startswith(("{", "[")):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PatchingError(
                f"{what} file {str(arch)!r} does not exist; give a JSON file or a JSON object "
                'such as \'{"type": "mlp", "sizes": [4, 64, 2]}\''
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PatchingError(f"{what} file {str(arch)!r} is not readable text: {exc}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PatchingError(f"{what} {str(arch)!r} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise PatchingError(
            f"{what} {str(arch)!r} holds a JSON {type(spec).__name__}; an architecture spec is "
            'an object such as {"type": "mlp", "sizes": [4, 64, 2]}'
        )
    return spec


def _checkpoint(path: Path, trust_checkpoint: bool) -> Any:
    if path.is_dir():
        raise PatchingError(
            f"{path} is a directory without config.json; give a checkpoint file, an agent "
            "directory or a Hugging Face model directory"
        )
    with warnings.catch_warnings():  # torch warns about the pickle protocol of a refused file
        warnings.simplefilter("ignore", UserWarning)
        try:
            return load_torch_file(
                path,
                trusted=trust_checkpoint,
                fix="If it is a whole nn.Module and you trust its source, pass "
                "--trust-checkpoint; better, save {'arch': spec, 'state_dict': "
                "model.state_dict()} instead",
            )
        except AssayError:
            raise
        except Exception as exc:  # empty, truncated or not a torch file at all
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
            why = "it is empty" if path.stat().st_size == 0 else why
            raise PatchingError(
                f"{path} is not a readable torch checkpoint ({why}); "
                "save one with torch.save({'arch': spec, 'state_dict': model.state_dict()}, "
                "PATH), or pass --model-kind sb3/hf for other models"
            ) from None


def _misfit(module: nn.Module, state: Any) -> str:
    """Why a state dict does not load into ``module``, on one line (the first few problems)."""
    if not isinstance(state, dict):
        return f"its state_dict is a {type(state).__name__}, not a mapping of tensors"
    want = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    have = {k: tuple(getattr(v, "shape", ())) for k, v in state.items()}
    problems = [
        f"{k} is {have[k]} in the file, {want[k]} in the spec"
        for k in want
        if k in have and have[k] != want[k]
    ]
    problems += [f"{k} missing from the file" for k in want if k not in have]
    problems += [f"{k} not in the spec" for k in have if k not in want]
    shown = "; ".join(problems[:4])
    return shown + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else "")


def load_torch(
    path: Path, *, arch: str | dict | None = None, trust_checkpoint: bool = False
) -> LoadedModel:
    """A torch checkpoint: ``{"arch": spec, "state_dict": ...}``, a bare state dict plus ``arch``,
    or (only with ``trust_checkpoint``) a pickled ``nn.Module``."""
    obj = _checkpoint(path, trust_checkpoint)
    spec = read_arch(arch)  # the user's own spec: trusted
    if isinstance(obj, nn.Module):
        module, input_kind = obj, spec.get("input_kind", "vector") if spec else "vector"
    elif isinstance(obj, dict):
        state = obj.get("state_dict", obj)
        # A spec from the file is trusted only if the user says so; theirs always is.
        trusted = spec is not None or trust_checkpoint
        spec = spec or obj.get("arch")
        if spec is None:
            raise PatchingError(
                f"{path} is a state dict without an architecture spec; pass --arch spec.json "
                "(types: mlp, hf, factory) or save {'arch': spec, 'state_dict': ...}"
            )
        module, input_kind = build_architecture(spec, trusted=trusted)
        try:
            module.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError):
            raise PatchingError(
                f"{path} does not fit the arch spec {spec}: {_misfit(module, state)}; fix the "
                "spec's sizes or give the checkpoint the architecture was saved with"
            ) from None
    else:
        raise PatchingError(f"{path} holds a {type(obj).__name__}, not a state dict or module")
    if input_kind == "tokens" and hasattr(module, "config"):
        return from_hf(module, f"HF {type(module).__name__} from {path.name}")
    loaded = from_module(
        module, input_kind=input_kind, description=f"{type(module).__name__} from {path.name}"
    )
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    if input_kind == "vector" and isinstance(module, nn.Sequential) and first is not None:
        loaded.input_shape = (first.in_features,)
    return loaded
