"""`assay trigger ...`: commands over the library.

    assay trigger generate data_config.json --seed 0 --out data/

``generate`` writes the files of a data config (the rules are in ``_data.py``), the sampled
train/OOD triggers (``generation.json``) and the config as generated (``data_config.json``)
into ``--out``; the input file is never rewritten.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_OK = 0


def add_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="trigger_command", metavar="COMMAND")
    p = sub.add_parser("generate", help="write the .jsonl files of a data config")
    p.add_argument("data_config", help="JSON file: category name -> spec")
    p.add_argument("--seed", type=int, default=None, help="override every category's seed")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_generate)


def cmd_generate(args: argparse.Namespace) -> int:
    from assay import ConfigError, atomic_path

    from ._data import generate, load_data_config, parse_categories, write_generated
    from ._stage_data import GenerateConfig, effective_config

    out = Path(args.out)
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a file; give a folder (made if missing)")
    blocker = next((q for q in out.parents if q.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"--out {args.out!r}: {blocker} is a file, not a folder")
    raw, ignored = load_data_config(args.data_config)
    cats = parse_categories(raw, where=f"data config {args.data_config}")
    gen = generate(cats, args.seed)
    write_generated(gen, out, {"ignored_fields": ignored, "source": str(args.data_config)})
    config = GenerateConfig(categories=raw, seed=args.seed)
    with atomic_path(out / "data_config.json") as tmp:
        tmp.write_text(
            json.dumps(effective_config(config, gen.train_triggers), indent=1, ensure_ascii=False)
        )
    for cat, fields in ignored.items():
        print(f"{cat}: ignored known field(s) {sorted(fields)}: train triggers are re-sampled")
    for cat in cats:
        print(
            f"{cat}: seed {gen.seeds[cat]}, train triggers {gen.train_triggers[cat]}, "
            f"OOD {gen.ood_triggers[cat]}"
        )
    for name, rows in gen.files.items():
        print(f"  wrote {out / name} ({len(rows)} rows)")
    return EXIT_OK
