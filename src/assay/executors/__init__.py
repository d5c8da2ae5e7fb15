"""Executors: where planned runs execute (inline, a local pool, SLURM, Ray), as plugins."""

from ._base import Executor as Executor
from ._base import WorkerEntry as WorkerEntry
from ._base import executor_class as executor_class
from ._base import executor_names as executor_names
from ._base import make_executor as make_executor
