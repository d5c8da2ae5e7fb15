"""Where runs execute: inline in this process, or on a local pool of worker processes.

An executor takes planned runs and yields their outcomes as they finish. Each worker process has
its own :class:`Runner` on the shared store, so claims keep two workers off the same run.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from ._registry import get_stage
from ._runner import Outcome, Runner, RunOptions
from ._store import resolve_store
from ._suite import PlannedRun


class Executor(abc.ABC):
    """Runs planned runs; ``stop_on_error`` stops handing out new runs after a failure."""

    @abc.abstractmethod
    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]: ...


class InlineExecutor(Executor):
    """One run after another in this process: the fastest for short runs, and debuggable."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        runner = Runner(self.options)
        try:
            for planned in runs:
                outcome = runner.execute(planned.config, index=planned.index)
                yield outcome
                if self.options.stop_on_error and outcome.status == "failed":
                    return
        finally:
            runner.close()


_WORKER: Runner | None = None


def _init_worker(options: RunOptions, modules: tuple[str, ...]) -> None:
    global _WORKER
    for module in modules:
        importlib.import_module(module)
    _WORKER = Runner(options)


def _work(stage: str, config_json: str, index: int) -> Outcome:
    if _WORKER is None:
        raise RuntimeError("worker used before its initializer ran")
    config = get_stage(stage).config_cls.model_validate_json(config_json)
    return _WORKER.execute(config, index=index)


class ProcessExecutor(Executor):
    """``workers`` spawned processes; each takes the next run when it finishes one."""

    def __init__(self, options: RunOptions, modules: Sequence[str] = ()) -> None:
        self.options = options
        self.modules = tuple(modules)

    def map(self, runs: Sequence[PlannedRun]) -> Iterator[Outcome]:
        import multiprocessing as mp

        modules = self.modules + tuple(sorted({get_stage(r.stage).module for r in runs}))
        resolve_store(self.options.store, self.options.root).close()  # create it once, here
        pool = ProcessPoolExecutor(
            max_workers=self.options.workers,
            mp_context=mp.get_context("spawn"),  # no inherited torch threads or store handles
            initializer=_init_worker,
            initargs=(self.options, modules),
        )
        pending: set[Future[Any]] = set()
        queue = list(runs)
        stopped = False
        try:
            # Keep the pool fed a little ahead so a worker never waits on the parent.
            while queue or pending:
                while queue and not stopped and len(pending) < 2 * self.options.workers:
                    planned = queue.pop(0)
                    pending.add(
                        pool.submit(
                            _work,
                            planned.stage,
                            planned.config.model_dump_json(),
                            planned.index,
                        )
                    )
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    if self.options.stop_on_error and outcome.status == "failed":
                        stopped = True
                    yield outcome
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def make_executor(options: RunOptions, modules: Sequence[str] = ()) -> Executor:
    """The executor named by ``options.executor`` (see :class:`RunOptions`)."""
    if options.executor in ("slurm", "submitit-local"):
        from ._cluster import SubmititExecutor

        return SubmititExecutor(options, modules, local=options.executor == "submitit-local")
    if options.executor == "ray":
        from ._cluster import RayExecutor

        return RayExecutor(options, modules)
    if options.workers <= 1:
        return InlineExecutor(options)
    return ProcessExecutor(options, modules)
