"""Load: many worker processes claiming and finishing short runs on one store.

    .venv/bin/python bench/bench_load.py                      # 16 processes, 5,000 runs, both stores
    .venv/bin/python bench/bench_load.py --runs 500 --backends sqlite

Every worker process plans the same suite (``t.count``, 0 s runs) and executes all of it through
the one worker entry, so all of them contend for every run, the worst case for claims. Each
backend gets a fresh root (and a fresh PostgreSQL server, started here in a temporary folder,
unless ``--pg-url`` names one). Printed per backend: runs/s from the moment every worker is ready
(imports and planning excluded) to the last one's exit, and the checks the load test asserts:
runs lost, runs executed twice, "database is locked" errors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests" / "engine"), str(REPO / "tests" / "cluster")]
READY_TIMEOUT_S = 300  # workers importing and planning on a busy 2-core machine


def suite_dict(n_runs: int, marker_dir: Path) -> dict:
    return {
        "stage": "t.count",
        "config": {"marker_dir": str(marker_dir)},
        "sweep": {"grid": {"x": list(range(n_runs))}},
    }


def worker(args: argparse.Namespace) -> int:
    """One worker process: plan, signal ready, wait for go, execute every run."""
    import teststages  # noqa: F401 - registers t.count

    import assay
    from assay.core._options import RunOptions
    from assay.engine._api import plan_suite
    from assay.engine._suite import suite_from_dict
    from assay.engine._worker import execute_chunk

    root = Path(args.root)
    runs = plan_suite(suite_from_dict(suite_dict(args.runs, root.parent)), imports=["teststages"])
    options = RunOptions(root=root, store=args.store)
    (root.parent / "ready" / str(os.getpid())).touch()
    deadline = time.time() + READY_TIMEOUT_S
    while not (root.parent / "go").exists():
        if time.time() > deadline:
            return 3
        time.sleep(0.01)
    outcomes = execute_chunk(runs, options, ["teststages"])
    print(json.dumps(dict(Counter(o.label for o in outcomes))))
    del assay
    return 0


def run_load(store: str | None, base: Path, n_runs: int, n_procs: int) -> dict:
    """Start ``n_procs`` workers on a fresh root; return throughput and the invariants."""
    import assay

    root = base / "runs"
    (base / "ready").mkdir(parents=True)
    env = {
        **os.environ,
        "ASSAY_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "tests" / "engine"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    cmd = [sys.executable, __file__, "--worker", "--root", str(root), "--runs", str(n_runs)]
    if store:
        cmd += ["--store", store]
    with assay.resolve_store(store, root):  # create the schema once, before the race
        pass
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(n_procs)
    ]
    deadline = time.time() + READY_TIMEOUT_S
    while len(list((base / "ready").iterdir())) < n_procs:
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)
    started = time.perf_counter()
    (base / "go").touch()
    outputs = [p.communicate(timeout=3600) for p in procs]
    elapsed = time.perf_counter() - started
    errors = "\n".join(err for _, err in outputs)
    with assay.resolve_store(store, root) as s:
        records = s.query()
    starts = (
        Counter((base / "starts.txt").read_text().split())
        if (base / "starts.txt").exists()
        else Counter()
    )
    done = [r for r in records if r.status is assay.RunStatus.DONE]
    return {
        "runs": n_runs,
        "processes": n_procs,
        "seconds": round(elapsed, 2),
        "runs_per_s": round(n_runs / elapsed, 1),
        "lost": n_runs - len(done),
        "duplicated": sum(1 for c in starts.values() if c > 1)
        + sum(1 for r in records if r.attempts != 1),
        "database_locked": errors.count("database is locked"),
        "failed_workers": sum(1 for p in procs if p.returncode != 0),
        "stderr_tail": errors.strip()[-600:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--procs", type=int, default=16)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=None, help="an existing server (default: start one)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    results = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"assay-load-{backend}-") as tmp:
            server = None
            store = None
            if backend == "postgresql":
                store = args.pg_url
                if store is None:
                    import servers

                    pg_base = Path(tempfile.mkdtemp(prefix="assay-load-pg-"))  # removed by stop()
                    server = servers.start_postgres(pg_base, max_connections=200)
                    store = server.url
            try:
                results[backend] = run_load(store, Path(tmp) / "load", args.runs, args.procs)
            finally:
                if server is not None:
                    server.stop()
        r = results[backend]
        print(
            f"{backend:<11} {r['runs']} runs, {r['processes']} processes: {r['seconds']:.1f} s, "
            f"{r['runs_per_s']:.1f} runs/s; lost {r['lost']}, duplicated {r['duplicated']}, "
            f"'database is locked' {r['database_locked']}, failed workers "
            f"{r['failed_workers']}",
            flush=True,
        )
        if r["failed_workers"]:
            print(r["stderr_tail"])
    if len(results) == 2:
        ratio = results["postgresql"]["runs_per_s"] / results["sqlite"]["runs_per_s"]
        print(f"postgresql / sqlite throughput: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
