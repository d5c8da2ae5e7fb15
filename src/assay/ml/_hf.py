"""Hugging Face models and tokenizers: loaded from local folders only, or built from a config.

    model = load_hf_model("models/gpt2-small", task="causal-lm", dtype=torch.float32)
    tok = load_tokenizer("models/gpt2-small")
    model = build_model("llama", vocab_size=64, d_model=32, n_layers=2, n_heads=4,
                        max_positions=64, seed=0)        # untrained, no download

assay never reaches a model hub: ``local_files_only=True`` everywhere, and a hub id or a missing
folder fails with one message saying how to get a local folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import MLError, ModelNotFoundError

if TYPE_CHECKING:
    import torch

# task -> the transformers Auto class that builds/loads it
TASKS = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "base": "AutoModel",
}
ARCHS = ("gpt2", "llama", "qwen2", "bert")


def _auto(task: str) -> Any:
    import transformers

    if task not in TASKS:
        raise MLError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return getattr(transformers, TASKS[task])


def _local_dir(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        hint = " (it looks like a hub id)" if "/" in str(path) and not p.exists() else ""
        raise ModelNotFoundError(
            f"no {what} directory at {str(path)!r}{hint}; assay loads {what}s from local paths "
            "only. Build one with assay.ml.build_model(...) / build_word_tokenizer(...) and "
            "save_pretrained(DIR), or download it elsewhere and pass the folder"
        )
    return p


def infer_task(path: str | os.PathLike[str]) -> str:
    """The task a saved model was built for, from ``architectures`` in its config.json."""
    config = json.loads((Path(path) / "config.json").read_text())
    archs = config.get("architectures") or []
    for suffix, task in (
        ("ForSequenceClassification", "sequence-classification"),
        ("ForQuestionAnswering", "question-answering"),
        ("ForMaskedLM", "masked-lm"),
        ("ForCausalLM", "causal-lm"),
        ("LMHeadModel", "causal-lm"),
    ):
        if any(a.endswith(suffix) for a in archs):
            return task
    return "base" if archs else "causal-lm"


def load_hf_model(
    path: str | os.PathLike[str],
    task: str = "causal-lm",
    *,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    num_labels: int | None = None,
) -> torch.nn.Module:
    """A model saved with ``save_pretrained`` in a local folder, in eval mode, on ``device``.

    ``task="auto"`` reads it from config.json (``infer_task``). ``num_labels`` sets a fresh
    classification head's size (heads that do not fit the saved one are rejected).
    """
    root = _local_dir(path, "model")
    if not (root / "config.json").is_file():
        raise ModelNotFoundError(
            f"{root} has no config.json, so it is not a saved transformers model; save one "
            "with model.save_pretrained(DIR)"
        )
    task = infer_task(root) if task == "auto" else task
    auto = _auto(task)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    try:
        model = auto.from_pretrained(root, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise MLError(
            f"{root}: transformers could not load it as {auto.__name__} (task {task!r}): "
            f"{exc}. Check the task (valid: {', '.join(TASKS)}, or 'auto')"
        ) from exc
    return model.to(device).eval()


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    """The tokenizer saved in a local folder (``tokenizer.json`` etc.), never downloaded."""
    import transformers

    root = _local_dir(path, "tokenizer")
    try:
        return transformers.AutoTokenizer.from_pretrained(root, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise MLError(
            f"{root}: no loadable tokenizer there ({exc}); save one with "
            "tokenizer.save_pretrained(DIR)"
        ) from exc


def _config(
    arch: str,
    vocab_size: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    max_positions: int,
    d_ff: int,
    extra: dict[str, Any],
) -> Any:
    import transformers

    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size,
            n_positions=max_positions,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            n_inner=d_ff,
            **extra,
        )
    common = dict(
        vocab_size=vocab_size,
        hidden_size=d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        intermediate_size=d_ff,
        max_position_embeddings=max_positions,
    )
    if arch == "bert":
        return transformers.BertConfig(**common, **extra)
    cls = transformers.LlamaConfig if arch == "llama" else transformers.Qwen2Config
    return cls(**common, num_key_value_heads=extra.pop("num_key_value_heads", n_heads), **extra)


def build_model(
    arch: str,
    *,
    vocab_size: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    max_positions: int,
    d_ff: int | None = None,
    task: str = "causal-lm",
    num_labels: int | None = None,
    seed: int = 0,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    **config_kwargs: Any,
) -> torch.nn.Module:
    """An untrained GPT-2 / Llama / Qwen2 / BERT-style model from a small config (no download).

    ``d_ff`` defaults to ``4 * d_model``. Weights are drawn from a generator seeded with
    ``seed`` (the global torch RNG is left as it was). Extra keyword arguments go to the
    transformers config (e.g. ``num_key_value_heads``, ``tie_word_embeddings``).
    """
    import torch

    if arch not in ARCHS:
        raise MLError(f"unknown arch {arch!r}; valid: {', '.join(ARCHS)}")
    if d_model % n_heads:
        raise MLError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if num_labels is not None:
        config_kwargs["num_labels"] = num_labels
    # Special-token ids default to None: GPT-2's config would otherwise claim id 50256.
    ids = {
        "pad_token_id": pad_token_id,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
    }
    for name, value in ids.items():
        if value is not None and not 0 <= value < vocab_size:
            raise MLError(f"{name}={value} is outside the vocabulary (0..{vocab_size - 1})")
    config = _config(
        arch,
        vocab_size,
        d_model,
        n_layers,
        n_heads,
        max_positions,
        d_ff or 4 * d_model,
        {**ids, **config_kwargs},
    )
    auto = _auto(task)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = auto.from_config(config)
    return model
