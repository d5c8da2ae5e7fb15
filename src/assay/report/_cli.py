"""``assay report`` and ``assay serve``: two small commands over :func:`collect` and the server.

The engine's CLI adds them with :func:`add_commands`; ``python -m assay.report`` runs them alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core._errors import AssayError

DEFAULT_PORT = 8765


def _source_args(p: argparse.ArgumentParser) -> None:
    from ..core._options import RunOptions

    p.add_argument(
        "suite", nargs="?", default=None, help="suite file (.yaml, .json or .toml); or use --stage"
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value, or key=1,2,3, as for `assay run`")
    p.add_argument("--stage", default=None, help="every recorded run of this stage instead")
    p.add_argument(
        "--seeds",
        nargs="+",
        default=None,
        metavar="SEED",
        help="seeds replacing the sweep's: 0,1,2 or 0 1 2",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="key=value[,key=value] of the group the tests compare against "
        "(default: the first group)",
    )
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="module that registers stages (repeatable)",
    )
    p.add_argument(
        "--trust-imports",
        action="store_true",
        help="import the modules the suite file lists under imports:",
    )
    p.add_argument(
        "--no-families",
        action="store_true",
        help="leave out the family sections (their analyze hooks are not run)",
    )
    for name in ("root", "store"):  # the same flags and help as `assay run`
        field = RunOptions.model_fields[name]
        p.add_argument(f"--{name}", default=None, metavar=name.upper(), help=field.description)


def add_commands(subparsers: Any) -> None:
    """Add ``report`` and ``serve`` to an ``argparse`` subparsers object."""
    p = subparsers.add_parser("report", help="write a self-contained HTML report of a suite")
    _source_args(p)
    p.add_argument(
        "--out", default=None, help="the HTML file (default: ROOT/reports/<suite or stage>.html)"
    )
    p.set_defaults(func=cmd_report)

    p = subparsers.add_parser(
        "serve",
        help="serve live reports of a store on this machine (127.0.0.1 unless --host)",
        description="Serve the report of a suite (or of every stage in the store) over HTTP, "
        "refreshing while runs go on. It binds to 127.0.0.1 by default, so only this machine "
        "can open it; --host 0.0.0.0 shows every run's config and results to the network.",
    )
    _source_args(p)
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only)",
    )
    p.add_argument(
        "--refresh-s",
        type=float,
        default=2.0,
        help="how often an open page asks for new data (default 2)",
    )
    p.set_defaults(func=cmd_serve)


def _source(args: argparse.Namespace) -> dict[str, Any]:
    from ..core._options import parse_seeds
    from ..engine._imports import import_user_modules
    from ..engine._suite import load_suite

    if args.suite is not None and args.stage is not None:
        raise AssayError("give a suite file or --stage NAME, not both")
    # serving a suite before its first run is the live view's use: its store may not exist yet
    waiting = getattr(args, "func", None) is cmd_serve and args.suite is not None
    _check_root(args.root or "runs", args.store, missing_ok=waiting)
    where = Path(args.root or "runs").resolve() / "assay.db"
    if waiting and args.store is None and not where.exists():  # nothing is created there
        print(
            f"no runs recorded yet: there is no store at {where}; the page shows the suite's "
            f"runs as pending until `assay run SUITE --root {args.root or 'runs'}` records "
            "them",
            file=sys.stderr,
        )
    import_user_modules(args.imports, root=args.root or "runs")  # as run/status/analyze do
    suite = load_suite(args.suite) if args.suite else None
    if suite is not None and args.trust_imports and suite.imports:
        import_user_modules(suite.imports)
    return {
        "root": args.root or "runs",
        "store": args.store,
        "suite": suite,
        "overrides": list(args.overrides) if suite else [],
        "stage": args.stage,
        "seeds": parse_seeds(args.seeds),
        "imports": list(args.imports),
        "trust_imports": args.trust_imports,
        "baseline": args.baseline,
        "families": not args.no_families,
    }


def _check_root(root: str, store: str | None, missing_ok: bool = False) -> None:
    """A report reads a store; it never creates one where a mistyped --root points (except
    ``missing_ok``: ``assay serve SUITE`` opened before ``assay run SUITE`` starts)."""
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise AssayError(f"--root {root!r} is a file; give the folder `assay run` wrote runs into")
    if store is None and not missing_ok and not (path / "assay.db").is_file():
        raise AssayError(
            f"no runs recorded: there is no store at {path.resolve() / 'assay.db'}; pass --root "
            "(or --store) where `assay run` wrote them"
        )


def _check_out(out: str) -> None:
    path = Path(out)
    if path.is_dir():
        raise AssayError(f"--out {out!r} is a folder; give the HTML file to write")
    blocker = next((q for q in path.parents if q.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise AssayError(f"--out {out!r}: {blocker} is a file, not a folder")


def make_report(out: str | Path | None = None, **source: Any) -> tuple[Path, dict[str, Any]]:
    """Collect and write a report; returns its path and the data record.

    Keyword arguments are those of :func:`collect`; ``out`` defaults to
    ``ROOT/reports/<suite name or stage>.html``.
    """
    from ._data import collect
    from ._html import write_html

    data = collect(**source)
    if out is None:
        suite = source.get("suite")
        name = getattr(suite, "name", None) or source.get("stage") or "report"
        out = Path(source.get("root") or "runs") / "reports" / f"{_slug(name)}.html"
    return write_html(out, data), data


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def cmd_report(args: argparse.Namespace) -> int:
    source = _source(args)
    if source["suite"] is None and source["stage"] is None:
        raise AssayError("report needs a suite file or --stage NAME (exactly one of them)")
    if args.out is not None:
        _check_out(args.out)
    start = time.perf_counter()
    path, data = make_report(args.out, **source)
    for problem in data["problems"]:
        print(f"warning: {problem}", file=sys.stderr)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(data["counts"].items()))
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(data['table']['rows'])} "
        f"run(s): {counts}) in {time.perf_counter() - start:.1f} s"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ._serve import serve

    source = _source(args)
    serve(source, host=args.host, port=args.port, refresh_s=args.refresh_s)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m assay.report report|serve ...`` (what ``assay report|serve`` runs)."""
    parser = argparse.ArgumentParser(prog="python -m assay.report")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_commands(sub)
    args, extra = parser.parse_known_args(argv)
    stray = [t for t in extra if t.startswith("-") or "=" not in t]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = [*args.overrides, *extra]
    try:
        return int(args.func(args) or 0)
    except AssayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
