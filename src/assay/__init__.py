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
    "PlanRow": "._api",
    "SuiteResult": "._api",
    "plan_rows": "._api",
    "plan_suite": "._api",
    "run_config": "._api",
    "run_suite": "._api",
    "Runtime": "._config",
    "SeededConfig": "._config",
    "StageConfig": "._config",
    "run_id": "._config",
    "AssayError": "._errors",
    "ConfigError": "._errors",
    "RunNotFoundError": "._errors",
    "StageNotFoundError": "._errors",
    "StoreError": "._errors",
    "SuiteError": "._errors",
    "atomic_path": "._io",
    "atomic_write_json": "._io",
    "save_figure": "._io",
    "agg_pyplot": "._io",
    "mean_interval": "._stats",
    "Interval": "._stats",
    "Family": "._registry",
    "Stage": "._registry",
    "get_stage": "._registry",
    "list_families": "._registry",
    "stage": "._registry",
    "reindex": "._reindex",
    "RunOptions": "._options",
    "Selection": "._options",
    "CheckpointError": "._run",
    "DetachedRun": "._run",
    "Origin": "._run",
    "Outcome": "._run",
    "Progress": "._run",
    "Run": "._run",
    "RunRecord": "._run",
    "RunStatus": "._run",
    "UpstreamRun": "._run",
    "Store": "._store",
    "resolve_store": "._store",
    "PlannedRun": "._spec",
    "RunSpec": "._spec",
    "Suite": "._suite",
    "load_suite": "._suite",
    "configure_torch": "._torch",
    "resolve_device": "._torch",
    "seed_everything": "._torch",
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
    from ._api import PlanRow as PlanRow
    from ._api import SuiteResult as SuiteResult
    from ._api import plan_rows as plan_rows
    from ._api import plan_suite as plan_suite
    from ._api import run_config as run_config
    from ._api import run_suite as run_suite
    from ._config import Runtime as Runtime
    from ._config import SeededConfig as SeededConfig
    from ._config import StageConfig as StageConfig
    from ._config import run_id as run_id
    from ._errors import AssayError as AssayError
    from ._errors import ConfigError as ConfigError
    from ._errors import RunNotFoundError as RunNotFoundError
    from ._errors import StageNotFoundError as StageNotFoundError
    from ._errors import StoreError as StoreError
    from ._errors import SuiteError as SuiteError
    from ._io import agg_pyplot as agg_pyplot
    from ._io import atomic_path as atomic_path
    from ._io import atomic_write_json as atomic_write_json
    from ._io import save_figure as save_figure
    from ._options import RunOptions as RunOptions
    from ._options import Selection as Selection
    from ._registry import Family as Family
    from ._registry import Stage as Stage
    from ._registry import get_stage as get_stage
    from ._registry import list_families as list_families
    from ._registry import stage as stage
    from ._reindex import reindex as reindex
    from ._run import CheckpointError as CheckpointError
    from ._run import DetachedRun as DetachedRun
    from ._run import Origin as Origin
    from ._run import Outcome as Outcome
    from ._run import Progress as Progress
    from ._run import Run as Run
    from ._run import RunRecord as RunRecord
    from ._run import RunStatus as RunStatus
    from ._run import UpstreamRun as UpstreamRun
    from ._spec import PlannedRun as PlannedRun
    from ._spec import RunSpec as RunSpec
    from ._stats import Interval as Interval
    from ._stats import mean_interval as mean_interval
    from ._store import Store as Store
    from ._store import resolve_store as resolve_store
    from ._suite import Suite as Suite
    from ._suite import load_suite as load_suite
    from ._torch import configure_torch as configure_torch
    from ._torch import resolve_device as resolve_device
    from ._torch import seed_everything as seed_everything
