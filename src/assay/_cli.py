"""The ``assay`` command line: a table of small commands over the Python API.

assay run SUITE [key=value ...] [--dry-run] [--workers N] [--shard i/n] ...
assay status SUITE        assay ls        assay show RUN        assay reindex
assay analyze SUITE|--stage S [--baseline k=v] [--out DIR]
assay report SUITE|--stage S [--out FILE.html]    assay serve [--root R] [--port P]
assay families            assay stages  assay <family> ...  (commands a family adds)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core._errors import AssayError

EXIT_ERROR = 2  # bad input: nothing ran
EXIT_FAILED_RUNS = 1  # the command ran, some runs failed


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A table of user text: ``Text`` cells, so ``[/]`` in a name is shown, never parsed."""
    from rich.table import Table
    from rich.text import Text

    table = Table(
        title=None if title is None else Text(shown(title)), show_lines=False, title_justify="left"
    )
    for col in columns:
        table.add_column(Text(shown(col)), overflow="fold")
    for row in rows:
        table.add_row(*(Text(shown(_fmt(v))) for v in row))
    _console().print(table)


def shown(value: Any) -> str:
    """User text as printed: control characters (a terminal escape in a config string) appear
    escaped, as ``\\x1b``, and never reach the terminal raw."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def _option_flags(p: argparse.ArgumentParser, cls: Any, only: Sequence[str] | None = None) -> None:
    """Add one flag per field of an options class (RunOptions, Selection): the single source.

    Flags default to None ("not given"), so the field's own default applies and the values
    are validated by the options class, with its messages.
    """
    for name, field in cls.model_fields.items():
        if only is not None and name not in only:
            continue
        if (field.json_schema_extra or {}).get("cli") is False:
            continue  # set by the API, not typed by users
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        text = plain_help(field.description or "")
        shown = f" (default {default})" if default not in (None, False, {}, []) else ""
        help_text = text if "default" in text else text + shown  # never the default twice
        if field.annotation in (bool, "bool"):
            p.add_argument(flag, action="store_true", default=None, help=help_text)
        elif name == "cluster":
            p.add_argument(
                flag, action="append", default=None, metavar="KEY=VALUE", help=help_text
            )
        elif name == "seeds":
            p.add_argument(flag, nargs="+", default=None, metavar="SEED", help=help_text)
        else:
            p.add_argument(flag, default=None, metavar=name.upper(), help=help_text)


def plain_help(text: str) -> str:
    """Help text without reStructuredText markup: ``x`` -> x, and one line."""
    return " ".join(text.replace("``", "").split())


class PlainHelpFormatter(argparse.HelpFormatter):
    """Help as a terminal shows it: docstring markup (``x``, `x`) dropped."""

    def _expand_help(self, action: argparse.Action) -> str:
        return super()._expand_help(action).replace("`", "")

    def _format_text(self, text: str) -> str:
        return super()._format_text(text.replace("`", ""))


class Parser(argparse.ArgumentParser):
    """The assay parser; its subcommands (families' too) are built with the same class, so
    every help text goes through :class:`PlainHelpFormatter`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)


def config_help(parser: argparse.ArgumentParser, cls: Any) -> None:
    """Give each flag of ``parser`` named like a field of config class ``cls`` that field's
    description as its help (and its choices and default): one source for the stage's keys and
    the command that fills them, as HfArgumentParser does."""
    for action in parser._actions:
        field = cls.model_fields.get(action.dest)
        if field is None or not field.description:
            continue
        text = plain_help(field.description)
        default = action.default
        if default is None and not field.is_required():  # the flag leaves it to the config
            default = field.get_default(call_default_factory=True)
            default = None if hasattr(default, "model_dump") else default  # an upstream config
        if default not in (None, False, [], "") and "default" not in text:
            text += f" (default {default})"
        action.help = text


