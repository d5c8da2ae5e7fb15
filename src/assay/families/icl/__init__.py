"""In-context representation geometry and token influence in causal LMs."""

from __future__ import annotations

from assay import Family

FAMILY = Family(
    name="icl",
    description="Random walks on graphs as contexts: per-layer geometry, sensitivity, influence.",
    modules=["assay.families.icl.stages"],
    analyze="assay.families.icl._analysis:analyze",
)
