"""`assay patching ...`: a thin table of commands over the library and the patching.run stage.

assay patching structure --model agent.zip
assay patching define --type single_neuron --model agent.zip --output defs.json
assay patching run --model agent.zip --inputs pairs.npz --definitions defs.json
assay patching rank runs/patching --top 20 --out plots/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", required=True, help="torch checkpoint, SB3 agent .zip or HF model dir"
    )
    p.add_argument("--model-kind", default="auto", choices=["auto", "torch", "sb3", "hf"])
    p.add_argument("--arch", help="architecture spec (JSON file or string) for a bare state dict")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="run code the model file names (executes it): a pickled nn.Module, a factory in the "
        "checkpoint's arch, an SB3 zip through SB3's own loader, a HF folder's auto_map",
    )


def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inputs",
        nargs="+",
        metavar="FILE",
        help="sample inputs for the shape probe (default: zeros of the model's input shape)",
    )
    p.add_argument(
        "--seq-len", type=int, default=8, help="token models without --inputs: probe length"
    )
    p.add_argument("--readout-position", type=int, default=-1)


def add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="patching_command", metavar="COMMAND")

    p = sub.add_parser(
        "structure", help="list the patchable modules of a live model and their sizes"
    )
    _model_args(p)
    _probe_args(p)
    p.add_argument("--kinds", default="all", help="module kinds to show (default all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_structure)

    p = sub.add_parser("define", help="write a JSON list of patching definitions")
    p.add_argument(
        "--type", required=True, choices=["single_neuron", "layer", "neuron_groups", "custom"]
    )
    _model_args(p)
    _probe_args(p)
    p.add_argument("--group-size", type=int, default=8, help="units per group for neuron_groups")
    p.add_argument("--layers", help="comma-separated module names or glob patterns (h.*.mlp.act)")
    p.add_argument(
        "--kinds",
        default="linear,conv,activation",
        help="module kinds that count as layers; 'all' for every kind",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--include-output",
        dest="include_output",
        action="store_true",
        help="also define units of the output layer (default, as the published tool's "
        "include_output_logits)",
    )
    out.add_argument(
        "--exclude-output",
        dest="include_output",
        action="store_false",
        help="leave the output layer out",
    )
    p.set_defaults(include_output=True)
    p.add_argument("--positions", type=_ints, help="token models: patch only these positions")
    p.add_argument("--custom", help="custom: definitions as a JSON string or file (validated)")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(func=cmd_define)

    p = sub.add_parser(
        "run", help="run definitions over clean/corrupted pairs (stage patching.run)"
    )
    _model_args(p)
    p.add_argument(
        "--inputs",
        nargs="+",
        required=True,
        metavar="FILE",
        help="one pairs file, or CLEAN CORRUPTED files (json/jsonl/npy/npz/pt)",
    )
    p.add_argument("--definitions", required=True)
    p.add_argument("--start-index", type=int, default=0)
    p.add_argument("--end-index", type=int, default=None, help="exclusive (default: to the end)")
    p.add_argument("--direction", default="denoising", choices=["denoising", "noising", "both"])
    p.add_argument(
        "--method",
        default="exact",
        choices=["exact", "attribution"],
        help="exact patching, or the gradient estimate of `restored` (one backward)",
    )
    p.add_argument("--readout-position", type=int, default=-1)
    p.add_argument(
        "--logit-diff", nargs=2, metavar=("A", "B"), help="two outputs (index or token)"
    )
    p.add_argument(
        "--defs-per-forward",
        type=int,
        default=None,
        help="K definitions per forward (default: the stage config's defs_per_forward)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64", "bfloat16", "float16"],
        help="dtype of the model and float inputs while patching",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--root", default="runs/patching", help="run store root")
    p.add_argument("--top", type=int, default=15, help="rows of the ranked table to print")
    p.set_defaults(func=cmd_run)
    from assay._cli import config_help

    from .stages import PatchingRunConfig

    config_help(p, PatchingRunConfig)  # the stage's field descriptions are the flags' help

    p = sub.add_parser(
        "inputs", help="clean/corrupted observation pairs from an environment (RL agents)"
    )
    p.add_argument("--env", required=True, help="gymnasium environment id, e.g. CartPole-v1")
    p.add_argument(
        "--corrupt",
        required=True,
        action="append",
        metavar="SPEC",
        help="how the corrupted partner differs (repeatable, applied in order): "
        "negate:DIMS | noise:STD[:DIMS] | set:DIM=VALUE[,DIM=VALUE] | shuffle",
    )
    p.add_argument("--n", type=int, default=256, help="number of pairs")
    p.add_argument("--model", help="agent (.zip / dir) whose greedy play gives the observations")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="load --model with stable-baselines3's own loader (executes code from the zip)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", type=int, default=2, help="keep one observation per N steps")
    p.add_argument("--output", "-o", required=True, help=".npz file to write")
    p.set_defaults(func=cmd_inputs)

    p = sub.add_parser("rank", help="rank units from run dirs or a store root; plot them")
    p.add_argument("paths", nargs="+", help="run directories or store roots (shards are merged)")
    p.add_argument("--metric", default="l2")
    p.add_argument("--direction", default=None, choices=["denoising", "noising"])
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--out", help="write ranking.csv, heatmap.png and top_units.png here")
    p.set_defaults(func=cmd_rank)


def _load(args: argparse.Namespace):
    from ._models import load_model

    model = load_model(
        args.model, args.model_kind, arch=args.arch, trust_checkpoint=args.trust_checkpoint
    )
    model.readout_position = args.readout_position
    return model


def _structure(args: argparse.Namespace, model):
    from assay.ml.patching import PROBE_BATCH, probe_structure

    from ._inputs import load_pairs

    if args.inputs:
        x = load_pairs(args.inputs, model).corrupted[:1]
        sample = x.repeat(PROBE_BATCH, *[1] * (x.dim() - 1))
    else:
        sample = model.example_input(PROBE_BATCH, seq_len=args.seq_len)
    return probe_structure(model, sample)


def cmd_structure(args: argparse.Namespace) -> int:
    from assay.ml.patching import check_kinds

    model = _load(args)
    structure = _structure(args, model)
    if args.json:
        print(json.dumps(structure.to_json(), indent=1))
    else:
        print(f"{model.description}\n{structure.table(check_kinds(args.kinds))}")
    return EXIT_OK


def check_output(path: str | None, flag: str) -> None:
    """Refuse an output path no file can be written to, before any work is done."""
    from ._errors import PatchingError

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise PatchingError(f"{flag} {path!r} is a folder; give a file path inside it")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise PatchingError(
                    f"{flag} {path!r} lies under {str(parent)!r}, which is a file, not a "
                    "folder; give a path inside a folder"
                )
            break


def cmd_define(args: argparse.Namespace) -> int:
    from assay.ml.patching import (
        generate,
        load_definitions,
        save_definitions,
        select_modules,
        validate,
    )

    check_output(args.output, "--output")
    model = _load(args)
    structure = _structure(args, model)
    if args.type == "custom":
        if not args.custom:
            print("error: --type custom needs --custom JSON_OR_FILE", file=sys.stderr)
            return EXIT_ERROR
        definitions = load_definitions(args.custom)
        validate(definitions, structure)
    else:
        layers = [s.strip() for s in args.layers.split(",")] if args.layers else None
        modules = select_modules(
            structure, kinds=args.kinds, layers=layers, include_output=args.include_output
        )
        definitions = generate(
            args.type, modules, group_size=args.group_size, positions=args.positions
        )
    if args.output:
        save_definitions(definitions, args.output)
        print(f"wrote {len(definitions)} definitions to {args.output}", file=sys.stderr)
    else:
        print(json.dumps([d.to_json() for d in definitions]))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    import pydantic

    import assay

    from ._results import format_table, rank
    from .stages import PatchingRunConfig

    logit_diff = None
    if args.logit_diff:
        logit_diff = [int(v) if v.lstrip("-").isdigit() else v for v in args.logit_diff]
    data = {
        "model": args.model,
        "model_kind": args.model_kind,
        "arch": args.arch,
        "trust_checkpoint": args.trust_checkpoint,
        "inputs": args.inputs,
        "definitions": args.definitions,
        "start_index": args.start_index,
        "end_index": args.end_index,
        "direction": args.direction,
        "method": args.method,
        "readout_position": args.readout_position,
        "logit_diff": logit_diff,
        "device": args.device,
        "num_threads": args.threads,
        "dtype": args.dtype,
    }
    if args.defs_per_forward is not None:  # else the config's default: one source
        data["defs_per_forward"] = args.defs_per_forward
    try:
        config = PatchingRunConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise assay.ConfigError(f"invalid patching.run options: {problems}") from None
    record = assay.run_config(config, root=args.root, retry_failed=True)
    if record.status is not assay.RunStatus.DONE:
        print(f"error: run {record.id} {record.status.value}: {record.error}", file=sys.stderr)
        return EXIT_FAILED
    if record.dir is None:  # a run of a file store has one; never None here
        raise assay.AssayError(f"run {record.id} has no directory recorded; run `assay reindex`")
    records = _read_records(record.dir)
    res = record.results or {}
    print(f"run {record.id} -> {record.dir}")
    print(
        f"{res.get('n_definitions')} definitions x {res.get('n_inputs')} pairs in "
        f"{res.get('n_forwards')} forwards, {res.get('patch_s', 0):.3f}s patching"
    )
    print(format_table(rank(records, top=args.top)))
    return EXIT_OK


def cmd_inputs(args: argparse.Namespace) -> int:
    from ._env_inputs import make_pairs, parse_corruptions, save_pairs

    check_output(args.output, "--output")
    corruptions = parse_corruptions(args.corrupt)  # fails before any environment is built
    clean, corrupted, info = make_pairs(
        args.env,
        corruptions,
        args.n,
        model=args.model,
        seed=args.seed,
        every=args.every,
        trust_checkpoint=args.trust_checkpoint,
    )
    save_pairs(args.output, clean, corrupted)
    print(
        f"wrote {len(clean)} pairs of {args.env} observations {tuple(clean.shape[1:])} to "
        f"{args.output} ({info}; corrupted: {' then '.join(args.corrupt)})"
    )
    return EXIT_OK


def _read_records(path: Path) -> list[dict]:
    """records.jsonl of a run dir, or of every run dir under a store root."""
    from ._errors import PatchingError

    files = (
        [path / "artifacts" / "records.jsonl"]
        if (path / "run.json").exists()
        else sorted(path.rglob("artifacts/records.jsonl"))
    )
    records = []
    for f in files:
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise PatchingError(f"cannot read {f} ({exc}); is it a patching.run result?") from None
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError as exc:
                raise PatchingError(
                    f"{f}:{n} is not a JSON record ({exc.msg}); the file is damaged: rerun that "
                    "run (assay patching run ... or assay run --retry-failed) or leave it out"
                ) from None
            if record is not None and not isinstance(record, dict):
                raise PatchingError(f"{f}:{n} holds a JSON {type(record).__name__}, not a record")
            if record is not None:
                records.append(record)
    return records


def cmd_rank(args: argparse.Namespace) -> int:
    from ._analysis import render
    from ._results import format_table, merge_shards, rank

    records = merge_shards(r for p in args.paths for r in _read_records(Path(p)))
    if not records:
        print(
            f"error: no records.jsonl found under {args.paths}; give patching.run run directories "
            "or the --root of `assay patching run`",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        ranked = rank(records, args.metric, direction=args.direction)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return EXIT_ERROR
    print(format_table(ranked[: args.top]))
    if args.out:
        written = render(records, Path(args.out), metric=args.metric, top=args.top)
        print(f"wrote {', '.join(str(w) for w in written)}")
    return EXIT_OK
