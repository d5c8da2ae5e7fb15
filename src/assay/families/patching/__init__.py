"""Activation patching: which units of which layers carry the difference between two inputs.

Kept light on purpose (no torch import): the engine reads ``FAMILY`` to list families. The
library API is re-exported by name and imported on first use:

    from assay.families.patching import load_model, load_pairs, probe_structure, BatchedPatcher
"""

from __future__ import annotations

import importlib
from typing import Any

from assay import Family

FAMILY = Family(
    name="patching",
    description="Activation patching over clean/corrupted input pairs, batched K definitions a forward.",
    modules=["assay.families.patching.stages"],
    cli="assay.families.patching._cli:add_commands",
    analyze="assay.families.patching._analysis:analyze",
)

# public name -> private module that defines it
_PUBLIC = {
    "BatchedPatcher": "_runner", "PatchOutcome": "_runner",
    "Definition": "_definitions", "Patch": "_definitions", "generate": "_definitions",
    "load_definitions": "_definitions", "parse_definitions": "_definitions",
    "save_definitions": "_definitions", "validate": "_definitions",
    "InputPairs": "_inputs", "load_pairs": "_inputs",
    "LoadedModel": "_models", "from_module": "_models", "load_model": "_models",
    "Structure": "_structure", "ModuleInfo": "_structure", "probe_structure": "_structure",
    "select_modules": "_structure", "PROBE_BATCH": "_structure",
    "METRICS": "_metrics", "compute_metrics": "_metrics", "aggregate": "_metrics",
    "rank": "_results", "effect_grid": "_results", "PatchingError": "_errors",
}  # fmt: skip
__all__ = ["FAMILY", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
