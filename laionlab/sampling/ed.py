"""Effective dimensionality and the greedy ED samplers of seed 000 (Roth & Hebart, CCN 2025;
``andropar/how-to-sample``, ``src/how_to_sample/ed.py`` and ``sample_greedy_ed``), later
used to pick the LAION-fMRI stimuli (k-means seeds, 10 candidates per cluster, distance 0.1,
rank-1 covariance updates).

ED is the participation ratio of the covariance eigenvalues, (Σλ)² / Σλ². Since
Σλ = tr C and Σλ² = ‖C‖²_F it needs no eigendecomposition, and after adding one sample
both terms follow from a rank-1 update, so every candidate is scored in O(d²).
"""

from __future__ import annotations

import logging

import numpy as np

from laionlab import validate
from laionlab.progress import Progress
from laionlab.sampling._common import (
    ClusterPool,
    check_features,
    check_n,
    cluster_labels,
    nearest_member,
)

# Candidates scored per matrix product in ``RunningCovariance.ed_if_added``.
_CANDIDATE_BLOCK = 4096

log = logging.getLogger(__name__)


def effective_dimensionality(X) -> float:
    """ED = (Σλ)² / Σλ² of the covariance eigenvalues of X ((N, d), N >= 2) (seed:
    ``estimate_ED``). 0 when all rows are equal."""
    X = check_features(X, min_rows=2)  # a covariance needs two rows
    Xc = X - X.mean(axis=0, dtype=np.float64)
    # XᵀX and XXᵀ share their non-zero eigenvalues: use the smaller Gram matrix.
    G = Xc @ Xc.T if Xc.shape[0] < Xc.shape[1] else Xc.T @ Xc
    fro2 = float(np.sum(G * G))
    return float(np.trace(G) ** 2 / fro2) if fro2 > 0 else 0.0


