"""Model-based (active-learning) sampling strategies of seed 000 (Roth & Hebart, CCN 2025;
``andropar/how-to-sample``, ``sample_margin`` and ``sample_oracle`` in
``src/how_to_sample/sampling_full.py``).

Both start from ``initial_seed`` (100) random samples, then repeatedly score a candidate
pool of ``per_cluster`` (10) random unselected members per cluster and add a batch of
``batch_size`` (100). In the seed, X is what the model sees and Y its targets (GMM:
stimulus features → simulated responses; LAION: simulated fMRI → CLIP features).
"""

from __future__ import annotations

import numpy as np

from laionlab import validate
from laionlab.sampling._common import (
    ClusterPool,
    check_features,
    check_n,
    check_targets,
    cluster_labels,
)

_COLUMN_BLOCK = 64


def _start(X, n, labels, n_clusters, per_cluster, initial_seed, batch_size, seed):
    X = check_features(X)
    N = X.shape[0]
    n = check_n(n, N)
    validate.int_at_least("per_cluster", per_cluster, 1)
    validate.int_at_least("initial_seed", initial_seed, 1)
    validate.int_at_least("batch_size", batch_size, 1)
    labels, _ = cluster_labels(X, labels, n_clusters, seed)
    rng = np.random.default_rng(seed)
    selected = list(rng.choice(N, min(initial_seed, n), replace=False))
    taken = np.zeros(N, bool)
    taken[selected] = True
    return X, n, rng, ClusterPool(labels), selected, taken


def _candidates(pool, rng, per_cluster, taken) -> np.ndarray:
    cand = pool.draw(rng, per_cluster, taken)
    return cand if cand.size else np.flatnonzero(~taken)


def _quantile_edges(Y: np.ndarray, quantiles) -> np.ndarray:
    """(len(quantiles), t) per-column quantiles of Y, computed a block of columns at a time."""
    q = np.asarray(quantiles, dtype=np.float64)
    return np.concatenate(
        [np.quantile(Y[:, s : s + _COLUMN_BLOCK], q, axis=0) for s in range(0, Y.shape[1], _COLUMN_BLOCK)],
        axis=1,
    )


def margin(
    X,
    n: int,
    Y=None,
    *,
    labels=None,
    n_clusters: int = 100,
    per_cluster: int = 10,
    initial_seed: int = 100,
    batch_size: int = 100,
    quantiles: tuple[float, ...] = (0.33, 0.66),
    max_iter: int = 100,
    seed: int = 0,
) -> np.ndarray:
    """Margin (uncertainty) sampling (seed: ``sample_margin``).

    Every target column of Y is binned at its ``quantiles`` (0.33, 0.66 → 3 bins, over all
    N rows) and a ``LogisticRegression`` per column is fitted on the standardised X of the
    selection; the candidates with the smallest mean top-2 probability margin over the
    columns are added, ``batch_size`` per round.

    X: (N, d) features; Y: (N, t) targets, default X itself (the seed always had a second
    modality; with features alone they are their own targets). The seed drew a new
    candidate pool for every target column and averaged margins of different candidates;
    here one pool per round is scored on all columns. Columns whose selected rows fall in
    a single bin carry no margin and are skipped.
    """
    from sklearn.linear_model import LogisticRegression

    X, n, rng, pool, selected, taken = _start(X, n, labels, n_clusters, per_cluster, initial_seed, batch_size, seed)
    Y = X if Y is None else check_targets(Y, X.shape[0])
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[std == 0] = 1.0  # as StandardScaler: constant columns are left unscaled
    edges = _quantile_edges(Y, quantiles)  # np.digitize bins: count of edges <= y
    while len(selected) < n:
        sel = np.asarray(selected)
        Xs = (X[sel] - mean) / std
        ybin = (Y[sel][:, :, None] >= edges.T[None]).sum(axis=2)
        cand = _candidates(pool, rng, per_cluster, taken)
        Xc = (X[cand] - mean) / std
        total, used = np.zeros(len(cand)), 0
        for j in range(ybin.shape[1]):
            if np.unique(ybin[:, j]).size < 2:
                continue
            probs = LogisticRegression(max_iter=max_iter, random_state=seed).fit(Xs, ybin[:, j]).predict_proba(Xc)
            top2 = np.sort(probs, axis=1)[:, -2:]
            total += top2[:, 1] - top2[:, 0]
            used += 1
        k = min(batch_size, n - len(selected), len(cand))
        add = cand[np.argsort(total / max(used, 1), kind="stable")[:k]]
        selected.extend(add.tolist())
        taken[add] = True
    return np.asarray(selected, dtype=np.intp)


def oracle(
    X,
    n: int,
    Y,
    *,
    labels=None,
    n_clusters: int = 100,
    per_cluster: int = 10,
    initial_seed: int = 100,
    batch_size: int = 100,
    alphas: tuple[float, ...] = (0.1, 1.0, 10.0),
    seed: int = 0,
) -> np.ndarray:
    """Error-oracle active learning (seed: ``sample_oracle``; excluded from the paper's plots).

    A ``RidgeCV(alphas)`` (sklearn's default alphas, as in the seed) is fitted X → Y on the
    selection; each round adds the ``batch_size`` candidates with the largest true mean
    squared prediction error. It reads the targets of every candidate, hence "oracle".
    Y: (N, t) targets, required. When the last round needs fewer than ``batch_size``, the
    largest errors are kept (the seed trimmed the batch's smallest-error end).
    """
    from sklearn.linear_model import RidgeCV

    if Y is None:
        raise ValueError("Y is required for the oracle strategy: (N, t) targets of X")
    X, n, rng, pool, selected, taken = _start(X, n, labels, n_clusters, per_cluster, initial_seed, batch_size, seed)
    Y = check_targets(Y, X.shape[0])
    while len(selected) < n:
        sel = np.asarray(selected)
        model = RidgeCV(alphas=alphas).fit(X[sel], Y[sel])
        cand = _candidates(pool, rng, per_cluster, taken)
        errors = np.mean((model.predict(X[cand]) - Y[cand]) ** 2, axis=1)
        k = min(batch_size, n - len(selected), len(cand))
        add = cand[np.argsort(-errors, kind="stable")[:k]]
        selected.extend(add.tolist())
        taken[add] = True
    return np.asarray(selected, dtype=np.intp)
