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


def test_help_has_no_markup_and_max_runs_says_it_is_a_refusal_limit(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "``" not in out
    assert "--max-runs MAX_RUNS a refusal limit, not a budget" in out
    assert out.count("(default 1000000)") == 1
