"""Registers the volume family's stages (imported lazily by the engine)."""

from __future__ import annotations

from ._stage_perturb import PerturbConfig as PerturbConfig
from ._stage_perturb import perturb as perturb
from ._stage_train import TrainConfig as TrainConfig
from ._stage_train import train as train
from ._stage_volume import VolumeConfig as VolumeConfig
from ._stage_volume import volume as volume
