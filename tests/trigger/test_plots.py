"""trigger's figures: curves with a title, the run's identity and legends by category and split
(not file names); the per-trigger histogram by category with whole counts."""

from __future__ import annotations

import pytest

from assay.families.trigger import _plots

FINAL = {
    "test_colors_ID.jsonl": {"n": 8, "per_trigger": {"red": 1.0, "blue": 0.75, "green": 0.55}},
    "test_colors_OOD.jsonl": {"n": 4, "per_trigger": {"pink": 0.25, "teal": 0.0}},
    "test_moods_ID.jsonl": {"n": 6, "per_trigger": {"happy": 1.0, "sad": 0.95}},
    "test_moods_OOD.jsonl": {"n": 0, "per_trigger": {}},  # empty file
}
HISTORY = {
    "steps_per_epoch": 4,
    "epochs": [
        {
            "epoch": e,
            "train_loss": 1.0 / (e + 1),
            "eval": {
                n: {"n": r["n"], "loss": 2.0 / (e + 1), "accuracy": 0.2 * e}
                for n, r in FINAL.items()
            },
        }
        for e in range(1, 4)
    ],
}


@pytest.fixture
def figures(monkeypatch, tmp_path):
    drawn = []

    def keep(fig, path):
        drawn.append(fig)
        return path

    monkeypatch.setattr(_plots, "save_figure", keep)
    return drawn


def test_file_names_read_as_category_and_split():
    assert _plots.file_label("test_negative_emotions_OOD.jsonl") == ("negative_emotions", "OOD")
    assert _plots.file_label("test_colors_ID.jsonl") == ("colors", "ID")
    assert _plots.file_label("extra.jsonl") == ("extra", "")


def test_per_trigger_counts_are_whole_triggers_per_category():
    data = _plots.per_trigger_counts(FINAL)
    ids, ood = data["splits"]["ID"], data["splits"]["OOD"]
    assert ids["counts"]["colors"] == [0, 0, 0, 0, 0, 1, 0, 1, 0, 1]  # 0.55, 0.75, 1.0
    assert ids["counts"]["moods"] == [0] * 9 + [2]  # 0.95 and 1.0 share the last bin
    assert ood["counts"] == {"colors": [1, 0, 1, 0, 0, 0, 0, 0, 0, 0]} and ood["empty"] == [
        "moods"
    ]


def test_histogram_separates_categories_with_integer_counts(figures, tmp_path):
    _plots.plot_per_trigger(FINAL, tmp_path / "h.png", title="trigger.finetune run abc")
    fig = figures[0]
    assert fig.get_suptitle() == "trigger.finetune run abc"
    top, bottom = fig.axes
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["colors (3)", "moods (2)"]
    assert bottom.get_title() == "OOD triggers: 2; empty, left out: moods"
    for ax in (top, bottom):
        ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
    heights = sorted(p.get_height() for p in top.patches if p.get_height())
    assert heights == [1, 1, 1, 2]


def test_curves_have_a_title_and_legends_by_category(figures, tmp_path):
    _plots.plot_curves(HISTORY, tmp_path / "c.png", title="trigger.finetune run abc (lr=0.001)")
    fig = figures[0]
    assert fig.get_suptitle() == "trigger.finetune run abc (lr=0.001)"
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["colors (ID)", "colors (OOD)", "moods (ID)"]  # the empty file: no line
    lines = {line.get_label(): line for line in fig.axes[2].get_lines()}
    assert lines["colors (ID)"].get_color() == lines["colors (OOD)"].get_color()
    assert (lines["colors (ID)"].get_linestyle(), lines["colors (OOD)"].get_linestyle()) == (
        "-",
        "--",
    )
    assert [ax.get_title() for ax in fig.axes] == [
        "training",
        "evaluation: loss",
        "evaluation: accuracy",
    ]
