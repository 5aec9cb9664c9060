"""Model-free sampling strategies of seed 000 (Roth & Hebart, "How to sample the world for
understanding the visual system", CCN 2025; ``andropar/how-to-sample``,
``src/how_to_sample/sampling_full.py`` and ``coreset.py``): random, stratified, k-means and
k-center (Core-Set).

Every strategy returns ``n`` distinct int indices into ``X`` ((N, d) float features,
Euclidean) and is deterministic for a given ``seed``.
"""

from __future__ import annotations

import logging

import numpy as np

from laionlab.progress import Progress
from laionlab.sampling._common import (
    check_features,
    check_n,
    cluster_labels,
    minibatch_kmeans,
    nearest_samples,
)

log = logging.getLogger(__name__)


def random(X, n: int, *, seed: int = 0) -> np.ndarray:
    """n indices drawn uniformly without replacement (seed: ``sample_random``)."""
    X = check_features(X)
    n = check_n(n, X.shape[0])
    return np.random.default_rng(seed).choice(X.shape[0], n, replace=False).astype(np.intp)


def stratified(X, n: int, *, labels=None, n_clusters: int = 100, seed: int = 0) -> np.ndarray:
    """Equal quotas per cluster (seed: ``sample_stratified``).

    With K clusters each contributes ``n // K`` random members, or all of them when it is
    smaller; the remaining slots are filled uniformly from the samples not yet chosen. When
    ``n < K``, n random clusters give one random member each.

    labels: (N,) cluster labels of X; when None they come from MiniBatchKMeans(n_clusters)
    on X. The seed used the 100 true clusters (GMM), 1000 k-means clusters (LAION) and
    ``MiniBatchKMeans(80)`` (NSD); the default here is 100.
    """
    X = check_features(X)
    N = X.shape[0]
    n = check_n(n, N)
    labels, _ = cluster_labels(X, labels, n_clusters, seed)
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1)
    K = len(members)
    if n < K:
        chosen = rng.choice(K, n, replace=False)
        return np.array([rng.choice(members[k]) for k in chosen], dtype=np.intp)
    quota = n // K
    parts = [m if len(m) <= quota else rng.choice(m, quota, replace=False) for m in members]
    picked = np.concatenate(parts)
    if len(picked) < n:
        rest = np.setdiff1d(np.arange(N), picked)
        picked = np.concatenate([picked, rng.choice(rest, n - len(picked), replace=False)])
    return picked.astype(np.intp)


def kmeans(X, n: int, *, batch_size: int = 1000, seed: int = 0) -> np.ndarray:
    """The sample nearest each of n MiniBatchKMeans centroids (seed: ``sample_kmeans``,
    ``MiniBatchKMeans(n_clusters=n, batch_size=1000)``).

    The seed looked centroids up in an Annoy index (50 trees) and could return the same
    sample for two centroids; here the nearest sample is exact and a centroid whose nearest
    sample is taken gets its next nearest unused one (see ``nearest_samples``).
    """
    X = check_features(X)
    n = check_n(n, X.shape[0])
    km = minibatch_kmeans(X, n, batch_size=batch_size, seed=seed)
    return nearest_samples(X, km.cluster_centers_.astype(X.dtype, copy=False))


def kcenter(X, n: int, *, seed: int = 0, seed_compat: bool = False, log_every_s: float = 30.0) -> np.ndarray:
    """Core-Set: greedy k-center / farthest-first traversal (seed: ``sample_kcenter``,
    ``kCenterGreedy`` adapted from google/active-learning).

    Each step adds the sample with the largest distance to its nearest selected sample.
    The first sample is random (``seed``); the seed's code always starts at index 0
    because its random branch never fires (``already_selected`` is ``[]``, not ``None``),
    which ``seed_compat=True`` reproduces. The min-distance array is updated by one
    matrix-vector product per pick: O(N·n·d) time, O(N) extra memory. Ties go to the
    lowest index, exact duplicates included: the traversal runs over the first occurrence of
    each distinct row (``‖x‖² − 2x·c + ‖c‖²`` is not bit-identical for equal rows at different
    positions, so copies would otherwise tie by rounding), and once every distinct row is
    taken (all remaining distances are 0, as the seed's ``cdist`` gives them) the remaining
    rows follow in index order. Progress (images picked, ETA) is logged every
    ``log_every_s`` seconds.
    """
    X = check_features(X)
    N = X.shape[0]
    n = check_n(n, N)
    first, representative = _distinct_rows(X)
    U = X[first]
    u_sq = np.einsum("ij,ij->i", U, U, dtype=np.float64)
    min_d2 = np.full(len(U), np.inf)
    out = np.empty(n, np.intp)
    start = 0 if seed_compat else int(np.random.default_rng(seed).integers(N))
    progress = Progress("k-center selection", n, log_every_s, log, unit="images", quiet_below_s=log_every_s)
    distinct = min(n, len(U))
    for t in range(distinct):
        u = int(representative[start]) if t == 0 else int(np.argmax(min_d2))
        out[t] = start if t == 0 else first[u]
        np.minimum(min_d2, u_sq - 2.0 * (U @ U[u]) + u_sq[u], out=min_d2)
        min_d2[u] = -1.0  # taken: never the argmax again
        progress.update()
    if n > distinct:  # every row left is a copy of a taken one: distance 0, lowest index first
        taken = np.zeros(N, bool)
        taken[out[:distinct]] = True
        out[distinct:] = np.flatnonzero(~taken)[: n - distinct]
        progress.update(n - distinct)
    progress.close()
    return out


def _distinct_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ascending indices of the first occurrence of each distinct row, each row's position in
    that list): rows compared as bytes."""
    rows = np.ascontiguousarray(X).view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    order = np.argsort(first)
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return first[order], position[inverse.ravel()]
