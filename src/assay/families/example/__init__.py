"""The engine's example family: polynomial regression on noisy synthetic data (numpy only)."""

from assay._registry import Family

FAMILY = Family(
    name="example",
    description="Polynomial ridge regression on noisy sin(x) data: a two-stage pipeline in numpy.",
    modules=("assay.families.example._stages",),
)