class RunningCovariance:
    """Mean and scatter matrix S = Σ (x - mean)(x - mean)ᵀ of a growing set, updated by
    rank-1 steps (Welford), so the covariance is S / (n - 1) without refitting.

    The seed kept mean and covariance and updated them with ``update_cov`` (whose
    running mean is off by one count); the centred scatter avoids that and the
    cancellation of the raw Σxxᵀ - n·mean·meanᵀ form.
    """

    def __init__(self, d: int):
        self.n = 0
        self.mean = np.zeros(d)
        self.scatter = np.zeros((d, d))

    def add(self, x) -> None:
        x = np.asarray(x, dtype=np.float64)
        delta = x - self.mean
        self.scatter += (self.n / (self.n + 1)) * np.outer(delta, delta)
        self.n += 1
        self.mean += delta / self.n

    @property
    def cov(self) -> np.ndarray:
        """(d, d) covariance with ddof=1, equal to ``np.cov(selected.T)``."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 samples; have {self.n}")
        return self.scatter / (self.n - 1)

    @property
    def ed(self) -> float:
        fro2 = float(np.sum(self.scatter**2))
        return float(np.trace(self.scatter) ** 2 / fro2) if fro2 > 0 else 0.0

    def ed_if_added(self, candidates) -> np.ndarray:
        """(c,) ED of the set after adding each row of ``candidates`` ((c, d)) alone.

        With a = n/(n+1) and δ = x - mean, S' = S + a·δδᵀ, so
        tr S' = tr S + a‖δ‖² and ‖S'‖²_F = ‖S‖²_F + 2a·δᵀSδ + a²‖δ‖⁴.
        """
        C = np.asarray(candidates)
        a = self.n / (self.n + 1)
        tr, fro2 = np.trace(self.scatter), float(np.sum(self.scatter**2))
        out = np.empty(len(C))
        for s in range(0, len(C), _CANDIDATE_BLOCK):
            delta = C[s : s + _CANDIDATE_BLOCK].astype(np.float64) - self.mean
            dd = np.einsum("ij,ij->i", delta, delta)
            q = np.einsum("ij,ij->i", delta @ self.scatter, delta)
            t = tr + a * dd
            f = np.maximum(fro2 + 2 * a * q + a * a * dd * dd, 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[s : s + len(delta)] = np.where(f > 0, t * t / f, 0.0)
        return out


def _greedy_ed(X, n, *, init, labels, n_clusters, per_cluster, min_distance, seed, log_every_s=30.0) -> np.ndarray:
    X = check_features(X)
    N, d = X.shape
    n = check_n(n, N)
    per_cluster = validate.int_at_least("per_cluster", per_cluster, 1)
    min_distance = validate.real("min_distance", min_distance, lo=0.0)
    labels, centroids = cluster_labels(X, labels, n_clusters, seed)
    rng = np.random.default_rng(seed)
    if init == "random":
        start = rng.choice(N, min(2, n), replace=False)
    else:
        seeds = nearest_member(X, labels, centroids)
        if n < len(seeds):
            # The seed then starts from n // 5 random clusters' nearest samples.
            seeds = seeds[np.sort(rng.choice(len(seeds), max(1, n // 5), replace=False))]
        start = seeds
    selected = np.empty(n, np.intp)
    sel_X = np.empty((n, d), X.dtype)
    sel_sq = np.empty(n)
    taken = np.zeros(N, bool)
    stats = RunningCovariance(d)
    pool = ClusterPool(labels)

    def take(t: int, i: int) -> None:
        selected[t], sel_X[t], taken[i] = i, X[i], True
        sel_sq[t] = float(X[i] @ X[i])
        stats.add(X[i])

    for t, i in enumerate(start):
        take(t, int(i))
    thr2 = min_distance**2
    progress = Progress(f"greedy ED ({init} start)", n, log_every_s, log, unit="images", quiet_below_s=log_every_s)
    progress.update(len(start))
    for t in range(len(start), n):
        cand = pool.draw(rng, per_cluster, taken)
        if min_distance > 0 and cand.size:
            Xc = X[cand]
            d2 = np.einsum("ij,ij->i", Xc, Xc, dtype=np.float64)[:, None] - 2.0 * (Xc @ sel_X[:t].T) + sel_sq[None, :t]
            far = cand[d2.min(axis=1) > thr2]  # the seed keeps distance > 0.1
            # Every candidate too close: rather than stall, score the unfiltered pool.
            cand = far if far.size else cand
        if not cand.size:  # every drawn candidate already taken
            cand = np.flatnonzero(~taken)
        take(t, int(cand[np.argmax(stats.ed_if_added(X[cand]))]))
        progress.update()
    progress.close()
    return selected


def greedy_ed(
    X,
    n: int,
    *,
    labels=None,
    n_clusters: int = 100,
    per_cluster: int = 10,
    min_distance: float = 0.1,
    seed: int = 0,
    log_every_s: float = 30.0,
) -> np.ndarray:
    """Greedy maximisation of effective dimensionality, "ED opt. (random)" (seed:
    ``sample_greedy_ed(init_kmeans=False)``).

    Start from 2 random samples; each step draws ``per_cluster`` (10) random unselected
    members of every cluster, drops those within Euclidean ``min_distance`` (0.1) of the
    selection, and adds the candidate whose addition gives the largest ED (rank-1
    covariance update per candidate). labels: (N,) clusters of the candidate pool, else
    MiniBatchKMeans(n_clusters) on X (the seed used 100 clusters for GMM and LAION).
    Progress (images picked, ETA) is logged every ``log_every_s`` seconds.
    """
    return _greedy_ed(
        X,
        n,
        init="random",
        labels=labels,
        n_clusters=n_clusters,
        per_cluster=per_cluster,
        min_distance=min_distance,
        seed=seed,
        log_every_s=log_every_s,
    )


def greedy_ed_kmeans(
    X,
    n: int,
    *,
    labels=None,
    n_clusters: int = 100,
    per_cluster: int = 10,
    min_distance: float = 0.1,
    seed: int = 0,
    log_every_s: float = 30.0,
) -> np.ndarray:
    """Greedy ED initialised with k-means seeds, "ED opt. (kMeans)" (seed:
    ``sample_greedy_ed(init_kmeans=True)``; LAION-fMRI stimulus selection).

    Starts from the member nearest each cluster centroid, then continues as ``greedy_ed``.
    If n is smaller than the number of clusters it starts, as the seed does, from the
    nearest members of n // 5 (at least 1) random clusters.
    """
    return _greedy_ed(
        X,
        n,
        init="kmeans",
        labels=labels,
        n_clusters=n_clusters,
        per_cluster=per_cluster,
        min_distance=min_distance,
        seed=seed,
        log_every_s=log_every_s,
    )
