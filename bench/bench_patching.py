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

3. Attribution patching (``assay.ml.patching.attribution_patch``: one clean forward, one
   corrupted forward and one backward) of every MLP neuron of the same GPT-2, against exact
   patching of each neuron (assay's batched runner, and TransformerLens's one forward per
   neuron). Target: >= 100x.
4. The GPT-2 example (examples/patching/gpt2_recall.py, trained here in ~9 s): correlation of
   attribution's estimate with exact patching over every MLP neuron at the last position.

Both sides compute the same metric values; the script checks they agree before timing counts.
The trained agent and example model are cached in .bench/ (first run trains them: ~25 s).
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
    attribution_patch,
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


def bench_transformerlens(repeats: int, n_pairs: int = 32, seq_len: int = 12) -> dict:
    try:
        import pandas as pd
        import transformer_lens.patching as tl_patching
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as exc:
        print(
            f"\n[2] TransformerLens unavailable ({exc}); comparing against the loop only (above)."
        )
        return {}
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
    return {
        "model": model,
        "structure": structure,
        "definitions": definitions,
        "pairs": pairs,
        "t_exact": t_ours,
        "t_tl": t_tl,
        "exact": outcome,
    }


def bench_attribution(repeats: int, run: dict) -> None:
    """[3] every MLP neuron by attribution vs exact patching of each, same model and pairs."""
    model, structure, defs, pairs = (
        run[k] for k in ("model", "structure", "definitions", "pairs")
    )
    t_attr, estimate = best_of(
        lambda: attribution_patch(model, structure, defs, pairs, logit_diff=(1, 2)), repeats
    )
    exact = run["exact"].metrics["restored"]
    r = float(np.corrcoef(estimate.metrics["restored"].flatten(), exact.flatten())[0, 1])
    print(
        f"\n[3] attribution patching of all {len(defs)} MLP neurons x {len(pairs)} pairs "
        f"(1 clean + 1 corrupted forward + 1 backward): {t_attr:8.4f}s"
    )
    print(f"    correlation with exact restored (per neuron and input): {r:.3f}")
    print(
        f"    RATIO vs exact patching of each neuron, assay batched ({run['t_exact']:.3f}s): "
        f"{run['t_exact'] / t_attr:7.1f}x"
    )
    print(
        f"    RATIO vs exact patching of each neuron, TransformerLens ({run['t_tl']:.3f}s): "
        f"{run['t_tl'] / t_attr:7.1f}x   (target >= 100x)"
    )


def _example():
    """examples/patching/gpt2_recall.py as a module (its train() and batch())."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "examples" / "patching" / "gpt2_recall.py"
    spec = importlib.util.spec_from_file_location("gpt2_recall", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench_gpt2_example(n_pairs: int = 64) -> None:
    """[4] attribution against exact on the trained GPT-2 of the example: every MLP neuron at
    the last position, logit(3) - logit(5), as the example's first sweep."""
    from scipy import stats

    from assay.ml import load_hf_model

    example = _example()
    folder = CACHE / "gpt2_recall"
    if not (folder / "config.json").exists():
        t0 = time.perf_counter()
        acc = example.train(300, folder)
        print(
            f"\ntrained the example GPT-2 in {time.perf_counter() - t0:.1f}s (accuracy {acc:.2f})"
        )
    model = from_hf(load_hf_model(folder), "GPT-2 recall example")
    g = torch.Generator().manual_seed(1)
    clean = example.batch(n_pairs, g, key=3)
    corrupted = clean.clone()
    corrupted[:, 1] = 5
    pairs = InputPairs([f"p{i}" for i in range(n_pairs)], clean, corrupted)
    structure = probe_structure(model, clean[:1].repeat(PROBE_BATCH, 1))
    modules = select_modules(structure, kinds="activation", layers=["transformer.h.*.mlp.act"])
    defs = generate("single_neuron", modules, positions=[-1])
    exact = BatchedPatcher(model, structure).run(defs, pairs, logit_diff=(3, 5))
    estimate = attribution_patch(model, structure, defs, pairs, logit_diff=(3, 5))
    e, a = exact.metrics["restored"], estimate.metrics["restored"]
    pearson = float(np.corrcoef(a.flatten(), e.flatten())[0, 1])
    mean_e, mean_a = e.mean(1).numpy(), a.mean(1).numpy()
    spearman = float(stats.spearmanr(mean_a, mean_e).statistic)
    top = lambda x: set(np.argsort(-np.abs(x))[:20].tolist())  # noqa: E731
    print(
        f"\n[4] GPT-2 recall example: {len(defs)} MLP neurons at the last position x "
        f"{n_pairs} pairs, logit(3) - logit(5)"
    )
    print(f"    ATTRIBUTION vs EXACT: Pearson r {pearson:.3f} over (neuron, input) values")
    print(
        f"    per-neuron mean: Pearson r {float(np.corrcoef(mean_a, mean_e)[0, 1]):.3f}, "
        f"Spearman rho {spearman:.3f}; top-20 overlap {len(top(mean_a) & top(mean_e))}/20"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest here)")
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats for the fast side")
    parser.add_argument("--only", choices=["dqn", "tl", "attribution", "example"])
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
    last = {}
    if args.only in (None, "tl", "attribution"):
        for n_pairs in args.tl_pairs:
            last = bench_transformerlens(args.repeats, n_pairs=n_pairs)
    if args.only in (None, "attribution") and last:
        bench_attribution(args.repeats, last)  # the largest pair count of [2]
    if args.only in (None, "example"):
        bench_gpt2_example()


if __name__ == "__main__":
    main()
