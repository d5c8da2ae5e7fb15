"""Which optional extra a missing library comes from, so an engine-only install says what to add.

``pip install .`` gives the engine alone (pydantic, PyYAML, rich, SQLAlchemy, numpy). A command
or family that needs more ends in one message naming the missing library and the extra that
brings it, never an ImportError traceback. The extras themselves are read from the installed
package's metadata (pyproject.toml), so this table and the extras cannot drift apart for
``assay families``; the table below only maps an import name to the extra to name first.
"""

from __future__ import annotations

import re
import traceback
from functools import cache
from importlib import metadata

# import name -> the extra that brings it (the smallest one that does)
MODULE_EXTRAS = {
    "pandas": "analysis",
    "scipy": "analysis",
    "matplotlib": "analysis",
    "pyarrow": "parquet",
    "torch": "torch",
    "transformers": "ml",
    "tokenizers": "ml",
    "peft": "ml",
    "accelerate": "ml",
    "safetensors": "ml",
    "sklearn": "volume",
    "datasets": "cartography",
    "stable_baselines3": "patching",
    "gymnasium": "patching",
    "jinja2": "report",
    "plotly": "report",
    "playwright": "report",
    "wandb": "sinks",
    "mlflow": "sinks",
    "tensorboard": "sinks",
    "psycopg": "postgres",
    "submitit": "slurm",
    "ray": "ray",
}
_FAMILY_FRAME = re.compile(r"assay[/\\]families[/\\](\w+)[/\\]")


def missing_extra_message(exc: ImportError) -> str | None:
    """One line naming the missing library and the extra to install, or None when ``exc`` is
    not about a library an extra brings (then it is a real bug and keeps its traceback)."""
    name = (exc.name or "").split(".")[0]
    extra = MODULE_EXTRAS.get(name)
    if extra is None:
        return None
    frames = "".join(traceback.format_tb(exc.__traceback__))
    family = next(iter(_FAMILY_FRAME.findall(frames)), None)
    if family is not None and family in extras():
        extra = family  # a family's extra brings everything the family needs
    return (
        f"{name} is not installed, and this needs it: install the `{extra}` extra "
        f"(pip install -c constraints.txt 'assay[{extra}]', or -e '.[{extra}]' in a checkout)"
    )


@cache
def extras() -> dict[str, list[str]]:
    """``{extra: [requirement, ...]}`` as the installed assay declares them."""
    out: dict[str, list[str]] = {}
    try:
        requires = metadata.requires("assay") or []
    except metadata.PackageNotFoundError:
        return out
    for line in requires:
        req, _, marker = line.partition(";")
        found = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", marker)
        if found:
            out.setdefault(found.group(1), []).append(req.strip())
    return out


def missing_for_extra(extra: str, _seen: frozenset[str] = frozenset()) -> list[str]:
    """The distributions an extra needs that are not installed (``assay[ml]`` is followed)."""
    missing: list[str] = []
    for req in extras().get(extra, []):
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]
        if name == "assay":
            inner = re.search(r"\[([\w,-]+)\]", req)
            for sub in inner.group(1).split(",") if inner else []:
                if sub not in _seen:
                    missing += missing_for_extra(sub, _seen | {extra})
            continue
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return sorted(set(missing))
