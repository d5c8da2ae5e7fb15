"""Hugging Face models and tokenizers: loaded from local folders only, or built from a config.

    model = load_hf_model("models/gpt2-small", task="causal-lm", dtype=torch.float32)
    tok = load_tokenizer("models/gpt2-small")
    model = build_model("llama", vocab_size=64, d_model=32, n_layers=2, n_heads=4,
                        max_positions=64, seed=0)        # untrained, no download

assay never reaches a model hub: ``local_files_only=True`` everywhere, and a hub id or a missing
folder fails with one message saying how to get a local folder.

assay never runs a model folder's own code: ``trust_remote_code=False`` is passed to every
transformers loader, and a folder whose config.json or tokenizer/processor config names code
(``auto_map``: ``configuration_*.py``, ``modeling_*.py``) is refused by
:func:`check_no_remote_code` before transformers reads it, unless the caller passes
``trust_remote_code=True`` (on the command line, ``--trust-checkpoint`` where a command has it).
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import MLError, ModelNotFoundError

if TYPE_CHECKING:
    import torch
    import transformers

# task -> the transformers Auto class that builds/loads it
TASKS = {
    "causal-lm": "AutoModelForCausalLM",
    "sequence-classification": "AutoModelForSequenceClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "masked-lm": "AutoModelForMaskedLM",
    "base": "AutoModel",
}
ARCHS = ("gpt2", "llama", "qwen2", "bert")
# device_map values passed to from_pretrained (accelerate): "auto" fills GPUs in order, then CPU
DEVICE_MAPS = ("auto",)
# The JSON files of a model folder through which transformers finds a folder's own code.
CODE_CONFIGS = (
    "config.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)


class RemoteCodeError(MLError):
    """A model folder names Python code of its own (``auto_map``) and trust was not given."""


def read_model_config(path: str | os.PathLike[str], name: str = "config.json") -> dict[str, Any]:
    """A model folder's JSON config as a dict; unreadable, non-JSON or non-object files fail
    with one message naming the file."""
    file = Path(path) / name
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MLError(
            f"{file} is not a readable JSON file ({exc}); a saved transformers model has the "
            "config.json that save_pretrained(DIR) writes"
        ) from None
    if not isinstance(data, dict):
        raise MLError(
            f"{file} holds a JSON {type(data).__name__}, not an object; a saved transformers "
            "model has the config.json that save_pretrained(DIR) writes"
        )
    return data


def check_no_remote_code(
    path: str | os.PathLike[str],
    *,
    trusted: bool = False,
    flag: str = "trust_remote_code=True to the loader (assay patching: --trust-checkpoint)",
) -> None:
    """Refuse a model folder whose configs name code of its own (``auto_map``) unless
    ``trusted``: loading it would import the folder's ``*.py`` files. Every loader of a model
    folder calls this first; ``flag`` is how the caller's user gives trust."""
    root = Path(path)
    if trusted or not root.is_dir():
        return
    for name in CODE_CONFIGS:
        if not (root / name).is_file():
            continue
        auto_map = read_model_config(root, name).get("auto_map")
        if auto_map:
            code = ", ".join(sorted(p.name for p in root.glob("*.py"))) or "none here: the hub's"
            raise RemoteCodeError(
                f"refusing to load {root}: its {name} has auto_map {str(auto_map)[:120]}, so "
                f"loading it would run the folder's own Python code ({code}). assay runs a "
                f"model folder's code only on your word: if you trust its source, pass {flag}; "
                "otherwise remove auto_map to use transformers' own classes"
            )


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
    archs = read_model_config(path).get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise MLError(
            f"{Path(path) / 'config.json'}: 'architectures' must be a list of class names such "
            f"as ['GPT2LMHeadModel'], got {str(archs)[:80]}"
        )
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
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> transformers.PreTrainedModel:
    """A model saved with ``save_pretrained`` in a local folder, in eval mode, on ``device``.

    ``device_map="auto"``: for a model larger than one device, accelerate places its layers
    over every visible GPU (then CPU memory) as it loads, and ``device`` is not used; inputs go
    to the device of the input embeddings (:func:`input_device`).

    ``task="auto"`` reads it from config.json (``infer_task``). ``num_labels`` sets a fresh
    classification head's size (heads that do not fit the saved one are rejected). A folder
    with code of its own (``auto_map``) loads only with ``trust_remote_code=True``.
    """
    root = _local_dir(path, "model")
    if not (root / "config.json").is_file():
        raise ModelNotFoundError(
            f"{root} has no config.json, so it is not a saved transformers model; save one "
            "with model.save_pretrained(DIR)"
        )
    check_no_remote_code(root, trusted=trust_remote_code)
    task = infer_task(root) if task == "auto" else task
    auto = _auto(task)
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    if device_map is not None:
        if device_map not in DEVICE_MAPS:
            raise MLError(
                f"unknown device_map {device_map!r}; valid: {', '.join(DEVICE_MAPS)} or null "
                "(the whole model on `device`)"
            )
        kwargs["device_map"] = device_map
    try:
        with warnings.catch_warnings():  # torch's note on the protocol of a refused pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            model = auto.from_pretrained(root, **kwargs)
    except pickle.UnpicklingError:  # a pytorch_model.bin that is not weights only
        raise MLError(
            f"refusing to load {root}: its weights file (pytorch_model.bin) holds pickled "
            "objects other than tensors, and loading them would run code from the file. Save "
            "the model with save_pretrained(DIR) (model.safetensors) instead"
        ) from None
    except (OSError, ValueError, KeyError, RuntimeError, EOFError) as exc:
        raise MLError(
            f"{root}: transformers could not load it as {auto.__name__} (task {task!r}): "
            f"{exc}. Check the task (valid: {', '.join(TASKS)}, or 'auto')"
        ) from exc
    return (model if device_map is not None else model.to(device)).eval()


def input_device(model: transformers.PreTrainedModel) -> str:
    """Where a model's inputs go: its input embeddings' device (the first layer's, when
    ``device_map`` spread it over several devices)."""
    return str(model.get_input_embeddings().weight.device)


def load_tokenizer(path: str | os.PathLike[str], *, trust_remote_code: bool = False) -> Any:
    """The tokenizer saved in a local folder (``tokenizer.json`` etc.), never downloaded; a
    folder with code of its own (``auto_map``) loads only with ``trust_remote_code=True``."""
    import transformers

    root = _local_dir(path, "tokenizer")
    check_no_remote_code(root, trusted=trust_remote_code)
    try:
        return transformers.AutoTokenizer.from_pretrained(
            root, local_files_only=True, trust_remote_code=trust_remote_code
        )
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
    common: dict[str, Any] = dict(
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
) -> transformers.PreTrainedModel:
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
        model = auto.from_config(config, trust_remote_code=False)
    return model
