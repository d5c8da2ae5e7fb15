"""Memory-adaptive batching: the largest batch that fits, found by halving on out-of-memory.

    sizer = AdaptiveBatch(64, knob="batch_size")             # 64: the configured upper bound
    parts = sizer.map(len(items), lambda a, b: forward(items[a:b]))   # slices of <= 64 items
    results.update(sizer.record())       # {"batch_size_used": the largest batch that ran}

A call that runs out of device memory (``torch.cuda.OutOfMemoryError``, or any RuntimeError
whose message says "out of memory", as MPS and older CUDA builds raise) is retried at half the
size, from the same item, and the smaller size sticks for the rest of the run: memory rarely
frees up mid-stage, so growing back would only OOM again. Each recovery writes one log line
("out of memory at 64 contexts per forward; 16 fit ..."). Out of memory at size 1 cannot be avoided by
batching: it is one :class:`OutOfMemoryError` naming the knob and what else frees memory.

Sizes change no number beyond float rounding (the callers batch rows that do not interact), so
``used`` is provenance, not identity.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import TypeVar

from ._errors import MLError

T = TypeVar("T")
log = logging.getLogger("assay.ml")

# What frees memory besides a smaller batch; the unavoidable-OOM message lists it.
DEFAULT_HINTS = "dtype: bfloat16, device_map: auto (loading), a smaller model, or a larger device"


class OutOfMemoryError(MLError):
    """Out of device memory at batch size 1: no smaller batch exists; the message names the
    knob and what else frees memory."""


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is the device running out of memory (CUDA, MPS or a plain allocator)."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is installed wherever this runs
        pass
    text = str(exc)
    # cuBLAS reports a failed workspace allocation in its own words
    oom = "out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text
    return isinstance(exc, RuntimeError | MemoryError) and oom


def free_memory() -> None:
    """Drop what the failed attempt left allocated, so the retry starts from a clean cache."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


class AdaptiveBatch:
    """A batch size that halves on out-of-memory and remembers what ran.

    Args:
        size: the largest size to try (the configured value); ``None``: no bound of its own,
            each call's ``want`` decides until an out-of-memory sets one.
        knob: the config field that sets the size, named in the log line and the error.
        what: what one unit is ("context", "input row", "example"), for messages.
        hints: what else frees memory, for the unavoidable-OOM message.
        record_as: the results key of :meth:`record` (default ``{knob}_used``).
    """

    def __init__(
        self,
        size: int | None,
        *,
        knob: str,
        what: str = "batch item",
        hints: str = DEFAULT_HINTS,
        record_as: str | None = None,
    ) -> None:
        if size is not None and size < 1:
            raise MLError(f"{knob} must be >= 1, got {size}")
        self.size, self.knob, self.what, self.hints = size, knob, what, hints
        self.key = record_as or f"{knob}_used"
        # the largest size a call ran with since the last halving: the batch really used
        self.used: int | None = None
        self.halvings = 0
        self.last = 0  # the size of the latest successful call

    def run(self, fn: Callable[[int], T], want: int) -> T:
        """``fn(m)`` for ``m = min(want, size)``; on out-of-memory, ``size = m // 2`` and again.

        ``fn`` must be safe to call again after it failed part-way (it starts its work over).
        """
        m = max(1, want if self.size is None else min(want, self.size))
        first = m
        while True:
            try:
                out = fn(m)
            except (RuntimeError, MemoryError) as exc:
                if not is_oom(exc):
                    raise
                failed = True
            else:
                failed = False
            if not failed:
                break
            # outside the except block: the traceback (and the tensors its frames hold) is gone
            free_memory()
            if m == 1:
                raise OutOfMemoryError(
                    f"out of device memory at one {self.what} per forward, the smallest batch "
                    f"`{self.knob}` can give, so a smaller {self.knob} cannot help. Free memory "
                    f"another way: {self.hints}"
                )
            m //= 2
            self.size = m
            self.halvings += 1
            self.used = None  # sizes that ran before the halving no longer fit
        if m < first:
            log.warning(
                "out of memory at %d %ss per forward; %d fit: continuing with %d (%s sets the "
                "largest tried)",
                first,
                self.what,
                m,
                m,
                self.knob,
            )
        self.last = m
        self.used = m if self.used is None else max(self.used, m)
        return out

    def map(self, n: int, fn: Callable[[int, int], T], limit: int | None = None) -> list[T]:
        """``fn(start, stop)`` over consecutive slices covering ``range(n)``, each at most the
        current size (and ``limit``); an out-of-memory retries the same slice at half the size."""
        out: list[T] = []
        start = 0
        while start < n:
            want = n - start if limit is None else min(limit, n - start)

            def piece(m: int, a: int = start) -> T:
                return fn(a, min(n, a + m))

            out.append(self.run(piece, want))
            start = min(n, start + self.last)
        return out

    def record(self) -> dict[str, int]:
        """``{knob}_used`` (and ``_halvings`` when any): what a stage writes into its results;
        empty when nothing ran (a resumed stage with no work left)."""
        rec: dict[str, int] = {} if self.used is None else {self.key: self.used}
        if self.halvings:
            rec[self.key.removesuffix("_used") + "_halvings"] = self.halvings
        return rec
