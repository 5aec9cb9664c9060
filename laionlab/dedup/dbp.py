"""Density-based pruning (DBP: Abbas, Rusak, Tirumala, Brendel, Chaudhuri, Morcos, "Effective
pruning of web-scale datasets based on complexity of concept clusters", ICLR 2024; code:
amro-kamal/effective_pruning), over the k-means clusters of seed 004's deduplication.

The paper's steps, as its released code computes them (cosine distance ``1 - cos``):

* ``d_intra[j]`` (``compute_avg_dist_to_cluster_centroid.py``): the mean distance of the
  members of cluster ``j`` to its centroid.
* ``d_inter[j]`` (``compute_centroid_distances.py``): the mean distance of centroid ``j``
  to its ``n_neighbours = 20`` nearest other centroids (an inner-product search over unit
  centroids, the first hit, itself, dropped).
* complexity ``C[j] = d_inter[j] * d_intra[j]``; a NaN (an empty cluster) becomes the mean
  of the others (``prune.py``: ``np.nanmean``).
* ``p = softmax(C / temperature)`` (``prune.py``: ``--temperature 0.5``).
* the budget ``N[j]``: ``prune.py`` solves the quadratic program
  ``min ½|x|² − (p·N)ᵀx`` s.t. ``Σx = N``, ``lb ≤ x ≤ |cluster|`` with ``lb[j] =
  min(floor(N/k · cls_bal_ratio), |cluster j| − 1)`` (``--cls-bal-ratio 0.5``), i.e. the
  point nearest ``p·N`` (Euclidean) that fits the caps. Its solution is
  ``x[j] = clip(p[j]·N + λ, lb[j], |cluster j|)`` with the one ``λ`` that makes the sum
  ``N``: a cluster capped at its size hands its excess to the others **equally** (an
  additive shift, not in proportion to ``p``). Here ``λ`` is found by bisection (no QP
  solver) and ``x`` rounded to integers summing exactly to ``N`` (largest remainders; the
  code's ``np.rint`` can miss ``N`` by a few rows).
* inside a cluster, the first ``N[j]`` rows of SemDeDup's order are kept (``prune.py``
  ``get_paths``: ``hard`` keeps the rows farthest from the centroid, ``easy`` the nearest,
  ``random`` a uniform sample): :func:`laionlab.dedup.keep_order_keys`.

Deviations: ``lb[j] = min(floor(N/k · min_share), |cluster j|)`` (the code's ``− 1`` would
force every cluster to lose a row and goes negative for an empty cluster); the clusters
are seed 004's (``dedup_centroids``, trained before deduplication; the paper re-clusters
the deduplicated set, k = 500 for LAION-DeDup-280M with distilled DINOv2 embeddings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from laionlab import validate

__all__ = ["DbpBudget", "cluster_budgets", "cluster_complexity", "dbp_keep", "dbp_select"]

# prune.py's defaults (--temperature, --cls-bal-ratio) and compute_centroid_distances.py's
# --num_NNs.
DEFAULT_TEMPERATURE = 0.5
DEFAULT_MIN_SHARE = 0.5
DEFAULT_NEIGHBOURS = 20
_BISECTION_STEPS = 200


def cluster_complexity(
    centroids: np.ndarray, distance_sum: np.ndarray, counts: np.ndarray, n_neighbours: int = DEFAULT_NEIGHBOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DBP's ``d_inter``, ``d_intra`` and complexity ``C = d_inter · d_intra`` per cluster.

    Args:
        centroids: ``(k, d)`` unit cluster centroids (k ≥ 2).
        distance_sum: ``(k,)`` sum over each cluster's members of ``1 − cos(member,
            centroid)`` (summed part by part by the caller).
        counts: ``(k,)`` members per cluster.
        n_neighbours: nearest other centroids averaged in ``d_inter`` (all others when
            fewer; paper code: 20).

    Returns:
        ``(d_inter, d_intra, complexity)``, each ``(k,)`` float64; ``d_intra`` is NaN for an
        empty cluster and its complexity the mean of the other clusters'.
    """
    C = validate.matrix("centroids", centroids)
    k = C.shape[0]
    if k < 2:
        raise ValueError(f"centroids: expected at least 2 clusters for d_inter, got {k}")
    dist_sum = np.asarray(distance_sum, dtype=np.float64)
    n = np.asarray(counts)
    if dist_sum.shape != (k,) or n.shape != (k,) or (n < 0).any():
        raise ValueError(f"distance_sum, counts: expected ({k},) each (counts ≥ 0), got {dist_sum.shape}, {n.shape}")
    n_neighbours = min(validate.int_at_least("n_neighbours", n_neighbours, 1), k - 1)
    sims = C.astype(np.float64) @ C.astype(np.float64).T
    np.fill_diagonal(sims, -np.inf)  # itself is not a neighbour
    nearest = -np.sort(-sims, axis=1)[:, :n_neighbours]
    d_inter = (1.0 - nearest).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_intra = np.where(n > 0, dist_sum / np.maximum(n, 1), np.nan)
    complexity = d_inter * d_intra
    if np.isnan(complexity).all():
        raise ValueError("counts: every cluster is empty")
    complexity = np.where(np.isnan(complexity), np.nanmean(complexity), complexity)
    return d_inter, d_intra, complexity


@dataclass(frozen=True)
class DbpBudget:
    """Per-cluster budget of :func:`cluster_budgets`, each ``(k,)``.

    ``probability``: ``softmax(C / temperature)``; ``ideal``: ``probability · target``, the
    uncapped share; ``budget``: integer rows to keep, ``lb ≤ budget ≤ size``, summing to
    ``min(target, Σ size)``.
    """

    probability: np.ndarray
    ideal: np.ndarray
    budget: np.ndarray


