"""One training run from a config: data, model, loop, evaluation. Shared by the dynamics run
(which records) and the strategy runs (which train on what a strategy kept, with its eps and w).

    out = fit(cfg, device, keep=None, epsilon=None, weight=None, record="train_pass")
    out.results   # {"eval_accuracy": ..., "eval_macro_f1": ...} or eval_exact_match / eval_f1
    out.dynamics  # Dynamics per training example (QA: windows reduced per example)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ._data import load_dataset
from ._dynamics import Dynamics, DynamicsRecorder, reduce_windows
from ._models import build_classifier, build_qa_model, pooled_embedding
from ._qa import best_spans, generate_qa, make_windows, qa_vocabulary, squad_scores
from ._train import ClassificationTask, QATask, TrainOptions, predict, train

# lr when the config leaves it at None: a bag of words learns fast; a pretrained encoder is
# fine-tuned gently (BERT's recipe); a transformer from scratch (QA tests) sits in between.
DEFAULT_LR = {"bow": 5e-3, "hf": 5e-5, "scratch": 1e-3}


@dataclasses.dataclass
class Fitted:
    results: dict[str, Any]
    dynamics: Dynamics | None
    train_ids: list[str]  # every training example of the split (before any filter)
    history: dict
    embeddings: np.ndarray | None  # (N, d) pooled representations of the whole train split
    excluded: list[str]  # QA: examples whose windows never hold the answer (not in the map)


def train_ids(cfg) -> list[str]:
    if cfg.data.task == "qa":
        return [ex.id for ex in generate_qa(cfg.data.qa).train]
    return load_dataset(cfg.data).train.ids


def _lr(cfg) -> float:
    if cfg.lr is not None:
        return cfg.lr
    if cfg.data.task == "qa" or cfg.model.from_config:
        return DEFAULT_LR["scratch"]
    return DEFAULT_LR[cfg.model.kind]


def fit(
    cfg,
    device: str,
    *,
    keep: np.ndarray | None = None,
    epsilon: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    record: str | None = None,
    log=None,
    embeddings: bool = False,
    bar=None,
) -> Fitted:
    """Train on the training split's examples at positions ``keep`` (all when None).

    ``bar``: the run's progress counter of epochs (batches inside; evaluation noted)."""
    if cfg.data.task == "qa":
        return _fit_qa(cfg, device, keep, epsilon, weight, record, log, bar)
    ds = load_dataset(cfg.data)
    full = ds.train
    keep = np.arange(len(full)) if keep is None else keep
    split = full.subset(keep)
    model, enc = build_classifier(cfg.model, split.texts, ds.n_labels, cfg.seed)
    opts = TrainOptions(
        cfg.epochs,
        cfg.batch_size,
        _lr(cfg),
        cfg.weight_decay,
        cfg.seed,
        device,
        record,
        cfg.gradient_checkpointing,
    )
    task = ClassificationTask(model, enc, enc.rows(split.texts), split.labels)
    rec = (
        DynamicsRecorder(split.ids, cfg.epochs, ds.n_labels, "multiclass", mode=record)
        if record
        else None
    )
    ones = np.ones(len(split))
    hist = train(
        task,
        opts,
        np.zeros(len(split)) if epsilon is None else epsilon,
        ones if weight is None else weight,
        rec,
        on_epoch=log,
        bar=bar,
    )
    if bar is not None:
        bar.note("evaluating")
    results: dict[str, Any] = {}
    evals = {
        "eval": ds.test,
        "validation": ds.validation,
        **{f"ood_{k}": v for k, v in ds.ood.items()},
    }
    for prefix, part in evals.items():
        if len(part) == 0:
            continue
        logits = predict(ClassificationTask(model, enc, enc.rows(part.texts), part.labels), opts)
        results |= classification_scores(logits, part.labels, ds.n_labels, prefix)
    emb = None
    if embeddings:
        if bar is not None:
            bar.note("embedding the training set")
        emb_task = ClassificationTask(model, enc, enc.rows(full.texts), full.labels)
        parts: list = []
        with torch.no_grad():
            model.eval()
            for start in range(0, len(full), 512):
                idx = torch.arange(start, min(start + 512, len(full)))
                inputs, _ = emb_task.batch(idx, device)
                parts.append(pooled_embedding(model, inputs).float().cpu())
        emb = torch.cat(parts).numpy()
        model.train()
    results["n_train"] = len(split)
    results["train_loss"] = hist["train_loss"][-1]
    results["micro_batch_used"] = hist["micro_batch"][-1]  # examples per forward (OOM: fewer)
    return Fitted(results, rec.finish() if rec else None, full.ids, hist, emb, [])


