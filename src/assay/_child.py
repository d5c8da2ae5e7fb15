"""Running one stage in a child process of its own: for ``isolate=True`` stages and timeouts.

The child is spawned (a clean interpreter: no inherited threads or CUDA state), rebuilds the
config and the upstream handles from JSON, runs the stage, and leaves its results in the run
directory for the parent, which keeps the store up to date and kills the child at its timeout.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._config import StageConfig
from ._errors import AssayError
from ._io import atomic_write_json, atomic_write_text, read_json
from ._registry import Stage
from ._run import Run, UpstreamRun
from ._runner import _config_json, call_stage


def run_in_child(
    entry: Stage, config: StageConfig, handle: Run, timeout_s: float | None
) -> dict[str, Any]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a clean interpreter: no inherited threads or CUDA state
    upstream = {name: _upstream_payload(value) for name, value in handle.upstream.items()}
    proc = ctx.Process(
        target=_child_main,
        args=(entry.module, entry.name, json.dumps(_config_json(config)), str(handle.dir),
              handle.id, handle.attempt, upstream),
    )  # fmt: skip
    proc.start()
    proc.join(timeout_s)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise TimeoutError(f"run exceeded its timeout of {timeout_s} s and was killed")
    out = handle.dir / ".child_results.json"
    err = handle.dir / ".child_error.txt"
    if proc.exitcode != 0:
        message = err.read_text() if err.exists() else f"child process exited with {proc.exitcode}"
        err.unlink(missing_ok=True)
        raise AssayError(message.strip().splitlines()[-1] if message.strip() else message)
    results = read_json(out)
    out.unlink()
    return results


def _upstream_payload(value: Any) -> Any:
    if isinstance(value, UpstreamRun):
        return {"id": value.id, "stage": value.stage, "config": _config_json(value.config),
                "dir": str(value.dir), "results": value.results}  # fmt: skip
    if isinstance(value, Mapping):
        return {k: _upstream_payload(v) for k, v in value.items()}
    return [_upstream_payload(v) for v in value]


def _upstream_from_payload(value: Any) -> Any:
    from ._registry import get_stage

    if isinstance(value, Mapping) and "stage" in value and "dir" in value:
        cls = get_stage(value["stage"]).config_cls
        return UpstreamRun(value["id"], value["stage"], cls.model_validate(value["config"]),
                           Path(value["dir"]), value["results"])  # fmt: skip
    if isinstance(value, Mapping):
        return {k: _upstream_from_payload(v) for k, v in value.items()}
    return [_upstream_from_payload(v) for v in value]


def _child_main(module: str, stage_name: str, config_json: str, run_dir: str, rid: str,
                attempt: int, upstream: dict[str, Any]) -> None:  # fmt: skip
    import importlib
    import sys

    from ._registry import get_stage

    importlib.import_module(module)
    entry = get_stage(stage_name)
    config = entry.config_cls.model_validate_json(config_json)
    ups = {name: _upstream_from_payload(v) for name, v in upstream.items()}
    handle = Run(run_id=rid, stage=stage_name, config=config, dir=run_dir, upstream=ups,
                 attempt=attempt)  # fmt: skip
    try:
        results = call_stage(entry, config, handle)
    except BaseException as exc:
        atomic_write_text(
            Path(run_dir, ".child_error.txt"),
            traceback.format_exc() + f"\n{type(exc).__name__}: {exc}",
        )
        sys.exit(1)
    atomic_write_json(Path(run_dir) / ".child_results.json", results)
