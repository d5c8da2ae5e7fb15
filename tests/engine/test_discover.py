"""What `assay stages`, `assay --version` and the help texts tell a researcher."""

from __future__ import annotations

import pytest

import assay
from assay._cli import main, type_text


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"assay {assay.__version__}"


def test_stages_show_choices_optional_types_and_every_default(capsys):
    assert main(["stages", "volume.train"]) == 0
    out = capsys.readouterr().out
    assert "float32|float64|bfloat16|float16" in out  # a Literal lists its choices
    assert "native|origin" in out and "adamw" in out
    assert "int or null" in out  # Optional says so, and its default is shown as null
    rows = [line for line in out.splitlines() if line.startswith("│ data_seed ")]
    assert rows and "null" in rows[0]
    assert "this worker's GPU" in out  # the engine's own fields carry their description


def test_type_text_names_containers_and_unions():
    from typing import Literal

    assert type_text(tuple[int, ...]) == "tuple[int, ...]"
    assert type_text(Literal["a", "b"] | None) == "a|b or null"


@pytest.mark.parametrize("command", [[], ["report"], ["stages"], ["patching", "run"]])
def test_no_help_text_shows_docstring_markup(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    out = capsys.readouterr().out
    assert "`" not in out and "usage: assay" in out


def test_help_has_no_markup_and_max_runs_says_it_is_a_refusal_limit(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out
    assert "--max-runs MAX_RUNS a refusal limit, not a budget" in out
    assert out.count("(default 1000000)") == 1


def _models_in(annotation):
    import typing

    import pydantic

    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def test_every_config_field_of_every_stage_has_a_one_line_description():
    from assay.core._registry import all_stage_names, get_stage

    missing, seen = [], set()

    def walk(cls, where):
        if cls in seen:
            return
        seen.add(cls)
        for name, field in cls.model_fields.items():
            text = field.description or ""
            if not text.strip() or "\n" in text or "``" in text:
                missing.append(f"{where}.{name}")
            for sub in _models_in(field.annotation):
                walk(sub, f"{where}.{name}")

    for stage_name in all_stage_names():
        entry = get_stage(stage_name)
        if entry.module.startswith("assay."):  # shipped stages, not the tests' own
            walk(entry.config_cls, stage_name)
    assert missing == [], f"fields without a one-line description: {missing}"


@pytest.mark.parametrize(
    "stage_name",
    ["volume.perturb", "icl.train", "cartography.train", "patching.run", "trigger.finetune"],
)
def test_stages_shows_every_key_with_its_type_default_and_help(stage_name, capsys):
    from assay.core._registry import get_stage

    assert main(["stages", stage_name]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split("│")[1].strip(): line
        for line in out.splitlines()
        if line.startswith("│") and line.split("│")[1].strip()
    }
    cls = get_stage(stage_name).config_cls
    for name in cls.model_fields:
        assert name in rows, f"{stage_name}: no row for {name}"
        cells = [c.strip() for c in rows[name].split("│")[1:-1]]
        assert cells[2], f"{stage_name}.{name}: no default shown"  # required keys: (required)
        assert cells[3], f"{stage_name}.{name}: no help shown"
        assert "Literal" not in cells[1] and "Optional" not in cells[1]


def test_a_family_command_takes_its_flags_help_from_the_stage_config(capsys):
    from assay.families.patching.stages import PatchingRunConfig

    with pytest.raises(SystemExit):
        main(["patching", "run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for name in ("defs_per_forward", "direction", "method", "readout_position"):
        assert PatchingRunConfig.model_fields[name].description in out, name
    assert "(default 64)" in out and out.count("(default denoising)") == 1
