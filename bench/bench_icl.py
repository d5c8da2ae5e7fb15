"""Benchmark: all-layer leave-one-out, batched, against the published per-(layer, word) loop.

    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_icl.py           # 1 torch thread
    .venv/bin/python bench/bench_icl.py --words 64 --layers 6 --d-model 128 --threads 2

A 6-layer GPT-2-style model (d_model 128, built from a config: untrained weights time the same
as trained ones) with a word-level tokenizer reads a 64-word walk on a hierarchical SBM. Both
sides compute, for every layer 0..6 and every left-out word, the five LOO influences of
``assay.families.icl._loo``:

* published: one forward of the full context per layer and one batch-1 forward per (layer,
  left-out word), each read at its one layer: 7 x 65 = 455 forwards;
* batched (assay, ``icl.loo``'s defaults): the full context once, then the 64 variants in
  chunks of 4 consecutive left-out positions, each chunk computing only the positions after its
  common prefix with the full context (key/value cache reuse); every layer from each forward:
  18 forwards, ~2300 token positions instead of 455 x 64 = 29,120.

The exact computation bounds the gain: variant j must recompute every position after j at every
layer, Σ_j (64 - j) ≈ 2,080 positions, so ~14x fewer positions than the published loop is the
ceiling for exact numbers (2 x the number of layers read); the rest is per-forward overhead.

Timing alternates the two sides in one process (best of ``--repeats``), so load changes on a
shared machine hit both alike; peak RSS is measured for each side alone in a fresh child
process. The two must give the same numbers (rtol 1e-4) before the ratio is printed.
Target (issue 11): >= 20x; see the bound above and the family README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _setup(args):
    import torch

    from assay.families.icl._graphs import GraphConfig, build_graph, load_words, random_walks
    from assay.families.icl._lm import LM
    from assay.ml import build_model, build_word_tokenizer

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    graph = build_graph(GraphConfig(kind="hsbm", p_inter=0.1, bridge_penalty=0.3), rng)
    walk = random_walks(graph, 1, args.words, rng)[0]
    tok = build_word_tokenizer(load_words("common"), specials={"eos": None})
    model = build_model("gpt2", vocab_size=len(tok), d_model=args.d_model,
                        n_layers=args.layers, n_heads=4, max_positions=256, seed=0).eval()  # fmt: skip
    return LM(model, tok, add_bos=False), graph, walk, [graph.words[i] for i in walk]


def _sides(args):
    from assay.families.icl._loo import loo_batched, loo_reference

    return {
        "published": loo_reference,
        "batched": lambda *a: loo_batched(*a, prefix_chunk=args.prefix_chunk),
    }


def child(args) -> None:
    """Peak memory of one side alone: one call in a fresh process, RSS before and after."""
    lm, graph, walk, words = _setup(args)
    fn = _sides(args)[args.child]
    fn(lm, words[:8], walk[:8], graph)  # warm-up (allocator, kernels)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn(lm, words, walk, graph)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(args.out).write_text(json.dumps({"peak_rss_mb": peak / 1024,
                                          "growth_mb": (peak - base) / 1024}))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--words", type=int, default=64)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--threads", type=int, default=int(os.environ.get("ASSAY_NUM_THREADS", 1)))
    p.add_argument("--repeats", type=int, default=3)  # best of: least disturbed by neighbours
    p.add_argument("--prefix-chunk", type=int, default=4)  # icl.loo default
    p.add_argument("--child", choices=["batched", "published"])
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        return child(args)
    tmp = Path(tempfile.mkdtemp(prefix="bench_icl."))
    mem = {}
    for side in ("published", "batched"):
        path = str(tmp / f"{side}.json")
        cmd = [sys.executable, __file__, "--child", side, "--out", path, "--words",
               str(args.words), "--layers", str(args.layers), "--d-model", str(args.d_model),
               "--threads", str(args.threads), "--prefix-chunk", str(args.prefix_chunk)]  # fmt: skip
        subprocess.run(cmd, check=True)
        mem[side] = json.loads(Path(path).read_text())
    # timing in this process, the two sides alternating, so a shared machine's load changes hit
    # both alike; the fastest of the repeats counts
    lm, graph, walk, words = _setup(args)
    sides = _sides(args)
    for fn in sides.values():
        fn(lm, words[:8], walk[:8], graph)  # warm-up
    best = {k: float("inf") for k in sides}
    res = {}
    for _ in range(args.repeats):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            res[name] = fn(lm, words, walk, graph)
            best[name] = min(best[name], time.perf_counter() - t0)
    a, b = res["published"], res["batched"]
    worst = 0.0
    for k in a.influence:
        np.testing.assert_allclose(b.influence[k], a.influence[k], rtol=1e-4, atol=1e-6,
                                   err_msg=k)  # fmt: skip
        ok = np.isfinite(a.influence[k])
        worst = max(worst, float(np.max(np.abs(b.influence[k][ok] - a.influence[k][ok]),
                                        initial=0.0)))  # fmt: skip
    n = args.layers + 1
    print(f"all-layer LOO: {args.words}-word context, {args.layers}-layer GPT-2 d_model "
          f"{args.d_model}, {n} layers x {args.words} left-out words, {args.threads} thread(s), "
          f"best of {args.repeats}")  # fmt: skip
    for name, r in res.items():
        m = mem[name]
        print(f"  {name:9s}: {best[name]:7.2f} s  {r.forwards:4d} forwards  "
              f"peak RSS {m['peak_rss_mb']:.0f} MB (+{m['growth_mb']:.0f} MB for the call)")  # fmt: skip
    print(f"  identical influences (max |diff| {worst:.1e}); speed-up "
          f"{best['published'] / best['batched']:.1f}x (target >= 20x)")  # fmt: skip


if __name__ == "__main__":
    main()
