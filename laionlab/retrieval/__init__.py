"""Exact similarity search over CLIP embeddings (seed 004: Mayilvahanan et al., ICLR 2024,
brendel-group/clip-ood ``src/sims_and_paths/``): per-query top-k corpus rows, merging of
per-chunk top-k lists, and per-row max similarity. Nothing here imports Dagster.
"""

from laionlab.retrieval.search import TopK, max_similarity, merge_topk, topk_similar

__all__ = ["TopK", "max_similarity", "merge_topk", "topk_similar"]
