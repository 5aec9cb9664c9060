"""Similarity search over CLIP embeddings.

``search``: exact, blocked search (seed 004: Mayilvahanan et al., ICLR 2024,
brendel-group/clip-ood ``src/sims_and_paths/``): per-query top-k corpus rows, merging of
per-chunk top-k lists, and per-row max similarity, also over a table streamed part by part.
``caption_index``: a persistent faiss index over caption embeddings, exact or IVF-PQ chosen
under a memory budget (seed 001's autofaiss index over 413M LAION captions); ``index_parts``:
the index kept as one faiss file per part, appended to part by part and rebuilt when the
corpus outgrows its type (``update_index``, ``load_index``).
Nothing here imports Dagster.
"""

from laionlab.neighbours.caption_index import CaptionIndex, choose_index_key, estimate_index_memory
from laionlab.neighbours.search import PartsSearch, TopK, max_similarity, merge_topk, search_parts, topk_similar

__all__ = [
    "CaptionIndex",
    "PartsSearch",
    "TopK",
    "choose_index_key",
    "estimate_index_memory",
    "max_similarity",
    "merge_topk",
    "search_parts",
    "topk_similar",
]
