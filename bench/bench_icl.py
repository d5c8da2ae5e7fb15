"""Benchmark: all-layer leave-one-out, batched, against the published per-(layer, word) loop.

    ASSAY_NUM_THREADS=1 .venv/bin/python bench/bench_icl.py            # the issue's setting
    .venv/bin/python bench/bench_icl.py --sweep                        # every exact strategy
    .venv/bin/python bench/bench_icl.py --words 64 --layers 6 --d-model 128 --threads 2

A 6-layer GPT-2-style model (d_model 128, 4 heads, d_ff 512, built from a config: untrained
weights time the same as trained ones) with a word-level tokenizer reads a 64-word walk on a
hierarchical SBM. Both sides compute, for every layer 0..6 and every left-out word, the five
LOO influences of ``assay.families.icl._loo`` (the same metric code):

* published: one forward of the full context per layer and one batch-1 forward per (layer,
  left-out word), each read at its one layer: 7 x 65 = 455 forwards of ~64 tokens;
* assay (``icl.loo``'s default, ``prefix_chunk`` 8): the full context once (its states and
  key/value cache), then the 64 variants in chunks of 8 consecutive left-out positions, each
  chunk computing only the tokens after its common prefix with the full context; every layer
  from each forward: 9 forwards, ~2,300 token positions instead of 455 x 64 = 29,120.

Exact numbers bound the gain: variant j must recompute every token after j at every layer,
Σ_j (63 - j) + 64 ≈ 2,080 positions, ~14x fewer than the published loop (twice the number of
layers read, for this length). Beyond that only per-forward overhead (Python, module dispatch,
tokenising and metrics per call) can be saved; ``--sweep`` times the other exact strategies.

Timing alternates the sides in one process (best of ``--repeats``), so load changes on a
shared machine hit both alike; peak RSS is measured for each side alone in a fresh child
process. Every strategy must give the published numbers (rtol 1e-4, max |diff| printed) before
its time is printed. Target (issue 11): >= 20x; the measured figures are in the family README.
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
    model = build_model(
        "gpt2",
        vocab_size=len(tok),
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_positions=256,
        seed=0,
    ).eval()
    return LM(model, tok, add_bos=False), graph, walk, [graph.words[i] for i in walk]


def _strategies(args) -> dict:
    """name -> (prefix_chunk, attention implementation); 'assay' is icl.loo's default."""
    from assay.families.icl._loo import PREFIX_CHUNK

    out = {"assay": (PREFIX_CHUNK, "sdpa")}
    if args.sweep:
        for chunk in (1, 2, 8, 16, args.words):  # args.words: one batch, reuse of nothing
            out[f"prefix_chunk {chunk}"] = (chunk, "sdpa")
        out[f"one batch of {args.words}, no reuse"] = (None, "sdpa")
        out[f"prefix_chunk {PREFIX_CHUNK}, eager attention"] = (PREFIX_CHUNK, "eager")
    return out


def _call(name, args, lm, *inputs):
    from assay.families.icl._loo import loo_batched, loo_reference

    if name == "published":
        lm.model.set_attn_implementation("sdpa")
        return loo_reference(lm, *inputs)
    chunk, attn = _strategies(args)[name]
    lm.model.set_attn_implementation(attn)
    return loo_batched(lm, *inputs, prefix_chunk=chunk)


def child(args) -> None:
    """Peak memory of one side alone: one call in a fresh process, RSS before and after."""
    lm, graph, walk, words = _setup(args)
    _call(args.child, args, lm, words[:8], walk[:8], graph)  # warm-up (allocator, kernels)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _call(args.child, args, lm, words, walk, graph)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Path(args.out).write_text(
        json.dumps({"peak_rss_mb": peak / 1024, "growth_mb": (peak - base) / 1024})
    )


def _max_diff(a, b) -> float:
    worst = 0.0
    for k in a.influence:
        np.testing.assert_allclose(b.influence[k], a.influence[k], rtol=1e-4, atol=1e-6, err_msg=k)
        ok = np.isfinite(a.influence[k])
        assert (np.isfinite(b.influence[k]) == ok).all(), k
        worst = max(worst, float(np.abs(b.influence[k][ok] - a.influence[k][ok]).max()))
    return worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--words", type=int, default=64)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--threads", type=int, default=int(os.environ.get("ASSAY_NUM_THREADS", 1)))
    p.add_argument("--repeats", type=int, default=5)  # best of: least disturbed by neighbours
    p.add_argument("--sweep", action="store_true", help="also time every other exact strategy")
    p.add_argument("--child")
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        return child(args)
    common = [
        "--words",
        str(args.words),
        "--layers",
        str(args.layers),
        "--d-model",
        str(args.d_model),
        "--heads",
        str(args.heads),
        "--threads",
        str(args.threads),
    ]
    tmp = Path(tempfile.mkdtemp(prefix="bench_icl."))
    mem = {}
    for side in ("published", "assay"):
        path = str(tmp / f"{side}.json")
        cmd = [sys.executable, __file__, "--child", side, "--out", path, *common]
        subprocess.run(cmd, check=True)
        mem[side] = json.loads(Path(path).read_text())
    # timing in this process, the sides alternating, so a shared machine's load changes hit
    # every side alike; the fastest of the repeats counts
    lm, graph, walk, words = _setup(args)
    sides = ["published", *_strategies(args)]
    for name in sides:
        _call(name, args, lm, words[:8], walk[:8], graph)  # warm-up
    best = dict.fromkeys(sides, float("inf"))
    best_cpu = dict.fromkeys(sides, float("inf"))  # CPU time: not inflated by preemption
    res = {}
    cpu0 = time.process_time()
    for _ in range(args.repeats):
        for name in sides:
            t0, c0 = time.perf_counter(), time.process_time()
            res[name] = _call(name, args, lm, words, walk, graph)
            best[name] = min(best[name], time.perf_counter() - t0)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c0)
    cfg = lm.model.config
    blocks = sum(t.numel() for t in lm.model.base_model.h.parameters())
    print(
        f"all-layer LOO: {args.words}-word context, GPT-2-style {cfg.n_layer} blocks, d_model "
        f"{cfg.n_embd}, {cfg.n_head} heads, d_ff {4 * cfg.n_embd}, {blocks / 1e6:.2f}M block "
        f"parameters, vocab {cfg.vocab_size}; {cfg.n_layer + 1} layers x {args.words} "
        f"left-out words; {args.threads} torch thread(s), best of {args.repeats} "
        f"(CPU time of the timing loop {time.process_time() - cpu0:.0f} s)"
    )
    ref = res["published"]
    for name in sides:
        diff = "" if name == "published" else f"  max |diff| {_max_diff(ref, res[name]):.1e}"
        m = mem.get(name)
        rss = (
            f"  peak RSS {m['peak_rss_mb']:.0f} MB (+{m['growth_mb']:.0f} MB for the call)"
            if m
            else ""
        )
        print(
            f"  {name:34s} {best[name]:7.3f} s {best['published'] / best[name]:5.1f}x  CPU "
            f"{best_cpu[name]:7.3f} s {best_cpu['published'] / best_cpu[name]:5.1f}x  "
            f"{res[name].forwards:4d} forwards{diff}{rss}"
        )
    print(
        f"  identical influences; speed-up of icl.loo's default: "
        f"{best['published'] / best['assay']:.1f}x wall, "
        f"{best_cpu['published'] / best_cpu['assay']:.1f}x CPU time (target >= 20x)"
    )


if __name__ == "__main__":
    main()
