"""A small GPT-2 (built from a config) learns to recall a key token; patching finds where.

    .venv/bin/python examples/patching/gpt2_recall.py   # ~40 s on 1 CPU thread (9 s training,
                                                        # the rest mostly CLI process starts)

Task: ``[BOS, KEY, d, d, d, d, d, QUERY]`` -> predict KEY at the last position (KEY is one of
8 tokens, d are random distractors). Clean inputs carry KEY = 3, corrupted ones KEY = 5 with the
same distractors, so the logit difference logit(3) - logit(5) at the last position says how
much of the answer survives. We then patch, at chosen positions:

- every MLP neuron of both layers at the last position (single_neuron, positions -1);
- attention outputs and residual-stream outputs (block outputs) at the KEY position (1) and at
  the last position (-1), as whole layers.

Expected story: the residual stream at position 1 carries the key through layer 0; an attention
layer moves it to the last position, so patching that attention output at -1 restores most of
the logit difference. Run through the CLI, as a user would (the commands are printed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

VOCAB, SEQ, BOS, QUERY = 64, 8, 0, 1
KEYS = list(range(2, 10))  # the 8 possible key tokens
DISTRACTORS = (16, 64)  # distractor token ids are drawn from [16, 64)


def batch(n: int, g: torch.Generator, key: int | None = None) -> torch.Tensor:
    """(n, SEQ) sequences; ``key`` fixes the key token, else it is random."""
    x = torch.randint(*DISTRACTORS, (n, SEQ), generator=g)
    x[:, 0], x[:, -1] = BOS, QUERY
    x[:, 1] = (
        key if key is not None else torch.tensor(KEYS)[torch.randint(len(KEYS), (n,), generator=g)]
    )
    return x


def train(steps: int, out_dir: Path) -> float:
    """Train a 2-layer d_model 64 GPT-2 on the recall task; save it with save_pretrained."""
    from assay.ml import build_model

    model = build_model(
        "gpt2",
        vocab_size=VOCAB,
        d_model=64,
        n_layers=2,
        n_heads=4,
        max_positions=SEQ,
        seed=0,
        bos_token_id=BOS,
        eos_token_id=BOS,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,  # deterministic: no dropout
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = batch(128, g)
        logits = model(input_ids=x, use_cache=False).logits[:, -1]  # (B, V): answer at the end
        loss = torch.nn.functional.cross_entropy(logits, x[:, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x = batch(512, g)
    with torch.no_grad():
        acc = (model(input_ids=x).logits[:, -1].argmax(-1) == x[:, 1]).float().mean().item()
    model.save_pretrained(out_dir)
    return acc


def assay_cli(*args: str) -> str:
    print("$ assay patching " + " ".join(shlex.quote(a) for a in args))
    done = subprocess.run(
        [sys.executable, "-m", "assay", "patching", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (batch 128)")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--out", default="runs/patching-gpt2")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    acc = train(args.steps, out / "model")
    print(
        f"trained {args.steps} steps in {time.perf_counter() - t0:.1f}s; recall accuracy {acc:.2f}"
    )
    g = torch.Generator().manual_seed(1)
    clean = batch(args.pairs, g, key=3)
    corrupted = clean.clone()
    corrupted[:, 1] = 5
    with open(out / "pairs.jsonl", "w") as f:
        for i, (c, x) in enumerate(zip(clean.tolist(), corrupted.tolist(), strict=True)):
            f.write(json.dumps({"id": f"p{i}", "clean": c, "corrupted": x}) + "\n")

    model = str(out / "model")
    assay_cli(
        "define",
        "--type",
        "single_neuron",
        "--model",
        model,
        "--layers",
        "transformer.h.*.mlp.act",
        "--positions=-1",
        "-o",
        str(out / "mlp.json"),
    )
    assay_cli(
        "define",
        "--type",
        "layer",
        "--model",
        model,
        "--kinds",
        "attention,block",
        "--positions",
        "1",
        "-o",
        str(out / "at_key.json"),
    )
    assay_cli(
        "define",
        "--type",
        "layer",
        "--model",
        model,
        "--kinds",
        "attention,block",
        "--positions=-1",
        "-o",
        str(out / "at_last.json"),
    )
    for name in ("at_key", "at_last", "mlp"):
        t = time.perf_counter()
        printed = assay_cli(
            "run",
            "--model",
            model,
            "--inputs",
            str(out / "pairs.jsonl"),
            "--definitions",
            str(out / f"{name}.json"),
            "--logit-diff",
            "3",
            "5",
            "--root",
            str(out / "store"),
            "--threads",
            "1",
            "--top",
            "6",
        )
        print(printed + f"({time.perf_counter() - t:.1f}s including process start)\n")
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
