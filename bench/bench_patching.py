"""Benchmark: assay's batched patching against the loops it replaces, ratios from one run.

    .venv/bin/python bench/bench_patching.py            # both benches, 1 torch thread
    .venv/bin/python bench/bench_patching.py --only dqn --threads 2

1. CartPole DQN (SB3, 64x64), single-neuron sweep of every hidden layer (256 definitions) over
   256 clean/corrupted pairs, against the plain loop of one batch-1 forward per
   (definition, input) written out below. Target: >= 30x.
2. A 2-layer GPT-2 (d_model 64, d_mlp 256, vocab 512, 12 tokens), single-neuron MLP sweep
   (512 neurons, all positions), against TransformerLens's ``generic_activation_patch`` (one
   forward of the whole batch per neuron) on a copy of the same weights. Target: >= 5x. Also
   printed: stacking K copies by hand (our runner with prefix reuse and readout slicing off).

Both sides compute the same metric values; the script checks they agree before timing counts.
The trained agent is cached in .bench/ (first run trains it: ~13 s).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

from assay.families.patching._cartpole import mirrored_pairs, rollout, train_dqn
from assay.families.patching._models import load_model
from assay.ml.patching import (
    PROBE_BATCH,
    BatchedPatcher,
    InputPairs,
    compute_metrics,
    from_hf,
    generate,
    parse_definitions,
    probe_structure,
    select_modules,
)

CACHE = Path(__file__).resolve().parent.parent / ".bench"


def best_of(fn, repeats: int) -> tuple[float, object]:
    """Fastest wall time of ``repeats`` calls (the least disturbed by other processes)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def naive_loop(model, definitions, pairs, with_metrics: bool = True) -> torch.Tensor:
    """The public tool's way, minus its second forward: per (definition, input) one batch-1
    forward of the corrupted input with a hook that writes in the clean activation."""
    modules = dict(model.root.named_modules())
    n = len(pairs)
    l2 = torch.zeros(len(definitions), n)
    with torch.inference_mode():
        clean_acts, clean_out, base_out = [], [], []
        for j in range(n):  # cache clean activations once per input (not per definition)
            acts = {}
            hooks = [
                modules[name].register_forward_hook(
                    lambda m, a, o, k=name, acts=acts: acts.__setitem__(k, o)
                )
                for name in {p.module for d in definitions for p in d.patches}
            ]
            clean_out.append(model.forward(pairs.clean[j : j + 1]))
            for h in hooks:
                h.remove()
            clean_acts.append(acts)
            base_out.append(model.forward(pairs.corrupted[j : j + 1]))
        for i, d in enumerate(definitions):
            patch = d.patches[0]
            for j in range(n):
                source = clean_acts[j][patch.module]

                def hook(m, a, o, source=source, units=patch.units):
                    o = o.clone()
                    o[:, list(units)] = source[:, list(units)]
                    return o

                h = modules[patch.module].register_forward_hook(hook)
                out = model.forward(pairs.corrupted[j : j + 1])
                h.remove()
                if with_metrics:
                    metrics = compute_metrics(out[None], base_out[j], clean_out[j], clean_out[j])
                    l2[i, j] = metrics["l2"][0, 0]
                else:
                    l2[i, j] = (out - base_out[j]).norm()
    return l2


def bench_dqn(repeats: int) -> None:
    CACHE.mkdir(exist_ok=True)
    agent_path = CACHE / "cartpole_dqn_20k.zip"
    if not agent_path.exists():
        agent, train_s = train_dqn(20_000)
        agent.save(agent_path)
        print(f"trained the DQN (20k steps) in {train_s:.1f}s -> {agent_path}")
    model = load_model(agent_path)
    from stable_baselines3 import DQN

    clean, mean_return = rollout(DQN.load(agent_path, device="cpu"), 256, seed=1)
    pairs = InputPairs(
        [str(i) for i in range(256)],
        torch.from_numpy(clean),
        torch.from_numpy(mirrored_pairs(clean)),
    )
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    definitions = generate("single_neuron", select_modules(structure))  # 4 hidden layers x 64
    patcher = BatchedPatcher(model, structure)
    t_ours, outcome = best_of(lambda: patcher.run(definitions, pairs), repeats)
    t_noprefix, _ = best_of(
        lambda: BatchedPatcher(model, structure, reuse_prefix=False, slice_positions=False).run(
            definitions, pairs
        ),
        repeats,
    )
    t_loop, l2 = best_of(lambda: naive_loop(model, definitions, pairs), 1)
    t_loop_fwd, _ = best_of(lambda: naive_loop(model, definitions, pairs, with_metrics=False), 1)
    diff = (outcome.metrics["l2"] - l2).abs().max().item()
    print(
        f"\n[1] CartPole DQN (agent return {mean_return:.0f}): {len(definitions)} single-neuron "
        f"definitions x {len(pairs)} pairs = {len(definitions) * len(pairs)} patched runs"
    )
    print(f"    loop, 1 forward per (definition, input), with metrics: {t_loop:8.3f}s")
    print(f"    loop, forwards only (no metrics):                    {t_loop_fwd:8.3f}s")
    print(
        f"    assay batched (K=64, cached prefix), with metrics:    {t_ours:8.3f}s  "
        f"({outcome.n_forwards} forwards; no prefix reuse: {t_noprefix:.3f}s)"
    )
    print(f"    max |l2 difference| between the two: {diff:.2e}")
    print(f"    RATIO vs loop with metrics: {t_loop / t_ours:7.1f}x   (target >= 30x)")
    print(f"    ratio vs loop forwards only: {t_loop_fwd / t_ours:7.1f}x")


