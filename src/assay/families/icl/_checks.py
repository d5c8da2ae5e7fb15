"""Plan-time checks of the icl stages: what a config asks of its model, before anything runs.

    @stage("icl.geometry", config=GeometryConfig, check=model_check(lambda c: c.context_lengths[-1]))

The model's size is read from cheap metadata only: the upstream ``icl.train`` config (layers,
positions, the word lists its tokenizer is built from), or a model folder's ``config.json`` and
``tokenizer.json``. Refused here, with exit 2 and nothing recorded: a layer out of range
(``layers: [-1]``), a context longer than the model's positions (``context_lengths: [1e9]``), a
word list that is missing or shorter than the graph, and words the model's vocabulary lacks.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from assay import ConfigError

from ._graphs import GraphConfig, build_graph, load_words


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    """What a check needs to know of a model: its blocks, positions and (word-level) vocabulary."""

    n_layers: int
    max_positions: int
    vocab: frozenset[str] | None  # None: a subword tokenizer, every word is encodable
    source: str  # "the model trained by icl.train" or "the model at PATH", for messages


def model_facts(config: Any) -> ModelFacts:
    """The facts of an icl analysis config's model (``train`` upstream or ``model`` folder)."""
    if config.train is not None:
        train = config.train
        source = (
            f"the icl.train model (train.n_layers={train.n_layers}, "
            f"train.max_positions={train.max_positions})"
        )
        return ModelFacts(train.n_layers, train.max_positions, train_vocabulary(train), source)
    return _folder_facts(config.model.path)


def train_vocabulary(train: Any) -> frozenset[str]:
    """The words of an ``icl.train`` tokenizer: its graphs' word lists and ``vocab`` lists."""
    names = (*(g.words for g in train.graphs), *train.vocab)
    return frozenset(w for name in names for w in load_words(name))


@functools.lru_cache(maxsize=16)
def _folder_facts(path: str) -> ModelFacts:
    folder = Path(path)
    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {folder / 'config.json'} ({exc}); `model:` must be a Hugging Face "
            "model folder (model.save_pretrained(DIR) and tokenizer.save_pretrained(DIR))"
        ) from None
    n_layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    positions = cfg.get("max_position_embeddings", cfg.get("n_positions", cfg.get("n_ctx")))
    if not isinstance(n_layers, int) or not isinstance(positions, int):
        raise ConfigError(
            f"{folder / 'config.json'} names no layer count (num_hidden_layers / n_layer) or "
            "no positions (max_position_embeddings / n_positions); give a causal LM folder"
        )
    return ModelFacts(n_layers, positions, _word_vocab(folder), f"the model at {path}")


def _word_vocab(folder: Path) -> frozenset[str] | None:
    """A word-level tokenizer's words (tokenizer.json of type WordLevel), else None."""
    try:
        spec = json.loads((folder / "tokenizer.json").read_text())
    except (OSError, ValueError):
        return None
    model = spec.get("model") or {}
    if model.get("type") != "WordLevel" or not isinstance(model.get("vocab"), dict):
        return None
    return frozenset(model["vocab"])


@functools.lru_cache(maxsize=64)
def graph_words(graph: GraphConfig) -> tuple[str, ...]:
    """Every word ``graph`` may put on a node (its list; the semantic list for semantic_conflict),
    after checking the list exists and is long enough for the graph (ConfigError if not)."""
    build_graph(graph, np.random.default_rng(0))  # fails on a missing or too short word list
    return tuple(load_words("semantic" if graph.kind == "semantic_conflict" else graph.words))


def check_model_fit(config: Any, context_words: int, extra_layers: tuple[int, ...] = ()) -> None:
    """Refuse what ``config`` asks of its model: layers, context length, graph words."""
    facts = model_facts(config)
    layers = [*(config.layers or ()), *extra_layers]
    bad = [k for k in layers if not 0 <= k <= facts.n_layers]
    if bad:
        raise ValueError(
            f"layers {bad} out of range for {facts.source}: {facts.n_layers} blocks, so valid "
            f"layers are 0..{facts.n_layers} (0 = the embeddings, k = the output of block k); "
            "fix `layers` (or pca_layer), or leave `layers` unset for all of them"
        )
    if context_words > facts.max_positions:
        raise ValueError(
            f"a context of {context_words} words needs at least {context_words} positions, "
            f"but {facts.source} has {facts.max_positions}; valid: at most "
            f"{facts.max_positions} words per context: shorten the context lengths or use a "
            "model with more positions"
        )
    words = graph_words(config.graph)
    if facts.vocab is not None:
        missing = [w for w in words if w not in facts.vocab]
        if missing:
            raise ValueError(
                f"{len(missing)} word(s) of graph.words {config.graph.words!r} are not in the "
                f"vocabulary of {facts.source}: {missing[:5]}; use a word list the model was "
                "trained on (a train.graphs word list or train.vocab) or a model that knows them"
            )


def model_check(
    context_words: Callable[[Any], int],
    extra_layers: Callable[[Any], tuple[int, ...]] = lambda config: (),
) -> Callable[[Any], None]:
    """The ``check=`` of an analysis stage whose longest context is ``context_words(config)``
    words and which reads ``extra_layers(config)`` besides ``config.layers``."""

    def check(config: Any) -> None:
        check_model_fit(config, context_words(config), extra_layers(config))

    return check


def check_train(config: Any) -> None:
    """``icl.train``: every word list exists and covers its graph; walks fit the positions."""
    for graph in config.graphs:
        graph_words(graph)
    train_vocabulary(config)  # the train.vocab lists exist
    if config.seq_len > config.max_positions:
        raise ValueError(
            f"seq_len {config.seq_len} is longer than max_positions {config.max_positions}; "
            f"valid: seq_len <= max_positions: lower seq_len or raise max_positions"
        )
