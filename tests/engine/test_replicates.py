"""One replicate rule (assay.is_replicate) for analysis, trackers and family hooks."""

from pydantic import Field

import assay
from assay.analysis._frames import group_columns, records_frame
from assay.core._run import RunRecord, RunStatus
from assay.sinks import group_name, seed_free_group


class _PinnedConfig(assay.SeededConfig):
    split_seed: int = Field(0, json_schema_extra={"replicate": False})  # a different split
    trial: int = Field(0, json_schema_extra={"replicate": True})  # a repeat, though not *_seed
    lr: float = 0.1


@assay.stage("replicates_test.fit", config=_PinnedConfig)
def _fit(config, run):
    return {}


def test_the_rule_by_name_and_by_declaration():
    assert assay.is_replicate("seed") and assay.is_replicate("perturbation_seed")
    assert not assay.is_replicate("lr")
    assert not assay.is_replicate("split_seed")  # declared: not a replicate
    assert assay.is_replicate("trial")  # declared: a replicate


def _record(i, **config):
    return RunRecord(f"r_{i}", "replicates_test.fit", RunStatus.DONE, config, results={"y": 1.0})


def test_analysis_and_trackers_pool_the_same_fields():
    configs = [
        {"seed": s, "perturbation_seed": p, "trial": t, "split_seed": 0, "lr": 0.1}
        for s in (0, 1)
        for p in (0, 1)
        for t in (0, 1)
    ]
    df = records_frame([_record(i, **c) for i, c in enumerate(configs)])
    assert group_columns(df) == []  # only replicates vary: one group
    split = records_frame([_record(0, split_seed=0), _record(1, split_seed=1)])
    assert group_columns(split) == ["config.split_seed"]  # declared not a replicate: two groups
    # trackers: the same configs are one group, named by what is not a replicate
    assert len({seed_free_group(c, "p") for c in configs}) == 1
    assert group_name("s", {"seed": 0, "perturbation_seed": 1, "lr": 0.1}) == "s lr=0.1"
