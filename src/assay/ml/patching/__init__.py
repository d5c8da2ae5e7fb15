"""Batched activation patching on any torch module: K definitions x n inputs in one forward.

The engine the patching family runs (and any family may reuse). Importing this package loads no
torch; names are imported from their private modules on first use:

    from assay.ml.patching import from_module, InputPairs, probe_structure, BatchedPatcher
    model = from_module(net, input_shape=(4,))
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    outcome = BatchedPatcher(model, structure).run(definitions, pairs, "denoising")
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> private module that defines it
_LAZY = {
    "BatchedPatcher": "_runner",
    "PatchOutcome": "_runner",
    "DIRECTIONS": "_runner",
    "DEFAULT_DEFS_PER_FORWARD": "_defaults",
    "DEFAULT_MAX_BATCH_ROWS": "_runner",
    "Definition": "_definitions",
    "Patch": "_definitions",
    "generate": "_definitions",
    "load_definitions": "_definitions",
    "parse_definitions": "_definitions",
    "save_definitions": "_definitions",
    "validate": "_definitions",
    "DEFINITION_TYPES": "_definitions",
    "LoadedModel": "_model",
    "InputPairs": "_model",
    "from_module": "_model",
    "from_hf": "_model",
    "Structure": "_structure",
    "probe_structure": "_structure",
    "select_modules": "_structure",
    "ModuleInfo": "_modules",
    "PROBE_BATCH": "_modules",
    "KINDS": "_modules",
    "DEFAULT_KINDS": "_modules",
    "check_kinds": "_modules",
    "module_kind": "_modules",
    "readout_positions": "_positions",
    "METRICS": "_metrics",
    "LOGIT_DIFF_METRICS": "_metrics",
    "NORMALISE_EPS": "_metrics",
    "compute_metrics": "_metrics",
    "check_metric_names": "_metrics",
    "aggregate": "_metrics",
    "PatchingError": "_errors",
    "resolve": "_definitions",
    "site_shape": "_definitions",
    "SITES": "_sites",
    "edit_sites": "_sites",
    "capture_sites": "_sites",
    "OUTPUT_ALIAS": "_structure",
    "NOISE_ULPS": "_metrics",
    "undefined_counts": "_metrics",
    "UNDEFINED_METRICS": "_metrics",
    "attribution_patch": "_attribution",
    "ATTRIBUTION_METRICS": "_attribution",
    "path_patch": "_paths",
    "frozen_modules": "_paths",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
