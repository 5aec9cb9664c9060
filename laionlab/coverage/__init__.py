"""Coverage of LAION-natural by reference and stimulus sets (seed 000: Roth & Hebart,
"How to sample the world for understanding the visual system", CCN 2025).

The seed has two coverage metrics, both here: cluster occupancy of LAION-natural k-means
centres (``cluster_coverage``, ``coverage_overlap``) and PCA-reconstruction coverage with
an extreme-value threshold (``pca_coverage`` and its random-subset baseline). ``prdc``
(Naeem et al. 2020) is an extra k-NN-manifold metric that the seed does not use.
All functions take numpy arrays (n, d) and know nothing of Dagster.
"""

from laionlab.coverage.clusters import ClusterCoverage, cluster_coverage, coverage_overlap, nearest_centroid
from laionlab.coverage.pca import pca_coverage, pca_coverage_baseline, random_subset_baseline
from laionlab.coverage.prdc import knn_radii, prdc
from laionlab.coverage.report import CoverageReport, coverage_report

__all__ = [
    "ClusterCoverage",
    "CoverageReport",
    "coverage_report",
    "cluster_coverage",
    "coverage_overlap",
    "knn_radii",
    "nearest_centroid",
    "pca_coverage",
    "pca_coverage_baseline",
    "prdc",
    "random_subset_baseline",
]
