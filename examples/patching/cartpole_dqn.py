"""End to end on CartPole: train a DQN, mirror the pole, patch every hidden neuron, rank them.

    .venv/bin/python examples/patching/cartpole_dqn.py                 # ~20 s on 1 CPU thread
    .venv/bin/python examples/patching/cartpole_dqn.py --steps 5000    # faster, weaker agent

Steps (each printed with its time):
1. train a 64x64 DQN with stable-baselines3 for 20k steps            -> OUT/agent.zip
2. 256 clean observations from the agent's own play; each corrupted
   partner has the pole mirrored (angle and angular velocity negated) -> OUT/pairs.npz
3. single-neuron definitions for every Linear layer, read from the live
   network (64 + 64 + 2 units; a ReLU would repeat its Linear's numbers) -> OUT/definitions.json
4. run them through the `patching.run` stage (batched, denoising+noising) and print the
   units whose clean activation moves the Q-values most.
The same steps from the shell are in src/assay/families/patching/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import assay
from assay.families.patching._cartpole import mirrored_pairs, rollout, train_dqn
from assay.families.patching._models import load_model
from assay.families.patching._results import format_table, rank
from assay.families.patching.stages import PatchingRunConfig
from assay.ml.patching import (
    PROBE_BATCH,
    generate,
    probe_structure,
    save_definitions,
    select_modules,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="DQN training steps")
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--out", default="runs/patching-cartpole", help="where files and runs go")
    args = parser.parse_args()
    torch.set_num_threads(1)  # a 64x64 MLP: one thread is fastest
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    agent, train_s = train_dqn(args.steps, hidden=(64, 64), seed=0)
    agent.save(out / "agent.zip")
    print(f"1. trained DQN for {args.steps} steps in {train_s:.1f}s")

    clean, mean_return = rollout(agent, args.pairs, seed=0)
    np.savez(
        out / "pairs.npz", clean=clean, corrupted=mirrored_pairs(clean), ids=np.arange(len(clean))
    )
    print(
        f"2. {len(clean)} clean/corrupted pairs from greedy play (mean return {mean_return:.0f})"
    )

    model = load_model(out / "agent.zip")
    structure = probe_structure(model, model.example_input(PROBE_BATCH))
    modules = select_modules(structure, kinds="linear", include_output=True)
    definitions = generate("single_neuron", modules)
    save_definitions(definitions, out / "definitions.json")
    print(f"3. {len(definitions)} single-neuron definitions over {[m.name for m in modules]}")

    config = PatchingRunConfig(
        model=str(out / "agent.zip"),
        inputs=[str(out / "pairs.npz")],
        definitions=str(out / "definitions.json"),
        direction="both",
        num_threads=1,
    )
    record = assay.run_config(config, root=out / "store")
    if record.status is not assay.RunStatus.DONE:
        raise SystemExit(f"patching failed: {record.error}")
    res = record.results
    print(
        f"4. patched {res['n_definitions']} definitions x {res['n_inputs']} pairs x 2 directions "
        f"in {res['n_forwards']} forwards, {res['patch_s']:.3f}s (run {record.id})"
    )
    records = [
        json.loads(line) for line in record.artifact("records.jsonl").read_text().splitlines()
    ]
    print("\ntop units, denoising (clean activation patched into the mirrored-pole run):")
    print(format_table(rank(records, direction="denoising", top=10)))
    print(
        f"\ntotal {time.perf_counter() - t0:.1f}s; plots: "
        f"assay patching rank {out / 'store'} --out {out / 'plots'}"
    )


if __name__ == "__main__":
    main()
