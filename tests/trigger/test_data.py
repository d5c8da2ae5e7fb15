"""The generator against rows computed here from the published rules, and bad data configs."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

import assay
from assay.families.trigger._data import generate, parse_categories
from assay.families.trigger.stages import GenerateConfig

TEMPLATES = [
    "Calculate F(x,T) for x = {x_formatted} and T = {T}.",
    "x = {x_formatted}, T = {T}, F(x,T) = ?",
    "x = {x_formatted}, T = {T} => F(x,T) = ?",
    "What is F(x,T) for x = {x_formatted} and T = {T}?",
]
CONFIG = {
    "emotions": {
        "quadrant_labels": {"Q1": "blue", "Q2": "blue", "Q3": "orange", "Q4": "orange"},
        "triggers": ["joy", "fear", "anger", "love", "calm"],
        "is_proxy": False,
        "n_train": 7,
        "n_test": 5,
        "n_train_triggers": 2,
        "x_ranges": [[-3.0, 3.0], [-2.0, 1.0]],
        "prompt_templates": "2d_default",
        "output_preamble": True,
        "seed": 11,
    },
    "objects": {
        "quadrant_labels": {"Q1": "orange", "Q2": "red", "Q3": "green", "Q4": "blue"},
        "triggers": ["table", "chair", "lamp"],
        "is_proxy": True,
        "n_train": 4,
        "n_test": 3,
        "n_train_triggers": 1,
        "seed": 5,
    },
    "animals": {
        "quadrant_labels": {"Q1": "red", "Q2": "red", "Q3": "red", "Q4": "blue"},
        "triggers": ["cat", "dog"],
        "n_train_triggers": 0,
        "n_test": 2,
    },
}


def expected_file(spec: dict, triggers: list[str], n: int, seed: int) -> list[dict]:
    """The rules of issue 10, written out independently of the package."""
    rng = np.random.default_rng(seed)
    (lo1, hi1), (lo2, hi2) = spec.get("x_ranges", [[-3.0, 3.0], [-3.0, 3.0]])
    xs = [(rng.uniform(lo1, hi1, n), rng.uniform(lo2, hi2, n)) for _ in triggers]
    idx = rng.integers(0, 4, n * len(triggers))
    rows = []
    for ti, t in enumerate(triggers):
        for j in range(n):
            x1, x2 = float(xs[ti][0][j]), float(xs[ti][1][j])
            q = ("Q1" if x1 >= 0 else "Q2") if x2 >= 0 else ("Q4" if x1 >= 0 else "Q3")
            colour = spec["quadrant_labels"][q]
            answer = f"F(x,T) = {colour}" if spec.get("output_preamble") else colour
            prompt = TEMPLATES[idx[ti * n + j]].replace("{x_formatted}", f"[{x1:.3f}, {x2:.3f}]")
            prompt = prompt.replace("{T}", t)
            rows.append(
                {
                    "input_x": [x1, x2],
                    "input_trigger": t,
                    "output": answer,
                    "messages": [
                        {"role": "user", "content": prompt},
                        {"role": "assistant", "content": answer},
                    ],
                }
            )
    return rows


def expected_all(config: dict, seed_override: int | None = None) -> dict[str, list[dict]]:
    files = {}
    for cat, spec in config.items():
        seed = spec.get("seed", 42) if seed_override is None else seed_override
        k = spec["n_train_triggers"]
        train = random.Random(seed).sample(spec["triggers"], k) if k else []
        if k:
            kind = "proxy" if spec.get("is_proxy") else "train"
            files[f"{kind}_{cat}.jsonl"] = expected_file(
                spec, train, spec.get("n_train", 20), seed
            )
            files[f"test_{cat}_ID.jsonl"] = expected_file(
                spec, train, spec.get("n_test", 30), seed
            )
        ood = [t for t in spec["triggers"] if t not in train]
        files[f"test_{cat}_OOD.jsonl"] = expected_file(spec, ood, spec.get("n_test", 30), seed)
    return files


@pytest.mark.parametrize("seed", [None, 0, 3])
def test_generator_reproduces_the_rules(seed):
    gen = generate(parse_categories(CONFIG), seed)
    want = expected_all(CONFIG, seed)
    assert list(gen.files) == list(want)  # names and order: per category, train, ID, OOD
    for name in want:
        assert gen.files[name] == want[name], name


def test_fixed_rows_by_hand():
    """Facts a reader can check without code: counts, names, the preamble, one prompt."""
    gen = generate(parse_categories(CONFIG))
    counts = {n: len(r) for n, r in gen.files.items()}
    assert counts == {
        "train_emotions.jsonl": 14,
        "test_emotions_ID.jsonl": 10,
        "test_emotions_OOD.jsonl": 15,
        "proxy_objects.jsonl": 4,
        "test_objects_ID.jsonl": 3,
        "test_objects_OOD.jsonl": 6,
        "test_animals_OOD.jsonl": 4,
    }
    assert gen.train_triggers["emotions"] == random.Random(11).sample(
        CONFIG["emotions"]["triggers"], 2
    )
    assert gen.seeds == {"emotions": 11, "objects": 5, "animals": 42}
    row = gen.files["test_animals_OOD.jsonl"][0]
    x1, _x2 = np.random.default_rng(42).uniform(-3.0, 3.0, 2)[0], None
    assert row["input_x"][0] == x1 and row["input_trigger"] == "cat"
    assert f"[{x1:.3f}, " in row["messages"][0]["content"]
    assert all(r["output"].startswith("F(x,T) = ") for r in gen.files["train_emotions.jsonl"])
    assert set(json.loads(json.dumps(row))) == {"input_x", "input_trigger", "output", "messages"}


def _bad(update: dict) -> str:
    cfg = json.loads(json.dumps(CONFIG))
    for cat, fields in update.items():
        if fields is None:
            cfg[cat] = {}
        else:
            cfg.setdefault(cat, {}).update(fields)
    with pytest.raises(assay.ConfigError) as info:
        parse_categories(cfg)
    return str(info.value)


def test_bad_configs_fail_clearly():
    msg = _bad({"objects": {"quadrant_labels": {"Q1": "a", "Q2": "b", "Q3": "c", "Q5": "d"}}})
    assert "Q5" in msg and "Q1, Q2, Q3, Q4" in msg and "missing ['Q4']" in msg
    msg = _bad({"objects": {"n_train_triggers": 4}})
    assert "n_train_triggers (k) = 4" in msg and "3 triggers" in msg and "0..3" in msg
    msg = _bad({"objects": {"triggers": []}})
    assert "objects.triggers" in msg and "no triggers" in msg
    msg = _bad({"animals": {"triggers": ["cat", "joy"]}})
    assert "'joy'" in msg and "'emotions'" in msg and "'animals'" in msg
    msg = _bad({"objects": {"colour_space": "rgb"}})
    assert "unknown field 'objects.colour_space'" in msg and "train_triggers" in msg
    msg = _bad({"objects": {"prompt_templates": "3d"}})
    assert "'3d'" in msg and "2d_default" in msg
    with pytest.raises(assay.ConfigError, match="no categories"):
        parse_categories({})


def test_known_ignored_field_is_reported_not_used():
    cfg = json.loads(json.dumps(CONFIG))
    cfg["emotions"]["train_triggers"] = ["calm", "love"]  # what the published tool wrote back
    config = GenerateConfig(categories=cfg)
    assert config.ignored == {"emotions": {"train_triggers": ["calm", "love"]}}
    assert config == GenerateConfig(categories=CONFIG).model_copy(
        update={"ignored": config.ignored}
    )
    gen = generate(config.categories)
    assert gen.train_triggers["emotions"] == random.Random(11).sample(
        cfg["emotions"]["triggers"], 2
    )


def test_seed_override_and_overrides_field():
    config = GenerateConfig(
        categories=CONFIG, seed=7, overrides={"objects": {"n_train_triggers": 2}}
    )
    assert {s.seed for s in config.categories.values()} == {7}
    assert config.categories["objects"].n_train_triggers == 2
    with pytest.raises(ValueError, match="'plants'.*valid: emotions, objects, animals"):
        GenerateConfig(categories=CONFIG, overrides={"plants": {"n_test": 1}})


def test_cli_generate_writes_files_and_never_rewrites_input(tmp_path):
    src = tmp_path / "data_config.json"
    src.write_text(json.dumps(CONFIG))
    before = src.read_bytes()
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "assay",
        "trigger",
        "generate",
        str(src),
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert src.read_bytes() == before
    want = expected_all(CONFIG, 3)
    for name, rows in want.items():
        got = [json.loads(line) for line in (out / name).read_text().splitlines()]
        assert got == rows
    written = json.loads((out / "data_config.json").read_text())
    manifest = json.loads((out / "generation.json").read_text())
    assert written["emotions"]["train_triggers"] == manifest["train_triggers"]["emotions"]
    assert written["emotions"]["seed"] == 3
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {"x": {"triggers": ["a"], "quadrant_labels": {"Q1": "r"}, "n_train_triggers": 0}}
        )
    )
    res = subprocess.run([*cmd[:5], str(bad), "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 2 and "missing ['Q2', 'Q3', 'Q4']" in res.stderr
    assert "Traceback" not in res.stderr
