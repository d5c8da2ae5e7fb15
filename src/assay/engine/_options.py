"""Options checked against what is installed: executors and their ``--cluster`` parameters,
sinks. :class:`~assay.core._options.RunOptions` holds plain fields; every way into the engine
(``run_suite``, the CLI, ``assay.testing``) builds or checks it here.
"""

from __future__ import annotations

from typing import Any

import pydantic

from ..core._errors import ConfigError
from ..core._options import RunOptions, Selection, _Options
from ..executors._base import executor_class
from ..sinks import parse_sinks


def check_options(options: RunOptions) -> RunOptions:
    """``options`` with its executor, cluster parameters and sinks checked against the
    registries (``cluster`` values converted to the executor's declared types)."""
    cluster = executor_class(options.executor).parse_params(options.cluster)
    sink = parse_sinks(options.sink)
    if cluster == options.cluster and sink == options.sink:
        return options
    return options.model_copy(update={"cluster": cluster, "sink": sink})


def build_options(cls: type[_Options], values: dict[str, Any]) -> Any:
    """``cls(**values)`` with one readable error naming the bad option and the valid ones."""
    unknown = sorted(set(values) - set(cls.model_fields))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; valid: {', '.join(cls.model_fields)}"
        )
    try:
        built = cls(**values)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "options"
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r:.60})"
            problems.append(f"{loc}: {err['msg'].removeprefix('Value error, ')}{shown}")
        raise ConfigError("invalid option: " + "; ".join(problems)) from None
    return check_options(built) if isinstance(built, RunOptions) else built


def split_options(kwargs: dict[str, Any]) -> tuple[RunOptions, Selection]:
    """Split ``run_suite``'s keyword arguments into the two option objects, validating both."""
    run_keys, sel_keys = set(RunOptions.model_fields), set(Selection.model_fields)
    unknown = sorted(set(kwargs) - run_keys - sel_keys)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; valid: "
            f"{', '.join([*RunOptions.model_fields, *Selection.model_fields])}"
        )
    run = build_options(RunOptions, {k: v for k, v in kwargs.items() if k in run_keys})
    sel = build_options(Selection, {k: v for k, v in kwargs.items() if k in sel_keys})
    return run, sel
