"""Cluster-occupancy coverage (seed 000, Roth & Hebart, CCN 2025, ``notebooks/cluster_comparison.ipynb``).

LAION-natural is summarised by k-means centres (5,443 in the seed, fitted on raw CLIP
ViT-B/32 image features). Each reference image (NSD, THINGS, a stimulus set) goes to its
nearest centre by Euclidean distance on the same raw features; a centre is *covered* by a
dataset when at least ``min_count`` of its images land there. The seed's notebook uses
``count > 2`` (``min_count=3``) and reports THINGS 26.1 %, NSD 37.0 %, both 12.97 %,
neither 49.83 % of clusters — the README's "existing datasets cover only ~50 %".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from laionlab import validate
from laionlab.coverage._checks import sq_dists_blocks

MIN_COUNT = 3  # seed notebook: a cluster is covered when count > 2


@dataclass(frozen=True)
class ClusterCoverage:
    """Occupancy of K centroids by one reference set.

    counts: (K,) int64, reference samples whose nearest centroid is k.
    covered: (K,) bool, ``counts >= min_count``.
    share: fraction of covered centroids, in [0, 1].
    min_count: the threshold used.
    """

    counts: np.ndarray
    covered: np.ndarray
    share: float
    min_count: int


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, block: int | None = None) -> np.ndarray:
    """Index of the nearest centroid for every row of ``x``.

    x: (n, d) raw (unnormalised) features; centroids: (K, d), same space.
    Returns (n,) int64 in [0, K). Euclidean distance, as the seed's
    ``cdist(x, centroids).argmin(1)``; exact ties go to the lowest centroid index.
    Computed in float64, ``block`` rows of ``x`` at a time (default: enough rows for a
    64 MiB distance block), so n x K distances are never held at once.
    """
    x = validate.matrix("x", x)
    centroids = validate.matrix("centroids", centroids)
    validate.same_dim("centroids", centroids, "x", x)
    out = np.empty(len(x), dtype=np.int64)
    for start, d in sq_dists_blocks(x, centroids, block, what="nearest centroid"):
        out[start : start + len(d)] = d.argmin(axis=1)
    return out


def cluster_coverage(
    ref_emb: np.ndarray, centroids: np.ndarray, min_count: int = MIN_COUNT, block: int | None = None
) -> ClusterCoverage:
    """Which of the K centroids a reference set occupies.

    ref_emb: (n, d) raw features of the reference set (e.g. NSD, THINGS);
    centroids: (K, d) k-means centres of LAION-natural in the same raw space.
    A centroid is covered when >= ``min_count`` reference samples are nearest to it
    (default 3, the seed's ``count > 2``).
    """
    ref_emb = validate.matrix("ref_emb", ref_emb)
    centroids = validate.matrix("centroids", centroids)
    validate.same_dim("ref_emb", ref_emb, "centroids", centroids)
    min_count = validate.int_at_least("min_count", min_count, 1)
    labels = nearest_centroid(ref_emb, centroids, block=block)
    counts = np.bincount(labels, minlength=len(centroids)).astype(np.int64)
    covered = counts >= min_count
    return ClusterCoverage(counts=counts, covered=covered, share=float(covered.mean()), min_count=min_count)


def coverage_overlap(covered: Mapping[str, np.ndarray | ClusterCoverage]) -> list[dict]:
    """Overlap of the clusters covered by several datasets.

    covered: dataset name -> (K,) bool mask (or a ClusterCoverage), same K for all, >= 2 names.
    Returns rows ``{"region", "clusters", "percent"}`` (percent of K, unrounded), in order:
    one row per dataset (all clusters it covers), one ``"<name> only"`` per dataset,
    ``"both"`` (two datasets) or ``"all"`` (more), ``"union"`` and ``"neither"``.
    ``polars.DataFrame(rows)`` gives the seed notebook's table
    (THINGS 26.1, NSD 37.0, THINGS only 13.17, NSD only 24.03, both 12.97, neither 49.83).
    """
    if not isinstance(covered, Mapping) or len(covered) < 2:
        raise ValueError("covered: expected a mapping of at least two dataset names to (K,) bool masks")
    masks: dict[str, np.ndarray] = {}
    k = None
    for name, m in covered.items():
        m = np.asarray(m.covered if isinstance(m, ClusterCoverage) else m)
        if m.ndim != 1 or m.size == 0:
            raise ValueError(f"covered[{name!r}]: expected a non-empty 1-D mask, got shape {m.shape}")
        if m.dtype != bool:
            if not np.isin(m, (0, 1)).all():
                raise ValueError(f"covered[{name!r}]: expected a boolean mask, got values other than 0/1")
            m = m.astype(bool)
        if k is not None and m.size != k:
            raise ValueError(f"covered[{name!r}]: length {m.size} does not match the other masks' {k}")
        k = m.size
        masks[str(name)] = m
    stack = np.stack(list(masks.values()))  # (n_datasets, K)
    n_cov = stack.sum(axis=0)
    regions: list[tuple[str, np.ndarray]] = [(name, m) for name, m in masks.items()]
    regions += [(f"{name} only", m & (n_cov == 1)) for name, m in masks.items()]
    regions.append(("both" if len(masks) == 2 else "all", n_cov == len(masks)))
    regions.append(("union", n_cov > 0))
    regions.append(("neither", n_cov == 0))
    return [
        {"region": region, "clusters": int(m.sum()), "percent": 100.0 * float(m.sum()) / k} for region, m in regions
    ]
