"""The ``cosine`` metric is computed and kept in float64, like ``cosine_to_source``."""

from __future__ import annotations

import numpy as np
import torch

from assay.ml.patching._metrics import compute_metrics


def test_cosine_is_float64_and_resolves_a_change_float32_rounds_away():
    base = torch.linspace(1.0, 5.0, 16, dtype=torch.float32).unsqueeze(0)  # (n=1, O=16)
    patched = base.clone().unsqueeze(0)  # (K=1, n, O)
    patched[0, 0, 3] += 1e-3  # 1 - cos ~ 1e-9: below float32's resolution at 1.0
    m = compute_metrics(patched, base, base, base, names=("cosine",))
    p, b = patched[0, 0].double().numpy(), base[0].double().numpy()
    want = p @ b / (np.linalg.norm(p) * np.linalg.norm(b))
    assert m["cosine"].dtype == torch.float64
    assert abs(m["cosine"].item() - want) < 1e-14 and m["cosine"].item() < 1.0
    f32 = torch.nn.functional.cosine_similarity(patched[0], base, dim=-1).item()
    assert f32 >= 1.0 - 1e-7  # what the float32 metric reported: no change at all
    zero = compute_metrics(torch.zeros(1, 1, 16), base, base, base, names=("cosine",))
    assert torch.isnan(zero["cosine"]).all()  # a zero vector: undefined, not 0
