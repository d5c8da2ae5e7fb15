"""Recording, storage and the reference on-disk format."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from assay.families.cartography._dynamics import (
    Dynamics,
    DynamicsError,
    DynamicsRecorder,
    probabilities,
    reduce_windows,
)


def _recorded(n=5, epochs=3, labels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = [f"ex-{i}" for i in range(n)]
    rec = DynamicsRecorder(ids, epochs, labels, "multiclass")
    gold = torch.randint(0, labels, (n,), generator=g)
    all_logits = torch.randn(epochs, n, labels, generator=g)
    for e in range(epochs):
        perm = torch.randperm(n, generator=g)
        for chunk in perm.split(2):  # batches in a shuffled order
            rec.record(e, chunk, all_logits[e, chunk], gold[chunk])
    return rec.finish(), all_logits, gold


def test_recorder_stores_softmax_gold_prob_by_position():
    dyn, logits, gold = _recorded()
    expect = torch.softmax(logits, -1).gather(2, gold[None, :, None].expand(3, -1, 1))[..., 0]
    np.testing.assert_allclose(dyn.gold_prob, expect.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(dyn.correct, (logits.argmax(-1) == gold).numpy())
    np.testing.assert_allclose(dyn.logits, logits.numpy())


def test_incomplete_recording_names_the_missing_cell():
    rec = DynamicsRecorder(["a", "b"], 2, 2, "multiclass")
    rec.record(0, torch.tensor([0, 1]), torch.zeros(2, 2), torch.tensor([0, 1]))
    rec.record(1, torch.tensor([0]), torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(DynamicsError, match="epoch 1 id 'b'"):
        rec.finish()


def test_npz_and_reference_round_trip(tmp_path):
    dyn, _, _ = _recorded()
    dyn.save(tmp_path / "d.npz")
    back = Dynamics.load(tmp_path / "d.npz")
    assert back.ids == dyn.ids and back.task == "multiclass"
    np.testing.assert_array_equal(back.gold_prob, dyn.gold_prob)
    folder = dyn.to_reference(tmp_path)
    first = json.loads((folder / "dynamics_epoch_0.jsonl").read_text().splitlines()[0])
    assert set(first) == {"guid", "logits_epoch_0", "gold"} and first["guid"] == "ex-0"
    ref = Dynamics.from_reference(tmp_path)
    assert ref.ids == dyn.ids
    np.testing.assert_allclose(ref.gold_prob, dyn.gold_prob, rtol=1e-6)
    np.testing.assert_array_equal(ref.correct, dyn.correct)


def test_align_reorders_and_rejects_missing_ids():
    dyn, _, _ = _recorded()
    sub = dyn.align(["ex-3", "ex-1"], source="test", fix="x")
    np.testing.assert_array_equal(sub.gold_prob, dyn.gold_prob[:, [3, 1]])
    with pytest.raises(DynamicsError, match=r"cover 1 of the 2 .*'nope'"):
        dyn.align(["ex-1", "nope"], source="run r1", fix="rerun it")


def test_multilabel_probability():
    logits = np.array([[[2.0, -1.0]]])  # (E=1, N=1, L=2)
    gold = np.array([[1.0, 0.0]])
    p, c = probabilities(logits, gold, "multilabel")
    s = 1 / (1 + np.exp(-2.0)), 1 - 1 / (1 + np.exp(1.0))
    assert p[0, 0] == pytest.approx(np.mean(s)) and c[0, 0]


def test_qa_windows_reduce_to_best_answer_window():
    # 2 examples; example 0 has windows 0 (answer), 1 (no answer), 2 (answer)
    wdyn = Dynamics(
        ["w0", "w1", "w2", "w3"],
        np.zeros(4),
        np.array([[0.3, 0.99, 0.6, 0.5]], dtype=np.float32),
        np.array([[False, True, True, False]]),
        None,
        "qa",
    )
    dyn, excluded = reduce_windows(
        wdyn, np.array([0, 0, 0, 1]), np.array([True, False, True, False]), ["e0", "e1"]
    )
    assert dyn.ids == ["e0"] and excluded == ["e1"]  # e1's window lacks the answer: unmapped
    assert dyn.gold_prob[0, 0] == pytest.approx(0.6) and dyn.correct[0, 0]


def test_recorded_prob_reads_back_the_batch_and_needs_a_recording():
    rec = DynamicsRecorder(["a", "b", "c"], 1, 2, "multiclass")
    with pytest.raises(DynamicsError, match="never called record"):
        rec.recorded_prob(0, torch.tensor([0]))
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    rec.record(0, torch.tensor([2, 0]), logits, torch.tensor([0, 0]))
    expect = torch.softmax(logits, -1)[:, 0]  # gold 0 of examples 2 and 0
    torch.testing.assert_close(rec.recorded_prob(0, torch.tensor([2, 0])), expect)


def test_logits_without_n_labels_name_the_fix():
    rec = DynamicsRecorder(["a"], 1, None, "multiclass")  # keeps logits: needs n_labels
    with pytest.raises(DynamicsError, match="n_labels=None.*pass n_labels"):
        rec.record(0, torch.tensor([0]), torch.zeros(1, 2), torch.tensor([0]))
