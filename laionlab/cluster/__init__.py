"""Clustering of embedding matrices: the one k-means wrapper (faiss), exact assignment, and
the proportional per-part sample k-means trains on (``sample_across_parts``, ``proportional_quota``)."""

from laionlab.cluster.kmeans import (
    KMeansResult,
    assign,
    draw_distinct_centres,
    kmeans,
    proportional_quota,
    sample_across_parts,
)

__all__ = ["KMeansResult", "assign", "draw_distinct_centres", "kmeans", "proportional_quota", "sample_across_parts"]
