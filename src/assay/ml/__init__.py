"""The shared ML layer: what every torch family needs once (configs, devices, content refs,
models, tokenizers, forwards, hooks, Trainer checkpoints, bounded intervals and plots).

It never imports a family; families import it. Importing ``assay.ml`` loads no torch,
transformers or matplotlib: each name below is imported from its private module on first use.
The batched activation-patching engine is ``assay.ml.patching``.

    from assay.ml import TorchConfig, setup_torch, ModelRef, load_hf_model, lm_forward
"""

from __future__ import annotations

import importlib
from typing import Any

from ._config import DType as DType
from ._config import TorchConfig as TorchConfig

# public name -> private module that defines it (imported on first attribute access)
_LAZY = {
    # devices and seeds
    "setup_torch": "_device",
    "worker_device": "_device",
    "worker_index": "_device",
    "torch_dtype": "_device",
    # content-addressed references
    "sha256_file": "_refs",
    "sha256_dir": "_refs",
    "sha256_path": "_refs",
    "FileRef": "_refs",
    "ModelRef": "_refs",
    # models and tokenizers
    "load_hf_model": "_hf",
    "load_tokenizer": "_hf",
    "input_device": "_hf",
    "build_model": "_hf",
    "infer_task": "_hf",
    "check_no_remote_code": "_hf",
    "read_model_config": "_hf",
    "build_word_tokenizer": "_tokenizer",
    "register_architecture": "_arch",
    "build_architecture": "_arch",
    "architectures": "_arch",
    # forwards
    "LMOutput": "_forward",
    "lm_forward": "_forward",
    "token_losses": "_forward",
    "transformer_blocks": "_forward",
    "word_token_alignment": "_forward",
    "word_token_alignments": "_alignment",
    "pool_words": "_forward",
    # hooks
    "capture_activations": "_hooks",
    "edit_outputs": "_hooks",
    "patch_output": "_hooks",
    "patch_mask": "_hooks",
    "get_modules": "_hooks",
    # memory-adaptive batching
    "AdaptiveBatch": "_batching",
    "OutOfMemoryError": "_batching",
    "is_oom": "_batching",
    # training
    "MetricsCallback": "_trainer",
    "trainer_output_dir": "_trainer",
    "adapter_dir": "_trainer",
    "last_checkpoint": "_trainer",
    "complete_checkpoints": "_trainer",
    # statistics and plots
    "Interval": "_plots",
    "mean_interval": "_plots",
    "agg_pyplot": "_plots",
    "seed_curves": "_plots",
    "plot_seed_curves": "_plots",
    "NonFiniteWarning": "_plots",
    # errors
    "MLError": "_errors",
    "ModelNotFoundError": "_errors",
    "ContentChangedError": "_errors",
    "RemoteCodeError": "_hf",
}
__all__ = ["DType", "TorchConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
