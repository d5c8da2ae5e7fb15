"""`assay cartography ...`: commands over the library.

    assay cartography metrics --dynamics DIR --out metrics.csv [--burn-out 3] [--include-ci]
                              [--reference]

DIR is a folder of allenai/cartography dynamics (``training_dynamics/dynamics_epoch_*.jsonl``,
or its parent), a cartography.dynamics run directory, or a ``dynamics.npz`` file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0


def add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="cartography_command", metavar="COMMAND")
    p = sub.add_parser("metrics", help="per-example data-map metrics from a dynamics folder")
    p.add_argument("--dynamics", required=True, help="reference folder, run dir or .npz")
    p.add_argument("--out", required=True, help="CSV to write")
    p.add_argument("--burn-out", type=int, default=None, help="use only the first K epochs")
    p.add_argument(
        "--include-ci",
        action="store_true",
        help="variability with the reference's active-bias correction",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="correctness as a count and never-learned forgetfulness as 1000, "
        "exactly as allenai/cartography writes them",
    )
    p.set_defaults(func=cmd_metrics)


def load_any(path: str):
    """Dynamics from a reference folder, a dynamics run directory or a dynamics.npz file."""
    from ._dynamics import Dynamics, DynamicsError

    p = Path(path)
    if p.is_file() and p.suffix == ".npz":
        return Dynamics.load(p)
    if (p / "artifacts" / "dynamics.npz").is_file():
        return Dynamics.load(p / "artifacts" / "dynamics.npz")
    if p.is_dir():
        return Dynamics.from_reference(p)
    raise DynamicsError(
        f"--dynamics {path!r} does not exist; give a folder holding "
        "training_dynamics/, a cartography.dynamics run directory or a .npz"
    )


def cmd_metrics(args: argparse.Namespace) -> int:
    from assay import atomic_path

    from ._dynamics import DynamicsError
    from ._metrics import compute_metrics, metrics_table

    out = Path(args.out)
    if out.is_dir():
        raise DynamicsError(f"--out {args.out!r} is a folder; give the CSV file to write")
    parent = next((q for q in out.parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise DynamicsError(f"--out {args.out!r}: {parent} is a file, not a folder")
    if args.burn_out is not None and args.burn_out < 1:
        raise DynamicsError(f"--burn-out must be >= 1 epoch, got {args.burn_out}")
    dyn = load_any(args.dynamics)
    dyn.check(args.dynamics)  # NaN or Inf would print as confidence NaN beside correctness 1.0
    m = compute_metrics(
        dyn.gold_prob, dyn.correct, burn_out=args.burn_out, include_ci=args.include_ci
    )
    table = metrics_table(dyn.ids, m, reference=args.reference)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    never = int(m["never_learned"].sum())
    print(f"wrote {len(table)} examples x {dyn.n_epochs} epochs to {out}")
    if never:
        how = "1000 (--reference)" if args.reference else "NaN, flagged in never_learned"
        print(
            f"note: {never} example(s) were never predicted correctly; forgetfulness is {how}",
            file=sys.stderr,
        )
    return EXIT_OK
