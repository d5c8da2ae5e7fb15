"""The minimum-volume study of Fan, Sandlund & Ko, "Sharp Minima Can Generalize: A Loss
Landscape Perspective On Data" (arXiv:2511.04808), as three cached stages:

    volume.train   -> one model per data level
    volume.perturb -> loss curves of every model along shared random directions
    volume.volume  -> radii, log-volumes, cutoffs, ranking statistics and plots for a threshold

See README.md in this folder. Importing this package loads no torch.
"""

from assay import Family

FAMILY = Family(
    name="volume",
    description="Loss-landscape minimum volume (Fan, Sandlund, Ko 2025): train, perturb, volume.",
    modules=("assay.families.volume.stages",),
    analyze="assay.families.volume._analysis:analyze",
)
