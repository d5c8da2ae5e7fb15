"""The config base every torch stage inherits: seed, device, dtype and threads, declared once."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..core._config import Runtime, SeededConfig

DType = Literal["float32", "float64", "bfloat16", "float16"]


class TorchConfig(SeededConfig):
    """Base of a torch stage's config.

    ``device`` and ``num_threads`` say where a run executes, not what it computes, so they are
    left out of the run id; ``dtype`` changes the numbers and is part of it. ``device="auto"``
    picks this worker's GPU (worker i of a ``--workers N`` pool gets ``cuda:i % n_gpus``), then
    MPS, then the CPU.
    """

    device: str = Field(
        "auto",
        description="auto (this worker's GPU, else MPS, else CPU), cpu, "
        "cuda, cuda:N or mps; not part of the run id",
    )
    dtype: DType = Field("float32", description="the dtype the model computes in")
    num_threads: int = Field(
        0,
        ge=0,
        description="torch CPU threads; 0: $ASSAY_NUM_THREADS, "
        "else torch's default; not part of the run id",
    )
    identity_exclude: ClassVar[frozenset[str]] = frozenset({"device", "num_threads"})

    def runtime(self) -> Runtime:
        return Runtime(seed=self.seed, device=self.device, num_threads=self.num_threads)
