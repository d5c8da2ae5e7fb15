"""What the engine patches: a model wrapped with its forward, and clean/corrupted input pairs.

A :class:`LoadedModel` is the root ``nn.Module`` whose ``named_modules()`` names the patchable
layers, and a ``forward`` that maps a batch of inputs to a batch of output vectors (B, O):
Q-values, action logits, class logits, or next-token logits at the readout position.

    model = from_module(my_mlp, input_shape=(4,))           # any torch module
    model = from_hf(load_hf_model("models/gpt2-small"))     # a transformers LM or classifier
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._errors import PatchingError


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


@dataclass
class InputPairs:
    """Paired inputs; row i of ``clean`` and ``corrupted`` share ``ids[i]``."""

    ids: list[str]
    clean: torch.Tensor  # (N, *input_shape)
    corrupted: torch.Tensor  # (N, *input_shape)

    def __len__(self) -> int:
        return len(self.ids)


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


def from_hf(
    model: nn.Module, description: str | None = None, tokenizer: Any = None
) -> LoadedModel:
    """Wrap a transformers causal LM (next-token logits at the readout) or classifier (logits).

    The forward runs the whole model with hooks (no cached-prefix shortcut is architecture
    specific here; the runner replays cached module outputs generically instead).
    """
    causal = "CausalLM" in type(model).__name__ or "LMHead" in type(model).__name__

    def fn(x: torch.Tensor, readout: int) -> torch.Tensor:
        if not causal:
            return model(input_ids=x, use_cache=False).logits  # (B, n_labels)
        # Only the readout position's logits are needed: skip the unembedding elsewhere.
        keep = 1 if readout == -1 else torch.tensor([readout % x.shape[1]], device=x.device)
        return model(input_ids=x, logits_to_keep=keep, use_cache=False).logits[:, -1]  # (B, V)

    model.eval()
    return LoadedModel(
        root=model,
        fn=fn,
        input_kind="tokens",
        description=description or f"HF {type(model).__name__}",
        tokenizer=tokenizer,
        vocab_size=getattr(model.config, "vocab_size", None),
    )
