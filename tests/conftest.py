import os
import sys
from pathlib import Path

import pytest

ENGINE_TESTS = Path(__file__).parent / "engine"
sys.path.insert(0, str(ENGINE_TESTS))  # makes `teststages` importable here and in subprocesses
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(ENGINE_TESTS), os.environ.get("PYTHONPATH")) if p
)
os.environ.setdefault("ASSAY_NUM_THREADS", "1")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One torch thread for the session: fastest for the tiny models here on 2 shared cores,
    and timings stay stable. Set once collection has imported the test modules; a session of
    engine tests alone never loads torch for it."""
    torch = sys.modules.get("torch")
    old = torch.get_num_threads() if torch is not None else None
    if torch is not None and old != 1:
        torch.set_num_threads(1)
    yield
    if torch is not None and old not in (None, 1):
        torch.set_num_threads(old)
