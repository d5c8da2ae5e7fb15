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
