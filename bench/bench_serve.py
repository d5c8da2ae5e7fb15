"""Benchmark what ``assay serve`` sends an open page per poll, at 10,000 runs.

    python bench/bench_serve.py              # 10,000 runs (40 configs x 250 seeds), 10 in flight
    python bench/bench_serve.py --runs 1000

The runs are written straight into a store and their folders (a 50-step metrics.jsonl each;
making them through the engine would take minutes), so the bench measures the server only.
Printed, for a page that holds the last build:

- a poll when nothing changed at all;
- a poll after the runs in flight beat (their heartbeat and duration move, nothing else): the
  protocol before (issue 21) re-sent the whole data record on any change, now the page gets
  the runs and blocks that changed (``assay.report._delta``);
- a poll after one run finished;

each with its bytes and the time the server took, and the ratio before/after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import assay
from assay.core._run import RunStatus
from assay.report._serve import ReportServer
from assay.store import resolve_store

STEPS = 50
IN_FLIGHT = 10


class CurveConfig(assay.SeededConfig):
    lr: float = 0.1
    width: int = 8
    seed: int = 0


@assay.stage("benchserve.curve", config=CurveConfig, version=1)
def curve(config: CurveConfig, run: assay.Run) -> dict:  # never run: the bench writes records
    raise NotImplementedError


def _lines(lr: float, seed: int, steps: int) -> tuple[str, float]:
    loss, out = 1.0, []
    for step in range(steps):
        loss *= 1 - lr * (1 + 0.01 * ((seed * 7 + step) % 5))
        out.append(json.dumps({"step": step, "loss": round(loss, 6), "acc": round(1 - loss, 6)}))
    return "\n".join(out) + "\n", loss


def make_runs(root: Path, n: int) -> assay.Suite:
    seeds = max(1, n // 40)
    suite = assay.Suite(
        name=f"serve-{40 * seeds}",
        stage="benchserve.curve",
        config={},
        sweep={
            "grid": {"lr": [0.01 * (i + 1) for i in range(8)], "width": [4, 8, 16, 32, 64]},
            "seeds": list(range(seeds)),
        },
    )
    planned = assay.plan_suite(suite)
    now = time.time()
    with resolve_store(None, root) as store:
        if len(store.query(stage="benchserve.curve")) == len(planned):
            return suite  # made before (--root)
        for i, p in enumerate(planned):
            d = root / p.id
            d.mkdir(parents=True, exist_ok=True)
            flying = i < IN_FLIGHT
            text, loss = _lines(p.params["lr"], p.params["seed"], STEPS // 2 if flying else STEPS)
            (d / "metrics.jsonl").write_text(text)
            store.put(
                assay.RunRecord(
                    p.id,
                    p.stage,
                    RunStatus.RUNNING if flying else RunStatus.DONE,
                    json.loads(p.config_json),
                    None if flying else {"final_loss": loss},
                    attempts=1,
                    created=now,
                    started=now - 60,
                    heartbeat=now,
                    ended=None if flying else now,
                    dir=d,
                )
            )
    return suite


def poll(server: ReportServer, since: str | None) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    body = server.payload(None, since)
    return len(body.encode()), time.perf_counter() - t0, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs (a multiple of 40)")
    parser.add_argument("--root", default=None, help="reuse runs made here before")
    args = parser.parse_args()
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-serve-"))
    t0 = time.perf_counter()
    suite = make_runs(root, args.runs)
    print(f"runs: {args.runs:,} in {root} ({time.perf_counter() - t0:.1f} s to write)")
    source = {
        "root": str(root),
        "store": None,
        "suite": suite,
        "overrides": [],
        "stage": None,
        "seeds": None,
        "imports": [],
        "trust_imports": False,
        "baseline": None,
        "families": False,
    }
    server = ReportServer(source, refresh_ms=2000)
    t0 = time.perf_counter()
    fp, _, _ = server.build(None)
    print(f"first build: {time.perf_counter() - t0:.2f} s")
    full, full_s, _ = poll(server, "a page the server does not know")

    same, same_s, _ = poll(server, fp)
    with resolve_store(None, root) as store:
        flying = store.query(stage="benchserve.curve", status=RunStatus.RUNNING)
        for r in flying:
            store.put(dataclasses.replace(r, heartbeat=(r.heartbeat or 0) + 5))
    beat, beat_s, body = poll(server, fp)
    fp = json.loads(body)["fingerprint"]
    with resolve_store(None, root) as store:
        r = flying[0]
        store.put(
            dataclasses.replace(
                r, status=RunStatus.DONE, ended=time.time(), results={"final_loss": 0.5}
            )
        )
    done, done_s, body = poll(server, fp)
    with resolve_store(None, root) as store:
        store.put(r)  # as it was, for --root reuse

    print(
        f"whole data record (what every changed poll sent before): {full:,} bytes, {full_s:.2f} s"
    )
    rows = [
        ("nothing changed", same, same_s, same),
        (f"{len(flying)} runs in flight beat", beat, beat_s, full),
        ("one run finished", done, done_s, full),
    ]
    for what, size, secs, before in rows:
        print(
            f"poll, {what:>22}: {size:>10,} bytes in {secs:.2f} s (before: {before:,} bytes; "
            f"ratio {before / size:,.0f}x)"
        )


if __name__ == "__main__":
    main()
