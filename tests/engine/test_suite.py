import json

import pytest
import teststages  # noqa: F401

import assay
from assay.engine._suite import parse_shard, select, suite_from_dict

BASE = {"stage": "example.fit", "config": {"data": {"n_train": 20}}}


def ids_params(runs):
    return [r.params for r in runs]


def test_grid_zip_variants_and_seeds_expand_as_a_product():
    suite = suite_from_dict(
        {
            **BASE,
            "sweep": {
                "grid": {"degree": [1, 2]},
                "zip": {"l2": [0.1, 0.2], "data.noise_std": [0.1, 0.3]},
                "variants": [{"data.n_test": 10}, {"data.n_test": 20}],
                "seeds": [0, 1],
            },
        }
    )
    runs = assay.plan_suite(suite)
    assert len(runs) == 2 * 2 * 2 * 2
    assert [r.index for r in runs] == list(range(16))
    first = runs[0]
    assert first.params == {
        "degree": 1,
        "l2": 0.1,
        "data.noise_std": 0.1,
        "data.n_test": 10,
        "seed": 0,
    }
    # seeds reach every `seed` field, also in the upstream config
    assert first.config.seed == 0 and first.config.data.seed == 0
    assert runs[1].config.seed == 1 and runs[1].config.data.seed == 1
    assert first.config.data.n_train == 20  # base config kept


def test_overrides_fix_values_and_sweep():
    suite = suite_from_dict({**BASE, "sweep": {"grid": {"degree": [1, 2]}}})
    runs = assay.plan_suite(suite, ["degree=5", "l2=0.1,0.2"])
    assert [(r.config.degree, r.config.l2) for r in runs] == [(5, 0.1), (5, 0.2)]
    runs = assay.plan_suite(suite, ["data.noise_std=0.5"])
    assert {r.config.data.noise_std for r in runs} == {0.5}


def test_duplicate_sweep_points_are_one_run():
    suite = suite_from_dict({**BASE, "sweep": {"grid": {"degree": [3, 3]}}})
    assert len(assay.plan_suite(suite)) == 1


def test_json_and_toml_suites(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({**BASE, "sweep": {"seeds": [1, 2]}}))
    (tmp_path / "s.toml").write_text(
        'stage = "example.fit"\n[config]\ndegree = 2\n[sweep]\nseeds = [1, 2, 3]\n'
    )
    assert len(assay.plan_suite(tmp_path / "s.json")) == 2
    runs = assay.plan_suite(tmp_path / "s.toml")
    assert len(runs) == 3 and runs[0].config.degree == 2


def test_upstream_appears_in_plan_closure():
    runs = assay.plan_suite(suite_from_dict(BASE))
    closure = runs[0].closure()
    assert [r.stage for r in closure] == ["example.data", "example.fit"]


def test_shard_and_index_selection():
    suite = suite_from_dict({**BASE, "sweep": {"seeds": list(range(10))}})
    runs = assay.plan_suite(suite)
    assert [r.index for r in select(runs, shard="1/3", start=None, end=None)] == [1, 4, 7]
    assert [r.index for r in select(runs, shard=None, start=2, end=5)] == [2, 3, 4]
    both = select(runs, shard="0/2", start=2, end=7)
    assert [r.index for r in both] == [2, 4, 6]
    shards = [select(runs, shard=f"{i}/3", start=None, end=None) for i in range(3)]
    assert sorted(r.index for s in shards for r in s) == list(range(10))  # a partition


# -- bad input -----------------------------------------------------------------------------------


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("stage: example.fit\nconfig:\n  degree: [1, 2\n  l2: 3\n")
    with pytest.raises(assay.SuiteError, match=r"bad\.yaml:\d+:\d+"):
        assay.load_suite(path)


def test_unknown_stage_lists_available(tmp_path):
    with pytest.raises(assay.StageNotFoundError, match="available stages: .*example.fit"):
        assay.plan_suite(suite_from_dict({"stage": "example.fitt"}))


def test_unknown_key_is_named_with_valid_keys():
    suite = suite_from_dict({"stage": "example.fit", "config": {"degre": 3}})
    with pytest.raises(
        assay.ConfigError, match=r"unknown key 'degre'; valid keys here: data, degree, l2, seed"
    ):
        assay.plan_suite(suite)


def test_nested_unknown_key_and_out_of_range():
    suite = suite_from_dict({"stage": "example.fit", "config": {"data": {"n_trian": 3}}})
    with pytest.raises(assay.ConfigError, match="unknown key 'data.n_trian'.*n_test, n_train"):
        assay.plan_suite(suite)
    suite = suite_from_dict({"stage": "example.fit", "config": {"degree": 99}})
    with pytest.raises(
        assay.ConfigError, match="'degree': Input should be less than or equal to 30"
    ):
        assay.plan_suite(suite)


def test_override_matching_no_key():
    suite = suite_from_dict(BASE)
    with pytest.raises(
        assay.ConfigError, match="'lr' is not a field.*valid keys there: data, degree, l2, seed"
    ):
        assay.plan_suite(suite, ["lr=0.1"])
    with pytest.raises(assay.ConfigError, match="'noise' is not a field at data"):
        assay.plan_suite(suite, ["data.noise=0.1"])


@pytest.mark.parametrize("spec", ["3/2", "2/2", "-1/2", "1/0", "a/b", "1"])
def test_bad_shard_specs(spec):
    with pytest.raises(assay.ConfigError, match="shard"):
        parse_shard(spec)


