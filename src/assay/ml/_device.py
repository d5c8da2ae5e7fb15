"""Per-run torch set-up: seeds, threads, and which device this worker uses.

    device, dtype = setup_torch(config)   # first line of a torch stage

``device="auto"`` gives worker i of a ``--workers N`` pool the GPU ``cuda:{i % n_gpus}`` (the
pool sets ``$ASSAY_WORKER_INDEX`` per worker), so N workers spread over the GPUs instead of all
landing on ``cuda:0``; without CUDA it falls back to MPS, then the CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core._errors import ConfigError
from ..core._torch import WORKER_INDEX_ENV as WORKER_INDEX_ENV
from ..core._torch import configure_torch, resolve_device, seed_everything
from ..core._torch import worker_index as worker_index

if TYPE_CHECKING:
    import torch

    from ._config import TorchConfig


def worker_device(spec: str = "auto") -> str:
    """This worker's device for ``spec`` (see :func:`assay.resolve_device`, the one resolver)."""
    return resolve_device(spec)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name`` ("float32", "bfloat16", ...)."""
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"unknown dtype {name!r}; valid: float32, float64, bfloat16, float16")
    return dtype


def setup_torch(config: TorchConfig) -> tuple[str, torch.dtype]:
    """Seed python/numpy/torch from ``config.seed``, set threads, pick the device and dtype."""
    import torch  # noqa: F401  (imported first so seed_everything seeds torch too)

    seed_everything(config.seed)
    configure_torch(config.num_threads)
    return worker_device(config.device), torch_dtype(config.dtype)