def type_text(annotation: Any) -> str:
    """A field's type as a user types it: a Literal lists its choices (``adamw|sgd|sam``), an
    Optional says ``or null``, containers name their items (``tuple[int, ...]``)."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "|".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = " | ".join(type_text(a) for a in rest)
        return f"{inner} or null" if len(rest) < len(args) else inner
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_text(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _options(args: argparse.Namespace, cls: Any) -> dict[str, Any]:
    from .core._options import parse_seeds

    """The flags of ``cls`` the user gave, ready for the options class to validate."""
    out = {}
    for name in cls.model_fields:
        value = getattr(args, name, None)
        if value is None:
            continue
        out[name] = parse_seeds(value) if name == "seeds" else value
    return out


def _common(p: argparse.ArgumentParser) -> None:
    from .core._options import RunOptions

    _option_flags(p, RunOptions, only=("root", "store"))


def _suite_args(p: argparse.ArgumentParser) -> None:
    from .core._options import Selection

    p.add_argument("suite", help="suite file (.yaml, .json or .toml), or a run's config.json")
    p.add_argument("overrides", nargs="*", help="key.sub=value, or key=1,2,3 to sweep")
    _option_flags(p, Selection, only=("seeds",))
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="module that registers stages (repeatable); the only way user code "
        "is imported, besides --trust-imports",
    )
    p.add_argument(
        "--trust-imports",
        action="store_true",
        help="import the modules the suite file lists under imports:, and run the "
        "code its config names (factories, pickled checkpoints)",
    )


def _prepare(args: argparse.Namespace) -> Any:
    """Import the user's modules (``--import``, and those remembered under ``--root``), then
    load the suite; with ``--trust-imports`` the suite's own ``imports:`` too."""
    from .engine._imports import import_user_modules

    import_user_modules(args.imports, root=getattr(args, "root", None) or "runs")
    suite = load_suite_or_run_config(args.suite)
    if getattr(args, "trust_imports", False) and suite.imports:
        import_user_modules(suite.imports)
    return suite


def load_suite_or_run_config(path: str | Path) -> Any:
    """A suite file, or a recorded run's ``config.json`` (rerun that config as it was)."""
    from .core._io import read_json
    from .core._run import _stage_from_id
    from .engine._suite import Suite, load_suite

    path = Path(path)
    if path.name != "config.json" or not path.is_file():
        return load_suite(path)
    prov_path = path.parent / "provenance.json"
    try:
        config = read_json(path)
        prov = read_json(prov_path) if prov_path.exists() else {}
    except ValueError as exc:
        raise AssayError(f"cannot read {path}: {exc}") from None
    if not isinstance(config, dict):
        raise AssayError(f"{path} holds a {type(config).__name__}, not a run's config")
    stage = prov.get("stage") or _stage_from_id(path.parent.name)
    return Suite(name=path.parent.name, stage=stage, config=config, sweep={}, path=path)


def _plan(args: argparse.Namespace, suite: Any, **selection: Any) -> Any:
    from .engine._api import plan_suite

    return plan_suite(
        suite, args.overrides, imports=args.imports, trust_imports=args.trust_imports, **selection
    )


def _existing_store(args: argparse.Namespace, read_only: bool = True) -> Any:
    """The store, or None when nothing was ever recorded under --root (none is created).

    Opened read-only unless asked otherwise: reading a root needs no write permission.
    """
    from .store import resolve_store

    root = Path(args.root or "runs")
    if root.exists() and not root.is_dir():
        raise AssayError(f"--root {str(root)!r} is a file; give the folder `assay run` wrote into")
    if args.store is None and not (root / "assay.db").exists():
        return None
    return resolve_store(args.store, root, read_only=read_only)


