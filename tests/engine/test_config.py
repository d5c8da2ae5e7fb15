import pydantic
import pytest
import teststages  # noqa: F401 (registers the t.* stages)

import assay
from assay.core._config import identity, parse_override
from assay.families.example._stages import DataConfig, FitConfig


def test_config_is_frozen_and_rejects_unknown_keys():
    cfg = FitConfig(degree=4)
    with pytest.raises(pydantic.ValidationError):
        cfg.degree = 5
    with pytest.raises(pydantic.ValidationError, match="extra"):
        FitConfig(degre=4)


def test_run_id_is_stage_plus_hex_and_stable():
    rid = assay.run_id("example.fit", 1, FitConfig(degree=4))
    assert rid.startswith("example_fit_") and len(rid.split("_")[-1]) == 12
    assert rid == assay.run_id("example.fit", 1, FitConfig(degree=4))
    assert rid != assay.run_id("example.fit", 1, FitConfig(degree=5))
    assert rid != assay.run_id("example.fit", 2, FitConfig(degree=4))  # version is identity


def test_defaults_and_excluded_fields_do_not_enter_identity():
    # writing a default explicitly is the same run
    assert identity(FitConfig(degree=3)) == identity(FitConfig()) == {}
    a = teststages.CountConfig(x=1, marker_dir="/a", sleep_s=1)
    b = teststages.CountConfig(x=1, marker_dir="/b", sleep_s=2)
    assert assay.run_id("t.count", 1, a) == assay.run_id("t.count", 1, b)


def test_nested_upstream_changes_downstream_identity():
    a = FitConfig(data=DataConfig(noise_std=0.1))
    b = FitConfig(data=DataConfig(noise_std=0.3))
    assert assay.run_id("example.fit", 1, a) != assay.run_id("example.fit", 1, b)
    assert a.upstream() == {"data": DataConfig(noise_std=0.1)}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("a.b=3", ("a.b", [3])),
        ("lr=1e-3", ("lr", [0.001])),
        ("x=1,2,3", ("x", [1, 2, 3])),
        ("name=abc", ("name", ["abc"])),
        ("xs=[1,2]", ("xs", [[1, 2]])),
        ("flag=true", ("flag", [True])),
    ],
)
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_override_without_equals_is_explained():
    with pytest.raises(assay.ConfigError, match="key.sub=value"):
        parse_override("degree")


def test_copies_with_updates_get_their_own_id():
    import copy

    cfg = FitConfig(degree=4)
    rid = assay.run_id("example.fit", 1, cfg)
    updated = cfg.model_copy(update={"degree": 5})
    assert assay.run_id("example.fit", 1, updated) == assay.run_id(
        "example.fit", 1, FitConfig(degree=5)
    )
    assert assay.run_id("example.fit", 1, cfg.model_copy()) == rid
    assert assay.run_id("example.fit", 1, copy.deepcopy(cfg)) == rid


class _Inner(assay.StageConfig):
    width: int = 2  # no seed field: a seed sweep must leave it alone


class _Outer(assay.SeededConfig):
    inner: _Inner = _Inner()
    many: dict[str, _Inner] = {}


def test_seed_sweeps_do_not_write_seed_into_seedless_sub_configs():
    from assay.core._config import set_seed_everywhere

    data = {"inner": {"width": 3}, "many": {"a": {"width": 1}}}
    set_seed_everywhere(_Outer, data, 7)
    assert data == {"inner": {"width": 3}, "many": {"a": {"width": 1}}, "seed": 7}
    assert _Outer.model_validate(data).seed == 7


def test_overrides_reach_into_dicts_of_configs():
    from assay.core._config import check_key

    check_key(_Outer, "many.a.width", stage="t")  # the entry 'a' of a dict of configs
    check_key(_Outer, "many.a", stage="t")
    with pytest.raises(assay.ConfigError, match="'depth' is not a field at many.a; valid keys"):
        check_key(_Outer, "many.a.depth", stage="t")
