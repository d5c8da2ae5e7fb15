"""Dataset cartography: per-example training dynamics, data maps, and training strategies.

Kept light (no torch import): the engine reads ``FAMILY`` to list families. Stages live in
``stages``; the Trainer callback in ``_hf`` (``from assay.families.cartography._hf import
DynamicsCallback``).
"""

from __future__ import annotations

from assay import Family

FAMILY = Family(
    name="cartography",
    description="Training dynamics per example, data maps, and filtering/smoothing/weighting strategies.",
    modules=["assay.families.cartography.stages"],
    cli="assay.families.cartography._cli:add_commands",
    analyze="assay.families.cartography._analysis:analyze",
)
