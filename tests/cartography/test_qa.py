"""The generated QA data, windows over long contexts, and SQuAD EM/F1 computed locally."""

from __future__ import annotations

import numpy as np
import pytest

from assay.families.cartography._qa import (
    NAMES,
    QAConfig,
    best_spans,
    f1_score,
    generate_qa,
    make_windows,
    normalize_answer,
    qa_vocabulary,
    squad_scores,
)


def test_generation_is_seeded_and_answers_are_spans():
    a, b = generate_qa(QAConfig(n_train=50, n_ood=20)), generate_qa(QAConfig(n_train=50, n_ood=20))
    assert [e.context for e in a.train] == [e.context for e in b.train]
    c = generate_qa(QAConfig(n_train=50, generator_seed=1))
    assert [e.context for e in a.train] != [e.context for e in c.train]
    for ex in a.train + a.ood["ood_templates"]:
        assert 0 <= ex.answer_start <= ex.answer_end < len(ex.context)
        person = [w for w in ex.question if w in NAMES]
        assert len(person) == 1 and person[0] in ex.context  # asks about someone described

    def template(e):
        return " ".join("{p}" if w in NAMES else w for w in e.question)

    id_q = {template(e) for e in a.train}
    ood_q = {template(e) for e in a.ood["ood_templates"]}
    assert not id_q & ood_q  # OOD asks with templates training never uses


def test_windows_hold_the_answer_where_they_say():
    qa = generate_qa(QAConfig(n_train=60, people_min=4, people_max=4))
    vocab = qa_vocabulary(qa.train)
    win = make_windows(qa.train, vocab, max_tokens=48, stride_tokens=16)
    assert len(win.start) > len(qa.train)  # long contexts are cut into several windows
    inv = {i: w for w, i in vocab.items()}
    for w in np.flatnonzero(win.has_answer):
        ex = qa.train[win.example[w]]
        words = [inv[int(t)] for t in win.input_ids[w, win.start[w] : win.end[w] + 1]]
        assert " ".join(words) == ex.answer_text
    assert (win.start[~win.has_answer] == 0).all()
    covered = np.zeros(len(qa.train), dtype=bool)
    covered[win.example[win.has_answer]] = True
    assert covered.all()


def test_best_spans_pick_the_best_window():
    qa = generate_qa(QAConfig(n_train=10, people_min=4, people_max=4))
    vocab = qa_vocabulary(qa.train)
    win = make_windows(qa.train, vocab, max_tokens=48, stride_tokens=16)
    start = np.zeros(win.input_ids.shape)
    end = np.zeros(win.input_ids.shape)
    for w in np.flatnonzero(win.has_answer):  # gold logits where the answer is
        start[w, win.start[w]], end[w, win.end[w]] = 5.0, 5.0
    answers = best_spans(start, end, win, qa.train)
    assert answers == [ex.answer_text for ex in qa.train]


def test_squad_metrics_match_the_official_definitions():
    assert normalize_answer("The  Golden, brown dog!") == "golden brown dog"
    assert f1_score("golden brown dog", "a brown dog") == pytest.approx(2 * (2 / 3) / (2 / 3 + 1))
    s = squad_scores(["Paris", "new york city", "x"], ["paris", "New York", "lima"])
    assert s["exact_match"] == pytest.approx(100 / 3)
    assert s["f1"] == pytest.approx(100 * (1 + 0.8 + 0) / 3)
