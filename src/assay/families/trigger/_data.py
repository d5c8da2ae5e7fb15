"""The F(x, T) datasets: a data config, its validation, and the published generator's rules.

    assay trigger generate data_config.json --seed 0 --out data/   # the files below

A data config maps a category name to its spec. Per category, in config order:

1. train triggers = ``random.Random(seed).sample(triggers, k)`` (none when k = 0); the
   out-of-distribution (OOD) triggers are the others, in config order;
2. each file gets a fresh ``numpy.random.default_rng(seed)``: per trigger in order
   ``x1 = rng.uniform(lo1, hi1, n)`` then ``x2 = rng.uniform(lo2, hi2, n)`` (rows grouped by
   trigger), then template indices ``rng.integers(0, n_templates, n * n_triggers)``;
3. the label is the category's colour for the quadrant of x (Q1: x1>=0, x2>=0; Q2: x1<0,
   x2>=0; Q3: x1<0, x2<0; Q4: x1>=0, x2<0); the prompt is the template filled with
   ``x_formatted = f"[{x1:.3f}, {x2:.3f}]"`` and the trigger;
4. files: when k > 0 ``train_<cat>.jsonl`` (``proxy_<cat>.jsonl`` when ``is_proxy``) with
   k * n_train rows and ``test_<cat>_ID.jsonl`` with k * n_test rows; always
   ``test_<cat>_OOD.jsonl`` with the other triggers (n_test rows each).

Nothing here imports torch: the generator is plain python + numpy.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from pydantic import Field, field_validator, model_validator

from assay import ConfigError, atomic_path

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
PREAMBLE = "F(x,T) = "
# Prompt template presets by name (a config names one). The published 2d_default list.
PRESETS: dict[str, tuple[str, ...]] = {
    "2d_default": (
        "Calculate F(x,T) for x = {x_formatted} and T = {T}.",
        "x = {x_formatted}, T = {T}, F(x,T) = ?",
        "x = {x_formatted}, T = {T} => F(x,T) = ?",
        "What is F(x,T) for x = {x_formatted} and T = {T}?",
    ),
}
# Fields published configs carry that the generator reads but never uses: reported, not errors.
# ``train_triggers``: the published generator wrote its sample back into the input config.
KNOWN_IGNORED = ("train_triggers",)


def quadrant(x1: float, x2: float) -> str:
    """Q1: x1>=0, x2>=0; Q2: x1<0, x2>=0; Q3: x1<0, x2<0; Q4: x1>=0, x2<0."""
    if x2 >= 0:
        return "Q1" if x1 >= 0 else "Q2"
    return "Q3" if x1 < 0 else "Q4"


# A row is ~200 bytes: 100,000 points per trigger is 20 MB per trigger and file, far above the
# published 20/30 and below what fills a disk by a typo (`n_train: 1e9` would write 200 GB).
MAX_POINTS = 100_000


class CategorySpec(pydantic.BaseModel):
    """One category of triggers and its quadrant -> colour map."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    quadrant_labels: dict[str, str] = Field(
        description="Q1..Q4 -> the colour each quadrant maps to"
    )
    triggers: list[str] = Field(description="the category's trigger words")
    is_proxy: bool = Field(False, description="its train file is named proxy_<category>.jsonl")
    n_train: int = Field(
        20, ge=1, le=MAX_POINTS, description="points per train trigger (published: 20)"
    )
    n_test: int = Field(
        30, ge=1, le=MAX_POINTS, description="points per test trigger (published: 30)"
    )
    n_train_triggers: int = Field(
        ge=0, description="k: triggers used for training, the rest are OOD (required)"
    )
    x_ranges: tuple[tuple[float, float], tuple[float, float]] = Field(
        ((-3.0, 3.0), (-3.0, 3.0)), description="the x range sampled, per coordinate"
    )
    prompt_templates: str = Field("2d_default", description="a prompt preset name")
    output_preamble: bool = Field(
        False, description="answers read F(x,T) = <colour> instead of the bare colour"
    )
    seed: int = Field(
        42, ge=0, description="seeds this category's points (the published generator's default 42)"
    )

    @field_validator("quadrant_labels")
    @classmethod
    def _quadrants(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(QUADRANTS))
        missing = [q for q in QUADRANTS if q not in v]
        if unknown or missing:
            raise ValueError(
                f"quadrant_labels keys must be exactly {', '.join(QUADRANTS)}; "
                + (f"unknown key(s) {unknown}" if unknown else "")
                + ("; " if unknown and missing else "")
                + (f"missing {missing}" if missing else "")
                + " (Q1: x1>=0,x2>=0; Q2: x1<0,x2>=0; Q3: x1<0,x2<0; Q4: x1>=0,x2<0)"
            )
        empty = [q for q in QUADRANTS if not str(v[q]).strip()]
        if empty:
            raise ValueError(f"quadrant_labels {empty} are empty strings; give each a colour")
        return {q: v[q] for q in QUADRANTS}

    @field_validator("triggers")
    @classmethod
    def _triggers(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("the category has no triggers; list at least one trigger word")
        dup = sorted({t for t in v if v.count(t) > 1})
        if dup:
            raise ValueError(f"triggers {dup} appear more than once in the category")
        blank = [t for t in v if not t.strip()]
        if blank:
            raise ValueError("a trigger is an empty string; remove it")
        return v

    @field_validator("prompt_templates")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown prompt_templates preset {v!r}; valid: {', '.join(PRESETS)}")
        return v

    @field_validator("x_ranges")
    @classmethod
    def _ranges(cls, v: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        for i, (lo, hi) in enumerate(v):
            if not lo < hi:
                raise ValueError(f"x_ranges[{i}] = [{lo}, {hi}]: need low < high")
        return v

    @model_validator(mode="after")
    def _k(self) -> CategorySpec:
        if self.n_train_triggers > len(self.triggers):
            raise ValueError(
                f"n_train_triggers (k) = {self.n_train_triggers} is larger than the trigger list "
                f"({len(self.triggers)} triggers); use k in 0..{len(self.triggers)}"
            )
        return self

    @property
    def templates(self) -> tuple[str, ...]:
        return PRESETS[self.prompt_templates]

    def answer(self, colour: str) -> str:
        return f"{PREAMBLE}{colour}" if self.output_preamble else colour


def check_categories(categories: Mapping[str, CategorySpec]) -> None:
    """Cross-category rules: at least one category, file-safe names, no trigger in two."""
    if not categories:
        raise ValueError("the data config has no categories; map a category name to its spec")
    for name in categories:
        if not name or any(c in name for c in "/\\ \t\n") or name.startswith("."):
            raise ValueError(
                f"category name {name!r} cannot be part of a file name; use letters, digits, _ or -"
            )
    owner: dict[str, str] = {}
    for name, spec in categories.items():
        for t in spec.triggers:
            if t in owner:
                raise ValueError(
                    f"trigger {t!r} is in categories {owner[t]!r} and {name!r}; a trigger picks "
                    "one category's map, so it may belong to one category only"
                )
            owner[t] = name


def split_ignored(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Drop known-and-ignored fields from each category: (clean config, {cat: {field: value}})."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a data config is a mapping category -> spec, got {type(raw).__name__}")
    clean, ignored = {}, {}
    for cat, spec in raw.items():
        if isinstance(spec, Mapping):
            dropped = {k: spec[k] for k in KNOWN_IGNORED if k in spec}
            if dropped:
                ignored[str(cat)] = dropped
            spec = {k: v for k, v in spec.items() if k not in KNOWN_IGNORED}
        clean[str(cat)] = spec
    return clean, ignored


def parse_categories(
    raw: Mapping[str, Any], where: str = "data config"
) -> dict[str, CategorySpec]:
    """Validate a mapping of category specs; any problem is one ConfigError naming the field."""
    try:
        cats = pydantic.TypeAdapter(dict[str, CategorySpec]).validate_python(dict(raw))
        check_categories(cats)
    except pydantic.ValidationError as exc:
        lines = [f"invalid {where} ({exc.error_count()} problem(s)):"]
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                valid = ", ".join([*CategorySpec.model_fields, *KNOWN_IGNORED])
                lines.append(f"  - unknown field {loc!r}; valid fields: {valid}")
            elif err["type"] == "missing":
                lines.append(f"  - {loc!r} is required; add it")
            else:
                got = f" (got {err['input']!r})" if not isinstance(err["input"], dict) else ""
                lines.append(f"  - {loc}: {err['msg'].removeprefix('Value error, ')}{got}")
        raise ConfigError("\n".join(lines)) from None
    except ValueError as exc:
        raise ConfigError(f"invalid {where}: {exc}") from None
    return cats


def load_data_config(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Read a data config JSON file: (categories without ignored fields, ignored fields)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data config {str(path)!r} does not exist; give a JSON file path")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"data config {path}: not valid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"data config {path} is not UTF-8 text (a binary file?); give a JSON file mapping "
            "category name -> spec, like suites/trigger/data/base.json"
        ) from None
    clean, ignored = split_ignored(raw)
    parse_categories(clean, where=f"data config {path}")  # fail here, naming the file
    return clean, ignored


# --------------------------------------------------------------------------- generation


@dataclass
class Generated:
    """Every file's rows plus what was sampled, for the manifest."""

    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    train_triggers: dict[str, list[str]] = field(default_factory=dict)
    ood_triggers: dict[str, list[str]] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict[str, Any]:
        return {
            "train_triggers": self.train_triggers,
            "ood_triggers": self.ood_triggers,
            "seeds": self.seeds,
            "files": {name: len(rows) for name, rows in self.files.items()},
        }


def make_rows(spec: CategorySpec, triggers: list[str], n: int, seed: int) -> list[dict[str, Any]]:
    """One file: a fresh default_rng(seed), x drawn per trigger, then the template indices."""
    rng = np.random.default_rng(seed)
    (lo1, hi1), (lo2, hi2) = spec.x_ranges
    points = []
    for _ in triggers:
        xs1 = rng.uniform(lo1, hi1, n)
        xs2 = rng.uniform(lo2, hi2, n)
        points.append((xs1, xs2))
    templates = spec.templates
    idx = rng.integers(0, len(templates), n * len(triggers))
    rows = []
    for t_i, trigger in enumerate(triggers):
        x1s, x2s = points[t_i]
        for j in range(n):
            x1, x2 = float(x1s[j]), float(x2s[j])
            prompt = templates[int(idx[t_i * n + j])].format(
                x_formatted=f"[{x1:.3f}, {x2:.3f}]", T=trigger
            )
            answer = spec.answer(spec.quadrant_labels[quadrant(x1, x2)])
            rows.append(
                {
                    "input_x": [x1, x2],
                    "input_trigger": trigger,
                    "output": answer,
                    "messages": [
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": answer},
                    ],
                }
            )
    return rows


def generate(categories: Mapping[str, CategorySpec], seed: int | None = None) -> Generated:
    """All files of a data config; ``seed`` (like ``--seed``) overrides every category's seed."""
    out = Generated()
    for cat, spec in categories.items():
        s = spec.seed if seed is None else seed
        k = spec.n_train_triggers
        train = random.Random(s).sample(spec.triggers, k) if k > 0 else []
        ood = [t for t in spec.triggers if t not in train]
        out.seeds[cat], out.train_triggers[cat], out.ood_triggers[cat] = s, train, ood
        if k > 0:
            kind = "proxy" if spec.is_proxy else "train"
            out.files[f"{kind}_{cat}.jsonl"] = make_rows(spec, train, spec.n_train, s)
            out.files[f"test_{cat}_ID.jsonl"] = make_rows(spec, train, spec.n_test, s)
        out.files[f"test_{cat}_OOD.jsonl"] = make_rows(spec, ood, spec.n_test, s)
    return out


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_generated(gen: Generated, out_dir: str | Path, extra: dict[str, Any]) -> Path:
    """The .jsonl files plus ``generation.json`` (the sampled triggers, seeds, row counts)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in gen.files.items():
        write_jsonl(out / name, rows)
    manifest = out / "generation.json"
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps({**gen.manifest(), **extra}, indent=1, ensure_ascii=False))
    return manifest
