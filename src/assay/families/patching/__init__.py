"""Activation patching: which units of which layers carry the difference between two inputs.

Kept light on purpose (no torch import): the engine reads ``FAMILY`` to list families. The
library API is re-exported by name and imported on first use:

    from assay.families.patching import load_model, load_pairs, probe_structure, BatchedPatcher

The engine (structure probe, definitions, batched runner, metrics) is ``assay.ml.patching``;
this family adds the file loaders, the stages, the CLI and the analysis.
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

# public name -> module that defines it (the engine lives in assay.ml.patching)
_ENGINE = "assay.ml.patching"
_PUBLIC = {
    **dict.fromkeys(
        [
            "BatchedPatcher",
            "PatchOutcome",
            "Definition",
            "Patch",
            "generate",
            "load_definitions",
            "parse_definitions",
            "save_definitions",
            "validate",
            "InputPairs",
            "LoadedModel",
            "from_module",
            "from_hf",
            "Structure",
            "ModuleInfo",
            "probe_structure",
            "select_modules",
            "PROBE_BATCH",
            "METRICS",
            "compute_metrics",
            "aggregate",
            "PatchingError",
        ],
        _ENGINE,
    ),
    "load_pairs": f"{__name__}._inputs",
    "load_model": f"{__name__}._models",
    "rank": f"{__name__}._results",
    "effect_grid": f"{__name__}._results",
}
__all__ = ["FAMILY", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
