"""2-D trigger classification: fine-tuning a causal LM and measuring selective generalization."""

from __future__ import annotations

from assay import Family

FAMILY = Family(
    name="trigger",
    description="F(x, T) datasets, LoRA/full fine-tuning of a causal LM, selective generalization.",
    modules=["assay.families.trigger.stages"],
    cli="assay.families.trigger._cli:add_commands",
    analyze="assay.families.trigger._analysis:analyze",
)
