"""Stimulus sets of seed 000 (Roth & Hebart, "How to sample the world for understanding the
visual system", CCN 2025; code ``andropar/how-to-sample``): n images drawn from a seeded pool
of LAION-natural by each sampling strategy, and each set's diversity (effective
dimensionality, share of the LAION-natural k-means clusters it hits).

Not imported by ``laionlab.sampling`` itself (it needs :mod:`laionlab.coverage`): import it
as ``laionlab.sampling.stimulus``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.coverage import cluster_coverage, nearest_centroid
from laionlab.sampling import STRATEGIES, effective_dimensionality, sample

__all__ = ["LABELLED_STRATEGIES", "StimulusSets", "check_strategies", "draw_stimulus_sets"]

# The strategies that are given the pool's nearest-centroid labels.
LABELLED_STRATEGIES = ("stratified", "greedy_ed", "greedy_ed_kmeans")


@dataclass(frozen=True)
class StimulusSets:
    """:func:`draw_stimulus_sets`' result.

    sets: ``strategy``, ``rank`` (draw order) and ``uid`` of every chosen image.
    diversity: one row per strategy: ``strategy``, ``n``, ``effective_dim``, ``clusters_hit``
        (share of centroids with at least one chosen image).
    pool: the pool's size.
    """

    sets: pl.DataFrame
    diversity: pl.DataFrame
    pool: int


def check_strategies(strategies: Sequence[str]) -> list[str]:
    """The strategy names, each a key of :data:`laionlab.sampling.STRATEGIES`."""
    if isinstance(strategies, str) or not all(isinstance(s, str) for s in strategies):
        raise ValueError(f"strategies: expected a list of strategy names, got {strategies!r}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; known: {sorted(STRATEGIES)}")
    return list(strategies)


def draw_stimulus_sets(
    uids: Sequence[str],
    X: np.ndarray,
    centroids: np.ndarray,
    n: int,
    strategies: Sequence[str],
    pool_size: int,
    seed: int = 0,
    log: logging.Logger | None = None,
) -> StimulusSets:
    """Draw ``n`` images by each strategy from a seeded pool of the rows.

    Args:
        uids: the uid of each row of ``X``.
        X: ``(N, d)`` raw image features (the LAION-natural rows).
        centroids: ``(K, d)`` LAION-natural k-means centroids, same space: the stratified and
            greedy-ED strategies get each pool row's nearest centroid as its label.
        n: images per set.
        strategies: names in :data:`laionlab.sampling.STRATEGIES`, drawn in this order.
        pool_size: rows drawn uniformly without replacement (seeded) as the pool, kept in row
            order; all rows when there are fewer.
        seed: seeds the pool and every strategy.
        log: gets one line per strategy (its diversity row).

    Raises:
        ValueError: an unknown strategy, ``n`` larger than the pool, ``X`` without one row
            per uid, or centroids of another dimension.
    """
    strategies = check_strategies(strategies)
    n = validate.int_at_least("n", n, 1)
    X = np.asarray(X)
    if len(X) != len(uids):
        raise ValueError(f"X: expected one row per uid ({len(uids)}), got {len(X)}")
    rng = np.random.default_rng(seed)
    pool = np.sort(rng.choice(len(uids), size=min(pool_size, len(uids)), replace=False))
    X = X[pool]
    if n > len(pool):
        raise ValueError(f"n={n} is larger than the LAION-natural pool ({len(pool)} rows)")
    labels = nearest_centroid(X, centroids)
    rows, sets = [], []
    for name in strategies:
        kw = {"labels": labels} if name in LABELLED_STRATEGIES else {}
        idx = sample(name, X, n, seed=seed, **kw)
        sets.append(pl.DataFrame({"strategy": name, "rank": np.arange(len(idx)), "uid": [uids[pool[i]] for i in idx]}))
        rows.append(
            {
                "strategy": name,
                "n": len(idx),
                "effective_dim": effective_dimensionality(X[idx]),
                "clusters_hit": cluster_coverage(X[idx], centroids, min_count=1).share,
            }
        )
        if log is not None:
            log.info(f"{name}: {rows[-1]}")
    return StimulusSets(pl.concat(sets), pl.DataFrame(rows), len(pool))
