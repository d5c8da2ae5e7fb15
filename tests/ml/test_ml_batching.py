"""Memory-adaptive batching: an out-of-memory halves the batch, logs one line, and the size
that really ran is recorded; out of memory at batch 1 is one message naming the knob."""

from __future__ import annotations

import logging

import pytest
import torch

from assay import AssayError
from assay.ml import AdaptiveBatch, OutOfMemoryError, is_oom


def fits_below(limit: int, calls: list[int], cuda: bool = True):
    """A stand-in forward: raises the device's out-of-memory above ``limit`` items."""

    def forward(a: int, b: int) -> list[int]:
        calls.append(b - a)
        if b - a > limit:
            if cuda:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            raise RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")
        return list(range(a, b))

    return forward


@pytest.mark.parametrize("cuda", [True, False])
def test_oom_halves_logs_once_and_records_the_batch_used(caplog, cuda):
    calls: list[int] = []
    sizer = AdaptiveBatch(64, knob="batch_size", what="context")
    with caplog.at_level(logging.WARNING, logger="assay.ml"):
        parts = sizer.map(100, fits_below(10, calls, cuda))
    # every item exactly once, in order: the failed slice was retried from its start
    assert [i for p in parts for i in p] == list(range(100))
    assert calls[:4] == [64, 32, 16, 8]  # halved until it fit
    assert set(calls[4:]) == {8, 4}  # 8 sticks for the rest (the last slice holds 4 items)
    # the batch used is the largest that ran after the halving, not the short last slice
    assert sizer.used == 8 and sizer.size == 8 and sizer.halvings == 3
    assert sizer.record() == {"batch_size_used": 8, "batch_size_halvings": 3}
    lines = [r.getMessage() for r in caplog.records if r.name == "assay.ml"]
    assert lines == [
        "out of memory at 64 contexts per forward; 8 fit: continuing with 8 (batch_size sets the "
        "largest tried)"
    ]


def test_no_oom_no_log_and_the_configured_size_is_recorded(caplog):
    sizer = AdaptiveBatch(16, knob="batch_size")
    with caplog.at_level(logging.WARNING, logger="assay.ml"):
        parts = sizer.map(32, fits_below(1000, []))
    assert len(parts) == 2 and sizer.used == 16 and sizer.halvings == 0
    assert sizer.record() == {"batch_size_used": 16}
    assert not [r for r in caplog.records if r.name == "assay.ml"]


def test_limit_and_unbounded_size():
    calls: list[int] = []
    sizer = AdaptiveBatch(None, knob="max_batch_rows", what="input", record_as="inputs_used")
    sizer.map(20, fits_below(6, calls), limit=12)
    assert calls[:2] == [12, 6] and sizer.size == 6 and sizer.used == 6  # 20 = 6+6+6+2
    assert sizer.record() == {"inputs_used": 6, "inputs_halvings": 1}


def test_oom_at_batch_one_is_one_message_naming_the_knob():
    sizer = AdaptiveBatch(4, knob="batch_size", what="context")
    with pytest.raises(OutOfMemoryError) as err:
        sizer.map(3, fits_below(0, []))
    msg = str(err.value)
    assert isinstance(err.value, AssayError)  # the CLI prints it without a traceback
    assert msg.startswith("out of device memory at one context per forward")
    assert "a smaller batch_size cannot help" in msg
    assert "bfloat16" in msg and "device_map: auto" in msg
    assert err.value.__cause__ is None and err.value.__context__ is None


def test_other_errors_pass_through_untouched():
    def broken(a, b):
        raise RuntimeError("shape mismatch")

    sizer = AdaptiveBatch(8, knob="batch_size")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        sizer.map(8, broken)
    assert sizer.size == 8 and sizer.used is None
    assert is_oom(RuntimeError("CUDA error: out of memory")) and not is_oom(ValueError("x"))
    assert is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))


def test_bad_size_is_an_error_naming_the_knob():
    with pytest.raises(AssayError, match="max_batch_rows must be >= 1, got 0"):
        AdaptiveBatch(0, knob="max_batch_rows")
