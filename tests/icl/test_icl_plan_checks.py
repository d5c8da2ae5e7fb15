"""icl: what a config asks of its model is refused at plan time (exit 2, nothing recorded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import assaycli
import pytest

from assay.ml import build_model, build_word_tokenizer

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "suites" / "icl" / "smoke.yaml"


def dry_run(*args: object, suite: Path = SMOKE, root: Path) -> subprocess.CompletedProcess:
    return assaycli.dry_run(suite, *args, root=root)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("layers=[-1]", "layers [-1] out of range for the icl.train model (train.n_layers=3"),
        ("layers=[4]", "valid layers are 0..3"),
        ("pca_layer=7", "layers [7] out of range"),
        (
            "context_lengths=[1e9]",
            "a context of 1000000000 words needs at least 1000000000 "
            "positions, but the icl.train model",
        ),
        (
            "graph.words=no_such_list.txt",
            "word list 'no_such_list.txt' is neither a packaged list",
        ),
        (
            "graph={kind: grid, rows: 10, cols: 10}",
            "word list 'park' has 16 words but the grid graph has 100 nodes",
        ),
        ("train.seq_len=512", "seq_len 512 is longer than max_positions 256"),
    ],
)
def test_bad_model_requests_are_refused(tmp_path, override, expected):
    root = tmp_path / "runs"
    proc = dry_run(override, root=root)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not root.exists()


def test_words_the_trained_vocabulary_lacks_are_refused(tmp_path):
    root = tmp_path / "runs"
    proc = dry_run("train.vocab=[]", "graph.words=common", root=root)
    assert proc.returncode == 2, proc.stdout
    assert "word(s) of graph.words 'common' are not in the vocabulary" in proc.stderr
    assert dry_run("graph.words=common", root=root).returncode == 0  # train.vocab has it


def _model_folder(path: Path, words: list[str], n_layers: int = 2, positions: int = 40) -> Path:
    tok = build_word_tokenizer(words, specials={"eos": None}, out_dir=path)
    model = build_model(
        "gpt2",
        vocab_size=len(tok),
        d_model=16,
        n_layers=n_layers,
        n_heads=2,
        max_positions=positions,
    )
    model.save_pretrained(path)
    return path


def test_a_model_folder_is_checked_from_its_config_and_tokenizer(tmp_path):
    from assay.families.icl._graphs import load_words

    folder = _model_folder(tmp_path / "lm", load_words("park"))
    suite = tmp_path / "s.yaml"  # `model: lm` is the suite file's neighbour
    suite.write_text(
        "stage: icl.geometry\nconfig: {train: null, model: lm, context_lengths: [4, 8]}\n"
    )
    root = tmp_path / "runs"
    assert dry_run(suite=suite, root=root).returncode == 0
    proc = dry_run("layers=[3]", suite=suite, root=root)
    assert proc.returncode == 2 and f"the model at {folder}: 2 blocks" in proc.stderr
    proc = dry_run("context_lengths=[4,64]", suite=suite, root=root)
    assert proc.returncode == 2 and "the model at" in proc.stderr and "has 40" in proc.stderr
    proc = dry_run("graph.words=common", suite=suite, root=root)
    assert proc.returncode == 2 and "are not in the vocabulary of the model at" in proc.stderr
    assert not root.exists()


def test_a_word_file_is_a_content_reference_beside_the_suite(tmp_path):
    from assay.engine._suite import expand, load_suite

    words = [f"w{i}" for i in range(16)]
    (tmp_path / "mine.txt").write_text("\n".join(words) + "\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "stage: icl.geometry\nconfig:\n  context_lengths: [4, 8]\n"
        "  graph: {kind: grid, words: mine.txt}\n"
        "  train: {graphs: [{kind: grid, words: mine.txt}], vocab: []}\n"
    )
    (first,) = expand(load_suite(suite))
    assert first.config.graph.words == str(tmp_path / "mine.txt")
    (tmp_path / "mine.txt").write_text("\n".join(reversed(words)) + "\n")
    (second,) = expand(load_suite(suite))
    assert second.id != first.id  # edited words: a new run, never a stale one
    root = tmp_path / "runs"
    assert dry_run(suite=suite, root=root).returncode == 0  # trained on that file: known words
