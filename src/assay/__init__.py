"""assay: run ML-research experiments that resume, compare across seeds and never lose results.

The public API is re-exported here and loaded on first use: ``import assay`` itself imports
nothing (no pydantic, SQLAlchemy, torch, pandas or matplotlib) until a name is touched, so the
command line and plug-in discovery start fast. Implementation lives in private modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> private module that defines it
_PUBLIC = {
    "compare_groups": "._analysis",
    "group_columns": "._analysis",
    "records_frame": "._analysis",
    "load_runs": "._analysis",
    "summarize": "._analysis",
    "PlanRow": "._engine._api",
    "SuiteResult": "._engine._api",
    "plan_rows": "._engine._api",
    "plan_suite": "._engine._api",
    "run_config": "._engine._api",
    "run_suite": "._engine._api",
    "Runtime": "._engine._config",
    "SeededConfig": "._engine._config",
    "StageConfig": "._engine._config",
    "is_replicate": "._engine._config",
    "run_id": "._engine._config",
    "suite_path": "._engine._config",
    "PlanContext": "._engine._checks",
    "AssayError": "._engine._errors",
    "ConfigError": "._engine._errors",
    "RunNotFoundError": "._engine._errors",
    "StageNotFoundError": "._engine._errors",
    "FamilyNotFoundError": "._engine._errors",
    "StoreError": "._engine._errors",
    "SuiteError": "._engine._errors",
    "atomic_path": "._engine._io",
    "atomic_write_json": "._engine._io",
    "save_figure": "._engine._io",
    "load_torch_file": "._engine._io",
    "agg_pyplot": "._engine._io",
    "mean_interval": "._stats",
    "Interval": "._stats",
    "Family": "._engine._registry",
    "Stage": "._engine._registry",
    "get_stage": "._engine._registry",
    "list_families": "._engine._registry",
    "stage": "._engine._registry",
    "reindex": "._engine._reindex",
    "RunOptions": "._engine._options",
    "Selection": "._engine._options",
    "CheckpointError": "._engine._errors",
    "detached_run": "._engine._run",
    "Origin": "._engine._run",
    "Outcome": "._engine._run",
    "Progress": "._engine._run",
    "Run": "._engine._run",
    "RunRecord": "._engine._run",
    "RunStatus": "._engine._run",
    "UpstreamRun": "._engine._run",
    "Store": "._store",
    "resolve_store": "._store",
    "PlannedRun": "._engine._spec",
    "Suite": "._engine._suite",
    "load_suite": "._engine._suite",
    "configure_torch": "._engine._torch",
    "resolve_device": "._engine._torch",
    "seed_everything": "._engine._torch",
}
__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'assay' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what static checkers and IDEs see; nothing of it is imported at run time
    from ._analysis import compare_groups as compare_groups
    from ._analysis import group_columns as group_columns
    from ._analysis import load_runs as load_runs
    from ._analysis import records_frame as records_frame
    from ._analysis import summarize as summarize
    from ._engine._api import PlanRow as PlanRow
    from ._engine._api import SuiteResult as SuiteResult
    from ._engine._api import plan_rows as plan_rows
    from ._engine._api import plan_suite as plan_suite
    from ._engine._api import run_config as run_config
    from ._engine._api import run_suite as run_suite
    from ._engine._checks import PlanContext as PlanContext
    from ._engine._config import Runtime as Runtime
    from ._engine._config import SeededConfig as SeededConfig
    from ._engine._config import StageConfig as StageConfig
    from ._engine._config import is_replicate as is_replicate
    from ._engine._config import run_id as run_id
    from ._engine._config import suite_path as suite_path
    from ._engine._errors import AssayError as AssayError
    from ._engine._errors import CheckpointError as CheckpointError
    from ._engine._errors import ConfigError as ConfigError
    from ._engine._errors import FamilyNotFoundError as FamilyNotFoundError
    from ._engine._errors import RunNotFoundError as RunNotFoundError
    from ._engine._errors import StageNotFoundError as StageNotFoundError
    from ._engine._errors import StoreError as StoreError
    from ._engine._errors import SuiteError as SuiteError
    from ._engine._io import agg_pyplot as agg_pyplot
    from ._engine._io import atomic_path as atomic_path
    from ._engine._io import atomic_write_json as atomic_write_json
    from ._engine._io import load_torch_file as load_torch_file
    from ._engine._io import save_figure as save_figure
    from ._engine._options import RunOptions as RunOptions
    from ._engine._options import Selection as Selection
    from ._engine._registry import Family as Family
    from ._engine._registry import Stage as Stage
    from ._engine._registry import get_stage as get_stage
    from ._engine._registry import list_families as list_families
    from ._engine._registry import stage as stage
    from ._engine._reindex import reindex as reindex
    from ._engine._run import Origin as Origin
    from ._engine._run import Outcome as Outcome
    from ._engine._run import Progress as Progress
    from ._engine._run import Run as Run
    from ._engine._run import RunRecord as RunRecord
    from ._engine._run import RunStatus as RunStatus
    from ._engine._run import UpstreamRun as UpstreamRun
    from ._engine._run import detached_run as detached_run
    from ._engine._spec import PlannedRun as PlannedRun
    from ._engine._suite import Suite as Suite
    from ._engine._suite import load_suite as load_suite
    from ._engine._torch import configure_torch as configure_torch
    from ._engine._torch import resolve_device as resolve_device
    from ._engine._torch import seed_everything as seed_everything
    from ._stats import Interval as Interval
    from ._stats import mean_interval as mean_interval
    from ._store import Store as Store
    from ._store import resolve_store as resolve_store
