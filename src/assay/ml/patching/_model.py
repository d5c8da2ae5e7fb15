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
    """A model ready to patch. ``fn(x, readout)`` returns (B, O) or (B, T, O) outputs; a model
    that takes padded batches (``accepts_lengths``) is called ``fn(x, readout, lengths)`` with
    each row's real length (B,) when rows are right-padded, and returns (B, O) at each row's
    readout."""

    root: nn.Module
    # fn(x, readout) -> outputs; fn(x, readout, lengths) when accepts_lengths
    fn: Callable[..., torch.Tensor]
    input_kind: str  # "vector" (float observations/features) | "tokens" (int64 ids)
    description: str
    input_shape: tuple[int, ...] | None = None  # per-sample shape, when the model declares one
    vocab_size: int | None = None
    tokenizer: Any = None
    output_names: list[str] | None = None
    readout_position: int = -1  # token models: which position's logits are "the output"
    meta: dict[str, Any] = field(default_factory=dict)
    accepts_lengths: bool = False  # takes right-padded batches with per-row lengths
    # Prefixes tried for names that are not modules (see Structure.resolve_name).
    name_prefixes: tuple[str, ...] = ()
    pad_token_id: int | None = None

    def check_readout(self, shortest: int) -> None:
        """The readout must exist in every sequence: -shortest <= readout < shortest."""
        r = self.readout_position
        if self.input_kind == "tokens" and not -shortest <= r < shortest:
            raise PatchingError(
                f"readout_position {r} is out of range for sequences of length {shortest} "
                f"(valid {-shortest}..{shortest - 1}; negative counts from each sequence's end)"
            )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.input_kind == "tokens" and x.dim() > 1:
            self.check_readout(int(lengths.min()) if lengths is not None else x.shape[1])
        if lengths is not None:
            if not self.accepts_lengths:
                raise PatchingError(
                    f"{self.description} takes no attention mask, so sequences of different "
                    "lengths cannot be batched; give equal-length sequences"
                )
            out = self.fn(x, self.readout_position, lengths)
        else:
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
    # Token sequences right-padded to one length T: each pair's real length (N,), else None.
    # A pair's clean and corrupted sequences have the same length; pairs may differ.
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def check(self) -> None:
        """Refuse what would silently drop out of every mean: non-finite inputs."""
        if self.clean.shape != self.corrupted.shape or len(self.ids) != len(self.clean):
            raise PatchingError(
                f"{len(self.ids)} ids, clean {tuple(self.clean.shape)} and corrupted "
                f"{tuple(self.corrupted.shape)}: need one id per row and equal shapes"
            )
        for side, x in (("clean", self.clean), ("corrupted", self.corrupted)):
            if x.is_floating_point():
                bad = (~torch.isfinite(x.reshape(len(x), -1))).any(-1).nonzero().flatten()
                if len(bad):
                    ids = [self.ids[int(i)] for i in bad[:5]]
                    raise PatchingError(
                        f"{side} input(s) with id {', '.join(map(repr, ids))} contain NaN or "
                        f"inf ({len(bad)} of {len(x)} inputs); a non-finite input makes every "
                        "metric of its pair NaN. Fix or drop those inputs"
                    )
        if self.lengths is not None:
            t = self.clean.shape[1]
            if (
                len(self.lengths) != len(self.ids)
                or not ((self.lengths >= 1) & (self.lengths <= t)).all()
            ):
                raise PatchingError(f"lengths must be one per pair in 1..{t}")


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

    def fn(x: torch.Tensor, readout: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        mask = None
        if lengths is not None:  # right padding: pads come after every real token
            mask = (torch.arange(x.shape[1], device=x.device) < lengths[:, None]).long()
        if not causal:
            return model(input_ids=x, attention_mask=mask, use_cache=False).logits  # (B, C)
        if lengths is None:
            # Only the readout position's logits are needed: skip the unembedding elsewhere.
            keep = 1 if readout == -1 else torch.tensor([readout % x.shape[1]], device=x.device)
            return model(input_ids=x, logits_to_keep=keep, use_cache=False).logits[:, -1]
        pos = lengths + readout if readout < 0 else torch.full_like(lengths, readout)  # (B,)
        keep = torch.unique(pos)  # sorted
        logits = model(
            input_ids=x, attention_mask=mask, logits_to_keep=keep, use_cache=False
        ).logits  # (B, len(keep), V)
        return logits[torch.arange(len(x), device=x.device), torch.searchsorted(keep, pos)]

    model.eval()
    return LoadedModel(
        root=model,
        fn=fn,
        input_kind="tokens",
        description=description or f"HF {type(model).__name__}",
        tokenizer=tokenizer,
        vocab_size=getattr(model.config, "vocab_size", None),
        accepts_lengths=True,
        pad_token_id=getattr(model.config, "pad_token_id", None),
    )
