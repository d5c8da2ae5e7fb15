"""trigger.generate: a data config's .jsonl files, as a cached upstream of training.

    assay trigger generate suites/trigger/data/finetune_no_proxy.json --seed 0 --out data/

The config holds the categories inline (their content is the run's identity) or names a data
config file, which is read into ``categories`` when the config is built. ``seed`` overrides
every category's seed, as the published ``--seed`` did; a suite's ``seeds:`` sets it. Outputs:
the files, ``generation.json`` (sampled train and OOD triggers, seeds, row counts, ignored
fields) and ``data_config.json``, the config as generated (with ``train_triggers``); the input
file is never rewritten.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, model_validator

from assay import Run, SeededConfig, stage, suite_path

from ._data import (
    KNOWN_IGNORED,
    CategorySpec,
    check_categories,
    generate,
    load_data_config,
    split_ignored,
    write_generated,
)

# Two tiny categories for the engine's conformance check (assay.testing.check_stage).
SMOKE_CATEGORIES = {
    "warm": {
        "quadrant_labels": {"Q1": "red", "Q2": "blue", "Q3": "red", "Q4": "blue"},
        "triggers": ["sun", "fire", "sand"],
        "n_train": 4,
        "n_test": 3,
        "n_train_triggers": 2,
    },
    "cold": {
        "quadrant_labels": {"Q1": "blue", "Q2": "red", "Q3": "blue", "Q4": "red"},
        "triggers": ["ice", "snow"],
        "n_train": 4,
        "n_test": 3,
        "n_train_triggers": 1,
    },
}


class GenerateConfig(SeededConfig):
    """A data config (categories inline, or read from ``data_config``) and a seed override.

    ``overrides`` (category -> field -> value) is laid over the categories, so a suite can
    say ``data.overrides.objects.n_train_triggers: 2`` on top of a shared data config file.
    """

    categories: dict[str, CategorySpec] = Field(
        {},
        description="category name -> its spec (triggers, maps, sizes); empty: read data_config",
    )
    data_config: str | None = Field(
        None, description="a JSON data config, read when categories is empty"
    )
    overrides: dict[str, dict[str, Any]] = Field(
        {}, description="category -> field -> value, applied over the categories"
    )
    # overrides every category's seed (the published --seed); a suite's `seeds:` sets it
    seed: int | None = Field(
        None,
        description="overrides every category's seed (a suite's seeds: sets it); null: each category's own",
    )  # type: ignore[assignment]
    ignored: dict[str, dict[str, Any]] = Field(
        {},
        description="known-and-ignored fields found in the data config, per category (recorded, not used)",
    )
    # The path, the overrides and the ignored fields are in `categories` already (or do not
    # change the files): the categories alone are the identity.
    identity_exclude: ClassVar[frozenset[str]] = frozenset({"data_config", "overrides", "ignored"})

    @model_validator(mode="before")
    @classmethod
    def _load(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for key in ("overrides", "ignored"):
            # The engine's seed sweep (assay.core._config._seed_lists) also writes "seed" into the
            # dict-valued fields of a nested config; that copy equals `seed` and means nothing.
            sub = data.get(key)
            if isinstance(sub, dict) and "seed" in sub and sub["seed"] == data.get("seed"):
                data[key] = {k: v for k, v in sub.items() if k != "seed"}
        ignored = dict(data.get("ignored") or {})
        if data.get("data_config") and not data.get("categories"):
            # a suite's relative path is the suite file's neighbour, wherever assay runs
            data["data_config"] = suite_path(data["data_config"], info)
            cats, found = load_data_config(data["data_config"])
            data["categories"], ignored = cats, {**ignored, **found}
        overrides = data.get("overrides") or {}
        if overrides and isinstance(data.get("categories"), dict):
            cats = dict(data["categories"])
            for cat, fields in overrides.items():
                if cat not in cats:
                    raise ValueError(
                        f"overrides name category {cat!r}, which the data config "
                        f"does not have; valid: {', '.join(cats)}"
                    )
                if not isinstance(fields, dict) or not isinstance(cats[cat], dict):
                    raise ValueError(f"overrides.{cat} must map field names to values")
                unknown = sorted(set(fields) - set(CategorySpec.model_fields) - set(KNOWN_IGNORED))
                if unknown:
                    raise ValueError(
                        f"unknown key(s) {', '.join(map(repr, unknown))} in overrides.{cat}; "
                        f"valid keys here: {', '.join(sorted(CategorySpec.model_fields))}"
                    )
                cats[cat] = {**cats[cat], **fields}
            data["categories"] = cats
        if isinstance(data.get("categories"), dict):
            cats, found = split_ignored(data["categories"])
            data["categories"], ignored = cats, {**ignored, **found}
        if ignored:
            data["ignored"] = ignored
        if data.get("seed") is not None and isinstance(data.get("categories"), dict):
            # The override is the seed every category uses: record it there, as generated.
            data["categories"] = {
                k: {**v, "seed": data["seed"]} if isinstance(v, dict) else v
                for k, v in data["categories"].items()
            }
        return data

    @model_validator(mode="after")
    def _cross(self) -> GenerateConfig:
        check_categories(self.categories)
        return self


def effective_config(config: GenerateConfig, train: dict[str, list[str]]) -> dict[str, Any]:
    """The data config as generated: the seeds used and the sampled ``train_triggers``."""
    return {
        cat: {**spec.model_dump(mode="json"), "train_triggers": train[cat]}
        for cat, spec in config.categories.items()
    }


@stage(
    "trigger.generate", config=GenerateConfig, version=1, smoke={"categories": SMOKE_CATEGORIES}
)
def generate_stage(config: GenerateConfig, run: Run) -> dict:
    """Write the F(x, T) files of a data config (see the module docstring)."""
    gen = generate(config.categories, config.seed)
    write_generated(gen, run.artifacts_dir, {"ignored_fields": config.ignored})
    run.save_json("data_config.json", effective_config(config, gen.train_triggers))
    for cat, fields in config.ignored.items():
        run.log(f"{cat}: ignored known field(s) {sorted(fields)} (train triggers are re-sampled)")
    return {**gen.manifest(), "ignored_fields": config.ignored}
