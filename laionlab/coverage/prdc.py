"""Precision, recall, density and coverage of two embedding sets (Naeem et al., 2020,
"Reliable Fidelity and Diversity Metrics for Generative Models", ICML).

Not used by seed 000, whose only coverage metrics are cluster occupancy and PCA
reconstruction; offered as the standard k-NN-manifold alternative for comparing a
stimulus set ("fake") with LAION-natural ("real"). Matches the authors' reference code
(``prdc.compute_prdc``): Euclidean distances, k-NN radius = distance to the k-th nearest
neighbour within the same set excluding the sample itself, strict ``<`` ball membership.
"""

from __future__ import annotations

import numpy as np

from laionlab import validate
from laionlab.coverage._checks import sq_dists_blocks

NEAREST_K = 5  # Naeem et al. 2020 recommend k = 5


def knn_radii(x: np.ndarray, k: int = NEAREST_K, block: int | None = None) -> np.ndarray:
    """(n,) float64 Euclidean distance from each row of ``x`` (n, d) to its k-th nearest
    other row (self excluded; duplicates count as neighbours at distance 0). Needs k < n."""
    x = validate.matrix("x", x)
    k = validate.int_at_least("k", k, 1)
    if k >= len(x):
        raise ValueError(f"k: {k} must be smaller than the number of samples ({len(x)})")
    out = np.empty(len(x), dtype=np.float64)
    for start, d in sq_dists_blocks(x, x, block, what=f"PRDC {k}-NN radii"):
        rows = np.arange(len(d))
        d[rows, start + rows] = 0.0  # self, exactly
        out[start : start + len(d)] = np.partition(d, k, axis=1)[:, k]
    return np.sqrt(out)


def prdc(real_emb: np.ndarray, fake_emb: np.ndarray, k: int = NEAREST_K, block: int | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_emb`` against ``real_emb``.

    real_emb: (N, d), fake_emb: (M, d), same d; k < N and k < M.
    With r_i the k-NN radius of real i and s_j that of fake j, and B(c, r) = {y : ||y - c|| < r}:

    - precision = share of fake samples inside some B(real_i, r_i);
    - recall    = share of real samples inside some B(fake_j, s_j);
    - density   = (1 / kM) Σ_j #{i : fake_j ∈ B(real_i, r_i)}  (can exceed 1);
    - coverage  = share of real i whose B(real_i, r_i) holds some fake sample.

    Distances are computed ``block`` fake rows at a time against all real rows (float64),
    so no N x M matrix is held at once.
    """
    real_emb = validate.matrix("real_emb", real_emb)
    fake_emb = validate.matrix("fake_emb", fake_emb)
    validate.same_dim("fake_emb", fake_emb, "real_emb", real_emb)
    k = validate.int_at_least("k", k, 1)
    for name, x in (("real_emb", real_emb), ("fake_emb", fake_emb)):
        if k >= len(x):
            raise ValueError(f"k: {k} must be smaller than the number of samples in {name} ({len(x)})")
    r_real_sq = knn_radii(real_emb, k, block) ** 2
    r_fake_sq = knn_radii(fake_emb, k, block) ** 2

    n_in_real_ball = 0  # fake samples inside at least one real ball
    ball_hits = 0  # (fake, real ball) pairs
    recalled = np.zeros(len(real_emb), dtype=bool)
    nearest_fake_sq = np.full(len(real_emb), np.inf)
    for start, d in sq_dists_blocks(fake_emb, real_emb, block, what="PRDC balls"):  # d: (b, N)
        inside = d < r_real_sq[None, :]
        n_in_real_ball += int(inside.any(axis=1).sum())
        ball_hits += int(inside.sum())
        recalled |= (d < r_fake_sq[start : start + len(d), None]).any(axis=0)
        np.minimum(nearest_fake_sq, d.min(axis=0), out=nearest_fake_sq)
    m = len(fake_emb)
    return {
        "precision": n_in_real_ball / m,
        "recall": float(recalled.mean()),
        "density": ball_hits / (k * m),
        "coverage": float((nearest_fake_sq < r_real_sq).mean()),
    }
