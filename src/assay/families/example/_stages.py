"""Polynomial ridge regression on noisy ``sin(2πx)``: the engine's two-stage example.

    assay run suites/example/polyfit.yaml --dry-run
    assay run suites/example/polyfit.yaml && assay analyze suites/example/polyfit.yaml

``example.data`` draws a dataset from a seed and saves it; ``example.fit`` fits a polynomial of a
given degree with ridge penalty ``l2`` to it and reports train and test mean squared error. It
shows an upstream stage (the fit reuses the data run), seeds, artifacts and metrics, and trains in
milliseconds, so the engine's own tests and benchmarks use it.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from assay import SeededConfig
from assay.core._registry import stage
from assay.core._run import Run


class DataConfig(SeededConfig):
    n_train: int = Field(30, ge=2, description="training points")
    n_test: int = Field(200, ge=1, description="test points")
    noise_std: float = Field(0.2, ge=0, description="std of Gaussian label noise")
    seed: int = Field(0, description="seeds the drawn points and noise")


@stage("example.data", config=DataConfig, version=1)
def make_data(config: DataConfig, run: Run) -> dict:
    """Draw x ~ U(0, 1) and y = sin(2πx) + noise; save train/test splits."""
    rng = np.random.default_rng(config.seed)
    n = config.n_train + config.n_test
    x = rng.uniform(0.0, 1.0, size=n)  # (N,)
    y = np.sin(2 * np.pi * x) + rng.normal(0.0, config.noise_std, size=n)
    with run.write_artifact("data.npz") as tmp:
        np.savez(
            tmp,
            x_train=x[: config.n_train],
            y_train=y[: config.n_train],
            x_test=x[config.n_train :],
            y_test=y[config.n_train :],
        )
    return {"y_train_var": float(y[: config.n_train].var())}


class FitConfig(SeededConfig):
    data: DataConfig = Field(DataConfig(), description="the upstream data stage's config")
    degree: int = Field(3, ge=0, le=30, description="polynomial degree")
    l2: float = Field(1e-6, ge=0, description="ridge penalty on the coefficients")
    seed: int = Field(0, description="the replicate's name; the fit itself is deterministic")


@stage("example.fit", config=FitConfig, version=1, smoke={"degree": 3})
def fit(config: FitConfig, run: Run) -> dict:
    """Ridge-regress y on [1, x, ..., x^degree]; report train/test MSE."""
    data = np.load(run.upstream["data"].artifact("data.npz"))
    features = lambda x: np.vander(x, config.degree + 1, increasing=True)  # noqa: E731 (N, D+1)
    a, y = features(data["x_train"]), data["y_train"]
    # Normal equations with a ridge term: (AᵀA + λI) w = Aᵀy.
    w = np.linalg.solve(a.T @ a + config.l2 * np.eye(a.shape[1]), a.T @ y)
    train_mse = float(np.mean((a @ w - y) ** 2))
    test_mse = float(np.mean((features(data["x_test"]) @ w - data["y_test"]) ** 2))
    run.log_metrics(step=0, train_mse=train_mse, test_mse=test_mse)
    run.save_json("coefficients.json", w.tolist())
    run.log(f"degree {config.degree}: train {train_mse:.4f} test {test_mse:.4f}")
    return {"train_mse": train_mse, "test_mse": test_mse, "weight_norm": float(np.linalg.norm(w))}
