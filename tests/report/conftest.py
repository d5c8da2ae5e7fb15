import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # `reportstages` for this process and (below) subprocesses
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium (skipped with the reason where it is absent)"
    )