def cluster_budgets(
    complexity: np.ndarray,
    sizes: np.ndarray,
    target: int,
    temperature: float = DEFAULT_TEMPERATURE,
    min_share: float = DEFAULT_MIN_SHARE,
) -> DbpBudget:
    """DBP's rows to keep per cluster: ``softmax(C / temperature) · target``, capped at each
    cluster's size, at least ``min(floor(target/k · min_share), size)``, the QP's solution
    ``clip(p·target + λ, lb, size)`` (see the module docstring) rounded to integers that sum
    to ``target``.

    Args:
        complexity: ``(k,)`` finite complexities (:func:`cluster_complexity`).
        sizes: ``(k,)`` rows per cluster (≥ 0).
        target: rows to keep in all (≥ 0); at least ``Σ sizes`` keeps everything.
        temperature: softmax temperature (> 0; paper code 0.5): lower sends more of the
            budget to the complex clusters.
        min_share: each cluster's floor as a share of the uniform budget ``target / k``, in
            [0, 1] (paper code's ``cls_bal_ratio``, 0.5).
    """
    c = np.asarray(complexity, dtype=np.float64)
    if c.ndim != 1 or not len(c) or not np.isfinite(c).all():
        raise ValueError(f"complexity: expected a non-empty finite (k,) array, got {c.shape}")
    size = np.asarray(sizes)
    if size.shape != c.shape or not np.issubdtype(size.dtype, np.integer) or (size < 0).any():
        raise ValueError(f"sizes: expected {c.shape} integers ≥ 0, got {size.shape} {size.dtype}")
    target = validate.int_at_least("target", target, 0)
    temperature = validate.real("temperature", temperature, lo=0.0, lo_open=True)
    min_share = validate.real("min_share", min_share, lo=0.0, hi=1.0)
    z = c / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    ideal = p * target
    size = size.astype(np.int64)
    n = min(target, int(size.sum()))
    lb = np.minimum(np.floor(target / len(c) * min_share), size).astype(np.float64)
    ub = size.astype(np.float64)
    lo, hi = float((lb - ideal).min()), float((ub - ideal).max())
    for _ in range(_BISECTION_STEPS):  # Σ clip(ideal + λ, lb, ub) is non-decreasing in λ
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.clip(ideal + mid, lb, ub).sum() < n else (lo, mid)
    x = np.clip(ideal + hi, lb, ub)
    budget = np.minimum(np.floor(x + 1e-9), size).astype(np.int64)
    short = n - int(budget.sum())
    if short > 0:  # largest remainders first (ties: lower cluster id), never past a cap
        room = np.flatnonzero(budget < size)
        order = room[np.lexsort((room, -(x[room] - budget[room])))]
        budget[order[:short]] += 1
    return DbpBudget(p, ideal, budget)


def dbp_select(parts: Iterable[tuple[np.ndarray, np.ndarray]], budget: np.ndarray) -> pl.DataFrame:
    """The rows DBP keeps over a table read part by part: in each cluster, the first
    ``budget[c]`` rows by ascending key (ties: earlier part, then earlier row), keeping only
    the running best ``budget[c]`` rows of each cluster, so memory is bounded by
    ``Σ budget`` rows plus one part, never the table.

    Args:
        parts: per part, ``(cluster, key)``: ``(n_part,)`` integer cluster ids in ``[0, k)``
            and ``(n_part,)`` float keys (:func:`laionlab.dedup.keep_order_keys`).
        budget: ``(k,)`` integer rows to keep per cluster (:attr:`DbpBudget.budget`).

    Returns:
        the kept rows: ``part`` (index into ``parts``) and ``row`` (position in that part),
        plus ``cluster`` and ``key``.
    """
    budget = np.asarray(budget)
    if budget.ndim != 1 or not np.issubdtype(budget.dtype, np.integer) or (budget < 0).any():
        raise ValueError(f"budget: expected (k,) integers ≥ 0, got {budget.shape} {budget.dtype}")
    schema = {"cluster": pl.Int64, "key": pl.Float64, "part": pl.Int64, "row": pl.Int64, "cap": pl.Int64}
    kept = pl.DataFrame(schema=schema)
    for p, (cluster, key) in enumerate(parts):
        cluster, key = np.asarray(cluster), np.asarray(key, dtype=np.float64)
        if (
            cluster.shape != key.shape
            or cluster.ndim != 1
            or (cluster.size and not np.issubdtype(cluster.dtype, np.integer))
        ):
            raise ValueError(
                f"parts[{p}]: expected (n,) integer clusters and (n,) keys, got {cluster.shape}, {key.shape}"
            )
        if cluster.size and (cluster.min() < 0 or cluster.max() >= len(budget)):
            raise ValueError(f"parts[{p}]: cluster ids outside [0, {len(budget)})")
        frame = pl.DataFrame(
            {
                "cluster": cluster,
                "key": key,
                "part": np.full(cluster.size, p),
                "row": np.arange(cluster.size),
                "cap": budget[cluster] if cluster.size else np.zeros(0, np.int64),
            },
            schema=schema,
        )
        kept = (
            pl.concat([kept, frame.filter(pl.col("cap") > 0)])
            .sort("cluster", "key", "part", "row")
            .filter(pl.int_range(pl.len()).over("cluster") < pl.col("cap"))
        )
    return kept.drop("cap")


def dbp_keep(cluster: np.ndarray, key: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """:func:`dbp_select` on one table: ``(n,)`` bool, True for the first ``budget[c]`` rows
    of each cluster ``c`` by ascending ``key`` (ties: row order)."""
    kept = dbp_select([(cluster, key)], budget)
    out = np.zeros(len(np.asarray(cluster)), dtype=bool)
    out[kept["row"].to_numpy()] = True
    return out
