"""The seed-000 coverage table: every reference set against LAION-natural, and LAION-natural
against all of LAION, with the metrics of this package side by side."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from laionlab.coverage.clusters import ClusterCoverage, cluster_coverage, coverage_overlap
from laionlab.coverage.pca import pca_coverage, pca_coverage_baseline
from laionlab.coverage.prdc import prdc


@dataclass
class CoverageReport:
    table: (
        pl.DataFrame
    )  # covering, covered, n_covering, cluster_share, pca_coverage, precision, recall, density, coverage
    overlap: pl.DataFrame  # region, clusters, percent (coverage_overlap)
    clusters: dict[str, ClusterCoverage]
    baseline_mean: float
    baseline_sd: float
    baseline_size: int


def sample_rows(X: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most ``n`` rows of X, a seeded uniform sample in the original order."""
    from laionlab.sampling import random

    return X if len(X) <= n else X[np.sort(random(X, n, seed=seed))]


def coverage_report(
    references: dict[str, np.ndarray],
    natural: np.ndarray,
    laion: np.ndarray,
    centroids: np.ndarray,
    *,
    min_count: int = 3,
    n_components: float | int = 0.95,
    q: float = 0.95,
    seed_compat: bool = False,
    baseline_size: int = 6000,
    baseline_seeds: int = 10,
    prdc_k: int = 5,
) -> CoverageReport:
    """Coverage of LAION-natural by each reference set and of LAION by LAION-natural.

    references: name → (n_i, d) raw features (NSD, THINGS ...); natural: (m, d) raw
    LAION-natural features; laion: (l, d) raw features of all of LAION (a sample);
    centroids: (K, d) LAION-natural k-means centres. Per reference set: the share of clusters
    it occupies (>= ``min_count`` images, seed: 3), PCA coverage of LAION-natural by it
    (covering = the reference set), PRDC with LAION-natural as the real set (k = ``prdc_k``).
    The PCA baseline is random LAION-natural subsets of ``baseline_size`` (seed: 6,000, 10
    seeds 42..51; capped at half the natural rows). The last row covers LAION by a random
    LAION-natural subset of the baseline size.
    """
    if not references:
        raise ValueError("references: expected at least one reference dataset")
    pca_kw = dict(n_components=n_components, q=q, seed_compat=seed_compat)
    base_size = min(baseline_size, len(natural) // 2)
    base_mean, base_sd = pca_coverage_baseline(natural, size=base_size, seeds=range(42, 42 + baseline_seeds), **pca_kw)
    rows, clusters = [], {}
    for name, X in references.items():
        clusters[name] = cluster_coverage(X, centroids, min_count=min_count)
        rows.append(
            {
                "covering": name,
                "covered": "laion_natural",
                "n_covering": len(X),
                "cluster_share": clusters[name].share,
                "pca_coverage": pca_coverage(X, natural, **pca_kw),
                **prdc(natural, X, k=min(prdc_k, len(X) - 1, len(natural) - 1)),
            }
        )
    subset = sample_rows(natural, base_size, 2)
    rows.append(
        {
            "covering": f"laion_natural[{base_size}]",
            "covered": "laion",
            "n_covering": len(subset),
            "cluster_share": float("nan"),
            "pca_coverage": pca_coverage(subset, laion, **pca_kw),
            **prdc(laion, subset, k=min(prdc_k, len(subset) - 1, len(laion) - 1)),
        }
    )
    return CoverageReport(
        table=pl.DataFrame(rows),
        overlap=pl.DataFrame(coverage_overlap(clusters)),
        clusters=clusters,
        baseline_mean=base_mean,
        baseline_sd=base_sd,
        baseline_size=base_size,
    )
