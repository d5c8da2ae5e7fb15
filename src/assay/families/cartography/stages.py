"""The cartography stages, registered on import (the family's ``modules`` entry).

cartography.dynamics  train once, recording per-example dynamics; the data map
cartography.cluster   embeddings -> standardise -> PCA -> HDBSCAN
cartography.train     a training strategy from the map (the baseline when none is set)
"""

from __future__ import annotations

from ._stage_cluster import ClusterConfig as ClusterConfig
from ._stage_cluster import cluster as cluster
from ._stage_dynamics import DynamicsConfig as DynamicsConfig
from ._stage_dynamics import dynamics as dynamics
from ._stage_train import StrategyConfig as StrategyConfig
from ._stage_train import train_strategy as train_strategy