def bench_transformerlens(repeats: int, n_pairs: int = 32, seq_len: int = 12) -> None:
    try:
        import pandas as pd
        import transformer_lens.patching as tl_patching
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        print(
            f"\n[2] TransformerLens unavailable ({exc}); comparing against the loop only (above)."
        )
        return
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=4,
        n_inner=256,
        n_positions=32,
        vocab_size=512,
        bos_token_id=0,
        eos_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    hf = GPT2LMHeadModel(cfg).eval()
    save_dir = CACHE / "gpt2_d64"
    hf.save_pretrained(save_dir)
    bridge = TransformerBridge.boot_transformers(
        str(save_dir), hf_model=copy.deepcopy(hf), device="cpu"
    )
    bridge.eval()
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 512, (n_pairs, seq_len), generator=g)
    corrupted = clean.clone()
    corrupted[:, seq_len // 2] = (clean[:, seq_len // 2] + 1) % 512
    units = [(layer, u) for layer in range(2) for u in range(256)]
    index_df = pd.DataFrame(units, columns=["layer", "neuron"])

    def set_neuron(act, index, clean_act):
        act[..., index[1]] = clean_act[..., index[1]]
        return act

    def tl_run():
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(clean)
            return tl_patching.generic_activation_patch(
                bridge,
                corrupted,
                cache,
                lambda lg: lg[:, -1, 1] - lg[:, -1, 2],
                set_neuron,
                "post",
                index_df=index_df,
                reduce="none",
            ).values

    model = from_hf(hf, "GPT-2 d64")
    structure = probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1))
    definitions = parse_definitions(
        [{f"transformer.h.{layer}.mlp.act": [u]} for layer, u in units]
    )
    pairs = InputPairs([str(i) for i in range(n_pairs)], clean, corrupted)
    patcher = BatchedPatcher(model, structure)
    t_ours, outcome = best_of(lambda: patcher.run(definitions, pairs, logit_diff=(1, 2)), repeats)
    t_noprefix, _ = best_of(
        lambda: BatchedPatcher(model, structure, reuse_prefix=False, slice_positions=False).run(
            definitions, pairs, logit_diff=(1, 2)
        ),
        repeats,
    )
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()):  # TL's tqdm bar
        t_tl, expected = best_of(tl_run, 1)
    diff = (outcome.metrics["logit_diff"] - expected).abs().max().item()
    print(
        f"\n[2] 2-layer GPT-2 d_model 64: {len(units)} single-neuron MLP patches x {n_pairs} pairs "
        f"(seq len {seq_len})"
    )
    print(f"    TransformerLens generic_activation_patch (bridge):  {t_tl:8.3f}s")
    print(
        f"    hand-stacked: K copies, full forward with hooks:     {t_noprefix:8.3f}s  "
        f"(ratio {t_tl / t_noprefix:.1f}x)"
    )
    print(
        f"    assay (K=64, cached prefix, readout slicing), all metrics: {t_ours:8.3f}s  "
        f"({outcome.n_forwards} forwards)"
    )
    print(f"    max |logit diff difference|: {diff:.2e}")
    print(f"    RATIO vs TransformerLens: {t_tl / t_ours:7.1f}x   (target >= 5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest here)")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for the fast side")
    parser.add_argument("--only", choices=["dqn", "tl"])
    parser.add_argument(
        "--tl-pairs",
        type=int,
        nargs="+",
        default=[8, 32, 128],
        help="input-pair counts for the TransformerLens comparison",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.only in (None, "dqn"):
        bench_dqn(args.repeats)
    if args.only in (None, "tl"):
        for n_pairs in args.tl_pairs:
            bench_transformerlens(args.repeats, n_pairs=n_pairs)


if __name__ == "__main__":
    main()
