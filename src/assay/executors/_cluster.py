"""Cluster executors, named by the ``assay.executors`` entry points: SLURM through submitit
(:mod:`._slurm`) and Ray (:mod:`._ray`).

Both send *chunks* of runs to remote workers; each worker builds its own Runner on the shared
store, so claims keep runs from executing twice exactly as with local workers. The store must be
reachable from the workers (PostgreSQL; SQLite only on a reliable shared filesystem), except
with SLURM's ``offline=true``, where ``assay status`` ingests the run directories instead.
"""

from __future__ import annotations

from ._ray import RAY_PARAMS as RAY_PARAMS
from ._ray import RayExecutor as RayExecutor
from ._slurm import SLURM_PARAMS as SLURM_PARAMS
from ._slurm import SlurmExecutor as SlurmExecutor
from ._slurm import SubmititExecutor as SubmititExecutor
from ._slurm import SubmititLocalExecutor as SubmititLocalExecutor
