"""Load the model to patch: a torch checkpoint, a stable-baselines3 agent or a Hugging Face dir.

Every loader returns a :class:`LoadedModel`: the root ``nn.Module`` whose ``named_modules()``
names the patchable layers, and a ``forward`` that maps a batch of inputs to a batch of output
vectors (B, O): Q-values, action logits, or next-token logits at the readout position.

No architecture is guessed from state-dict key names. A state dict needs an explicit
architecture spec (``--arch spec.json`` or an ``"arch"`` entry saved beside it):

    {"type": "mlp", "sizes": [4, 64, 64, 2], "activation": "relu"}
    {"type": "hf", "config": {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, ...}}
    {"type": "factory", "factory": "my_pkg.models:build", "kwargs": {"width": 64}}
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._errors import PatchingError

MODEL_KINDS = ("auto", "torch", "sb3", "hf")
ACTIVATIONS = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


@dataclass
class LoadedModel:
    """A model ready to patch. ``fn(x, readout)`` returns (B, O) or (B, T, O) outputs."""

    root: nn.Module
    fn: Callable[[torch.Tensor, int], torch.Tensor]
    input_kind: str  # "vector" (float observations/features) | "tokens" (int64 ids)
    description: str
    input_shape: tuple[int, ...] | None = None  # per-sample shape, when the model declares one
    vocab_size: int | None = None
    tokenizer: Any = None
    output_names: list[str] | None = None
    readout_position: int = -1  # token models: which position's logits are "the output"
    meta: dict[str, Any] = field(default_factory=dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fn(x, self.readout_position)
        if self.input_kind == "tokens" and out.dim() == 3:  # (B, T, V) -> (B, V)
            out = out[:, self.readout_position]
        return out.reshape(out.shape[0], -1)  # (B, O)

    @property
    def input_hint(self) -> str:
        if self.input_kind == "tokens":
            vocab = f" below {self.vocab_size}" if self.vocab_size else ""
            return f"equal-length int token-id sequences{vocab}"
        return (
            f"float vectors of shape {self.input_shape}" if self.input_shape else "float tensors"
        )

    def example_input(self, batch: int, seq_len: int = 8) -> torch.Tensor:
        if self.input_kind == "tokens":
            return torch.zeros(batch, seq_len, dtype=torch.long)
        if self.input_shape is None:
            raise PatchingError(
                f"{self.description} does not declare its input shape; pass sample inputs "
                "(--inputs FILE) so the structure probe has something to run"
            )
        return torch.zeros(batch, *self.input_shape)

    def to(self, device: str) -> LoadedModel:
        self.root.to(device)
        return self


def from_module(
    module: nn.Module,
    *,
    input_kind: str = "vector",
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    input_shape: tuple[int, ...] | None = None,
    vocab_size: int | None = None,
    description: str | None = None,
) -> LoadedModel:
    """Wrap a live module (e.g. in a notebook or test). ``fn`` defaults to ``module(x)``;
    an HF-style output object with ``.logits`` is unwrapped."""
    call = fn or module

    def run(x: torch.Tensor, readout: int) -> torch.Tensor:
        out = call(x)
        return out.logits if hasattr(out, "logits") else out

    module.eval()
    return LoadedModel(
        root=module,
        fn=run,
        input_kind=input_kind,
        input_shape=input_shape,
        vocab_size=vocab_size,
        description=description or type(module).__name__,
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
    if kind == "auto":
        kind = (
            "hf"
            if (path / "config.json").is_file()
            else "sb3"
            if path.suffix == ".zip"
            else "torch"
        )
    loader = {"hf": load_hf, "sb3": load_sb3, "torch": load_torch}[kind]
    model = loader(path, arch=arch, trust_checkpoint=trust_checkpoint)
    model.root.eval()  # dropout off: patched and unpatched runs must be deterministic
    return model


def load_sb3(path: Path, **_: Any) -> LoadedModel:
    """A stable-baselines3 agent: rebuild its policy from the zip and patch the policy network.

    Module names are relative to the policy, as in the public tool (``q_net.q_net.0``). Note
    that SB3's own loader unpickles the spaces and policy class stored in the zip: only load
    agents you trust.
    """
    import inspect

    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.save_util import load_from_zip_file

    try:
        data, params, _ = load_from_zip_file(path, device="cpu")
    except Exception as exc:
        raise PatchingError(
            f"{path} is not a readable stable-baselines3 agent zip: {exc}"
        ) from exc
    policy_cls = data["policy_class"]
    kwargs = dict(data.get("policy_kwargs") or {})
    if "use_sde" in inspect.signature(policy_cls.__init__).parameters and "use_sde" in data:
        kwargs["use_sde"] = data["use_sde"]
    policy = policy_cls(data["observation_space"], data["action_space"], lambda _: 0.0, **kwargs)
    policy.load_state_dict(params["policy"])
    space = data["action_space"]
    names = [f"action {i}" for i in range(space.n)] if hasattr(space, "n") else None

    if hasattr(policy, "q_net") and hasattr(policy.q_net, "q_net"):  # DQN-style: Q-values

        def fn(x: torch.Tensor, readout: int) -> torch.Tensor:
            return policy.q_net(x)  # (B, n_actions)

        what = "Q-values"
    elif isinstance(policy, ActorCriticPolicy):  # PPO / A2C: the actor's action logits

        def fn(x: torch.Tensor, readout: int) -> torch.Tensor:
            features = policy.extract_features(x)
            if isinstance(features, tuple):  # separate actor/critic extractors
                features = features[0]
            return policy.action_net(policy.mlp_extractor.forward_actor(features))

        what = "action logits (actor head)"
    else:
        raise PatchingError(
            f"{path}: policy class {policy_cls.__name__} is not supported; supported: DQN-style "
            "policies with a q_net (DQN, QR-DQN) and ActorCriticPolicy (PPO, A2C)"
        )
    return LoadedModel(
        root=policy,
        fn=fn,
        input_kind="vector",
        input_shape=tuple(data["observation_space"].shape),
        description=f"SB3 {policy_cls.__name__} from {path.name} -> {what}",
        output_names=names,
    )


def load_hf(path: Path, **_: Any) -> LoadedModel:
    """A Hugging Face model directory: causal LMs (next-token logits) or sequence classifiers.

    The forward runs the whole model with hooks (no cached-prefix shortcut is architecture
    specific here; the runner replays cached module outputs generically instead).
    """
    import transformers

    config = json.loads((path / "config.json").read_text())
    archs = config.get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        auto = transformers.AutoModelForSequenceClassification
    else:
        auto = transformers.AutoModelForCausalLM
    try:
        model = auto.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise PatchingError(
            f"{path}: transformers could not load it as {auto.__name__}: {exc}. Supported: causal "
            "LMs and *ForSequenceClassification models saved with save_pretrained()"
        ) from exc
    tokenizer = None
    if any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    return _hf_loaded(model, f"HF {type(model).__name__} from {path.name}", tokenizer)


def _hf_loaded(model: nn.Module, description: str, tokenizer: Any = None) -> LoadedModel:
    causal = "CausalLM" in type(model).__name__ or "LMHead" in type(model).__name__

    def fn(x: torch.Tensor, readout: int) -> torch.Tensor:
        if not causal:
            return model(input_ids=x, use_cache=False).logits  # (B, n_labels)
        # Only the readout position's logits are needed: skip the unembedding elsewhere.
        keep = 1 if readout == -1 else torch.tensor([readout % x.shape[1]], device=x.device)
        return model(input_ids=x, logits_to_keep=keep, use_cache=False).logits[:, -1]  # (B, V)

    return LoadedModel(
        root=model,
        fn=fn,
        input_kind="tokens",
        description=description,
        tokenizer=tokenizer,
        vocab_size=getattr(model.config, "vocab_size", None),
    )


def build_arch(spec: dict[str, Any]) -> tuple[nn.Module, str]:
    """An untrained module from an architecture spec, and its input kind."""
    kind = spec.get("type")
    if kind == "mlp":
        sizes, act = spec.get("sizes"), spec.get("activation", "relu")
        if not (isinstance(sizes, list) and len(sizes) >= 2) or act not in ACTIVATIONS:
            raise PatchingError(
                f'mlp arch needs "sizes" (list of >= 2 ints) and "activation" in '
                f"{sorted(ACTIVATIONS)}; got sizes={sizes!r}, activation={act!r}"
            )
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[act]())
        return nn.Sequential(*layers), "vector"
    if kind == "hf":
        import transformers

        cfg = dict(spec.get("config") or {})
        model_type = cfg.pop("model_type", None)
        if model_type is None:
            raise PatchingError('hf arch needs config.model_type (e.g. "gpt2")')
        config = transformers.AutoConfig.for_model(model_type, **cfg)
        return transformers.AutoModelForCausalLM.from_config(config), "tokens"
    if kind == "factory":
        target = str(spec.get("factory", ""))
        mod, _, name = target.partition(":")
        try:
            factory = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError, ValueError) as exc:
            raise PatchingError(
                f"factory {target!r} cannot be imported ({exc}); write 'pkg.module:function'"
            ) from exc
        return factory(**spec.get("kwargs", {})), spec.get("input_kind", "vector")
    raise PatchingError(
        f"unknown arch type {kind!r}; valid: mlp, hf, factory (assay never guesses an "
        "architecture from state-dict key names)"
    )


def _read_arch(arch: str | dict | None) -> dict | None:
    if arch is None or isinstance(arch, dict):
        return arch
    text = arch if arch.lstrip().startswith("{") else Path(arch).read_text()
    return json.loads(text)


def load_torch(
    path: Path, *, arch: str | dict | None = None, trust_checkpoint: bool = False
) -> LoadedModel:
    """A torch checkpoint: ``{"arch": spec, "state_dict": ...}``, a bare state dict plus ``arch``,
    or (only with ``trust_checkpoint``) a pickled ``nn.Module``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_checkpoint:
            raise PatchingError(
                f"{path} holds pickled Python objects (a whole nn.Module?) that "
                f"torch.load(weights_only=True) refuses ({str(exc).splitlines()[0]}). If you trust "
                "its source, pass --trust-checkpoint; better, save {'arch': spec, "
                "'state_dict': model.state_dict()} instead"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    spec = _read_arch(arch)
    if isinstance(obj, nn.Module):
        module, input_kind = obj, spec.get("input_kind", "vector") if spec else "vector"
    elif isinstance(obj, dict):
        state = obj.get("state_dict", obj)
        spec = spec or obj.get("arch")
        if spec is None:
            raise PatchingError(
                f"{path} is a state dict without an architecture spec; pass --arch spec.json "
                "(types: mlp, hf, factory) or save {'arch': spec, 'state_dict': ...}"
            )
        module, input_kind = build_arch(spec)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise PatchingError(f"{path} does not fit the arch spec {spec}: {exc}") from exc
    else:
        raise PatchingError(f"{path} holds a {type(obj).__name__}, not a state dict or module")
    if input_kind == "tokens" and hasattr(module, "config"):
        return _hf_loaded(module, f"HF {type(module).__name__} from {path.name}")
    loaded = from_module(
        module, input_kind=input_kind, description=f"{type(module).__name__} from {path.name}"
    )
    first = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
    if input_kind == "vector" and isinstance(module, nn.Sequential) and first is not None:
        loaded.input_shape = (first.in_features,)
    return loaded
