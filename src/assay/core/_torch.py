"""Device, thread and seed set-up shared by the families (torch imported only when used)."""

from __future__ import annotations

import os
import random
import sys

from ._errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
WORKER_INDEX_ENV = "ASSAY_WORKER_INDEX"  # set by the worker pool: worker i of --workers N


def worker_index() -> int:
    """This process's index in the worker pool (``$ASSAY_WORKER_INDEX``), 0 outside a pool."""
    raw = os.environ.get(WORKER_INDEX_ENV, "0").strip() or "0"
    if not raw.isdigit():
        raise ConfigError(
            f"${WORKER_INDEX_ENV}={raw!r} is not a worker index (a non-negative integer); "
            "unset it or let the assay worker pool set it"
        )
    return int(raw)


def resolve_device(spec: str = "auto") -> str:
    """The one device resolver: ``auto`` -> this worker's GPU ``cuda:{worker % n_gpus}`` (so
    ``--workers N`` spreads over the GPUs), else ``mps``, else ``cpu``; a named device must
    exist. What a stage runs on and what provenance records both come from here."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return f"cuda:{worker_index() % torch.cuda.device_count()}"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if spec == "cpu":
        return "cpu"
    if spec.startswith("cuda"):
        index = spec.partition(":")[2]
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {spec!r} asked for, but torch sees no CUDA GPU here; "
                "use device=auto (picks the GPU when there is one) or device=cpu"
            )
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ConfigError(
                f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered 0..{torch.cuda.device_count() - 1}"
            )
        return spec
    if spec == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' asked for, but MPS is not available; use auto or cpu")
        return spec
    raise ConfigError(f"unknown device {spec!r}; valid choices: {DEVICE_CHOICES}")


def configure_torch(num_threads: int | None = None) -> int:
    """Set torch's intra-op thread count; 0/None keeps ``$ASSAY_NUM_THREADS`` or torch's default.

    On a small shared machine one thread per worker process is often fastest: several workers
    each using every core oversubscribe the CPU.
    """
    import torch

    if not num_threads:
        num_threads = int(os.environ.get("ASSAY_NUM_THREADS", "0") or 0)
    if num_threads and num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (when already imported)."""
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
