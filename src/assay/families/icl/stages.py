"""Registers the icl family's stages (imported lazily by the engine).

icl.train          tiny causal LM trained on walks (in-context graph tracing)
icl.geometry       Park et al. reproduction: energy / separation vs length, PCA, CSS
icl.loo            leave-one-out influence, every position x layer, bridge vs anchor
icl.switch         two-graph context switch
icl.superposition  dual-interpretation graph, label-aware collapse
icl.shuffle        block permutation vs full shuffle
icl.inject         incongruous-token injection
icl.stagewise      CSS over training checkpoints
"""

from __future__ import annotations

from ._stage_geometry import GeometryConfig as GeometryConfig
from ._stage_geometry import geometry_stage as geometry_stage
from ._stage_loo import LOOConfig as LOOConfig
from ._stage_loo import loo_stage as loo_stage
from ._stage_perturb import InjectConfig as InjectConfig
from ._stage_perturb import ShuffleConfig as ShuffleConfig
from ._stage_perturb import inject as inject
from ._stage_perturb import shuffle as shuffle
from ._stage_stagewise import StagewiseConfig as StagewiseConfig
from ._stage_stagewise import stagewise as stagewise
from ._stage_switch import SuperpositionConfig as SuperpositionConfig
from ._stage_switch import SwitchConfig as SwitchConfig
from ._stage_switch import superposition as superposition
from ._stage_switch import switch as switch
from ._stage_train import TrainConfig as TrainConfig
from ._stage_train import train as train
