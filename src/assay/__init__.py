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
    "compare_groups": ".analysis._compare",
    "group_columns": ".analysis._frames",
    "records_frame": ".analysis._frames",
    "load_runs": ".analysis._frames",
    "summarize": ".analysis._summary",
    "PlanRow": ".engine._api",
    "SuiteResult": ".engine._api",
    "plan_rows": ".engine._api",
    "plan_suite": ".engine._api",
    "run_config": ".engine._api",
    "run_suite": ".engine._api",
    "Runtime": ".core._config",
    "SeededConfig": ".core._config",
    "StageConfig": ".core._config",
    "is_replicate": ".core._config",
    "run_id": ".core._config",
    "suite_path": ".core._config",
    "PlanContext": ".engine._checks",
    "AssayError": ".core._errors",
    "ConfigError": ".core._errors",
    "RunNotFoundError": ".core._errors",
    "StageNotFoundError": ".core._errors",
    "FamilyNotFoundError": ".core._errors",
    "StoreError": ".core._errors",
    "SuiteError": ".core._errors",
    "atomic_path": ".core._io",
    "atomic_write_json": ".core._io",
    "save_figure": ".core._io",
    "load_torch_file": ".core._io",
    "agg_pyplot": ".core._io",
    "mean_interval": ".analysis._stats",
    "Interval": ".analysis._stats",
    "Family": ".core._registry",
    "Stage": ".core._registry",
    "get_stage": ".core._registry",
    "list_families": ".core._registry",
    "stage": ".core._registry",
    "reindex": ".engine._reindex",
    "RunOptions": ".core._options",
    "Selection": ".core._options",
    "CheckpointError": ".core._errors",
    "detached_run": ".core._run",
    "Origin": ".core._run",
    "Outcome": ".core._run",
    "Progress": ".core._run",
    "Run": ".core._run",
    "RunRecord": ".core._run",
    "RunStatus": ".core._run",
    "UpstreamRun": ".core._run",
    "Store": ".store",
    "resolve_store": ".store",
    "PlannedRun": ".core._spec",
    "Suite": ".engine._suite",
    "load_suite": ".engine._suite",
    "configure_torch": ".core._torch",
    "resolve_device": ".core._torch",
    "seed_everything": ".core._torch",
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
    from .analysis._compare import compare_groups as compare_groups
    from .analysis._frames import group_columns as group_columns
    from .analysis._frames import load_runs as load_runs
    from .analysis._frames import records_frame as records_frame
    from .analysis._stats import Interval as Interval
    from .analysis._stats import mean_interval as mean_interval
    from .analysis._summary import summarize as summarize
    from .core._config import Runtime as Runtime
    from .core._config import SeededConfig as SeededConfig
    from .core._config import StageConfig as StageConfig
    from .core._config import is_replicate as is_replicate
    from .core._config import run_id as run_id
    from .core._config import suite_path as suite_path
    from .core._errors import AssayError as AssayError
    from .core._errors import CheckpointError as CheckpointError
    from .core._errors import ConfigError as ConfigError
    from .core._errors import FamilyNotFoundError as FamilyNotFoundError
    from .core._errors import RunNotFoundError as RunNotFoundError
    from .core._errors import StageNotFoundError as StageNotFoundError
    from .core._errors import StoreError as StoreError
    from .core._errors import SuiteError as SuiteError
    from .core._io import agg_pyplot as agg_pyplot
    from .core._io import atomic_path as atomic_path
    from .core._io import atomic_write_json as atomic_write_json
    from .core._io import load_torch_file as load_torch_file
    from .core._io import save_figure as save_figure
    from .core._options import RunOptions as RunOptions
    from .core._options import Selection as Selection
    from .core._registry import Family as Family
    from .core._registry import Stage as Stage
    from .core._registry import get_stage as get_stage
    from .core._registry import list_families as list_families
    from .core._registry import stage as stage
    from .core._run import Origin as Origin
    from .core._run import Outcome as Outcome
    from .core._run import Progress as Progress
    from .core._run import Run as Run
    from .core._run import RunRecord as RunRecord
    from .core._run import RunStatus as RunStatus
    from .core._run import UpstreamRun as UpstreamRun
    from .core._run import detached_run as detached_run
    from .core._spec import PlannedRun as PlannedRun
    from .core._torch import configure_torch as configure_torch
    from .core._torch import resolve_device as resolve_device
    from .core._torch import seed_everything as seed_everything
    from .engine._api import PlanRow as PlanRow
    from .engine._api import SuiteResult as SuiteResult
    from .engine._api import plan_rows as plan_rows
    from .engine._api import plan_suite as plan_suite
    from .engine._api import run_config as run_config
    from .engine._api import run_suite as run_suite
    from .engine._checks import PlanContext as PlanContext
    from .engine._reindex import reindex as reindex
    from .engine._suite import Suite as Suite
    from .engine._suite import load_suite as load_suite
    from .store import Store as Store
    from .store import resolve_store as resolve_store
