"""The engine's example family: polynomial regression on noisy synthetic data (numpy only).

``from assay.families.example import FitConfig, DataConfig`` gives the configs (loaded on use).
"""

from __future__ import annotations

import importlib
from typing import Any

from assay import Family

FAMILY = Family(
    name="example",
    description="Polynomial ridge regression on noisy sin(x) data: a two-stage pipeline in numpy.",
    modules=("assay.families.example._stages",),
)

_PUBLIC = {
    "DataConfig": "._stages",
    "FitConfig": "._stages",
    "make_data": "._stages",
    "fit": "._stages",
}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
