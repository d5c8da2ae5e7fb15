"""Dataset cartography: per-example training dynamics, data maps, and training strategies."""

from __future__ import annotations

from assay import Family

FAMILY = Family(
    name="cartography",
    description="Training dynamics per example, data maps, and filtering/smoothing/weighting strategies.",
    modules=["assay.families.cartography.stages"],
)