def classification_scores(
    logits: np.ndarray, labels: np.ndarray, n_labels: int, prefix: str
) -> dict[str, float]:
    """Accuracy and macro-F1 (every class counts, those never predicted too)."""
    from sklearn.metrics import f1_score

    pred = logits.argmax(-1)
    return {
        f"{prefix}_accuracy": float((pred == labels).mean()),
        f"{prefix}_macro_f1": float(
            f1_score(labels, pred, average="macro", labels=list(range(n_labels)), zero_division=0)
        ),
    }


def _fit_qa(cfg, device, keep, epsilon, weight, record, log, bar=None) -> Fitted:
    qa = generate_qa(cfg.data.qa)
    all_ids = [ex.id for ex in qa.train]
    keep = np.arange(len(qa.train)) if keep is None else keep
    examples = [qa.train[i] for i in keep]
    vocab = qa_vocabulary(qa.train)  # one vocabulary for every strategy run of this data
    win = make_windows(examples, vocab, cfg.model.max_tokens, cfg.qa_stride_tokens)
    size = cfg.model.from_config or {}
    model = build_qa_model(len(vocab), cfg.model.max_tokens, size, cfg.seed, cfg.model.dropout)
    opts = TrainOptions(
        cfg.epochs,
        cfg.batch_size,
        _lr(cfg),
        cfg.weight_decay,
        cfg.seed,
        device,
        record,
        cfg.gradient_checkpointing,
    )
    window_ids = [f"{examples[e].id}#w{w}" for w, e in enumerate(win.example)]
    rec = DynamicsRecorder(window_ids, cfg.epochs, None, "qa", mode=record) if record else None
    n_win = len(win.example)  # a window takes its example's eps and w
    eps_w = np.zeros(n_win) if epsilon is None else epsilon[win.example]
    w_w = np.ones(n_win) if weight is None else weight[win.example]
    hist = train(QATask(model, win), opts, eps_w, w_w, rec, on_epoch=log, bar=bar)
    if bar is not None:
        bar.note("evaluating")
    results: dict[str, Any] = {}
    evals = {
        "eval": qa.test,
        "validation": qa.validation,
        **{f"ood_{k}": v for k, v in qa.ood.items()},
    }
    for prefix, part in evals.items():
        pw = make_windows(part, vocab, cfg.model.max_tokens, cfg.qa_stride_tokens)
        start, end = predict(QATask(model, pw), opts)
        answers = best_spans(start, end, pw, part, cfg.max_answer_tokens)
        scores = squad_scores(answers, [ex.answer_text for ex in part])
        results |= {f"{prefix}_exact_match": scores["exact_match"], f"{prefix}_f1": scores["f1"]}
    dyn: Dynamics | None = None
    excluded: list[str] = []  # example ids no window of which holds the answer
    if rec is not None:
        dyn, excluded = reduce_windows(
            rec.finish(), win.example, win.has_answer, [ex.id for ex in examples]
        )
    results["n_train"] = len(examples)
    results["n_train_windows"] = int(len(win.example))
    results["train_loss"] = hist["train_loss"][-1]
    results["micro_batch_used"] = hist["micro_batch"][-1]  # examples per forward (OOM: fewer)
    return Fitted(results, dyn, all_ids, hist, None, excluded)
