"""Shared pieces of the sampling strategies: input checks (on top of laionlab.validate),
clustering, candidate pools.

All distances are Euclidean, as in seed 000 (Roth & Hebart, CCN 2025,
``andropar/how-to-sample``).
"""

from __future__ import annotations

import numpy as np

from laionlab import validate

# Mini-batch size of the k-means that makes cluster labels for stratified sampling and the
# candidate pools (seed 000 ``sampling_laion.py``: ``MiniBatchKMeans(100, batch_size=10000)``).
CLUSTER_BATCH_SIZE = 10_000

# Rows (times features) processed at once in blocked loops: bounds temporaries to ~32 MB.
_BLOCK_ELEMENTS = 1 << 22


def _block_rows(d: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, d))


def check_features(X, name: str = "X", *, min_rows: int = 1) -> np.ndarray:
    """X as a finite 2-D float array with at least ``min_rows`` rows (:func:`laionlab.validate.matrix`);
    integer and boolean arrays become float64, float arrays (a ``np.memmap`` too) pass as they are."""
    X = np.asanyarray(X)
    if X.dtype == bool:  # 0/1 features; validate.matrix accepts numbers only
        X = X.astype(np.float64)
    X = validate.matrix(name, X, min_rows=min_rows)
    return X if np.issubdtype(X.dtype, np.floating) else X.astype(np.float64)


def check_n(n, n_samples: int, name: str = "n") -> int:
    """An integer in [1, n_samples]: a count of samples (or clusters) to take from X."""
    n = validate.int_at_least(name, n, 1)
    if n > n_samples:
        raise ValueError(f"{name}={n} exceeds the number of samples ({n_samples})")
    return n


def check_labels(labels, n_samples: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D; got shape {labels.shape}")
    if len(labels) != n_samples:
        raise ValueError(f"labels has length {len(labels)} but X has {n_samples} rows")
    return labels


def check_targets(Y, n_samples: int, name: str = "Y") -> np.ndarray:
    Y = np.asanyarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    Y = check_features(Y, name)
    if Y.shape[0] != n_samples:
        raise ValueError(f"{name} has {Y.shape[0]} rows but X has {n_samples}")
    return Y


def minibatch_kmeans(X: np.ndarray, k: int, *, batch_size: int, seed: int):
    """Fitted ``sklearn.cluster.MiniBatchKMeans`` with k clusters (the seed's clusterer)."""
    from sklearn.cluster import MiniBatchKMeans

    return MiniBatchKMeans(n_clusters=k, batch_size=batch_size, random_state=seed).fit(X)


def cluster_labels(X: np.ndarray, labels, n_clusters, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Compact cluster labels (0..K-1, (N,) int) and centroids ((K, d)).

    With ``labels`` given the centroids are the per-cluster means; otherwise both come from
    MiniBatchKMeans(n_clusters) (empty k-means clusters are dropped).
    """
    N = X.shape[0]
    if labels is not None:
        raw = check_labels(labels, N)
        _, compact = np.unique(raw, return_inverse=True)
        compact = compact.reshape(-1)
        K = int(compact.max()) + 1
        sums = np.zeros((K, X.shape[1]))
        np.add.at(sums, compact, X)
        centroids = sums / np.bincount(compact, minlength=K)[:, None]
        return compact, centroids
    k = check_n(n_clusters, N, "n_clusters")
    km = minibatch_kmeans(X, k, batch_size=CLUSTER_BATCH_SIZE, seed=seed)
    present, compact = np.unique(km.labels_, return_inverse=True)
    return compact.reshape(-1), km.cluster_centers_[present]


def nearest_member(X: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """For each cluster k the index of its member nearest to ``centroids[k]`` ((K,) int).

    Clusters partition the samples, so the K indices are distinct (the seed's
    ``ClusteringHelper.get_closest_samples``).
    """
    N = X.shape[0]
    d2 = np.empty(N)
    step = _block_rows(X.shape[1])
    for s in range(0, N, step):
        diff = X[s : s + step] - centroids[labels[s : s + step]]
        d2[s : s + step] = np.einsum("ij,ij->i", diff, diff)
    order = np.lexsort((np.arange(N), d2, labels))
    first = np.ones(N, bool)
    first[1:] = labels[order[1:]] != labels[order[:-1]]
    return order[first]


def nearest_samples(X, centroids, *, n_neighbors: int = 8) -> np.ndarray:
    """Distinct exact nearest samples of each centroid: (K,) int indices into X.

    X: (N, d); centroids: (K, d) with K <= N. Centroids are served in order of their
    nearest distance; one whose nearest sample is already taken gets its next nearest
    unused sample (the seed's Annoy lookup could return the same sample twice).
    ``n_neighbors`` nearest are found per centroid in one blocked pass; a centroid that
    finds all of them taken falls back to a full scan.
    """
    X = check_features(X)
    centroids = check_features(centroids, "centroids")
    N, K = X.shape[0], centroids.shape[0]
    validate.same_dim("centroids", centroids, "X", X)
    if K > N:
        raise ValueError(f"centroids: {K} centroids but only {N} samples to assign")
    m = min(N, validate.int_at_least("n_neighbors", n_neighbors, 1))
    x_sq = np.einsum("ij,ij->i", X, X, dtype=np.float64)

    def sq_dist(c: np.ndarray) -> np.ndarray:  # (N, b) squared distances to centroids c
        return np.maximum(x_sq[:, None] - 2.0 * (X @ c.T) + np.einsum("ij,ij->i", c, c)[None], 0.0)

    knn = np.empty((K, m), np.intp)
    knn_d = np.empty((K, m))
    step = max(1, _BLOCK_ELEMENTS // N)
    for s in range(0, K, step):
        d2 = sq_dist(centroids[s : s + step])
        part = np.argpartition(d2, m - 1, axis=0)[:m] if m < N else np.tile(np.arange(N)[:, None], (1, d2.shape[1]))
        dp = np.take_along_axis(d2, part, axis=0)
        o = np.lexsort((part, dp), axis=0)
        knn[s : s + step] = np.take_along_axis(part, o, axis=0).T
        knn_d[s : s + step] = np.take_along_axis(dp, o, axis=0).T
    used = np.zeros(N, bool)
    out = np.empty(K, np.intp)
    for k in np.argsort(knn_d[:, 0], kind="stable"):
        free = knn[k][~used[knn[k]]]
        if free.size:
            j = free[0]
        else:
            d2 = sq_dist(centroids[k : k + 1])[:, 0]
            d2[used] = np.inf
            j = int(np.argmin(d2))
        out[k] = j
        used[j] = True
    return out


class ClusterPool:
    """Candidate pools of the seed's active strategies: ``per_cluster`` random members of
    every cluster (``ClusteringHelper.get_random_samples``), minus samples already taken."""

    def __init__(self, labels: np.ndarray):
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.diff(labels[order])) + 1
        self.members = np.split(order, bounds)

    def draw(self, rng: np.random.Generator, per_cluster: int, taken: np.ndarray) -> np.ndarray:
        parts = [m[rng.choice(len(m), min(per_cluster, len(m)), replace=False)] for m in self.members]
        cand = np.concatenate(parts)
        return cand[~taken[cand]]
