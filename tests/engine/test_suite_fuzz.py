"""Property-based fuzz of suite loading and planning: whatever a suite holds, only AssayErrors.

A suite is user input. Loading it (``load_suite`` / ``suite_from_dict``) and planning it
(``plan_suite``: overrides, sweep expansion, config validation, the plan-size limit) must either
succeed or raise an :class:`assay.AssayError` whose message says what to fix; a TypeError,
KeyError or AttributeError escaping is a bug. The strategies mix plausible suites (real stages,
real keys) with arbitrary JSON/YAML-shaped values so the search reaches deep into planning.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import teststages  # noqa: F401  (registers the t.* stages)
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import assay
from assay.core._config import parse_override
from assay.engine._suite import SUITE_KEYS, SWEEP_KEYS, suite_from_dict

# Bounded and derandomised: the default test suite stays fast (a few seconds) and stable. For a
# deeper search run e.g. `pytest tests/engine/test_suite_fuzz.py --hypothesis-seed=N` after
# raising MAX_EXAMPLES.
MAX_EXAMPLES = 200
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
MAX_RUNS = 64  # keeps each planned example small; bigger sweeps must hit the limit's SuiteError

STAGES = ["example.fit", "example.data", "t.count", "t.double", "example.nope", ""]
CONFIG_KEYS = [
    "degree",
    "l2",
    "seed",
    "data",
    "data.n_train",
    "data.noise_std",
    "data.seed",
    "x",
    "factor",
    "source.x",
    "degre",
    "data.",
    ".x",
    "",
    "degree.x",
]
GOOD_KEYS = {  # stage -> keys of its config that take small numbers
    "example.fit": ["degree", "l2", "data.n_train", "data.noise_std"],
    "t.count": ["x", "sleep_s"],
    "t.double": ["factor", "source.x"],
}
ALL_GOOD_KEYS = sorted({k for ks in GOOD_KEYS.values() for k in ks})


def mostly(good: st.SearchStrategy, bad: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` four times in five: enough valid structure to reach deep into planning.

    (``st.one_of`` flattens nested choices, so repeating ``good`` there would not weight it.)
    """
    return st.sampled_from([True, True, True, True, False]).flatmap(lambda g: good if g else bad)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(STAGES + CONFIG_KEYS),
)
keys = st.one_of(
    st.sampled_from(CONFIG_KEYS + list(SUITE_KEYS) + list(SWEEP_KEYS)),
    st.text(max_size=4),
    st.integers(-2, 5),
    st.none(),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
good_values = mostly(st.integers(2, 6), st.one_of(st.floats(0, 1), st.sampled_from([0.1, 1e-3])))
config_values = mostly(good_values, values)


def sweeps(good_keys: list[str]) -> st.SearchStrategy:
    config_keys = mostly(st.sampled_from(good_keys), st.one_of(st.sampled_from(CONFIG_KEYS), keys))
    axis = mostly(st.lists(config_values, min_size=1, max_size=3), values)
    config_maps = st.dictionaries(config_keys, config_values, max_size=3)
    good = st.fixed_dictionaries(
        {},
        optional={
            "grid": mostly(st.dictionaries(config_keys, axis, max_size=3), values),
            "zip": mostly(st.dictionaries(config_keys, axis, max_size=2), values),
            "variants": mostly(st.lists(config_maps, min_size=1, max_size=3), values),
            "seeds": mostly(st.lists(st.integers(0, 5), min_size=1, max_size=3), values),
        },
    )
    return mostly(good, st.one_of(st.dictionaries(keys, values, max_size=3), values))


def plausible_suite(stage: str) -> st.SearchStrategy:
    good_keys = GOOD_KEYS.get(stage, ALL_GOOD_KEYS)
    config_keys = mostly(st.sampled_from(good_keys), st.one_of(st.sampled_from(CONFIG_KEYS), keys))
    return st.fixed_dictionaries(
        {"stage": mostly(st.just(stage), st.one_of(st.sampled_from(STAGES), values))},
        optional={
            "config": mostly(st.dictionaries(config_keys, config_values, max_size=3), values),
            "sweep": sweeps(good_keys),
            "imports": mostly(
                st.just(["teststages"]),
                st.one_of(
                    st.lists(st.one_of(st.sampled_from(["", ".x", "a..b"]), values), max_size=2),
                    values,
                ),
            ),
            "name": mostly(st.text(max_size=5), scalars),
            "description": mostly(st.text(max_size=5), values),
        },
    )


suites = mostly(
    st.sampled_from(sorted(GOOD_KEYS)).flatmap(plausible_suite),
    st.one_of(st.dictionaries(keys, values, max_size=4), values),
)
override_texts = mostly(
    st.builds(
        lambda k, v: f"{k}={v}",
        mostly(st.sampled_from(ALL_GOOD_KEYS), st.sampled_from(CONFIG_KEYS)),
        st.one_of(
            st.sampled_from(
                ["", ",", "1,,2", "3", "1,2", "[1, 2]", "{a: 1}", "null", "x,", "0.5"]
            ),
            st.text(max_size=6),
        ),
    ),
    st.text(max_size=8),
)
selections = mostly(
    st.just({}),
    st.fixed_dictionaries(
        {},
        optional={
            "seeds": st.one_of(st.none(), st.lists(st.integers(-2, 5), max_size=3), values),
            "shard": st.one_of(st.sampled_from(["0/2", "3/2", "a"]), st.text(max_size=4)),
            "start_index": st.one_of(st.integers(-1, 5), values),
            "end_index": st.one_of(st.integers(-1, 5), values),
        },
    ),
)


def plan_or_assay_error(data, overrides=(), selection=None) -> list | None:
    """Load and plan ``data``; None when an AssayError (with a message) was raised."""
    try:
        suite = suite_from_dict(data)
        return assay.plan_suite(suite, list(overrides), max_runs=MAX_RUNS, **(selection or {}))
    except assay.AssayError as exc:
        assert str(exc).strip(), "an AssayError must say what is wrong"
        return None


@FUZZ
@given(data=suites, overrides=st.lists(override_texts, max_size=2), selection=selections)
def test_arbitrary_suite_dicts_raise_only_assay_errors(data, overrides, selection):
    runs = plan_or_assay_error(data, overrides, selection)
    if runs is not None:
        assert len(runs) <= MAX_RUNS
        assert len({r.id for r in runs}) == len(runs)  # one run per distinct config


@FUZZ
@given(text=st.text(max_size=8))
def test_arbitrary_override_text_parses_or_explains(text):
    try:
        key, items = parse_override(text)
    except assay.ConfigError as exc:
        assert str(exc)
    else:
        assert key and items


# YAML text: plausible suite lines, shuffled and mutated, plus raw characters YAML cares about.
yaml_lines = st.one_of(
    st.sampled_from(
        [
            "stage: example.fit",
            "stage: t.count",
            "config:",
            "  degree: 3",
            "  degree: 3",
            "  data: {n_train: 5}",
            "sweep:",
            "  grid: {degree: [1, 2]}",
            "  grid: [1, 2]",
            "  zip: {l2: [0.1, 0.2], degree: [1]}",
            "  variants: []",
            "  variants: [{3: 1}]",
            "  seeds: [0, 1]",
            "imports: [5]",
            "imports: ['']",
            "1: a",
            "stage: [",
            "  l2: .inf",
            "  l2: 2020-02-30",
            "x: &a [1]",
            "y: *a",
            "y: *b",
            "<<: {stage: t.count}",
            "\t",
            "? [1]",
        ]
    ),
    st.text(alphabet=":-[]{},&*!? \n\t'\"#abc123", max_size=12),
)


@FUZZ
@given(lines=st.lists(yaml_lines, max_size=8), suffix=st.sampled_from([".yaml", ".json"]))
def test_arbitrary_suite_files_raise_only_assay_errors(lines, suffix):
    text = "\n".join(lines)
    if suffix == ".json":
        with contextlib.suppress(Exception):  # the same content as JSON, when YAML reads it
            text = json.dumps(yaml.safe_load(text), default=str)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"suite{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            suite = assay.load_suite(path)
            assay.plan_suite(suite, max_runs=MAX_RUNS)
        except assay.AssayError as exc:
            assert str(exc).strip()
