"""Clustering of embedding matrices: the one k-means wrapper (faiss) and exact assignment."""

from laionlab.cluster.kmeans import KMeansResult, assign, draw_distinct_centres, kmeans, sample_across_parts

__all__ = ["KMeansResult", "assign", "draw_distinct_centres", "kmeans", "sample_across_parts"]
