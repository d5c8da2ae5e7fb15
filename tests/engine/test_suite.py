import json

import pytest
import teststages  # noqa: F401

import assay
from assay._suite import parse_shard, select, suite_from_dict

BASE = {"stage": "example.fit", "config": {"data": {"n_train": 20}}}


def ids_params(runs):
    return [r.params for r in runs]


def test_grid_zip_variants_and_seeds_expand_as_a_product():
    suite = suite_from_dict({
        **BASE,
        "sweep": {"grid": {"degree": [1, 2]}, "zip": {"l2": [0.1, 0.2], "data.noise_std": [0.1, 0.3]},
                  "variants": [{"data.n_test": 10}, {"data.n_test": 20}], "seeds": [0, 1]},
    })  # fmt: skip
    runs = assay.plan_suite(suite)
    assert len(runs) == 2 * 2 * 2 * 2
    assert [r.index for r in runs] == list(range(16))
    first = runs[0]
    assert first.params == {"degree": 1, "l2": 0.1, "data.noise_std": 0.1, "data.n_test": 10,
                            "seed": 0}  # fmt: skip
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