def _writable(root: str | Path) -> bool:
    """Can this process record in ``root`` (its folder and store file)?"""
    db = Path(root) / "assay.db"
    return os.access(root, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def _no_runs(args: argparse.Namespace) -> str:
    root = Path(args.root or "runs")
    return (
        f"no runs recorded: there is no store at {root.resolve() / 'assay.db'}; pass "
        "--root (or --store) where `assay run` wrote them"
    )


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from .core._options import RunOptions, Selection
    from .engine._api import plan_rows, run_suite
    from .engine._options import split_options

    suite = _prepare(args)
    selection = _options(args, Selection)
    options = _options(args, RunOptions)
    # bad options fail before anything is planned, and a dry run validates what a run does
    split_options({**options, **selection})
    if args.dry_run:
        from .engine._checks import check_plan

        runs = _plan(args, suite, **selection)
        store = _existing_store(args)  # nothing recorded yet: a dry run creates no store
        try:
            check_plan(runs, store)  # every stage's plan-time check, as `assay run` does
            rows = plan_rows(runs, store)
        finally:
            if store is not None:
                store.close()
        _print_plan(suite, runs, rows)
        return 0
    result = run_suite(
        suite,
        args.overrides,
        progress=not args.quiet,
        imports=args.imports,
        trust_imports=args.trust_imports,
        **options,
        **selection,
    )
    from .engine._imports import remember

    remember(args.root or "runs", [*args.imports, *(suite.imports if args.trust_imports else ())])
    counts = result.counts
    print(
        f"suite {shown(suite.name)}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    )
    from .sinks import parse_sinks

    sinks = ",".join(parse_sinks(options.get("sink")) or suite.sinks)
    if sinks and result.counts.get("skipped", 0):
        print(
            f"  {result.counts['skipped']} run(s) had finished before and were not sent to "
            f"{sinks}: `assay sink replay {args.suite} --sink {sinks}` sends them"
        )
    if result.reran_stale:
        print(
            f"  reran {len(result.reran_stale)} stale run(s) (stage code changed since); "
            f"their old folders are under {Path(options.get('root') or 'runs') / '.stale'}"
        )
    if result.stale:
        print(
            f"  {len(result.stale)} finished run(s) are stale (stage code changed since they "
            "ran) and were kept; `assay status` lists them, --rerun-stale reruns them"
        )
    for o in result.failed:
        print(f"  failed {o.id}: {shown((o.error or '').splitlines()[0]) if o.error else ''}")
    if result.failed:
        root = Path(options.get("root") or "runs")
        # a run refused before it started (a link leading out of the root) has no error.txt
        traced = [o for o in result.failed if _has_error_file(root / o.id)]
        if traced:
            print(f"  tracebacks: {root}/<id>/error.txt ({len(traced)} of {len(result.failed)})")
        print("  fix the cause, then rerun failed runs with --retry-failed")
        return EXIT_FAILED_RUNS
    return 0


def _has_error_file(run_dir: Path) -> bool:
    """Whether a failed run left ``error.txt`` (no link is followed to find out)."""
    error = run_dir / "error.txt"
    return not run_dir.is_symlink() and not error.is_symlink() and error.is_file()


DRY_RUN_ROWS = 200  # a bigger plan prints its first and last rows; the counts cover every run


def _print_plan(suite: Any, runs: Any, rows: Any) -> None:
    shown = (
        rows
        if len(rows) <= DRY_RUN_ROWS
        else [*rows[: DRY_RUN_ROWS // 2], *rows[-DRY_RUN_ROWS // 2 :]]
    )
    title = f"suite {suite.name}: {len(runs)} run(s) of {suite.stage}"
    if len(shown) < len(rows):
        title += f" (showing {len(shown)} of {len(rows)} rows)"
    _table(
        title,
        ["index", "id", "stage", "parameters", "state"],
        [
            (
                r.index if not r.upstream else f"({r.index})",
                r.id,
                r.stage,
                r.params,
                r.state.value + (" (reused)" if r.upstream and r.state.value == "done" else ""),
            )
            for r in shown
        ],
    )
    print(
        f"dry run: nothing executed. runs: {_count_states(r for r in rows if not r.upstream)}"
        f"; upstream: {_count_states(r for r in rows if r.upstream) or 'none'}"
    )


def _count_states(rows: Any) -> str:
    states: dict[str, int] = {}
    for r in rows:
        states[r.state.value] = states.get(r.state.value, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in states.items())


def cmd_status(args: argparse.Namespace) -> int:
    from .core._options import parse_seeds
    from .core._run import RunStatus
    from .engine._api import plan_rows

    suite = _prepare(args)
    runs = _plan(args, suite, seeds=parse_seeds(args.seeds))
    writable = _writable(args.root)  # else ingesting runs finished on cluster nodes must wait
    store = _existing_store(args, read_only=not writable)
    if store is None:
        print(f"suite {shown(suite.name)}: 0/{len(runs)} done; {_no_runs(args)}")
        return 0
    from .executors._ledger import reconcile

    with store:
        # runs finished on nodes that could not reach the store, and runs stuck in dead jobs
        ids = [r.id for top in runs for r in top.closure()]
        states = store.states(ids)
        unsettled = [rid for rid in ids if states.get(rid) is not RunStatus.DONE]
        notes = reconcile(Path(args.root), store, unsettled) if unsettled and writable else []
        if notes:  # reconciling changed rows: read them again
            states = store.states(ids)
        every = plan_rows(runs, store, states)
        rows = [r for r in every if not r.upstream]
        records = store.get_many((r.id for r in every if r.state.value != "done"), light=True)
        from .core._stale import find_stale

        stale = find_stale(runs, store, Path(args.root or "runs"))
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[r.state.value] = by_state.get(r.state.value, 0) + 1
    done = by_state.get("done", 0)
    print(
        f"suite {shown(suite.name)}: {done}/{len(rows)} done; "
        + ", ".join(f"{v} {k}" for k, v in sorted(by_state.items()))
    )
    if len(every) > len(rows):
        print(f"upstream runs: {_count_states(r for r in every if r.upstream)}")
    _print_in_flight([r for r in every if r.state is RunStatus.RUNNING], records)
    for line in notes:
        print(line)
    if stale:
        print(
            f"  {len(stale)} finished run(s) are stale: produced by other code than is "
            "installed now; `assay run SUITE --rerun-stale` reruns them"
        )
        for rid, reason in list(stale.items())[:DRY_RUN_ROWS]:
            print(f"    stale {rid}: {reason}")
    unfinished = [r for r in rows if r.state.value != "done"]
    if len(unfinished) > DRY_RUN_ROWS:
        print(f"  {len(unfinished)} not done; showing the first {DRY_RUN_ROWS}")
        unfinished = unfinished[:DRY_RUN_ROWS]
    if unfinished:
        _table(
            "not done",
            ["index", "id", "state", "attempts", "error"],
            [
                (
                    r.index,
                    r.id,
                    r.state.value,
                    getattr(records.get(r.id), "attempts", 0),
                    (getattr(records.get(r.id), "error", None) or "")[:100],
                )
                for r in unfinished
            ],
        )
    return 0


def _print_in_flight(running: Sequence[Any], records: dict[str, Any]) -> None:
    """One line per running run, upstream ones too, with the counter its stage reports."""
    from .engine._progress import in_flight, read_progress

    for r in running:
        rec = records.get(r.id)
        counter = in_flight(read_progress(rec.dir)) if rec is not None and rec.dir else ""
        params = " ".join(f"{k}={v}" for k, v in r.params.items())
        kind = "upstream run" if r.upstream else "run"
        line = f"in flight: {kind} {r.stage} {params} ({r.id})"
        print(line + (f": {counter}" if counter else ""))


def cmd_ls(args: argparse.Namespace) -> int:
    from .core._run import RunStatus

    if args.limit < 0:
        raise AssayError(f"--limit must be >= 0 (0 shows every run), got {args.limit}")
    store = _existing_store(args)
    if store is None:
        raise AssayError(_no_runs(args))
    with store:
        status = RunStatus(args.status) if args.status else None
        records = store.query(stage=args.stage, status=status, light=True)
    total = len(records)
    records = records[-args.limit :] if args.limit else records
    title = f"{total} run(s)" + (
        f", the last {len(records)} shown (--limit 0 for all)" if len(records) < total else ""
    )
    _table(
        title,
        ["id", "stage", "status", "attempts", "duration_s"],
        [(r.id, r.stage, r.status.value, r.attempts, r.duration_s) for r in records],
    )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    store = _existing_store(args)
    if store is None:
        raise AssayError(_no_runs(args))
    with store:
        rec = store.find(args.run)
    info = {
        "id": rec.id,
        "stage": rec.stage,
        "status": rec.status.value,
        "attempts": rec.attempts,
        "duration_s": rec.duration_s,
        "dir": str(rec.dir),
        "error": rec.error,
        "config": rec.config,
        "results": rec.results,
    }
    if rec.dir is not None and (rec.dir / "provenance.json").exists():
        from .core._io import read_json

        prov = read_json(rec.dir / "provenance.json", root=rec.dir.parent)  # no link leads out
        info["provenance"] = {
            k: prov.get(k)
            for k in ("git", "host", "python", "seed", "device", "time_start_iso", "duration_s")
        }
        info["files"] = sorted(
            str(p.relative_to(rec.dir)) for p in rec.dir.rglob("*") if p.is_file()
        )
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from .engine._reindex import reindex
    from .store import resolve_store

    root = args.root or "runs"
    if not Path(root).is_dir():
        raise AssayError(f"root {root!r} is not a directory of runs; pass --root")
    with resolve_store(args.store, root) as store:
        counts = reindex(root, store, warn=lambda m: print(m, file=sys.stderr))
    print(
        f"indexed {sum(counts.values())} run(s): "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    )
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import compare_groups, export, load_runs, summarize
    from .analysis._markdown import plot_summary, write_report
    from .analysis._outputs import begin_outputs, record_outputs

    if (args.suite is None) == (args.stage is None):
        raise AssayError("analyze needs a suite file or --stage NAME (exactly one of them)")
    suite = _prepare(args) if args.suite else None
    if args.stage is not None:
        from .core._registry import get_stage

        get_stage(args.stage)  # an unknown stage name fails with the valid ones
    store = _existing_store(args)
    if store is None:
        raise AssayError(_no_runs(args))
    with store:
        df = load_runs(
            args.root or "runs",
            store,
            stage=args.stage,
            suite=suite,
            overrides=args.overrides if suite else (),
        )
    from .analysis import parse_bounds, parse_metrics
    from .analysis._markdown import family_plots, table_page, terminal_comparison, terminal_summary

    metrics = parse_metrics(args.metric)
    out = Path(args.out) if args.out else None
    summary = summarize(df, metrics, bounds=parse_bounds(args.bounds))
    shown, more = table_page(
        terminal_summary(summary), "summary", out / f"summary.{args.format}" if out else None
    )
    _table(
        f"{len(df)} run(s): mean and 95% CI per group", list(shown.columns), shown.values.tolist()
    )
    if more:
        print(more)
    comparison = compare_groups(df, args.baseline, metrics)
    if not comparison.empty:
        compact = terminal_comparison(comparison)
        shown, more = table_page(
            compact, "comparison", out / f"comparison.{args.format}" if out else None
        )
        which = (
            comparison["baseline"].iloc[0]
            if comparison["baseline"].nunique() == 1
            else "one per variant (column baseline)"
        )
        _table(
            f"against baseline: {which} (Welch t-test and paired t-test, Holm-corrected)",
            list(compact.columns),
            shown.values.tolist(),
        )
        if more:
            print(more)
    before = begin_outputs(out) if out else {}  # the previous analysis's files: removed
    ran = _family_analysis(df, args)  # before the report, so the families' PNGs exist
    if out:
        for name, frame in (("runs", df), ("summary", summary), ("comparison", comparison)):
            export(frame, out / name, args.format)
        plots = plot_summary(summary, out / "plots")
        title = f"assay report: {suite.name if suite else args.stage}"
        report = write_report(
            out, title, df, summary, comparison, plots, family_plots(out, ran), fmt=args.format
        )
        print(
            f"wrote {out}/runs.{args.format}, summary.{args.format}, comparison.{args.format}, "
            f"{report.name} and {len(plots)} plot(s) in {out}/plots"
        )
        record_outputs(out, before, title.removeprefix("assay report: "))
    return 0


def _family_analysis(df: Any, args: argparse.Namespace) -> list[str]:
    """Run each family's analyze hook on its runs; return the families whose hook ran."""
    from .core._registry import families
    from .store import resolve_store

    stages = sorted(set(df["stage"])) if len(df) else []
    ran = []
    for fam in families().values():
        mine = [s for s in stages if s.split(".", 1)[0] == fam.name]
        if not fam.analyze or not mine:
            continue
        hook = fam.resolve("analyze")
        assert hook is not None  # fam.analyze names it
        with resolve_store(args.store, args.root, read_only=True) as store:
            records = store.query(ids=list(df["id"]))
        hook(records, Path(args.out) / fam.name if args.out else None)
        ran.append(fam.name)
    return ran


def cmd_sink_replay(args: argparse.Namespace) -> int:
    from .core._run import RunStatus
    from .sinks import parse_sinks, probe, replay

    names = parse_sinks(args.sink)
    suite = _prepare(args)
    runs = _plan(args, suite)
    for name in names:
        if (problem := probe(name)) is not None:
            raise AssayError(problem)
    store = _existing_store(args)
    if store is None:
        raise AssayError(_no_runs(args))
    with store:
        ids = [r.id for top in runs for r in top.closure()]
        done = [r for r in store.get_many(ids).values() if r.status is RunStatus.DONE]
    sent = replay(
        done,
        names,
        root=args.root or "runs",
        suite=suite.name,
        warn=lambda m: print(f"warning: {m}", file=sys.stderr),
    )
    print(
        f"suite {shown(suite.name)}: sent {sent} of {len(done)} finished run(s) to "
        f"{', '.join(names)}"
    )
    return 0 if sent == len(done) else EXIT_FAILED_RUNS


def cmd_families(args: argparse.Namespace) -> int:
    from .core._extras import extras, missing_for_extra
    from .core._registry import broken_families, families

    def usable(name: str) -> str:
        if name not in extras():
            return "yes"
        missing = missing_for_extra(name)
        return "yes" if not missing else f"no: needs {', '.join(missing)} (extra `{name}`)"

    rows = [
        (f.name, f.description, "yes" if f.cli else "", usable(f.name))
        for f in families().values()
    ]
    rows += [(name, f"(not loaded: {why})", "", "no") for name, why in broken_families().items()]
    _table("installed families", ["family", "description", "commands", "usable"], rows)
    return 0


def cmd_stages(args: argparse.Namespace) -> int:
    from .core._registry import all_stage_names, get_stage

    if args.name:
        entry = get_stage(args.name)
        cls = entry.config_cls
        rows: list[tuple[Any, ...]] = []
        for key, field in cls.model_fields.items():
            default = (
                "(required)"
                if field.is_required()
                else field.get_default(call_default_factory=True)
            )
            if hasattr(default, "model_dump"):
                default = f"{type(default).__name__}(...)  (upstream stage: {key}.*)"
            note = " [not in the run id]" if key in cls.identity_exclude else ""
            shown = "null" if default is None else default  # every key shows its default
            rows.append(
                (
                    key,
                    type_text(field.annotation),
                    shown,
                    plain_help(field.description or "") + note,
                )
            )
        _table(
            f"stage {entry.name} (version {entry.version}): {entry.description}",
            ["key", "type", "default", "help"],
            rows,
        )
        return 0
    rows = []
    for name in all_stage_names():
        entry = get_stage(name)
        fields = ", ".join(entry.config_cls.model_fields)
        rows.append((name, entry.version, entry.description, fields))
    _table("stages", ["stage", "version", "description", "config keys"], rows)
    return 0


# --------------------------------------------------------------------------- parser


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    from . import __version__

    parser = Parser(prog="assay", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"assay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from .core._options import RunOptions, Selection

    p = sub.add_parser("run", help="run a suite (skips finished runs)")
    _suite_args(p)
    _option_flags(p, RunOptions)
    _option_flags(p, Selection, only=[f for f in Selection.model_fields if f != "seeds"])
    p.add_argument("--dry-run", action="store_true", help="show the plan; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("status", help="progress of a suite")
    _suite_args(p)
    _common(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("ls", help="list recorded runs")
    _common(p)
    p.add_argument("--stage", default=None)
    p.add_argument("--status", default=None, choices=["pending", "running", "done", "failed"])
    p.add_argument(
        "--limit",
        type=int,
        default=DRY_RUN_ROWS,
        help=f"show the last N (default {DRY_RUN_ROWS}; 0: all)",
    )
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="one run: config, results, provenance, files")
    p.add_argument("run", help="run id or unique prefix")
    _common(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("reindex", help="rebuild the store from the run directories")
    _common(p)
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("analyze", help="statistics across seeds, comparisons, plots, export")
    p.add_argument("suite", nargs="?", default=None, help="suite file (or use --stage)")
    p.add_argument("overrides", nargs="*")
    _option_flags(p, Selection, only=("seeds",))
    p.add_argument("--import", dest="imports", action="append", default=[])
    p.add_argument("--trust-imports", action="store_true")
    _common(p)
    p.add_argument("--stage", default=None, help="analyze every finished run of this stage")
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        help="metric(s): a,b or repeat the flag; default every metric except timings "
        "(*_s) and thread counts",
    )
    p.add_argument(
        "--baseline",
        default=None,
        help="key=value[,key=value] of the baseline group; naming only some of the "
        "keys that vary picks one baseline per value of the others",
    )
    p.add_argument(
        "--bounds",
        action="append",
        default=[],
        help="METRIC=LOW:HIGH (repeatable, or a,b lists; inf allowed): a metric's "
        "range, for intervals that stay inside it (default: from the runs' "
        '"_bounds" results or the metric\'s name)',
    )
    p.add_argument("--out", default=None, help="write tables and plots here")
    p.add_argument("--format", default="csv", choices=["csv", "json", "parquet"])
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser(
        "sink", help="trackers after the fact: `assay sink replay SUITE --sink mlflow`"
    )
    sinks = p.add_subparsers(dest="sink_command", required=True, metavar="SUBCOMMAND")
    p = sinks.add_parser(
        "replay",
        help="send a suite's finished runs to trackers (config, "
        "metrics with their steps, results)",
    )
    _suite_args(p)
    _common(p)
    p.add_argument("--sink", required=True, help="wandb, mlflow, tensorboard (a,b)")
    p.set_defaults(func=cmd_sink_replay)

    from .report import add_commands as add_report_commands

    add_report_commands(sub)  # `assay report` (one HTML file) and `assay serve` (live, localhost)

    p = sub.add_parser("families", help="installed experiment families")
    p.set_defaults(func=cmd_families)
    p = sub.add_parser("stages", help="registered stages; `assay stages NAME` shows one's keys")
    p.add_argument("name", nargs="?", default=None, help="a stage name: its keys, defaults, help")
    p.set_defaults(func=cmd_stages)

    _family_parsers(sub, argv)
    return parser


def _family_parsers(sub: Any, argv: Sequence[str]) -> None:
    """Add ``assay <family> ...``; a family's CLI module is imported only when it is invoked."""
    from .core._registry import families

    wanted = argv[0] if argv else None
    for fam in families().values():
        if not fam.cli:
            continue
        p = sub.add_parser(fam.name, help=f"{fam.name} commands: {fam.description}")
        add_commands = fam.resolve("cli") if fam.name == wanted else None
        if add_commands is not None:
            add_commands(p)
        p.set_defaults(func=lambda _a, p=p: (p.print_help(), EXIT_ERROR)[1])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # SLURM and other schedulers stop jobs with SIGTERM: treat it like Ctrl-C so the run in
    # flight goes back to pending instead of staying "running" until its heartbeat goes stale.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        parser = build_parser(argv)
        # Overrides may stand after options (`assay run s.yaml --workers 2 lr=0.1`).
        args, extra = parser.parse_known_args(argv)
        stray = [t for t in extra if t.startswith("-") or "=" not in t]
        if stray or (extra and not hasattr(args, "overrides")):
            parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
        if extra:
            args.overrides = [*args.overrides, *extra]
        if hasattr(args, "root") and args.root is None:
            args.root = "runs"
        if getattr(args, "seeds", None):  # `--seeds 1 2 lr=0.1`: the override is not a seed
            args.overrides = [
                *getattr(args, "overrides", []),
                *(t for t in args.seeds if "=" in t),
            ]
            args.seeds = [t for t in args.seeds if "=" not in t]
        return int(args.func(args) or 0)
    except AssayError as exc:
        print(f"error: {shown(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except ImportError as exc:  # an engine-only install meeting a command that needs an extra
        from .core._extras import missing_extra_message

        message = missing_extra_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "interrupted; unfinished runs stay pending: rerun the command to continue",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