def test_unknown_suite_and_sweep_keys():
    with pytest.raises(assay.SuiteError, match="unknown suite key.*'sweeps'"):
        suite_from_dict({**BASE, "sweeps": {}})
    with pytest.raises(assay.SuiteError, match="unknown sweep key.*'grids'"):
        suite_from_dict({**BASE, "sweep": {"grids": {}}})
    with pytest.raises(assay.SuiteError, match="equal length"):
        assay.plan_suite(
            suite_from_dict({**BASE, "sweep": {"zip": {"degree": [1, 2], "l2": [1]}}})
        )


# -- shapes the fuzz test found (tests/engine/test_suite_fuzz.py) -------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"imports": [5]}, r"'imports': 5 is not a module name"),
        ({"imports": [""]}, r"'imports': '' is not a module name"),
        ({"imports": ["a..b"]}, r"'a\.\.b' is not a module name"),
        ({"imports": {"a": 1}}, r"'imports' must be a list of module names"),
        ({"sweep": {1: "a"}}, r"unknown sweep key\(s\) 1; valid keys: grid, zip"),
        ({1: "a"}, r"unknown suite key\(s\) 1; valid keys"),
        ({"sweep": {"grid": [1, 2]}}, r"sweep 'grid' must be a mapping .* got \[1, 2\]"),
        ({"sweep": {"zip": [1, 2]}}, r"sweep 'zip' must be a mapping .* got \[1, 2\]"),
        ({"sweep": {"grid": {3: [1]}}}, r"sweep 'grid': key 3 is not a config key name"),
        ({"sweep": {"variants": [{3: 1}]}}, r"sweep 'variants': key 3 is not a config key"),
        ({"sweep": {"variants": []}}, r"'variants' must be a non-empty list .* got \[\]"),
        ({"sweep": {"variants": [1]}}, r"each of sweep 'variants' must be a mapping"),
        ({"sweep": {"zip": {"degree": []}}}, r"zip 'degree' must be a non-empty list"),
        ({"sweep": {"seeds": [0, True]}}, r"'seeds' must be a non-empty list of integers"),
        ({"stage": 5}, r"'stage' must be a stage name .* got 5"),
        ({"name": {"a": 1}}, r"'name' must be a string"),
        ({"config": [1]}, r"'config' must be a mapping"),
    ],
)
def test_bad_suite_shapes_are_named(data, match):
    with pytest.raises(assay.SuiteError, match=match):
        suite_from_dict({**BASE, **data})


def test_suite_objects_built_in_python_are_checked_when_planned():
    suite = assay.Suite(name="s", stage="example.fit", config={}, sweep={"grid": [1, 2]})
    with pytest.raises(assay.SuiteError, match="sweep 'grid' must be a mapping"):
        assay.plan_suite(suite)
    suite = assay.Suite(name="s", stage="example.fit", config={}, sweep={}, imports=("",))
    with pytest.raises(assay.SuiteError, match="is not a module name"):
        assay.plan_suite(suite, trust_imports=True)
    with pytest.raises(assay.ConfigError, match="--import: '' is not a module name"):
        assay.plan_suite(suite_from_dict(BASE), imports=[""])


def test_duplicate_yaml_keys_name_the_key_and_both_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("stage: example.fit\nconfig:\n  degree: 3\n  l2: 0.1\n  degree: 5\n")
    with pytest.raises(
        assay.SuiteError,
        match=r"dup\.yaml:5:3: duplicate key 'degree' \(first given at line 3\); each key",
    ):
        assay.load_suite(path)
    # a merge key is meant to be overridden: not a duplicate
    ok = tmp_path / "ok.yaml"
    ok.write_text("stage: example.fit\nconfig:\n  <<: {degree: 3}\n  degree: 5\n")
    assert assay.load_suite(ok).config == {"degree": 5}


def test_duplicate_json_keys_name_the_key_and_line(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"stage": "example.fit",\n "sweep": {"seeds": [1]},\n "sweep": {}}\n')
    with pytest.raises(
        assay.SuiteError, match=r"malformed JSON at .*dup\.json:3:\d+: duplicate key 'sweep'"
    ):
        assay.load_suite(path)


def test_duplicate_toml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.toml"
    path.write_text('stage = "example.fit"\nstage = "example.data"\n')
    with pytest.raises(assay.SuiteError, match=r"malformed TOML .*line 2"):
        assay.load_suite(path)


def test_impossible_date_in_yaml_is_a_suite_error(tmp_path):
    path = tmp_path / "date.yaml"
    path.write_text("stage: example.fit\ndescription: 2020-02-30\n")
    with pytest.raises(assay.SuiteError, match="quote the value"):
        assay.load_suite(path)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("degree=", r"'degree=' has no value after '='; write degree=VALUE"),
        ("degree=,", r"'degree=,': item 1 of 2 is empty .* write degree=VALUE"),
        ("degree=1,,2", r"'degree=1,,2': item 2 of 3 is empty .* write degree=1,2"),
        ("degree=1,", r"item 2 of 2 is empty"),
        ("degree.x=1", r"'degree' is a int field with no sub-keys; write degree=VALUE"),
    ],
)
def test_empty_override_items_are_named(override, match):
    with pytest.raises(assay.ConfigError, match=match):
        assay.plan_suite(suite_from_dict(BASE), [override])


def test_explicit_empty_string_and_null_overrides_are_values():
    from assay.core._config import parse_override

    assert parse_override("name=''") == ("name", [""])
    assert parse_override("x=null") == ("x", [None])
    assert parse_override("d=2020-02-30") == ("d", ["2020-02-30"])  # not a date: a string


def test_huge_grid_is_refused_before_it_is_built():
    axes = {f"k{i}": list(range(10)) for i in range(12)}  # 10^12 sweep points
    suite = assay.Suite(name="s", stage="example.fit", config={}, sweep={"grid": axes})
    with pytest.raises(assay.SuiteError, match=r"plans 1,000,000,000,000 runs, above the limit"):
        assay.plan_suite(suite)
